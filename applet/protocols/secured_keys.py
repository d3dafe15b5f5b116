"""The OTA key set of ETSI TS 102 225 secured packets and the algorithms its KIc and KID name.

Spec: ETSI TS 102 225 §5.1.2 (KIc: DES-CBC, triple DES outer-CBC with two or
three keys, AES-CBC), §5.1.3.1 (KID for a cryptographic checksum: the same
DES family in CBC-MAC, or AES-CMAC), §5.1.3.2 (KID for a redundancy check:
CRC16, CRC32); ETSI TS 102 226 (the key version number, 1..15, that KIc and
KID carry in b8..b5).

A :class:`KeySet` is one application's pair of keys with their algorithms.
Its ``repr`` shows the key version and the algorithms, never a key byte, and
its equality is identity: key sets are not compared by their keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols import _ota_crypto
from simwallet.applet.protocols.secured_fields import (
    KEY_INDEX_MAX,
    CcAlgorithm,
    ChecksumType,
    CipherAlgorithm,
    Kic,
    Kid,
    KidCc,
    KidOpaque,
    KidRc,
    RcAlgorithm,
)

# TS 102 226: key version numbers 1..15 name OTA key sets (0 is not one).
KVN_MIN: Final = 1
KVN_MAX: Final = KEY_INDEX_MAX
# NIST SP 800-67 (DES: 8 octets, 2-key TDEA: 16, 3-key TDEA: 24) and FIPS 197.
_CIPHER_KEY_LENGTHS: Final[dict[CipherAlgorithm, frozenset[int]]] = {
    CipherAlgorithm.DES_CBC: frozenset({8}),
    CipherAlgorithm.TDES_CBC_2KEY: frozenset({16}),
    CipherAlgorithm.TDES_CBC_3KEY: frozenset({24}),
    CipherAlgorithm.AES_CBC: frozenset({16, 24, 32}),
}
_CC_KEY_LENGTHS: Final[dict[CcAlgorithm, frozenset[int]]] = {
    CcAlgorithm.DES_CBC: frozenset({8}),
    CcAlgorithm.TDES_CBC_2KEY: frozenset({16}),
    CcAlgorithm.TDES_CBC_3KEY: frozenset({24}),
    CcAlgorithm.AES_CMAC: frozenset({16, 24, 32}),
}
# TS 102 225 §5.1.3.2: CRC16 is two octets, CRC32 four.
_RC_LENGTHS: Final[dict[RcAlgorithm, int]] = {RcAlgorithm.CRC16: 2, RcAlgorithm.CRC32: 4}


def _check_key(key: object, allowed: frozenset[int], what: str) -> None:
    if not isinstance(key, bytes):
        raise CodecError(f"{what} key must be bytes, not {type(key).__name__}")
    if len(key) not in allowed:
        sizes = ", ".join(str(size) for size in sorted(allowed))
        raise CodecError(f"{what} key must be {sizes} bytes, not {len(key)}")


@dataclass(frozen=True, eq=False, repr=False)
class KeySet:
    """One application's OTA keys: KIc and KID with their algorithms, and their key version number.

    ``rc_algorithm`` is the CRC used when SPI asks for a redundancy check
    instead of a cryptographic checksum (no key is involved then).
    """

    kvn: int
    kic_algorithm: CipherAlgorithm
    kic: bytes
    kid_algorithm: CcAlgorithm
    kid: bytes
    rc_algorithm: RcAlgorithm = RcAlgorithm.CRC32

    def __post_init__(self) -> None:
        if isinstance(self.kvn, bool) or not isinstance(self.kvn, int) or not KVN_MIN <= self.kvn <= KVN_MAX:
            raise CodecError(f"key version number {self.kvn!r} outside {KVN_MIN}..{KVN_MAX}")
        if self.kic_algorithm not in _CIPHER_KEY_LENGTHS:
            raise CodecError(f"KIc algorithm {self.kic_algorithm!r} is not supported for ciphering")
        if self.kid_algorithm not in _CC_KEY_LENGTHS:
            raise CodecError(f"KID algorithm {self.kid_algorithm!r} is not supported for checksums")
        if self.rc_algorithm not in _RC_LENGTHS:
            raise CodecError(f"RC algorithm {self.rc_algorithm!r} is not supported")
        _check_key(self.kic, _CIPHER_KEY_LENGTHS[self.kic_algorithm], f"KIc {self.kic_algorithm.name}")
        _check_key(self.kid, _CC_KEY_LENGTHS[self.kid_algorithm], f"KID {self.kid_algorithm.name}")

    def __repr__(self) -> str:
        return (
            f"KeySet(kvn={self.kvn}, kic={self.kic_algorithm.name}/{8 * len(self.kic)}, "
            f"kid={self.kid_algorithm.name}/{8 * len(self.kid)}, rc={self.rc_algorithm.name})"
        )

    __str__ = __repr__

    @property
    def kic_ref(self) -> Kic:
        """The KIc octet that names this key set's ciphering key."""
        return Kic(self.kvn, self.kic_algorithm)

    def kid_ref(self, checksum: ChecksumType) -> Kid:
        """The KID octet for SPI's RC/CC/DS indication (with none, the CC key's octet, as senders do)."""
        if checksum is ChecksumType.REDUNDANCY_CHECK:
            return KidRc(self.kvn, self.rc_algorithm)
        if checksum is ChecksumType.CRYPTOGRAPHIC_CHECKSUM:
            return KidCc(self.kvn, self.kid_algorithm)
        return KidOpaque(self.kvn << 4 | self.kid_algorithm)

    @property
    def block_size(self) -> int:
        """The cipher block size of KIc, which the padding fills up to."""
        if self.kic_algorithm is CipherAlgorithm.AES_CBC:
            return _ota_crypto.AES_BLOCK_SIZE
        return _ota_crypto.DES_BLOCK_SIZE

    def checksum_length(self, checksum: ChecksumType) -> int | None:
        """Octets of RC/CC/DS for SPI's indication; ``None`` for a digital signature (not supported)."""
        if checksum is ChecksumType.NONE:
            return 0
        if checksum is ChecksumType.REDUNDANCY_CHECK:
            return _RC_LENGTHS[self.rc_algorithm]
        if checksum is ChecksumType.CRYPTOGRAPHIC_CHECKSUM:
            return _ota_crypto.CC_LENGTH
        return None


