"""BER-TLV (ISO/IEC 7816-4 §5.2, ITU-T X.690 §8.1) and COMPREHENSION-TLV (ETSI TS 101 220 §7.1.1, TS 102 223 §8).

Theory of operation. Both codecs are pure functions over ``bytes``; a data
object is a frozen dataclass whose ``tag`` is an ``int`` and whose ``value`` is
the raw content. Constructed BER-TLV objects are parsed one level at a time
(:meth:`Tlv.children`), or all levels at once with :func:`walk`, which stops at
:data:`TLV_DEPTH_MAX`.

Decisions, each where the specs leave room:

* A BER-TLV ``tag`` is the tag field's bytes read as a big-endian integer
  (``0x62``, ``0x5F2D``, ``0xBF0C``, ``0xDF8101``), so every tag round-trips
  exactly, including the low-numbered two-byte tags EMV and GlobalPlatform use
  (``0x9F05``) that X.690 would write in one byte.
* Lengths are definite only: the short form and ``81``/``82``/``83``. The
  indefinite form ``80`` and more than :data:`LENGTH_BYTES_MAX` length bytes
  are refused. ISO/IEC 7816-4 §5.2.2.2 lets ``81`` carry 0..255, so a long form
  that the short form could hold is accepted when parsing; encoding always
  writes the shortest form. Only shortest-form input is reproduced byte for
  byte.
* ISO/IEC 7816-4 §5.2.2 allows ``00`` and ``FF`` bytes before, between and
  after BER-TLV objects (erased or padded file content, e.g. the unused tail of
  an EF.DIR record). :func:`parse_tlvs` skips them only when called with
  ``padding=True``; by default a protocol message must be exactly a sequence
  of objects, so stray bytes are a :class:`CodecError`.
* COMPREHENSION-TLV lengths are one byte, or ``81`` followed by ``80``..``FF``
  (TS 101 220 §7.1.2); ``81`` followed by a value below ``80`` is refused, as
  is any length above 255. A three-byte tag (``7F`` + two bytes) whose value
  fits the single-byte format is refused so that each tag has one encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from simwallet.applet.errors import CodecError, TruncatedError

# ISO/IEC 7816-4 §5.2.2.1: tag fields of one, two or three bytes.
TAG_BYTES_MAX = 3
# ISO/IEC 7816-4 §5.2.2.2: bytes after a long-form first length byte; three
# ('83') already reach 16 MiB, far above any card buffer.
LENGTH_BYTES_MAX = 3
VALUE_LENGTH_MAX = (1 << (8 * LENGTH_BYTES_MAX)) - 1
# Nesting that walk() follows; card templates nest three or four levels
# (62 > AB > A4 > 83), so sixteen means a hostile or corrupt buffer.
TLV_DEPTH_MAX = 16
# ISO/IEC 7816-4 §5.2.2: bytes without meaning around BER-TLV objects.
PADDING_BYTES = frozenset({0x00, 0xFF})

# TS 101 220 §7.1.2: COMPREHENSION-TLV lengths stop at one byte of value.
CTLV_LENGTH_MAX = 255
# TS 101 220 §7.1.1: first byte '7F' announces the three-byte tag format.
CTLV_THREE_BYTE_TAG = 0x7F
CTLV_SINGLE_TAG_MAX = 0x7E
CTLV_TAG_MAX = 0x7FFF
CTLV_CR_BIT = 0x80
_CTLV_LENGTH_81 = 0x81

_TAG_CONSTRUCTED_BIT = 0x20
_TAG_NUMBER_MASK = 0x1F
_TAG_MORE_BIT = 0x80
_LENGTH_LONG_BIT = 0x80


def _tag_bytes(tag: int) -> bytes:
    """The tag field of ``tag``, or CodecError if no valid tag field reads as ``tag``."""
    if not 0 < tag < 1 << (8 * TAG_BYTES_MAX):
        raise CodecError(f"BER-TLV tag {tag:#x} is not 1..{TAG_BYTES_MAX} bytes")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    if raw[0] in PADDING_BYTES:
        raise CodecError(f"BER-TLV tag {tag:#x}: first byte {raw[0]:02X} is reserved for padding")
    multi = raw[0] & _TAG_NUMBER_MASK == _TAG_NUMBER_MASK
    if multi != (len(raw) > 1):
        raise CodecError(f"BER-TLV tag {tag:#x}: first byte and tag length disagree")
    # Every subsequent byte but the last has b8 set; the last has it clear.
    if any(not b & _TAG_MORE_BIT for b in raw[1:-1]) or (len(raw) > 1 and raw[-1] & _TAG_MORE_BIT):
        raise CodecError(f"BER-TLV tag {tag:#x}: bad continuation bits")
    return raw


def _encode_length(length: int) -> bytes:
    if length < _LENGTH_LONG_BIT:
        return bytes([length])
    width = (length.bit_length() + 7) // 8
    return bytes([_LENGTH_LONG_BIT | width]) + length.to_bytes(width, "big")


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TruncatedError("BER-TLV tag missing", pos)
    first = data[pos]
    if first in PADDING_BYTES:
        raise CodecError(f"BER-TLV tag cannot start with {first:02X}", pos)
    tag, end = first, pos + 1
    if first & _TAG_NUMBER_MASK == _TAG_NUMBER_MASK:
        for _ in range(TAG_BYTES_MAX - 1):
            if end >= len(data):
                raise TruncatedError("BER-TLV tag cut short", end)
            tag = tag << 8 | data[end]
            end += 1
            if not data[end - 1] & _TAG_MORE_BIT:
                break
        else:
            raise CodecError(f"BER-TLV tag longer than {TAG_BYTES_MAX} bytes", pos)
    return tag, end


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TruncatedError("BER-TLV length missing", pos)
    first = data[pos]
    if first < _LENGTH_LONG_BIT:
        return first, pos + 1
    width = first & ~_LENGTH_LONG_BIT
    if width == 0:
        raise CodecError("BER-TLV indefinite length (80) is not allowed", pos)
    if width > LENGTH_BYTES_MAX:
        raise CodecError(f"BER-TLV length of {width} bytes exceeds {LENGTH_BYTES_MAX}", pos)
    if pos + 1 + width > len(data):
        raise TruncatedError("BER-TLV length cut short", len(data))
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), pos + 1 + width


def _parse_one(data: bytes, pos: int) -> tuple[Tlv, int]:
    tag, pos = _read_tag(data, pos)
    length, pos = _read_length(data, pos)
    if pos + length > len(data):
        raise TruncatedError(f"BER-TLV value needs {length} bytes, {len(data) - pos} left", len(data))
    return Tlv(tag, bytes(data[pos : pos + length])), pos + length


# ISO/IEC 7816-4 §5.2.2: tag field, length field, value field.
@dataclass(frozen=True)
class Tlv:
    """One BER-TLV data object: ``tag`` as the big-endian integer of its tag bytes."""

    tag: int
    value: bytes = b""

    def __post_init__(self) -> None:
        _tag_bytes(self.tag)
        if not isinstance(self.value, bytes):
            raise TypeError(f"Tlv value must be bytes, not {type(self.value).__name__}")
        if len(self.value) > VALUE_LENGTH_MAX:
            raise CodecError(f"BER-TLV value of {len(self.value)} bytes exceeds {VALUE_LENGTH_MAX}")

    @property
    def tag_bytes(self) -> bytes:
        return _tag_bytes(self.tag)

    @property
    def constructed(self) -> bool:
        """b6 of the first tag byte: the value is itself a sequence of BER-TLV objects."""
        return bool(self.tag_bytes[0] & _TAG_CONSTRUCTED_BIT)

    def children(self, *, padding: bool = False) -> list[Tlv]:
        """The objects inside a constructed object (one level)."""
        if not self.constructed:
            raise CodecError(f"BER-TLV tag {self.tag:02X} is primitive and has no children")
        return parse_tlvs(self.value, padding=padding)

    def to_bytes(self) -> bytes:
        return self.tag_bytes + _encode_length(len(self.value)) + self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> Tlv:
        """Exactly one object; trailing bytes are a CodecError."""
        tlv, end = _parse_one(data, 0)
        if end != len(data):
            raise CodecError(f"{len(data) - end} bytes after the BER-TLV object", end)
        return tlv

    @classmethod
    def nest(cls, tag: int, children: Iterable[Tlv]) -> Tlv:
        """A constructed object holding ``children`` in order."""
        tlv = cls(tag, encode_tlvs(children))
        if not tlv.constructed:
            raise CodecError(f"BER-TLV tag {tag:02X} is primitive and cannot hold children")
        return tlv


def encode_tlv(tag: int, value: bytes) -> bytes:
    return Tlv(tag, value).to_bytes()


def encode_tlvs(tlvs: Iterable[Tlv]) -> bytes:
    return b"".join(t.to_bytes() for t in tlvs)


def parse_tlv(data: bytes) -> tuple[Tlv, int]:
    """The object at the start of ``data`` and the number of bytes it took.

    Bytes after it are left to the caller, which makes this the building block
    for readers that receive concatenated objects in chunks: a
    :class:`TruncatedError` means "wait for more".
    """
    return _parse_one(data, 0)


def parse_tlvs(data: bytes, *, padding: bool = False) -> list[Tlv]:
    """Every object in ``data``, which must be used up exactly.

    With ``padding=True``, ``00`` and ``FF`` bytes around the objects are
    skipped (ISO/IEC 7816-4 §5.2.2), as in file content.
    """
    out: list[Tlv] = []
    pos = 0
    while pos < len(data):
        if padding and data[pos] in PADDING_BYTES:
            pos += 1
            continue
        tlv, pos = _parse_one(data, pos)
        out.append(tlv)
    return out


def walk(tlvs: Iterable[Tlv], *, padding: bool = False) -> Iterator[Tlv]:
    """Every object, depth first, descending into constructed ones."""
    stack: list[tuple[int, Iterator[Tlv]]] = [(0, iter(tlvs))]
    while stack:
        depth, it = stack[-1]
        tlv = next(it, None)
        if tlv is None:
            stack.pop()
            continue
        yield tlv
        if tlv.constructed:
            if depth + 1 >= TLV_DEPTH_MAX:
                raise CodecError(f"BER-TLV nesting deeper than {TLV_DEPTH_MAX}")
            stack.append((depth + 1, iter(tlv.children(padding=padding))))


class _Tagged(Protocol):
    @property
    def tag(self) -> int: ...


_T = TypeVar("_T", bound=_Tagged)


def find(tlvs: Iterable[_T], tag: int) -> _T | None:
    """The first object with ``tag`` at this level (BER-TLV or COMPREHENSION-TLV), or None."""
    return next((t for t in tlvs if t.tag == tag), None)


# ---------------------------------------------------------------- COMPREHENSION-TLV


# TS 101 220 §7.1.1 (TS 102 223 §8): tag (CR flag + tag value), length, value.
@dataclass(frozen=True)
class Ctlv:
    """One COMPREHENSION-TLV data object; ``tag`` is the tag value without the CR flag."""

    tag: int
    value: bytes = b""
    comprehension_required: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.tag <= CTLV_TAG_MAX:
            raise CodecError(f"COMPREHENSION-TLV tag value {self.tag:#x} outside 1..{CTLV_TAG_MAX:#x}")
        if not isinstance(self.value, bytes):
            raise TypeError(f"Ctlv value must be bytes, not {type(self.value).__name__}")
        if len(self.value) > CTLV_LENGTH_MAX:
            raise CodecError(f"COMPREHENSION-TLV value of {len(self.value)} bytes exceeds {CTLV_LENGTH_MAX}")

    @property
    def tag_bytes(self) -> bytes:
        cr = CTLV_CR_BIT if self.comprehension_required else 0
        if self.tag <= CTLV_SINGLE_TAG_MAX:
            return bytes([cr | self.tag])
        return bytes([CTLV_THREE_BYTE_TAG]) + ((cr << 8) | self.tag).to_bytes(2, "big")

    def to_bytes(self) -> bytes:
        length = len(self.value)
        head = bytes([length]) if length < _LENGTH_LONG_BIT else bytes([_CTLV_LENGTH_81, length])
        return self.tag_bytes + head + self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> Ctlv:
        """Exactly one object; trailing bytes are a CodecError."""
        ctlv, end = _parse_ctlv_at(data, 0)
        if end != len(data):
            raise CodecError(f"{len(data) - end} bytes after the COMPREHENSION-TLV object", end)
        return ctlv


def _read_ctlv_tag(data: bytes, pos: int) -> tuple[int, bool, int]:
    if pos >= len(data):
        raise TruncatedError("COMPREHENSION-TLV tag missing", pos)
    first = data[pos]
    if first == CTLV_THREE_BYTE_TAG:
        if pos + 3 > len(data):
            raise TruncatedError("COMPREHENSION-TLV three-byte tag cut short", len(data))
        word = int.from_bytes(data[pos + 1 : pos + 3], "big")
        tag = word & CTLV_TAG_MAX
        if tag <= CTLV_SINGLE_TAG_MAX:
            raise CodecError(f"COMPREHENSION-TLV tag {tag:#x} must use the single-byte format", pos)
        return tag, bool(word & (CTLV_CR_BIT << 8)), pos + 3
    tag = first & ~CTLV_CR_BIT
    # TS 101 220 §7.1.1.1: '00', '80' and 'FF' are not valid first tag bytes.
    if tag in (0, CTLV_THREE_BYTE_TAG):
        raise CodecError(f"COMPREHENSION-TLV tag byte {first:02X} is not allowed", pos)
    return tag, bool(first & CTLV_CR_BIT), pos + 1


def _read_ctlv_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TruncatedError("COMPREHENSION-TLV length missing", pos)
    first = data[pos]
    if first < _LENGTH_LONG_BIT:
        return first, pos + 1
    if first != _CTLV_LENGTH_81:
        raise CodecError(f"COMPREHENSION-TLV length byte {first:02X} (only 00..7F or 81 xx)", pos)
    if pos + 1 >= len(data):
        raise TruncatedError("COMPREHENSION-TLV length cut short", len(data))
    if data[pos + 1] < _LENGTH_LONG_BIT:
        raise CodecError("COMPREHENSION-TLV length 81 must be followed by 80..FF", pos)
    return data[pos + 1], pos + 2


def _parse_ctlv_at(data: bytes, pos: int) -> tuple[Ctlv, int]:
    tag, cr, pos = _read_ctlv_tag(data, pos)
    length, pos = _read_ctlv_length(data, pos)
    if pos + length > len(data):
        raise TruncatedError(f"COMPREHENSION-TLV value needs {length} bytes, {len(data) - pos} left", len(data))
    return Ctlv(tag, bytes(data[pos : pos + length]), cr), pos + length


def encode_ctlv(tag: int, value: bytes, comprehension_required: bool = False) -> bytes:
    return Ctlv(tag, value, comprehension_required).to_bytes()


def encode_ctlvs(ctlvs: Iterable[Ctlv]) -> bytes:
    return b"".join(c.to_bytes() for c in ctlvs)


def parse_ctlv(data: bytes) -> tuple[Ctlv, int]:
    """The object at the start of ``data`` and the number of bytes it took."""
    return _parse_ctlv_at(data, 0)


def parse_ctlvs(data: bytes) -> list[Ctlv]:
    """Every object in ``data``, which must be used up exactly (no padding in CAT messages)."""
    out: list[Ctlv] = []
    pos = 0
    while pos < len(data):
        ctlv, pos = _parse_ctlv_at(data, pos)
        out.append(ctlv)
    return out
