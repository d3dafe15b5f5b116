"""SCP03 keys: key check values, the data derivation scheme, KDF3 diversification, key sets.

Spec: GlobalPlatform Card Specification v2.3, Amendment D "Secure Channel
Protocol '03'" v1.1.2: §4.1.5 "Data Derivation Scheme" (NIST SP 800-108 KDF
in counter mode, PRF AES-CMAC), "Key Check Value", §6.2.1 "AES Session Keys",
§6.2.2.1 pseudo-random card challenge, §6.2.2.2/§6.2.2.3 card and host
cryptograms. KDF3 key diversification as GlobalPlatformPro implements it.

Keys never appear in ``repr``, ``str`` or an exception message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols import _crypto

# Amendment D, "Card Challenge" / "Host Challenge" (S8 mode): 64-bit challenges.
CHALLENGE_LENGTH: Final = 8
# Amendment D, "Card/Host Authentication Cryptogram" (S8 mode): 64 bits.
CRYPTOGRAM_LENGTH: Final = 8
# Amendment D, "Key Check Value" (also GP CS v2.3 PUT KEY): 3 bytes of AES(key, 01..01).
KCV_LENGTH: Final = 3
# Amendment D, INITIALIZE UPDATE response: key diversification data is 10 bytes.
KDD_LENGTH: Final = 10
# Amendment D, INITIALIZE UPDATE response: the sequence counter is 3 bytes, so
# a key set supports this many pseudo-random challenges; the card then refuses
# to open sessions rather than repeat a challenge.
SEQUENCE_COUNTER_LENGTH: Final = 3
SEQUENCE_COUNTER_MAX: Final = (1 << (8 * SEQUENCE_COUNTER_LENGTH)) - 1
# ISO/IEC 7816-5: an application identifier is 5 to 16 bytes.
AID_LENGTH_MIN: Final = 5
AID_LENGTH_MAX: Final = 16


class KeyId(enum.IntEnum):
    """Key identifiers within an SCP03 key set (Amendment D: Key-ENC 1, Key-MAC 2, Key-DEK 3)."""

    ENC = 1
    MAC = 2
    DEK = 3


class _Derivation(enum.IntEnum):
    # Amendment D §4.1.5 "Data Derivation Scheme", Table 4-1: derivation constants.
    CARD_CRYPTOGRAM = 0x00
    HOST_CRYPTOGRAM = 0x01
    CARD_CHALLENGE = 0x02
    S_ENC = 0x04
    S_MAC = 0x06
    S_RMAC = 0x07


# --- key check value, data derivation, diversification -------------------------------------

# Amendment D, "Key Check Value": AES-encrypt a block of 16 bytes '01' and keep
# the leftmost 3 bytes.
_KCV_BLOCK: Final = b"\x01" * _crypto.AES_BLOCK_SIZE


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) not in _crypto.AES_KEY_SIZES:
        length = len(key) if isinstance(key, bytes) else type(key).__name__
        raise CodecError(f"{what} must be an AES key of 16, 24 or 32 bytes, not {length}")


def kcv(key: bytes) -> bytes:
    """The 3-byte key check value of an AES key: AES-ECB(key, ``01``×16)[:3]."""
    _check_key(key, "key")
    return _crypto.aes_ecb_block(key, _KCV_BLOCK)[:KCV_LENGTH]


# Amendment D §4.1.5 "Data Derivation Scheme" (NIST SP 800-108 KDF in counter
# mode, PRF = AES-CMAC), derivation data for iteration i:
#   label: 11 bytes 00 || derivation constant (1) | separator 00 |
#   L: output length in bits (2, big-endian) | i (1) | context
_LABEL_PREFIX: Final = bytes(11)
_DERIVATION_SEPARATOR: Final = b"\x00"


def _derive(key: bytes, constant: _Derivation, context: bytes, length_bits: int) -> bytes:
    # L is a multiple of 64 in every use (64 for challenges and cryptograms,
    # 128..256 for session keys); one counter byte covers 255 blocks.
    if length_bits % 64 or not 64 <= length_bits <= 256:
        raise ValueError(f"derived length must be 64..256 bits in steps of 64, not {length_bits}")
    fixed = _LABEL_PREFIX + bytes([constant]) + _DERIVATION_SEPARATOR + length_bits.to_bytes(2, "big")
    blocks = -(-length_bits // 128)
    output = b"".join(_crypto.aes_cmac(key, fixed + bytes([i]) + context) for i in range(1, blocks + 1))
    return output[: length_bits // 8]


def pseudo_random_card_challenge(key_enc: bytes, sequence_counter: int, aid: bytes) -> bytes:
    """Amendment D §6.2.2.1: the pseudo-random card challenge.

    Derived from the static Key-ENC with constant ``02``, L = 64, context =
    sequence counter (3 bytes) || AID of the invoking application.
    """
    _check_key(key_enc, "Key-ENC")
    _check_aid(aid)
    if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX:
        raise CodecError(f"sequence counter must be 0..{SEQUENCE_COUNTER_MAX:#x}, not {sequence_counter}")
    context = sequence_counter.to_bytes(SEQUENCE_COUNTER_LENGTH, "big") + aid
    return _derive(key_enc, _Derivation.CARD_CHALLENGE, context, 8 * CHALLENGE_LENGTH)


def _check_aid(aid: bytes) -> None:
    if not AID_LENGTH_MIN <= len(aid) <= AID_LENGTH_MAX:
        raise CodecError(f"AID must be {AID_LENGTH_MIN}..{AID_LENGTH_MAX} bytes, not {len(aid)}")


# GlobalPlatformPro "KDF3" key diversification, template
#   "$_ 0x00 0x00 0x00 $k 0x00 $0 $1 $2 $3 $4 $5 $6 $7 $8 $9"
# read as NIST SP 800-108 counter mode with PRF AES-CMAC under the master key:
#   i (1, the "$_" slot) | 00 00 00 | key id $k (1) | 00 | KDD $0..$9 (10)
# one 16-byte block per i = 1, 2 until the key length is reached. (It is not
# the session-key layout above: no label, no L.) Proved by the GPPro KCVs and
# the external AES-256 vector in tests/vectors/globalplatform.json.
_KDF3_PAD: Final = bytes(3)


def diversify_kdf3(master: bytes, kdd: bytes, key_id: int) -> bytes:
    """A card key diversified from ``master`` and the 10-byte KDD (GPPro "KDF3").

    ``key_id`` is :class:`KeyId` (ENC 1, MAC 2, DEK 3); the result has the
    master key's length.
    """
    _check_key(master, "master key")
    if len(kdd) != KDD_LENGTH:
        raise CodecError(f"key diversification data must be {KDD_LENGTH} bytes, not {len(kdd)}")
    if key_id not in set(KeyId):
        raise CodecError(f"key identifier must be 1 (ENC), 2 (MAC) or 3 (DEK), not {key_id}")
    blocks = -(-len(master) // _crypto.AES_BLOCK_SIZE)
    fixed = _KDF3_PAD + bytes([key_id]) + b"\x00" + kdd
    output = b"".join(_crypto.aes_cmac(master, bytes([i]) + fixed) for i in range(1, blocks + 1))
    return output[: len(master)]


# --- key sets ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class StaticKeys:
    """An SCP03 key set: Key-ENC, Key-MAC, Key-DEK and their key version number.

    ``repr``/``str`` show the KVN and the key check values only. Equality is
    identity (``eq=False``): compare key sets by KCV, never with ``==`` on
    key bytes.
    """

    enc: bytes
    mac: bytes
    dek: bytes
    # GP CS v2.3 "Key Version Number": 01..7F for issuer key sets, FF for the initial
    # key set; 00 is "any key set" in INITIALIZE UPDATE, so not a KVN.
    kvn: int

    def __post_init__(self) -> None:
        for name in ("enc", "mac", "dek"):
            _check_key(getattr(self, name), f"Key-{name.upper()}")
        if not 0x01 <= self.kvn <= 0xFF:
            raise CodecError(f"key version number must be 01..FF, not {self.kvn:#04x}")

    @property
    def kcvs(self) -> tuple[bytes, bytes, bytes]:
        """Key check values of ENC, MAC and DEK."""
        return kcv(self.enc), kcv(self.mac), kcv(self.dek)

    def __repr__(self) -> str:
        enc, mac, dek = (value.hex().upper() for value in self.kcvs)
        return f"StaticKeys(kvn={self.kvn:#04x}, aes={8 * len(self.enc)}, kcv_enc={enc}, kcv_mac={mac}, kcv_dek={dek})"

    __str__ = __repr__


def card_keys(master_keys: StaticKeys, iccid_kdd: bytes, kvn: int) -> StaticKeys:
    """The card's key set: each master key diversified with KDF3 over the KDD.

    simwallet uses the 10 bytes of EF.ICCID as the KDD, so the backend can
    derive any card's keys from the master key version and the ICCID.
    """
    return StaticKeys(
        enc=diversify_kdf3(master_keys.enc, iccid_kdd, KeyId.ENC),
        mac=diversify_kdf3(master_keys.mac, iccid_kdd, KeyId.MAC),
        dek=diversify_kdf3(master_keys.dek, iccid_kdd, KeyId.DEK),
        kvn=kvn,
    )


@dataclass(frozen=True, eq=False, repr=False)
class _SessionKeys:
    # Amendment D §6.2.1 "AES Session Keys": S-ENC from Key-ENC (04), S-MAC
    # (06) and S-RMAC (07) from Key-MAC, L = static key length, context =
    # host challenge || card challenge.
    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes

    @classmethod
    def derive(cls, keys: StaticKeys, context: bytes) -> _SessionKeys:
        return cls(
            s_enc=_derive(keys.enc, _Derivation.S_ENC, context, 8 * len(keys.enc)),
            s_mac=_derive(keys.mac, _Derivation.S_MAC, context, 8 * len(keys.mac)),
            s_rmac=_derive(keys.mac, _Derivation.S_RMAC, context, 8 * len(keys.mac)),
        )

    def cryptogram(self, constant: _Derivation, context: bytes) -> bytes:
        # Amendment D §6.2.2.2 / §6.2.2.3: card (00) and host (01) cryptograms
        # under S-MAC, L = 64.
        return _derive(self.s_mac, constant, context, 8 * CRYPTOGRAM_LENGTH)

    def __repr__(self) -> str:
        return "_SessionKeys(<secret>)"
