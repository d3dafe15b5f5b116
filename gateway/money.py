"""Money as integer minor units (fen): parsing and formatting of ``12.34``-style amounts.

Amounts never pass through ``float``. The text form accepted on the command line
and in YAML rules is a plain decimal with at most two fraction digits; the
value inside is an ``int`` number of fen (1 CNY = 100 fen).
"""

from __future__ import annotations

import re
from typing import NewType

from simwallet.gateway.errors import RejectCode, RequestError

Fen = NewType("Fen", int)

# The largest single amount the ledger accepts: 10^13 fen = 100 billion CNY.
# Far above any wallet transfer, and small enough that 900,000 such amounts
# still fit the signed 64-bit columns that hold the running sums.
AMOUNT_FEN_MAX = 10**13

# Longest amount text we parse (digits, sign, point): bounds the work on junk input.
AMOUNT_TEXT_LEN_MAX = 32

_AMOUNT_RE = re.compile(r"^(?P<sign>[+-]?)(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?$")

CURRENCY_CODES: dict[str, int] = {"CNY": 156}  # ISO 4217 alpha -> numeric
CURRENCY_EXPONENT: dict[str, int] = {"CNY": 2}


def parse_amount(text: str, *, field: str = "amount", allow_zero: bool = False) -> Fen:
    """Parse ``"12.34"`` into 1234 fen, refusing anything that is not a whole, positive fen amount.

    Raises :class:`RequestError` naming ``field``: malformed text, a third
    fraction digit that is not zero (fractional fen), zero or negative values,
    and amounts above :data:`AMOUNT_FEN_MAX`.
    """
    stripped = text.strip()
    if len(stripped) > AMOUNT_TEXT_LEN_MAX:
        raise RequestError(RejectCode.AMOUNT_TOO_LARGE, field, f"amount text longer than {AMOUNT_TEXT_LEN_MAX} characters")
    match = _AMOUNT_RE.match(stripped)
    if match is None:
        raise RequestError(RejectCode.AMOUNT_MALFORMED, field, f"{stripped!r} is not an amount like 12.34")
    frac = match["frac"] or ""
    if len(frac.rstrip("0")) > 2:
        raise RequestError(RejectCode.AMOUNT_NOT_WHOLE_FEN, field, f"{stripped} has a fraction of a fen")
    frac = (frac + "00")[:2]
    value = int(match["whole"]) * 100 + int(frac)
    if match["sign"] == "-":
        value = -value
    return check_amount(value, field=field, allow_zero=allow_zero)


def check_amount(value: int, *, field: str = "amount", allow_zero: bool = False) -> Fen:
    """Check that an integer amount in fen is in the ledger's range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(RejectCode.AMOUNT_MALFORMED, field, f"amount must be an integer number of fen, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise RequestError(RejectCode.AMOUNT_MUST_BE_POSITIVE, field, f"amount must be positive, got {format_amount(value)}")
    if value > AMOUNT_FEN_MAX:
        raise RequestError(RejectCode.AMOUNT_TOO_LARGE, field,
            f"amount {format_amount(value)} exceeds the maximum {format_amount(AMOUNT_FEN_MAX)}")
    return Fen(value)


def format_amount(fen: int) -> str:
    """Format fen as ``12.34`` (``-0.05`` for negatives); the inverse of :func:`parse_amount`."""
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole}.{frac:02d}"
