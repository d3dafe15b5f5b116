"""GlobalPlatform STORE DATA, Data Grouping Identifiers and sensitive data encrypted with the DEK.

Spec: GP Card Specification v2.3 §11.11 (STORE DATA: P1 §11.11.2.1
Table 11-89, P2 block number §11.11.2.2), §11.11.3 (data field: DGI format,
EMV CPS v1.1 §3.2 "DGI": a 2-byte identifier, a 1-byte length 00..FE or
``FF`` + 2 bytes); GP CS v2.3 §11.11.2.1 b7-b6 = 11 ("encrypted data") and
GP Amendment D (the static Key-DEK encrypts sensitive data, AES-CBC with a
zero ICV, as it does the keys of PUT KEY).

How encryption is signalled. The host encrypts the value of each sensitive
DGI with :func:`encrypt_sensitive` (AES-CBC under the static DEK of the key
set that opened the channel, ICV zero, ISO/IEC 9797-1 padding method 2
always added so the length is recovered exactly) and sets P1 b7-b6 = 11 on
every block that carries at least one such DGI. Which DGIs are encrypted is
the application's convention, as in EMV CPS (simwallet: ``8000``..``8FFF``,
:func:`is_sensitive_dgi`); the application undoes it with the ``decrypt``
callable the security domain hands it (:func:`decrypt_sensitive` bound to
the DEK).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols import _crypto
from simwallet.applet.protocols.gp_common import GpIns, build_gp_command, check_byte, parse_gp_command

# GP CS v2.3 §11.11.2.2: P2 is the block number, 00..FF, so one sequence has at most 256 blocks.
STORE_DATA_BLOCKS_MAX: Final = 256
# The plain data of one block, small enough for every SCP03 security level: with
# C-DECRYPTION the padded data plus the 8-byte C-MAC must fit a short Lc (255).
STORE_DATA_BLOCK_MAX: Final = 239
# EMV CPS v1.1 §3.2: a DGI length is one byte 00..FE, or FF followed by two bytes.
DGI_LONG_LENGTH: Final = 0xFF
DGI_VALUE_MAX: Final = 0xFFFF
# simwallet's convention, after EMV CPS: DGIs 8000..8FFF carry values encrypted with the DEK.
SENSITIVE_DGI_FIRST: Final = 0x8000
SENSITIVE_DGI_LAST: Final = 0x8FFF


class StoreDataEncryption(enum.IntEnum):
    """STORE DATA P1 b7-b6 (GP CS v2.3 Table 11-89); 10 is RFU."""

    NONE = 0
    APPLICATION_DEPENDENT = 1
    ENCRYPTED = 3


class StoreDataStructure(enum.IntEnum):
    """STORE DATA P1 b5-b4 (GP CS v2.3 Table 11-89); 11 is RFU."""

    NONE = 0
    DGI = 1
    BER_TLV = 2


# GP CS v2.3 §11.11.2.1 Table 11-89, P1:
#   b8 last block | b7-b6 encryption information | b5-b4 data structure | b3-b2 RFU (0) |
#   b1 response data expected (case 4) or not (case 3)
_LAST_BIT: Final = 0x80
_ENCRYPTION_SHIFT: Final = 5
_STRUCTURE_SHIFT: Final = 3
_RFU_BITS: Final = 0x06
_RESPONSE_BIT: Final = 0x01


@dataclass(frozen=True)
class StoreDataP1:
    last: bool = False
    encryption: StoreDataEncryption = StoreDataEncryption.NONE
    structure: StoreDataStructure = StoreDataStructure.NONE
    response_expected: bool = False

    def to_byte(self) -> int:
        return (
            (_LAST_BIT if self.last else 0)
            | self.encryption << _ENCRYPTION_SHIFT
            | self.structure << _STRUCTURE_SHIFT
            | (_RESPONSE_BIT if self.response_expected else 0)
        )

    @classmethod
    def from_byte(cls, p1: int) -> StoreDataP1:
        check_byte(p1, "STORE DATA P1")
        if p1 & _RFU_BITS:
            raise CodecError(f"STORE DATA P1 {p1:02X} sets RFU bits b3-b2")
        try:
            encryption = StoreDataEncryption(p1 >> _ENCRYPTION_SHIFT & 0x03)
            structure = StoreDataStructure(p1 >> _STRUCTURE_SHIFT & 0x03)
        except ValueError:
            raise CodecError(f"STORE DATA P1 {p1:02X} uses an RFU encryption or structure coding") from None
        return cls(bool(p1 & _LAST_BIT), encryption, structure, bool(p1 & _RESPONSE_BIT))


@dataclass(frozen=True)
class StoreDataCommand:
    """One STORE DATA block: CLA 80, INS E2, P1 :class:`StoreDataP1`, P2 block number, data."""

    p1: StoreDataP1
    block_number: int
    data: bytes

    def __post_init__(self) -> None:
        check_byte(self.block_number, "block number")
        if not self.data:
            raise CodecError("a STORE DATA block carries data")

    def to_bytes(self) -> bytes:
        return build_gp_command(GpIns.STORE_DATA, self.p1.to_byte(), self.block_number, self.data, le=self.p1.response_expected)

    @classmethod
    def from_bytes(cls, capdu: bytes) -> StoreDataCommand:
        command = parse_gp_command(capdu, GpIns.STORE_DATA)
        return cls(StoreDataP1.from_byte(command.p1), command.p2, command.data)


# --- DGIs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dgi:
    """One Data Grouping Identifier and its value (EMV CPS v1.1 §3.2, GP CS v2.3 §11.11.3)."""

    tag: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= 0xFFFF:
            raise CodecError(f"DGI {self.tag:#x} is not two bytes")
        if len(self.value) > DGI_VALUE_MAX:
            raise CodecError(f"DGI value of {len(self.value)} bytes exceeds {DGI_VALUE_MAX}")

    def to_bytes(self) -> bytes:
        length = len(self.value)
        head = bytes([length]) if length < DGI_LONG_LENGTH else bytes([DGI_LONG_LENGTH]) + length.to_bytes(2, "big")
        return self.tag.to_bytes(2, "big") + head + self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> Dgi:
        dgi, end = _parse_dgi(data, 0)
        if end != len(data):
            raise CodecError(f"{len(data) - end} bytes after the DGI", end)
        return dgi


def _parse_dgi(data: bytes, pos: int) -> tuple[Dgi, int]:
    if pos + 3 > len(data):
        raise TruncatedError("DGI header needs 3 bytes", len(data))
    tag = int.from_bytes(data[pos : pos + 2], "big")
    length, start = data[pos + 2], pos + 3
    if length == DGI_LONG_LENGTH:
        if start + 2 > len(data):
            raise TruncatedError("DGI long length cut short", len(data))
        length = int.from_bytes(data[start : start + 2], "big")
        if length < DGI_LONG_LENGTH:
            raise CodecError(f"DGI length {length} written in the long form", pos + 2)
        start += 2
    if start + length > len(data):
        raise TruncatedError(f"DGI {tag:04X} needs {length} bytes, {len(data) - start} left", len(data))
    return Dgi(tag, bytes(data[start : start + length])), start + length


def parse_dgis(data: bytes) -> list[Dgi]:
    """Every DGI in ``data``, which must be used up exactly."""
    out: list[Dgi] = []
    pos = 0
    while pos < len(data):
        dgi, pos = _parse_dgi(data, pos)
        out.append(dgi)
    return out


def encode_dgis(dgis: Iterable[Dgi]) -> bytes:
    return b"".join(d.to_bytes() for d in dgis)


def is_sensitive_dgi(tag: int) -> bool:
    """simwallet's convention (after EMV CPS): DGIs 8000..8FFF hold values encrypted with the DEK."""
    return SENSITIVE_DGI_FIRST <= tag <= SENSITIVE_DGI_LAST


