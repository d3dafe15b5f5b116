"""The simple TLV data objects of the Card Application Toolkit: ETSI TS 102 223 §8 (tag values §9.3, TS 101 220 §7.2).

Theory of operation. Every CAT message is a list of COMPREHENSION-TLV data
objects (:class:`~simwallet.applet.protocols.tlv.Ctlv`). This module gives each
object the CAT messages of this project use a frozen dataclass with
``to_value()`` (the value field) and ``from_value(value)``; the message codecs
(:mod:`.cat_commands`, :mod:`.cat_response`, :mod:`.cat_envelope`) choose the
tag's comprehension-required (CR) flag when they build and accept either flag
when they parse. :class:`CtlvReader` takes a message's objects by tag and keeps
the ones nobody asked for, so that no byte is lost.

Enumerations live in :mod:`.cat_enums`; fields that carry them are typed
``int`` so that values the enumeration does not know survive a parse and a
build unchanged.

Texts: the Text string object (§8.15) carries a data coding scheme (TS 23.038
§4); :func:`dcs_alphabet` reads the alphabet from any DCS and refuses the
compressed and reserved ones. Item texts and alpha identifiers use the coding
of TS 102 221 Annex A (:mod:`simwallet.applet.protocols.alpha`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.alpha import decode_alpha, encode_alpha
from simwallet.applet.protocols.cat_enums import (
    ICON_NOT_SELF_EXPLANATORY,
    ICON_SELF_EXPLANATORY,
    TON_NPI_INTERNATIONAL_ISDN,
    Alphabet,
    CommandType,
    Dcs,
    DeviceIdentity,
    EventType,
    GeneralResult,
    Tag,
    TimeUnit,
    known,
)
from simwallet.applet.protocols.gsm7 import can_encode_gsm7, decode_gsm7, encode_gsm7, pack_ussd, unpack_ussd
from simwallet.applet.protocols.tlv import Ctlv

BYTE_MAX = 0xFF
_UCS2_MAX = 0xFFFF
_YES = 0x01
_NO = 0x00
# TS 102 223 §8.1 / TS 31.102 §4.4.2.3: BCD digits of a dialling number; F is the filler.
_BCD_DIGITS = "0123456789*#,?e"
_BCD_FILLER = 0x0F
# TS 102 221 §8.4.2: a path in a File list starts at the MF.
_MF = b"\x3f\x00"
_FID_BYTES = 2


def _expect_length(value: bytes, length: int, what: str) -> None:
    if len(value) != length:
        raise CodecError(f"{what} needs {length} bytes, got {len(value)}")


def _check_byte(value: int, what: str) -> None:
    if not 0 <= value <= BYTE_MAX:
        raise CodecError(f"{what} {value} is not a byte")


def _check_bytes(values: Iterable[int], what: str) -> None:
    for v in values:
        _check_byte(v, what)


# ------------------------------------------------------------------ texts


def dcs_alphabet(dcs: int) -> Alphabet:
    """The alphabet a TS 23.038 §4 data coding scheme selects; CodecError for compressed and reserved ones."""
    _check_byte(dcs, "DCS")
    group = dcs >> 4
    if group <= 0x7:
        # §4: general data coding (00xx) and automatic deletion (01xx); bit 6 = compressed.
        if dcs & 0x20:
            raise CodecError(f"DCS {dcs:02X}: compressed text is not supported")
        alphabet = (dcs >> 2) & 0x03
        if alphabet == 0x03:
            raise CodecError(f"DCS {dcs:02X}: reserved alphabet")
        return (Alphabet.GSM7_PACKED, Alphabet.GSM_8BIT, Alphabet.UCS2)[alphabet]
    if group in (0xC, 0xD):
        return Alphabet.GSM7_PACKED
    if group == 0xE:
        return Alphabet.UCS2
    if group == 0xF:
        return Alphabet.GSM_8BIT if dcs & 0x04 else Alphabet.GSM7_PACKED
    raise CodecError(f"DCS {dcs:02X}: reserved coding group")


def encode_ucs2(text: str) -> bytes:
    """UCS2 (big-endian, BMP only) as TS 102 223 §8.15 and TS 102 221 Annex A use it."""
    out = bytearray()
    for ch in text:
        code = ord(ch)
        if code > _UCS2_MAX:
            raise CodecError(f"U+{code:04X} is outside the UCS2 range")
        out += code.to_bytes(2, "big")
    return bytes(out)


def decode_ucs2(data: bytes) -> str:
    if len(data) % 2:
        raise CodecError(f"UCS2 text of odd length {len(data)}")
    return "".join(chr(int.from_bytes(data[i : i + 2], "big")) for i in range(0, len(data), 2))


def _decode_8bit(data: bytes) -> str:
    for pos, byte in enumerate(data):
        if byte & 0x80:
            raise CodecError(f"8-bit default-alphabet text: byte {byte:02X} has bit 8 set", pos)
    return decode_gsm7(data)


# TS 102 223 §8.15: Text string = data coding scheme (1 byte) + text; an empty value is a null text string.
@dataclass(frozen=True)
class TextString:
    """A text with its DCS; ``text=None`` is the null text string (no value at all)."""

    text: str | None
    dcs: int = Dcs.GSM_8BIT

    def __post_init__(self) -> None:
        if self.text is None and self.dcs != Dcs.GSM_8BIT:
            raise CodecError("a null text string has no DCS; leave dcs at its default")
        self.to_value()

    @classmethod
    def auto(cls, text: str) -> TextString:
        """``text`` in the unpacked default alphabet when it fits, otherwise UCS2."""
        return cls(text, Dcs.GSM_8BIT if can_encode_gsm7(text) else Dcs.UCS2)

    # TS 102 223 §6.8.5 (GET INKEY with "Yes/No"): one 8-bit byte, 01 for yes, 00 for no.
    @classmethod
    def yes_no(cls, answer: bool) -> TextString:
        return cls.from_value(bytes([Dcs.GSM_8BIT, _YES if answer else _NO]))

    @property
    def answer(self) -> bool:
        """The yes/no answer of a GET INKEY "Yes/No" response; CodecError when this is not one."""
        value = self.to_value()
        if len(value) != 2 or dcs_alphabet(value[0]) is not Alphabet.GSM_8BIT or value[1] not in (_YES, _NO):
            raise CodecError("text string is not a yes/no answer (8-bit 01 or 00)")
        return value[1] == _YES

    @property
    def alphabet(self) -> Alphabet:
        return dcs_alphabet(self.dcs)

    def to_value(self) -> bytes:
        if self.text is None:
            return b""
        alphabet = dcs_alphabet(self.dcs)
        if alphabet is Alphabet.UCS2:
            body = encode_ucs2(self.text)
        elif alphabet is Alphabet.GSM_8BIT:
            body = encode_gsm7(self.text)
        else:
            # The septet count is not carried: packed as USSD is (TS 23.038 §6.1.2.3.1, CR padding).
            body = pack_ussd(encode_gsm7(self.text))
        return bytes([self.dcs]) + body

    @classmethod
    def from_value(cls, value: bytes) -> TextString:
        if not value:
            return cls(None)
        dcs, body = value[0], value[1:]
        alphabet = dcs_alphabet(dcs)
        if alphabet is Alphabet.UCS2:
            text = decode_ucs2(body)
        elif alphabet is Alphabet.GSM_8BIT:
            text = _decode_8bit(body)
        else:
            text = decode_gsm7(unpack_ussd(body))
        return cls(text, dcs)


# ------------------------------------------------------------------ simple objects


# TS 102 223 §8.6: command number, type of command, command qualifier.
@dataclass(frozen=True)
class CommandDetails:
    number: int
    type: int
    qualifier: int

    def __post_init__(self) -> None:
        _check_bytes((self.number, self.type, self.qualifier), "command details field")

    def to_value(self) -> bytes:
        return bytes([self.number, self.type, self.qualifier])

    @classmethod
    def from_value(cls, value: bytes) -> CommandDetails:
        _expect_length(value, 3, "Command details")
        return cls(value[0], known(CommandType, value[1]), value[2])


# TS 102 223 §8.7: source device identity, destination device identity.
@dataclass(frozen=True)
class DeviceIdentities:
    source: int
    destination: int

    def __post_init__(self) -> None:
        _check_bytes((self.source, self.destination), "device identity")

    def to_value(self) -> bytes:
        return bytes([self.source, self.destination])

    @classmethod
    def from_value(cls, value: bytes) -> DeviceIdentities:
        _expect_length(value, 2, "Device identities")
        return cls(known(DeviceIdentity, value[0]), known(DeviceIdentity, value[1]))


# TS 102 223 §8.12: general result, additional information on result.
@dataclass(frozen=True)
class Result:
    general: int
    additional: bytes = b""

    def __post_init__(self) -> None:
        _check_byte(self.general, "general result")

    @property
    def succeeded(self) -> bool:
        """'0X' results: the command was performed (TS 102 223 §8.12)."""
        return self.general < 0x10

    def to_value(self) -> bytes:
        return bytes([self.general]) + self.additional

    @classmethod
    def from_value(cls, value: bytes) -> Result:
        if not value:
            raise CodecError("Result needs at least the general result byte")
        return cls(known(GeneralResult, value[0]), value[1:])


# TS 102 223 §8.8: time unit, time interval (1..255 units; 00 is reserved but kept).
@dataclass(frozen=True)
class Duration:
    unit: int
    interval: int

    def __post_init__(self) -> None:
        _check_bytes((self.unit, self.interval), "duration field")

    def to_value(self) -> bytes:
        return bytes([self.unit, self.interval])

    @classmethod
    def from_value(cls, value: bytes) -> Duration:
        _expect_length(value, 2, "Duration")
        return cls(known(TimeUnit, value[0]), value[1])


# TS 102 223 §8.1: TON/NPI byte, then the dialling number in swapped BCD with an F filler.
@dataclass(frozen=True)
class Address:
    number: str
    ton_npi: int = TON_NPI_INTERNATIONAL_ISDN

    def __post_init__(self) -> None:
        _check_byte(self.ton_npi, "TON/NPI")
        self.to_value()

    def to_value(self) -> bytes:
        nibbles: list[int] = []
        for ch in self.number:
            index = _BCD_DIGITS.find(ch)
            if index < 0:
                raise CodecError(f"address digit {ch!r} has no BCD code")
            nibbles.append(index)
        if len(nibbles) % 2:
            nibbles.append(_BCD_FILLER)
        return bytes([self.ton_npi]) + bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))

    @classmethod
    def from_value(cls, value: bytes) -> Address:
        if not value:
            raise CodecError("Address needs at least the TON/NPI byte")
        digits: list[str] = []
        for pos in range(1, len(value)):
            low, high = value[pos] & 0x0F, value[pos] >> 4
            if low == _BCD_FILLER:
                raise CodecError("address: filler F in a low nibble", pos)
            digits.append(_BCD_DIGITS[low])
            if high == _BCD_FILLER:
                if pos != len(value) - 1:
                    raise CodecError("address: filler F before the last byte", pos)
            else:
                digits.append(_BCD_DIGITS[high])
        return cls("".join(digits), value[0])


# TS 102 223 §8.9: item identifier, then the item text in the alpha identifier coding (TS 102 221 Annex A).
@dataclass(frozen=True)
class Item:
    identifier: int
    text: str

    def __post_init__(self) -> None:
        _check_byte(self.identifier, "item identifier")
        encode_alpha(self.text)

    def to_value(self) -> bytes:
        return bytes([self.identifier]) + encode_alpha(self.text)

    @classmethod
    def from_value(cls, value: bytes) -> Item:
        if not value:
            raise CodecError("Item needs an identifier (a null item is only allowed alone, to remove a menu)")
        return cls(value[0], decode_alpha(value[1:]))


# TS 102 223 §8.11: minimum length, maximum length of the response.
@dataclass(frozen=True)
class ResponseLength:
    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        _check_bytes((self.minimum, self.maximum), "response length")

    def to_value(self) -> bytes:
        return bytes([self.minimum, self.maximum])

    @classmethod
    def from_value(cls, value: bytes) -> ResponseLength:
        _expect_length(value, 2, "Response length")
        return cls(value[0], value[1])


# TS 102 223 §8.31: icon qualifier (b1 = 1: not self-explanatory), icon record number in EF.IMG.
@dataclass(frozen=True)
class IconIdentifier:
    record: int
    qualifier: int = ICON_SELF_EXPLANATORY

    def __post_init__(self) -> None:
        _check_bytes((self.record, self.qualifier), "icon identifier field")

    @property
    def self_explanatory(self) -> bool:
        return not self.qualifier & ICON_NOT_SELF_EXPLANATORY

    def to_value(self) -> bytes:
        return bytes([self.qualifier, self.record])

    @classmethod
    def from_value(cls, value: bytes) -> IconIdentifier:
        _expect_length(value, 2, "Icon identifier")
        return cls(value[1], value[0])


# TS 102 223 §8.32: icon list qualifier, then one EF.IMG record number per item.
@dataclass(frozen=True)
class ItemIconIdentifierList:
    records: tuple[int, ...]
    qualifier: int = ICON_SELF_EXPLANATORY

    def __post_init__(self) -> None:
        _check_bytes((self.qualifier, *self.records), "item icon identifier")

    @property
    def self_explanatory(self) -> bool:
        return not self.qualifier & ICON_NOT_SELF_EXPLANATORY

    def to_value(self) -> bytes:
        return bytes([self.qualifier, *self.records])

    @classmethod
    def from_value(cls, value: bytes) -> ItemIconIdentifierList:
        if not value:
            raise CodecError("Item icon identifier list needs the qualifier byte")
        return cls(tuple(value[1:]), value[0])


# TS 102 223 §8.18: number of files, then each file as a full path from the MF (3F00 …).
@dataclass(frozen=True)
class FileList:
    paths: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.paths) > BYTE_MAX:
            raise CodecError(f"File list of {len(self.paths)} files exceeds {BYTE_MAX}")
        for path in self.paths:
            if not path.startswith(_MF) or len(path) % _FID_BYTES:
                raise CodecError(f"file path {path.hex()} is not a path of file identifiers from the MF")
            if _MF in [path[i : i + _FID_BYTES] for i in range(_FID_BYTES, len(path), _FID_BYTES)]:
                raise CodecError(f"file path {path.hex()} holds 3F00 after its start")

    def to_value(self) -> bytes:
        return bytes([len(self.paths)]) + b"".join(self.paths)

    @classmethod
    def from_value(cls, value: bytes) -> FileList:
        if not value:
            raise CodecError("File list needs the number of files")
        body = value[1:]
        if len(body) % _FID_BYTES or (body and not body.startswith(_MF)):
            raise CodecError("File list body is not a sequence of paths from the MF")
        paths: list[bytes] = []
        for i in range(0, len(body), _FID_BYTES):
            fid = body[i : i + _FID_BYTES]
            if fid == _MF:
                paths.append(fid)
            else:
                paths[-1] += fid
        if len(paths) != value[0]:
            raise CodecError(f"File list announces {value[0]} files and holds {len(paths)}")
        return cls(tuple(paths))


# TS 102 223 §8.45: ISO 639 language code, two characters of the default alphabet with bit 8 = 0.
@dataclass(frozen=True)
class Language:
    code: str

    def __post_init__(self) -> None:
        self.to_value()

    def to_value(self) -> bytes:
        raw = encode_gsm7(self.code)
        if len(raw) != 2 or len(self.code) != 2:
            raise CodecError(f"language {self.code!r} is not two default-alphabet characters")
        return raw

    @classmethod
    def from_value(cls, value: bytes) -> Language:
        _expect_length(value, 2, "Language")
        if any(b & 0x80 or b == 0x1B for b in value):
            raise CodecError(f"Language {value.hex()} is not two default-alphabet characters")
        return cls(decode_gsm7(value))


def encode_bytes_list(values: tuple[int, ...], what: str) -> bytes:
    """The value of a list-of-bytes object (§8.24 Items next action indicator, §8.25 Event list)."""
    _check_bytes(values, what)
    return bytes(values)


def known_events(value: bytes) -> tuple[int, ...]:
    return tuple(known(EventType, v) for v in value)


def known_command_types(value: bytes) -> tuple[int, ...]:
    return tuple(known(CommandType, v) for v in value)


# ------------------------------------------------------------------ reading a message


class CtlvReader:
    """The data objects of one message, taken by tag in any order; what is left over stays available."""

    def __init__(self, ctlvs: Iterable[Ctlv]) -> None:
        self._left = list(ctlvs)

    def take(self, tag: int) -> Ctlv | None:
        for i, ctlv in enumerate(self._left):
            if ctlv.tag == tag:
                return self._left.pop(i)
        return None

    def take_all(self, tag: int) -> list[Ctlv]:
        taken = [c for c in self._left if c.tag == tag]
        self._left = [c for c in self._left if c.tag != tag]
        return taken

    def require(self, tag: int) -> Ctlv:
        ctlv = self.take(tag)
        if ctlv is None:
            raise CodecError(f"mandatory data object {_tag_name(tag)} is missing")
        return ctlv

    def rest(self) -> tuple[Ctlv, ...]:
        return tuple(self._left)


def _tag_name(tag: int) -> str:
    try:
        return f"{Tag(tag).name} ({tag:02X})"
    except ValueError:
        return f"{tag:02X}"
