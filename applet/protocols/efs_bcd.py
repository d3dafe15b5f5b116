"""Swapped BCD digit strings and the Luhn check digit, shared by the EF codecs of :mod:`simwallet.applet.protocols.efs`.

Spec: ETSI TS 102 221 §13.2 (EF.ICCID: BCD, left-justified, F padding), 3GPP
TS 31.102 §4.2.2 (EF.IMSI), §4.4.2.3 Table 4.4 (extended BCD of dialling
numbers), 3GPP TS 23.040 §9.1.2.3 (semi-octet addresses); ISO/IEC 7812-1
Annex B (the Luhn formula of the ICCID check digit, ITU-T E.118 §4.4).

"Swapped" BCD stores the first digit of each pair in the low nibble of the
byte and the second in the high nibble. Unused nibbles are ``F``; an ``F``
ends the digits, so every nibble after it must be ``F`` too.
"""

from __future__ import annotations

from simwallet.applet.errors import CodecError

# The padding (end mark) nibble of every BCD field.
NIBBLE_PAD = 0xF
_LOW_NIBBLE = 0x0F
_NIBBLE_BITS = 4

# Plain decimal digits: EF.ICCID, EF.IMSI.
DECIMAL_DIGITS = "0123456789"
# TS 31.102 §4.4.2.3 Table 4.4 (extended BCD): A = '*', B = '#', C = DTMF control digit
# separator (written 'p', a pause), D = 'wild' value (written '?'). E is RFU
# and refused; F ends the number.
DIALLING_DIGITS = "0123456789*#p?"


def pack_swapped(text: str, length: int, alphabet: str = DECIMAL_DIGITS, *, what: str = "number") -> bytes:
    """``text`` as swapped BCD in exactly ``length`` bytes, padded with F nibbles."""
    nibbles = []
    for pos, ch in enumerate(text):
        value = alphabet.find(ch)
        if value < 0:
            raise CodecError(f"{what}: {ch!r} at position {pos + 1} is not one of {alphabet!r}")
        nibbles.append(value)
    if len(nibbles) > 2 * length:
        raise CodecError(f"{what}: {len(nibbles)} digits do not fit {length} bytes ({2 * length} digits)")
    nibbles += [NIBBLE_PAD] * (2 * length - len(nibbles))
    return bytes(nibbles[i] | nibbles[i + 1] << _NIBBLE_BITS for i in range(0, len(nibbles), 2))


def nibbles_of(data: bytes) -> list[int]:
    """The nibbles of ``data`` in swapped order: low nibble of each byte first."""
    out: list[int] = []
    for byte in data:
        out += [byte & _LOW_NIBBLE, byte >> _NIBBLE_BITS]
    return out


def unpack_swapped(data: bytes, alphabet: str = DECIMAL_DIGITS, *, what: str = "number", base_offset: int = 0) -> str:
    """The digits of swapped BCD ``data`` up to the first F nibble; every nibble after it must be F.

    ``base_offset`` is the offset of ``data`` in the caller's buffer, so that a
    CodecError names the byte as the caller sees it.
    """
    return digits_of(nibbles_of(data), alphabet, what=what, base_offset=base_offset)


def digits_of(nibbles: list[int], alphabet: str = DECIMAL_DIGITS, *, what: str = "number", base_offset: int = 0) -> str:
    """The digits of a nibble list up to the first F; nibble ``i`` lies in byte ``base_offset + i // 2``."""
    chars: list[str] = []
    ended = False
    for index, nibble in enumerate(nibbles):
        offset = base_offset + index // 2
        if nibble == NIBBLE_PAD:
            ended = True
        elif ended:
            raise CodecError(f"{what}: digit {nibble:X} after the F end mark", offset)
        elif nibble >= len(alphabet):
            raise CodecError(f"{what}: nibble {nibble:X} is not a digit here", offset)
        else:
            chars.append(alphabet[nibble])
    return "".join(chars)


def luhn_check_digit(payload: str) -> int:
    """The check digit that makes ``payload`` followed by it pass the Luhn formula (ISO/IEC 7812-1 Annex B)."""
    if not payload or not payload.isascii() or not payload.isdigit():
        raise ValueError("the Luhn formula takes a non-empty string of decimal digits")
    total = 0
    # The digit left of the check digit is doubled, then every second digit going left.
    for index, ch in enumerate(reversed(payload)):
        digit = int(ch)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def luhn_valid(number: str) -> bool:
    """Whether the last digit of ``number`` is the Luhn check digit of the digits before it."""
    if len(number) < 2 or not number.isascii() or not number.isdigit():
        return False
    return luhn_check_digit(number[:-1]) == int(number[-1])