# --- sensitive data -------------------------------------------------------------------------------

_ZERO_ICV: Final = bytes(_crypto.AES_BLOCK_SIZE)


def _check_dek(dek: bytes) -> None:
    if not isinstance(dek, bytes) or len(dek) not in _crypto.AES_KEY_SIZES:
        raise CodecError("Key-DEK must be an AES key of 16, 24 or 32 bytes")


def encrypt_sensitive(dek: bytes, plain: bytes) -> bytes:
    """Host side: AES-CBC under the static DEK, ICV zero, after ISO/IEC 9797-1 method 2 padding (always added)."""
    _check_dek(dek)
    return _crypto.aes_cbc_encrypt(dek, _ZERO_ICV, _crypto.pad_iso9797_m2(plain, _crypto.AES_BLOCK_SIZE))


def decrypt_sensitive(dek: bytes, encrypted: bytes) -> bytes:
    """Card side: undo :func:`encrypt_sensitive`; :class:`CodecError` for a length or padding that is wrong."""
    _check_dek(dek)
    if not encrypted or len(encrypted) % _crypto.AES_BLOCK_SIZE:
        raise CodecError(f"encrypted data of {len(encrypted)} bytes is not whole AES blocks")
    try:
        return _crypto.unpad_iso9797_m2(_crypto.aes_cbc_decrypt(dek, _ZERO_ICV, encrypted), _crypto.AES_BLOCK_SIZE)
    except _crypto.PaddingError:
        raise CodecError("encrypted data does not decrypt to padded plain data (wrong DEK?)") from None


