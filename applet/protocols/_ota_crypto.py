"""Private primitives of ETSI TS 102 225 secured packets: ciphering, cryptographic checksums, CRCs.

Spec: ETSI TS 102 225 §5.1.2 (KIc: DES-CBC, triple DES outer-CBC with two or
three keys, AES-CBC, all with an initial chaining value of zero), §5.1.3.1 (KID
for a cryptographic checksum: DES/triple-DES CBC-MAC over zero-padded input,
AES-CMAC of NIST SP 800-38B) and §5.1.3.2 (KID for a redundancy check: CRC16
and CRC32 of ISO/IEC 13239).

Built on :mod:`._crypto` (which wraps :mod:`cryptography`); nothing here is
hand-written cipher code except the two CRCs. Callers are the secured packet
modules (:mod:`.secured_keys`); nothing outside :mod:`simwallet.applet.protocols`
should import this.

Errors: a wrong key or data length is the caller's mistake and raises
:class:`ValueError`. No message ever contains key bytes, and nothing here logs.
"""

from __future__ import annotations

import zlib
from typing import Final

from simwallet.applet.protocols import _crypto

# NIST SP 800-67 / FIPS 197: the two block sizes of the KIc algorithms.
DES_BLOCK_SIZE: Final = _crypto.DES_BLOCK_SIZE
AES_BLOCK_SIZE: Final = _crypto.AES_BLOCK_SIZE
# TS 102 225 §5.1.3.1: the CBC-MAC is the final 8-byte block; the AES-CMAC is
# truncated to its leftmost 8 bytes.
CC_LENGTH: Final = 8
# TS 102 225 §5.1.2: CBC "with the initial chaining value set to zero".
_ZERO_IV_DES: Final = bytes(DES_BLOCK_SIZE)
_ZERO_IV_AES: Final = bytes(AES_BLOCK_SIZE)

# ISO/IEC 13239 FCS-16: generator x^16 + x^12 + x^5 + 1 (0x1021), processed
# least significant bit first (so the reflected constant 0x8408), register
# preset to FFFF, the result complemented.
_CRC16_POLY_REFLECTED: Final = 0x8408
_CRC16_PRESET: Final = 0xFFFF


def zero_pad(data: bytes, block_size: int) -> bytes:
    """Append as few ``00`` as make the length a multiple of ``block_size`` (none when aligned).

    TS 102 225 §5.1.3.1 pads the checksum input this way; the padding is not
    sent. An aligned input gets no padding (an implementation that adds a full
    block then disagrees on every aligned CC input; see the tests).
    """
    if block_size < 1:
        raise ValueError(f"block size must be positive, not {block_size}")
    return data + bytes(-len(data) % block_size)


def padding_count(length: int, block_size: int) -> int:
    """The number of padding octets that brings ``length`` to a multiple of ``block_size`` (PCNTR)."""
    if block_size < 1 or length < 0:
        raise ValueError(f"length {length} and block size {block_size} must be non-negative and positive")
    return -length % block_size


# --- ciphering (KIc) ------------------------------------------------------------------


def des_cbc_encrypt(key: bytes, data: bytes) -> bytes:
    """DES (8-byte key) or triple DES outer-CBC (16- or 24-byte key), zero ICV, over aligned ``data``."""
    return _crypto.tdes_cbc_encrypt(key, _ZERO_IV_DES, data)


def des_cbc_decrypt(key: bytes, data: bytes) -> bytes:
    """The inverse of :func:`des_cbc_encrypt`."""
    return _crypto.tdes_cbc_decrypt(key, _ZERO_IV_DES, data)


def aes_cbc_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-CBC (128/192/256-bit key), zero ICV, over aligned ``data``."""
    return _crypto.aes_cbc_encrypt(key, _ZERO_IV_AES, data)


def aes_cbc_decrypt(key: bytes, data: bytes) -> bytes:
    """The inverse of :func:`aes_cbc_encrypt`."""
    return _crypto.aes_cbc_decrypt(key, _ZERO_IV_AES, data)


# --- cryptographic checksum (KID, CC) -------------------------------------------------


def des_cbc_mac(key: bytes, data: bytes) -> bytes:
    """The 8-byte CBC-MAC of ``data`` zero-padded to 8 bytes, with DES or triple DES outer-CBC.

    Every block goes through the full cipher named by the key length (8 = DES,
    16 = 2-key, 24 = 3-key triple DES); the checksum is the last cipher block.
    """
    return des_cbc_encrypt(key, zero_pad(data, DES_BLOCK_SIZE))[-CC_LENGTH:]


def aes_cmac_cc(key: bytes, data: bytes) -> bytes:
    """The AES-CMAC of ``data`` truncated to 8 bytes (CMAC pads internally; no zero padding)."""
    return _crypto.aes_cmac_truncated(key, data, CC_LENGTH)


# --- redundancy check (KID, RC) ---------------------------------------------------------


def crc16(data: bytes) -> bytes:
    """ISO/IEC 13239 FCS-16 of ``data`` (the CRC-16 of X.25/HDLC), most significant byte first.

    Check value: ``crc16(b"123456789") == bytes.fromhex("906E")``.
    """
    register = _CRC16_PRESET
    for octet in data:
        register ^= octet
        for _ in range(8):
            register = (register >> 1) ^ _CRC16_POLY_REFLECTED if register & 1 else register >> 1
    return (register ^ 0xFFFF).to_bytes(2, "big")


def crc32(data: bytes) -> bytes:
    """ISO/IEC 13239 FCS-32 of ``data`` (the CRC-32 of zlib and Ethernet), most significant byte first.

    Check value: ``crc32(b"123456789") == bytes.fromhex("CBF43926")``.
    """
    return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")
