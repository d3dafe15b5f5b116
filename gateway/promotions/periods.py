"""Time for promotion campaigns: instants, time zones and the calendar periods of a per-period cap.

Theory of operation
-------------------
*Time.* Every instant is an integer number of microseconds since the Unix
epoch, UTC, as the ledger stores it. Calendar questions (is it within the
window, which month is it) are answered on the local date in the campaign's
time zone: a campaign starting 2026-05-16 in Asia/Shanghai starts at
2026-05-15T16:00:00Z, and one ending 2026-08-15 ends at 2026-08-15T16:00:00Z.

A period (day, ISO week, month) is named by a text key of its local date
(:func:`period_key_of`); :class:`~simwallet.gateway.promotions.rules.Usage`
stores the key of a customer's latest grant.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.promotions.campaign_file import invalid, short_repr

# --- Limits -----------------------------------------------------------------
# The schema file states the same numbers; a test holds the two together.

# Longest time zone name; the longest IANA name has 32 characters
# (America/Argentina/ComodRivadavia).
TIMEZONE_LEN_MAX: Final = 64
# Longest period key ("2026-05-16" has 10 characters); bounds the stored usage row.
PERIOD_KEY_LEN_MAX: Final = 16
# Earliest instant accepted, in microseconds since the Unix epoch: the epoch
# itself; the ledger's clock never predates it.
TS_US_MIN: Final = 0
# Latest instant accepted: 9000-01-01T00:00:00Z. Far beyond any campaign, and
# far enough from datetime's year 9999 that no local-time conversion overflows.
TS_US_MAX: Final = (date(9000, 1, 1) - date(1970, 1, 1)).days * 86_400 * 1_000_000

# The time zone of a campaign file that names none: the wallet is Shanghai Mobile's.
DEFAULT_TIMEZONE: Final = "Asia/Shanghai"

_TIMEZONE_RE: Final = re.compile(r"UTC|[A-Z][A-Za-z_+-]*(?:/[A-Za-z0-9_+-]+){1,2}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)


class Period(enum.StrEnum):
    """A calendar period of a per-period cap, in the campaign's time zone."""

    DAY = "day"
    WEEK = "week"  # ISO 8601 week, Monday to Sunday
    MONTH = "month"


def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or len(name) > TIMEZONE_LEN_MAX or _TIMEZONE_RE.fullmatch(name) is None:
        raise invalid("window.timezone", f"{short_repr(name)} is not an IANA Area/Location time zone name or UTC")
    try:
        return ZoneInfo(name)
    # ValueError: a malformed key; OSError: a name that is a folder of the zone database, such as "Asia/Ho".
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise invalid("window.timezone", f"unknown time zone {name!r}") from exc


def _check_ts(ts_us: int) -> None:
    if isinstance(ts_us, bool) or not isinstance(ts_us, int) or not TS_US_MIN <= ts_us <= TS_US_MAX:
        raise RequestError(RejectCode.FIELD_INVALID, "ts_us", f"timestamp must be microseconds since the epoch in {TS_US_MIN}..{TS_US_MAX}")


def ts_us_from_datetime(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RequestError(RejectCode.FIELD_INVALID, "ts_us", "a naive datetime has no instant; give it a time zone")
    ts_us = (moment - _EPOCH) // _ONE_US
    _check_ts(ts_us)
    return ts_us


def datetime_from_ts_us(ts_us: int) -> datetime:
    """The aware UTC datetime of a microsecond timestamp."""
    _check_ts(ts_us)
    return _EPOCH + timedelta(microseconds=ts_us)


def period_key_of(period: Period, day: date) -> str:
    """The key of the period holding ``day``: ``2026-05-16``, ``2026-W20`` (ISO week) or ``2026-05``.

    Keys of one period kind sort in time order as text.
    """
    if period is Period.DAY:
        return day.isoformat()
    if period is Period.WEEK:
        iso = day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    return f"{day.year:04d}-{day.month:02d}"
