"""Field codecs and names shared by the wallet's messages and its personalization data.

Spec: simwallet's wallet protocol (:mod:`.wallet_messages`, :mod:`.wallet_perso`);
3GPP TS 23.040 §9.1.2.3 (digits as swapped BCD semi-octets, F filling an odd
count); ISO 639-1 (two-letter language codes, lower case, as EF.LI holds them,
TS 31.102 §4.2.1).
"""

from __future__ import annotations

import enum
from typing import Final

from simwallet.applet.errors import CodecError

# Amounts fit five octets (2^40 - 1 fen); this round bound is below that (9,999,999,999.99 yuan).
AMOUNT_FEN_MAX: Final = 10**12 - 1
AMOUNT_OCTETS_MAX: Final = 5
# ISO 639-1: two lower-case letters.
LANGUAGE_OCTETS: Final = 2
_BCD_FILLER: Final = 0x0F
_LOWER: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")


class Operation(enum.IntEnum):
    """What the card asks for (the operation octet); also the action of a menu item."""

    BALANCE = 0x01
    TOP_UP = 0x02
    PAY = 0x03
    BILL = 0x04
    BANK_BALANCE = 0x05
    # The PIN was changed on the card; nothing secret travels.
    PIN_CHANGED = 0x06
    HISTORY = 0x07


def encode_digits(digits: str, what: str, minimum: int, maximum: int) -> bytes:
    """Decimal digits in swapped BCD (TS 23.040 §9.1.2.3), F filling an odd count."""
    if not isinstance(digits, str) or not digits.isascii() or not digits.isdigit() or not minimum <= len(digits) <= maximum:
        raise CodecError(f"{what} must be {minimum}..{maximum} decimal digits")
    nibbles = [int(c) for c in digits] + ([_BCD_FILLER] if len(digits) % 2 else [])
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def decode_digits(value: bytes, what: str, minimum: int, maximum: int) -> str:
    """The digits of swapped BCD; an F is allowed only as the last nibble, filling an odd count."""
    nibbles = [n for byte in value for n in (byte & 0x0F, byte >> 4)]
    if nibbles and nibbles[-1] == _BCD_FILLER:
        nibbles.pop()
    for index, nibble in enumerate(nibbles):
        if nibble > 9:
            raise CodecError(f"{what}: nibble {nibble:X} is not a decimal digit", index // 2)
    if not minimum <= len(nibbles) <= maximum:
        raise CodecError(f"{what} of {len(nibbles)} digits is outside {minimum}..{maximum}")
    return "".join(str(n) for n in nibbles)


def encode_amount(fen: int, what: str, *, minimum: int = 1) -> bytes:
    """Integer fen, big-endian in as few octets as hold it (zero is one 00 octet)."""
    if isinstance(fen, bool) or not isinstance(fen, int) or not minimum <= fen <= AMOUNT_FEN_MAX:
        raise CodecError(f"{what} must be {minimum}..{AMOUNT_FEN_MAX} fen")
    return fen.to_bytes(max(1, (fen.bit_length() + 7) // 8), "big")


def decode_amount(value: bytes, what: str, *, minimum: int = 1) -> int:
    if not 1 <= len(value) <= AMOUNT_OCTETS_MAX:
        raise CodecError(f"{what} of {len(value)} octets is outside 1..{AMOUNT_OCTETS_MAX}")
    if len(value) > 1 and value[0] == 0:
        raise CodecError(f"{what} has a leading zero octet", 0)
    fen = int.from_bytes(value, "big")
    if not minimum <= fen <= AMOUNT_FEN_MAX:
        raise CodecError(f"{what} {fen} is outside {minimum}..{AMOUNT_FEN_MAX} fen")
    return fen


def check_language(code: str) -> str:
    if not isinstance(code, str) or len(code) != LANGUAGE_OCTETS or not code.isascii() or not set(code.encode()) <= _LOWER:
        raise CodecError(f"language {code!r} is not a two-letter lower-case ISO 639 code")
    return code


def decode_language(value: bytes) -> str:
    if len(value) != LANGUAGE_OCTETS or not set(value) <= _LOWER:
        raise CodecError(f"language {value.hex()} is not a two-letter lower-case ISO 639 code")
    return value.decode("ascii")
