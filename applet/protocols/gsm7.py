"""The GSM 7-bit default alphabet and its packing (3GPP TS 23.038 §6.1.2, §6.2.1, §6.2.1.1).

Theory of operation. Text becomes *septets* (one 7-bit code per ``bytes``
element, values 0..127) with :func:`encode_gsm7`; a character of the default
alphabet extension table (§6.2.1.1: ``€ [ ] { } \\ ^ ~ |`` and form feed)
takes two septets, the escape ``1B`` and its code. Septets become octets with
:func:`pack_septets` (§6.1.2.1.1: the first septet in the low bits of the first
octet, each following septet continuing where the previous one stopped),
optionally after ``fill_bits`` zero bits so that text after an SMS user data
header starts on a septet boundary (TS 23.040 §9.2.3.24).

Decisions, each where the spec leaves room:

* The mapping is the one of the §6.2.1 table figure and is a bijection:
  ``0x09`` is ``Ç`` (the figure's glyph; Unicode's GSM0338.TXT proposes ``ç``
  instead). No look-alike is folded onto a table character, so ``ç`` is not
  encodable and text that holds it is sent in UCS2. Every encodable text
  decodes back to itself.
* Decoding follows §6.2.1.1 for codes the extension table does not define:
  the character of the main table at the same position (``1B 41`` reads
  ``A``); ``1B 1B`` (reserved for a further extension table) reads as a space;
  so does an escape with nothing after it (``1B`` "displayed as space on a
  receiving entity which does not support the extension table").
* :func:`unpack_septets` wants exactly the octets that carry the fill bits and
  the septets: fewer is :class:`TruncatedError`, more is :class:`CodecError`.
  The value of fill and padding bits is not checked (the USSD rule below pads
  with a CR).
* §6.1.2.3.1 (USSD packing, the same rule as Cell Broadcast): a message of
  8n−1 characters leaves 7 spare bits that a receiver would read as ``@``, so
  the sender fills them with CR; a message whose wanted last character is CR
  on an octet boundary gets a second CR, since the receiver drops one final CR
  found on an octet boundary. :func:`pack_ussd` and :func:`unpack_ussd` apply
  this where the septet count is not carried separately (USSD strings, CAT
  text strings in packed form). SMS carries the count in TP-UDL and uses the
  plain :func:`pack_septets`. Cell Broadcast page padding to 93 characters is
  not implemented (no CB in this project). The one text that does not survive
  :func:`pack_ussd` then :func:`unpack_ussd` unchanged is the documented one:
  a wanted final CR on an octet boundary comes back doubled.
* National language single shift and locking shift tables (§6.2.1.2, Annex A)
  are not implemented: the default alphabet only.
"""

from __future__ import annotations

from simwallet.applet.errors import CodecError, TruncatedError

# §6.2.1: septets are seven-bit codes.
SEPTET_MAX = 0x7F
# §6.2.1: code 0x1B escapes to the extension table (§6.2.1.1).
ESCAPE = 0x1B
# §6.2.1: carriage return, the USSD/CB padding character of §6.1.2.3.1.
CR = 0x0D
SEPTET_BITS = 7
OCTET_BITS = 8
# TS 23.040 §9.2.3.24: fill bits put text after a header on a septet boundary,
# so there are at most six of them.
FILL_BITS_MAX = 6
# A bound on one call, far above any message (a 255-segment concatenated SMS
# holds 255 × 153 septets); longer input is a caller's mistake.
SEPTETS_MAX = 65535