def sensitive_decryptor(dek: bytes) -> Callable[[bytes], bytes]:
    """The ``decrypt`` callable a security domain hands an application for one STORE DATA block."""
    _check_dek(dek)

    def decrypt(encrypted: bytes) -> bytes:
        return decrypt_sensitive(dek, encrypted)

    return decrypt


# --- host side: a whole personalization ---------------------------------------------------------


def store_data_blocks(
    blocks: Sequence[bytes],
    *,
    structure: StoreDataStructure,
    encrypted: Sequence[bool] | None = None,
    response_expected: bool = False,
) -> list[bytes]:
    """Plain STORE DATA C-APDUs for ``blocks`` in order: block numbers from 00, the last flagged.

    ``encrypted[i]`` sets P1 b7-b6 = 11 on block ``i``. Wrap each with
    :meth:`~simwallet.applet.protocols.scp03.Scp03Host.wrap` before sending.
    """
    if not blocks:
        raise CodecError("no STORE DATA blocks to send")
    if len(blocks) > STORE_DATA_BLOCKS_MAX:
        raise CodecError(f"{len(blocks)} STORE DATA blocks exceed {STORE_DATA_BLOCKS_MAX}")
    flags = encrypted if encrypted is not None else [False] * len(blocks)
    if len(flags) != len(blocks):
        raise CodecError("one encryption flag per block")
    commands = []
    for number, (block, flag) in enumerate(zip(blocks, flags, strict=True)):
        if len(block) > STORE_DATA_BLOCK_MAX:
            raise CodecError(f"STORE DATA block {number} of {len(block)} bytes exceeds {STORE_DATA_BLOCK_MAX}")
        encryption = StoreDataEncryption.ENCRYPTED if flag else StoreDataEncryption.NONE
        p1 = StoreDataP1(number == len(blocks) - 1, encryption, structure, response_expected)
        commands.append(StoreDataCommand(p1, number, block).to_bytes())
    return commands


def store_data_commands(
    dgis: Sequence[Dgi],
    *,
    dek: bytes | None = None,
    sensitive: Callable[[int], bool] = is_sensitive_dgi,
    block_max: int = STORE_DATA_BLOCK_MAX,
) -> list[bytes]:
    """Plain STORE DATA C-APDUs (DGI format) personalizing an application with ``dgis``.

    The value of every DGI for which ``sensitive(tag)`` holds is encrypted
    with ``dek`` (the static Key-DEK of the key set that opens the channel);
    the DGIs are packed whole, in order, into blocks of at most
    ``block_max`` bytes, and a block holding an encrypted DGI says so in P1.
    A DGI larger than a block is refused rather than split.
    """
    if not 0 < block_max <= STORE_DATA_BLOCK_MAX:
        raise CodecError(f"block_max must be 1..{STORE_DATA_BLOCK_MAX}, not {block_max}")
    blocks: list[bytes] = []
    flags: list[bool] = []
    current, current_flag = b"", False
    for dgi in dgis:
        flag = sensitive(dgi.tag)
        if flag:
            if dek is None:
                raise CodecError(f"DGI {dgi.tag:04X} is sensitive and no DEK was given")
            encoded = Dgi(dgi.tag, encrypt_sensitive(dek, dgi.value)).to_bytes()
        else:
            encoded = dgi.to_bytes()
        if len(encoded) > block_max:
            raise CodecError(f"DGI {dgi.tag:04X} of {len(encoded)} bytes does not fit a {block_max}-byte block")
        if current and len(current) + len(encoded) > block_max:
            blocks.append(current)
            flags.append(current_flag)
            current, current_flag = b"", False
        current += encoded
        current_flag = current_flag or flag
    if current:
        blocks.append(current)
        flags.append(current_flag)
    return store_data_blocks(blocks, structure=StoreDataStructure.DGI, encrypted=flags)
