"""Alpha identifier coding: ETSI TS 102 221 Annex A (used by TS 102 223 §8.2 and §8.9, and by EF records).

Theory of operation. An alpha identifier (a menu title, an item's text, the
name in an ADN record) takes one of four forms, told apart by its first byte:

* ``00``..``7F`` first byte: the SMS default alphabet of TS 23.038 §6.2.1, one
  character per byte with bit 8 = 0 (extension-table characters as ``1B xx``);
* ``80``: UCS2, big-endian pairs;
* ``81``: one byte of length ``N``, one byte giving bits 15..8 of a base pointer
  (base = byte << 7), then ``N`` bytes: bit 8 = 0 is a default-alphabet
  character, bit 8 = 1 adds the low seven bits to the base (a UCS2 character);
* ``82``: as ``81`` with a two-byte base pointer.

Unused bytes at the end are ``FF`` in every form. The decoder accepts all
four forms. The encoder writes the default alphabet when every character is
in it, otherwise the shortest of the three UCS2 forms (``80`` on a tie).

Decisions where the spec leaves room:

* In the ``81``/``82`` forms ``N`` counts bytes; an escape ``1B xx`` in them
  is two of the ``N`` and is decoded as an extension-table character. The
  encoder never writes escapes in these forms: it uses them only when each
  character is in the basic default alphabet or in the base window.
* U+FFFF cannot be written in the ``80`` form (it reads as padding), and no
  character outside the Basic Multilingual Plane can be written at all.
* Bytes after the text in the ``80``/``81``/``82`` forms must be ``FF``.
"""

from __future__ import annotations

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.gsm7 import can_encode_gsm7, decode_gsm7, encode_gsm7

# TS 102 221 Annex A: first byte of the three UCS2 forms.
UCS2_PLAIN = 0x80
UCS2_BASE_8 = 0x81
UCS2_BASE_16 = 0x82
# TS 102 221 Annex A: unused bytes.
PAD = 0xFF
# TS 102 221 Annex A: the 81/82 forms carry N in one byte.
ALPHA_BASE_CHARS_MAX = 255
# TS 102 221 Annex A (81 form): the base pointer has bit 16 = 0, so the base byte covers 0x0000..0x7F80.
_BASE_8_SHIFT = 7
_BASE_WINDOW = 0x80
_UCS2_MAX = 0xFFFE
_GSM_ESCAPE = 0x1B
_HIGH_BIT = 0x80


def _gsm_single(ch: str) -> int | None:
    """The one default-alphabet byte of ``ch``, or None (not in the alphabet, or an escape pair)."""
    if not can_encode_gsm7(ch):
        return None
    septets = encode_gsm7(ch)
    return septets[0] if len(septets) == 1 else None


def _ucs2_plain(text: str) -> bytes:
    for ch in text:
        if ord(ch) > _UCS2_MAX:
            raise CodecError(f"alpha identifier: U+{ord(ch):04X} has no UCS2 encoding")
    return bytes([UCS2_PLAIN]) + b"".join(ord(ch).to_bytes(2, "big") for ch in text)


def _ucs2_based(text: str) -> list[bytes]:
    """The 81 and 82 forms of ``text`` that exist (zero, one or two of them)."""
    if len(text) > ALPHA_BASE_CHARS_MAX:
        return []
    singles = [_gsm_single(ch) for ch in text]
    others = [ord(ch) for ch, s in zip(text, singles, strict=True) if s is None]
    if not others:
        return []
    low, high = min(others), max(others)
    out: list[bytes] = []

    def body(base: int) -> bytes:
        return bytes(s if s is not None else _HIGH_BIT | (ord(ch) - base) for ch, s in zip(text, singles, strict=True))

    base8 = low & ~(_BASE_WINDOW - 1)
    if high < base8 + _BASE_WINDOW and base8 >> _BASE_8_SHIFT <= 0xFF:
        out.append(bytes([UCS2_BASE_8, len(text), base8 >> _BASE_8_SHIFT]) + body(base8))
    if high < low + _BASE_WINDOW:
        out.append(bytes([UCS2_BASE_16, len(text)]) + low.to_bytes(2, "big") + body(low))
    return out


def encode_alpha(text: str, length: int | None = None) -> bytes:
    """``text`` as an alpha identifier, padded with FF to ``length`` bytes when given.

    Raises CodecError when a character has no encoding or the result does not fit ``length``.
    """
    if can_encode_gsm7(text):
        raw = encode_gsm7(text)
    else:
        raw = _ucs2_plain(text)
        for candidate in _ucs2_based(text):
            if len(candidate) < len(raw):
                raw = candidate
    if length is None:
        return raw
    if len(raw) > length:
        raise CodecError(f"alpha identifier needs {len(raw)} bytes, the field has {length}")
    return raw + bytes([PAD]) * (length - len(raw))


def alpha_length(text: str) -> int:
    """Bytes :func:`encode_alpha` needs for ``text`` without padding."""
    return len(encode_alpha(text))


def _check_padding(data: bytes, start: int) -> None:
    for pos in range(start, len(data)):
        if data[pos] != PAD:
            raise CodecError(f"alpha identifier: byte {data[pos]:02X} after the text (only FF allowed)", pos)


def _decode_plain(data: bytes) -> str:
    chars: list[str] = []
    pos = 1
    while pos + 1 < len(data):
        code = int.from_bytes(data[pos : pos + 2], "big")
        if code == 0xFFFF:
            break
        chars.append(chr(code))
        pos += 2
    _check_padding(data, pos)
    return "".join(chars)


def _decode_based(data: bytes) -> str:
    head = 4 if data[0] == UCS2_BASE_16 else 3
    if len(data) < head:
        raise TruncatedError("alpha identifier: UCS2 header cut short", len(data))
    count = data[1]
    base = int.from_bytes(data[2:4], "big") if head == 4 else data[2] << _BASE_8_SHIFT
    end = head + count
    if end > len(data):
        raise TruncatedError(f"alpha identifier announces {count} bytes, {len(data) - head} present", len(data))
    chars: list[str] = []
    gsm = bytearray()
    for pos in range(head, end):
        byte = data[pos]
        if byte & _HIGH_BIT:
            if gsm.endswith(bytes([_GSM_ESCAPE])):
                raise CodecError("alpha identifier: escape 1B not followed by a default-alphabet byte", pos)
            code = base + (byte & ~_HIGH_BIT)
            if code > _UCS2_MAX:
                raise CodecError(f"alpha identifier: base {base:04X} + offset leaves the UCS2 range", pos)
            chars.append(decode_gsm7(bytes(gsm)))
            gsm.clear()
            chars.append(chr(code))
        else:
            gsm.append(byte)
    chars.append(decode_gsm7(bytes(gsm)))
    _check_padding(data, end)
    return "".join(chars)


def decode_alpha(data: bytes) -> str:
    """The text of an alpha identifier in any of the four forms; trailing FF bytes are ignored."""
    if not data or data[0] == PAD:
        _check_padding(data, 0)
        return ""
    first = data[0]
    if first == UCS2_PLAIN:
        return _decode_plain(data)
    if first in (UCS2_BASE_8, UCS2_BASE_16):
        return _decode_based(data)
    if first & _HIGH_BIT:
        raise CodecError(f"alpha identifier: first byte {first:02X} is no known coding", 0)
    end = len(data)
    while end > 0 and data[end - 1] == PAD:
        end -= 1
    for pos in range(end):
        if data[pos] & _HIGH_BIT:
            raise CodecError(f"alpha identifier: byte {data[pos]:02X} has bit 8 set in the default alphabet", pos)
    return decode_gsm7(data[:end])