# §6.2.1, the default alphabet table, read column by column (code = row + 16 × column).
# Position 0x1B is the escape; it is never the image of a character.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# §6.2.1.1, the extension table: the code that follows the escape.
# 0x0A is the page break (form feed); 0x0D (CR2) and 0x1B (SS2) are control
# codes without a character and are handled in decode_gsm7.
_EXTENSION: dict[str, int] = {
    "\x0c": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_ENCODE: dict[str, bytes] = {char: bytes([code]) for code, char in enumerate(_BASIC) if code != ESCAPE}
_ENCODE.update({char: bytes([ESCAPE, code]) for char, code in _EXTENSION.items()})
_DECODE_EXTENSION: dict[int, str] = {code: char for char, code in _EXTENSION.items()}

#: Every character the default alphabet and its extension table can carry.
GSM7_CHARACTERS: frozenset[str] = frozenset(_ENCODE)
# encode_gsm7's table for str.translate: each character to its septet(s) as Latin-1 text.
_TRANSLATE: dict[int, str] = {ord(char): code.decode("latin-1") for char, code in _ENCODE.items()}
#: The characters that take two septets (escape + code).
GSM7_EXTENSION_CHARACTERS: frozenset[str] = frozenset(_EXTENSION)


def encode_gsm7(text: str) -> bytes:
    """The septets of ``text``, one per byte; extension characters as ``1B xx``.

    Raises :class:`CodecError` naming the first character outside the
    alphabet and its index in ``text``.
    """
    if not GSM7_CHARACTERS.issuperset(text):
        index, char = next((i, c) for i, c in enumerate(text) if c not in _ENCODE)
        raise CodecError(f"character {char!r} (U+{ord(char):04X}) at index {index} is not in the GSM 7-bit default alphabet")
    # Every septet (and the escape) is below 0x80: one Latin-1 character each.
    out = text.translate(_TRANSLATE).encode("latin-1")
    if len(out) > SEPTETS_MAX:
        raise CodecError(f"{len(out)} septets exceed SEPTETS_MAX {SEPTETS_MAX}")
    return out


def decode_gsm7(septets: bytes) -> str:
    """The text of ``septets`` (one per byte), with the §6.2.1.1 fallback for unknown extension codes."""
    if len(septets) > SEPTETS_MAX:
        raise CodecError(f"{len(septets)} septets exceed SEPTETS_MAX {SEPTETS_MAX}")
    out: list[str] = []
    escaped = False
    for index, code in enumerate(septets):
        if code > SEPTET_MAX:
            raise CodecError(f"septet value {code:#04x} exceeds 7 bits", index)
        if escaped:
            escaped = False
            if code == ESCAPE:
                # §6.2.1.1: 1B 1B is reserved for another extension table; display a space.
                out.append(" ")
            else:
                # §6.2.1.1: a code the extension table lacks reads as the main table's character.
                out.append(_DECODE_EXTENSION.get(code, _BASIC[code]))
        elif code == ESCAPE:
            escaped = True
        else:
            out.append(_BASIC[code])
    if escaped:
        # §6.2.1: an escape a receiver cannot follow is displayed as a space.
        out.append(" ")
    return "".join(out)


def can_encode_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the default alphabet or its extension table."""
    return GSM7_CHARACTERS.issuperset(text)


def septet_length(text: str) -> int:
    """The number of septets ``text`` encodes to (extension characters count two); CodecError if not encodable."""
    return len(encode_gsm7(text))


def packed_length(septet_count: int, fill_bits: int = 0) -> int:
    """Octets that hold ``fill_bits`` and ``septet_count`` septets."""
    return (fill_bits + SEPTET_BITS * septet_count + OCTET_BITS - 1) // OCTET_BITS


def _check_fill(fill_bits: int) -> None:
    if not 0 <= fill_bits <= FILL_BITS_MAX:
        raise CodecError(f"fill bits {fill_bits} outside 0..{FILL_BITS_MAX}")


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets into octets (§6.1.2.1.1) after ``fill_bits`` zero bits; unused high bits of the last octet are 0."""
    _check_fill(fill_bits)
    if len(septets) > SEPTETS_MAX:
        raise CodecError(f"{len(septets)} septets exceed SEPTETS_MAX {SEPTETS_MAX}")
    accumulator = 0
    bits = fill_bits
    out = bytearray()
    for index, septet in enumerate(septets):
        if septet > SEPTET_MAX:
            raise CodecError(f"septet value {septet:#04x} exceeds 7 bits", index)
        accumulator |= septet << bits
        bits += SEPTET_BITS
        while bits >= OCTET_BITS:
            out.append(accumulator & 0xFF)
            accumulator >>= OCTET_BITS
            bits -= OCTET_BITS
    if bits > 0:
        out.append(accumulator & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """The ``count`` septets packed in ``data`` after ``fill_bits`` bits; ``data`` must be exactly their octets."""
    _check_fill(fill_bits)
    if not 0 <= count <= SEPTETS_MAX:
        raise CodecError(f"septet count {count} outside 0..{SEPTETS_MAX}")
    needed = packed_length(count, fill_bits)
    if len(data) < needed:
        raise TruncatedError(f"{count} packed septets need {needed} octets, got {len(data)}", len(data))
    if len(data) > needed:
        raise CodecError(f"{len(data) - needed} octets after {count} packed septets", needed)
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes((value >> (SEPTET_BITS * i)) & SEPTET_MAX for i in range(count))


def pack_ussd(septets: bytes) -> bytes:
    """Pack septets whose count the receiver infers from the octet count, with the CR rule of §6.1.2.3.1."""
    if len(septets) % OCTET_BITS == OCTET_BITS - 1:
        # 8n−1 septets leave 7 spare bits that would read as '@': fill them with CR.
        septets += bytes([CR])
    elif septets and len(septets) % OCTET_BITS == 0 and septets[-1] == CR:
        # A wanted final CR on an octet boundary would be stripped as padding: send CR CR.
        septets += bytes([CR])
    return pack_septets(septets)


def unpack_ussd(data: bytes) -> bytes:
    """Septets of octets packed by :func:`pack_ussd`: all that fit, less one final CR on an octet boundary."""
    count = len(data) * OCTET_BITS // SEPTET_BITS
    septets = unpack_septets(data, count)
    if count % OCTET_BITS == 0 and septets and septets[-1] == CR:
        septets = septets[:-1]
    return septets