def encipher(keyset: KeySet, data: bytes) -> bytes:
    """CBC with a zero ICV under KIc; ``data`` is already padded to the block size."""
    if keyset.kic_algorithm is CipherAlgorithm.AES_CBC:
        return _ota_crypto.aes_cbc_encrypt(keyset.kic, data)
    return _ota_crypto.des_cbc_encrypt(keyset.kic, data)


def decipher(keyset: KeySet, data: bytes) -> bytes:
    """The inverse of :func:`encipher`; ``data`` must be whole blocks."""
    if keyset.kic_algorithm is CipherAlgorithm.AES_CBC:
        return _ota_crypto.aes_cbc_decrypt(keyset.kic, data)
    return _ota_crypto.des_cbc_decrypt(keyset.kic, data)


def compute_checksum(keyset: KeySet, checksum: ChecksumType, data: bytes) -> bytes:
    """The RC or CC of ``data`` under this key set; empty for none. A DS is refused (not supported)."""
    if checksum is ChecksumType.NONE:
        return b""
    if checksum is ChecksumType.REDUNDANCY_CHECK:
        if keyset.rc_algorithm is RcAlgorithm.CRC16:
            return _ota_crypto.crc16(data)
        return _ota_crypto.crc32(data)
    if checksum is ChecksumType.CRYPTOGRAPHIC_CHECKSUM:
        if keyset.kid_algorithm is CcAlgorithm.AES_CMAC:
            return _ota_crypto.aes_cmac_cc(keyset.kid, data)
        return _ota_crypto.des_cbc_mac(keyset.kid, data)
    raise CodecError("digital signatures (SPI RC/CC/DS = 11) are not supported")
