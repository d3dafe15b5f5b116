"""PUT KEY with an SCP03 (AES) key set: the data field, the command and the response, both sides.

Spec: GlobalPlatform Card Specification v2.3, PUT KEY command ("Key Data
Field", Table 11-16 key type coding, response data) with Amendment D
"Secure Channel Protocol '03'" v1.1.2 (AES keys, "Key Check Value").
Keys are encrypted under the static Key-DEK; they never appear in ``repr``
or an exception message.
"""

from __future__ import annotations

import hmac
from typing import Final

from simwallet.applet.errors import CodecError, SecureChannelError
from simwallet.applet.protocols import _crypto
from simwallet.applet.protocols.scp03.channel import CLA_GP, SW_OK, _Command, _pad16
from simwallet.applet.protocols.scp03.keys import KCV_LENGTH, StaticKeys, _check_key, kcv

# GP CS v2.3 PUT KEY instruction byte.
INS_PUT_KEY: Final = 0xD8
# GP CS v2.3 Table 11-16 (key type coding): 88 = AES.
KEY_TYPE_AES: Final = 0x88
# GP CS v2.3 PUT KEY error conditions: a key check value does not match.
SW_INVALID_KEY_CHECK_VALUE: Final = 0x9485


# GP CS v2.3 PUT KEY "Key Data Field" with Amendment D (AES keys), one block per key:
#   key type 88 (1) | length of what follows up to the KCV length (1) |
#   key length (1) | key encrypted with the static Key-DEK, AES-CBC, ICV zero,
#   padded to whole blocks (a 24-byte key takes 32) | KCV length 03 (1) | KCV (3)
# preceded by the new key version number; ENC, MAC, DEK in that order.
_ZERO_ICV: Final = bytes(_crypto.AES_BLOCK_SIZE)


def _encrypt_key(dek: bytes, key: bytes) -> bytes:
    padded = key if len(key) % _crypto.AES_BLOCK_SIZE == 0 else _pad16(key)
    return _crypto.aes_cbc_encrypt(dek, _ZERO_ICV, padded)


def put_key_data(new_keys: StaticKeys, dek: bytes) -> bytes:
    """The PUT KEY data field loading ``new_keys``, each key encrypted under the static ``dek``."""
    _check_key(dek, "Key-DEK")
    out = bytearray([new_keys.kvn])
    for key in (new_keys.enc, new_keys.mac, new_keys.dek):
        encrypted = _encrypt_key(dek, key)
        out += bytes([KEY_TYPE_AES, 1 + len(encrypted), len(key)]) + encrypted + bytes([KCV_LENGTH]) + kcv(key)
    return bytes(out)


def put_key_command(new_keys: StaticKeys, dek: bytes, *, replace_kvn: int = 0) -> bytes:
    """The plain PUT KEY C-APDU (GP CS v2.3 PUT KEY): P1 = KVN replaced (00 adds a key set), P2 = 81.

    Wrap it with :meth:`Scp03Host.wrap` before sending.
    """
    if not 0 <= replace_kvn <= 0x7F:
        raise CodecError(f"replaced key version must be 00..7F, not {replace_kvn:#04x}")
    # P2 b8 = 1: several keys follow; b7..b1 = 1: the first key identifier.
    return _Command(CLA_GP, INS_PUT_KEY, replace_kvn, 0x81, put_key_data(new_keys, dek), b"\x00").to_bytes()


def parse_put_key_data(data: bytes, dek: bytes) -> StaticKeys:
    """Card side: decrypt a PUT KEY data field of three AES keys and verify each KCV.

    :class:`CodecError` for a malformed field, :class:`SecureChannelError`
    (``sw`` 9485, "invalid key check value") when a key check value does not
    match its decrypted key, which is also what a wrong DEK produces.
    """
    _check_key(dek, "Key-DEK")
    if not data:
        raise CodecError("PUT KEY data is empty")
    kvn, offset, keys = data[0], 1, []
    for index in range(3):
        if len(data) < offset + 3:
            raise CodecError(f"key {index + 1} is truncated", offset=offset)
        key_type, block_length, key_length = data[offset : offset + 3]
        if key_type != KEY_TYPE_AES:
            raise CodecError(f"key type {key_type:02X} is not AES (88)", offset=offset)
        encrypted = data[offset + 3 : offset + 2 + block_length]
        if (
            key_length not in _crypto.AES_KEY_SIZES
            or len(encrypted) != block_length - 1
            or not encrypted
            or len(encrypted) % _crypto.AES_BLOCK_SIZE
            or key_length > len(encrypted)
        ):
            raise CodecError(f"key {index + 1} has inconsistent lengths", offset=offset + 1)
        offset += 2 + block_length
        if data[offset : offset + 1] != bytes([KCV_LENGTH]) or len(data) < offset + 1 + KCV_LENGTH:
            raise CodecError(f"key {index + 1} lacks its 3-byte KCV", offset=offset)
        check_value = data[offset + 1 : offset + 1 + KCV_LENGTH]
        offset += 1 + KCV_LENGTH
        # The key length byte is authoritative; padding of a 24-byte key is not interpreted.
        key = _crypto.aes_cbc_decrypt(dek, _ZERO_ICV, encrypted)[:key_length]
        if not hmac.compare_digest(kcv(key), check_value):
            raise SecureChannelError(f"KCV of key {index + 1} does not match", SW_INVALID_KEY_CHECK_VALUE)
        keys.append(key)
    if offset != len(data):
        raise CodecError("trailing bytes after the third key", offset=offset)
    return StaticKeys(enc=keys[0], mac=keys[1], dek=keys[2], kvn=kvn)


def put_key_response(keys: StaticKeys) -> bytes:
    """Card side: the PUT KEY response data (GP CS v2.3 PUT KEY response): KVN then each key's KCV."""
    return bytes([keys.kvn]) + b"".join(keys.kcvs)


def verify_put_key_response(response_data: bytes, new_keys: StaticKeys) -> None:
    """Host side: check the card confirmed exactly ``new_keys``; :class:`SecureChannelError` otherwise."""
    if not hmac.compare_digest(response_data, put_key_response(new_keys)):
        raise SecureChannelError("PUT KEY response does not confirm the key set sent", SW_OK)
