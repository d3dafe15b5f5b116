"""Private block-cipher primitives for the secure channels (SCP03, TS 102 225).

Thin, typed wrappers over :mod:`cryptography`; nothing here is hand-written
cipher code. Callers are the recipe modules (:mod:`.scp03`, the OTA packet
codec); nothing outside :mod:`simwallet.applet.protocols` should import this.

* AES-CMAC: NIST SP 800-38B (the PRF of the SCP03 KDF and its C-MAC/R-MAC).
* AES-CBC with an explicit IV, no padding, and single-block AES-ECB:
  FIPS 197 / NIST SP 800-38A.
* TDEA-CBC with 2-key or 3-key bundles: NIST SP 800-67, SP 800-38A.
* ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC", DES with a final TDEA step)
  and padding method 2 (``80 00 …``).

Errors: a wrong key or block length is the caller's mistake and raises
:class:`ValueError`; a bad padding is the peer's and raises
:class:`PaddingError`, which the recipe modules translate into their own
errors. No message ever contains key bytes, and nothing here logs.
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

# FIPS 197: the AES block is 128 bits whatever the key length.
AES_BLOCK_SIZE = 16
# FIPS 197: AES-128, AES-192 and AES-256.
AES_KEY_SIZES = frozenset({16, 24, 32})
# NIST SP 800-67: the DES/TDEA block is 64 bits.
DES_BLOCK_SIZE = 8
# NIST SP 800-67: single DES key, 2-key bundle (K1 K2 K1), 3-key bundle.
DES_KEY_SIZES = frozenset({8, 16, 24})
# ISO/IEC 9797-1 padding method 2: a single 1 bit, then 0 bits.
_PAD_MARKER = 0x80


class PaddingError(ValueError):
    """ISO/IEC 9797-1 method 2 padding is missing or malformed."""


def _check_aes_key(key: bytes) -> None:
    if len(key) not in AES_KEY_SIZES:
        raise ValueError(f"AES key must be 16, 24 or 32 bytes, not {len(key)}")


def _check_blocks(data: bytes, block_size: int) -> None:
    if len(data) % block_size:
        raise ValueError(f"data length {len(data)} is not a multiple of the {block_size}-byte block")


def _tdes_bundle(key: bytes) -> bytes:
    """Expand a DES key or 2-key TDEA bundle into the 24-byte form ``cryptography`` wants."""
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise ValueError(f"DES/TDEA key must be 8, 16 or 24 bytes, not {len(key)}")


# --- AES ---------------------------------------------------------------------


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """The full 16-byte AES-CMAC of ``data`` (NIST SP 800-38B §6.2)."""
    _check_aes_key(key)
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def aes_cmac_truncated(key: bytes, data: bytes, length: int) -> bytes:
    """The leftmost ``length`` bytes of the AES-CMAC (NIST SP 800-38B §5.5: Tlen ≥ 64 bits recommended)."""
    if not 1 <= length <= AES_BLOCK_SIZE:
        raise ValueError(f"CMAC truncation length must be 1..{AES_BLOCK_SIZE}, not {length}")
    return aes_cmac(key, data)[:length]


def aes_ecb_block(key: bytes, block: bytes) -> bytes:
    """Encrypt exactly one 16-byte block with AES (no mode: the FIPS 197 cipher function)."""
    _check_aes_key(key)
    if len(block) != AES_BLOCK_SIZE:
        raise ValueError(f"AES block must be {AES_BLOCK_SIZE} bytes, not {len(block)}")
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block, used as a PRP
    return encryptor.update(block) + encryptor.finalize()


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC encryption of block-aligned ``data`` under ``iv`` (callers pad)."""
    _check_aes_key(key)
    _check_blocks(data, AES_BLOCK_SIZE)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption of block-aligned ``data`` under ``iv`` (callers unpad)."""
    _check_aes_key(key)
    _check_blocks(data, AES_BLOCK_SIZE)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


# --- DES / TDEA ----------------------------------------------------------------


def tdes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """TDEA-CBC encryption (8-byte key = single DES, 16 = 2-key, 24 = 3-key) of aligned data."""
    _check_blocks(data, DES_BLOCK_SIZE)
    encryptor = Cipher(TripleDES(_tdes_bundle(key)), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def tdes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """TDEA-CBC decryption of aligned data; key sizes as :func:`tdes_cbc_encrypt`."""
    _check_blocks(data, DES_BLOCK_SIZE)
    decryptor = Cipher(TripleDES(_tdes_bundle(key)), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def retail_mac(key: bytes, data: bytes, iv: bytes = bytes(DES_BLOCK_SIZE)) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 with DES, padding method 2, 8-byte result.

    Every block but the last is chained with single DES under K1; the last one
    goes through the full 2-key TDEA (encrypt K1, decrypt K2, encrypt K1),
    which equals algorithm 3's final "decrypt K2, encrypt K1" output
    transformation. ``key`` is the 16-byte bundle K1 K2.
    """
    if len(key) != 2 * DES_BLOCK_SIZE:
        raise ValueError(f"retail MAC key must be 16 bytes (K1 K2), not {len(key)}")
    if len(iv) != DES_BLOCK_SIZE:
        raise ValueError(f"retail MAC ICV must be {DES_BLOCK_SIZE} bytes, not {len(iv)}")
    padded = pad_iso9797_m2(data, DES_BLOCK_SIZE)
    head, last = padded[:-DES_BLOCK_SIZE], padded[-DES_BLOCK_SIZE:]
    chaining = tdes_cbc_encrypt(key[:DES_BLOCK_SIZE], iv, head)[-DES_BLOCK_SIZE:] if head else iv
    return tdes_cbc_encrypt(key, chaining, last)


# --- ISO/IEC 9797-1 padding method 2 ---------------------------------------------


def pad_iso9797_m2(data: bytes, block_size: int) -> bytes:
    """Append ``80`` and then as few ``00`` as make the length a multiple of ``block_size``.

    A full block of padding is added when ``data`` is already aligned (the
    method always adds at least the marker byte).
    """
    if block_size < 1:
        raise ValueError(f"block size must be positive, not {block_size}")
    marked = data + bytes([_PAD_MARKER])
    return marked + bytes(-len(marked) % block_size)


def unpad_iso9797_m2(data: bytes, block_size: int) -> bytes:
    """Strip method 2 padding; raise :class:`PaddingError` unless it is exactly right.

    The padded input must be a non-empty whole number of blocks and the padding
    (``80`` followed by zeros) must lie within its last block.
    """
    if block_size < 1:
        raise ValueError(f"block size must be positive, not {block_size}")
    if not data or len(data) % block_size:
        raise PaddingError(f"padded length {len(data)} is not a positive multiple of {block_size}")
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != _PAD_MARKER:
        raise PaddingError("padding marker 80 not found")
    if len(data) - len(stripped) >= block_size:
        raise PaddingError("padding is longer than one block")
    return stripped[:-1]
