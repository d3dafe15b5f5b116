"""The PIN block of VERIFY, CHANGE, DISABLE, ENABLE and UNBLOCK PIN: ETSI TS 102 221 §9.5.1.

A PIN (or PUK, or an ADM code written as digits) travels as 8 bytes: its ASCII
digits, padded with FF. The card checks blocks with :func:`is_pin_block`; the
host builds them with :func:`pin_block`.
"""

from __future__ import annotations

from typing import Final

from simwallet.applet.errors import CodecError

# TS 102 221 §9.5.1: a PIN block is 8 bytes; a PIN 4 to 8 digits.
PIN_BLOCK_LENGTH: Final = 8
PIN_DIGITS_MIN: Final = 4
PIN_DIGITS_MAX: Final = 8
_PAD: Final = 0xFF
_DIGITS: Final = frozenset(b"0123456789")


def pin_block(digits: bytes) -> bytes:
    """The 8-byte block of a 4- to 8-digit PIN (ASCII digits, FF padding); CodecError otherwise (naming no digit)."""
    if not PIN_DIGITS_MIN <= len(digits) <= PIN_DIGITS_MAX or not set(digits) <= _DIGITS:
        raise CodecError(f"a PIN is {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} ASCII digits")
    return digits + bytes([_PAD]) * (PIN_BLOCK_LENGTH - len(digits))


def is_pin_block(block: bytes) -> bool:
    """Whether ``block`` is 4 to 8 ASCII digits followed by FF padding."""
    if len(block) != PIN_BLOCK_LENGTH:
        return False
    digits = block.rstrip(bytes([_PAD]))
    return len(digits) >= PIN_DIGITS_MIN and set(digits) <= _DIGITS
