"""SMS time fields: TP-SCTS / TP-DT / absolute TP-VP (3GPP TS 23.040 §9.2.3.11, §9.2.3.13, §9.2.3.12.2)
and the relative and enhanced TP-VP (§9.2.3.12.1, §9.2.3.12.3).

Theory of operation. A time stamp is seven octets of swapped semi-octets
(the first digit of each two-digit field in the low nibble): year, month, day,
hour, minute, second and the time zone. The time zone counts quarters of an
hour between local time and GMT; bit 4 of its first semi-octet (bit 3 of the
seventh octet) is the sign, 1 for negative. On the Python side a time stamp is
an aware :class:`datetime.datetime` whose ``tzinfo`` is that offset.

Decisions, each where the spec leaves room:

* The two-digit year is read as 1990..2089 (``90``..``99`` → 199x, as most
  handsets do); encoding a year outside that range is a :class:`CodecError`.
* A time stamp to encode must be aware, have no microseconds and an offset
  that is a whole number of quarter hours within ±79 quarters (the most the
  field holds; real zones stay within ±56). A parsed "minus zero" zone reads
  as UTC and is re-encoded with the sign clear.
* The relative validity period is a :class:`datetime.timedelta`; the §9.2.3.12.1
  mapping is one to one, so :func:`relative_vp_from_timedelta` accepts exactly
  the 256 durations it can produce and :func:`relative_vp_at_least` rounds up
  for callers that want "no shorter than".
* The enhanced format keeps its seven octets verbatim (:class:`EnhancedValidity`)
  and reads them on demand, since reserved bits and extension octets have no
  meaning yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from simwallet.applet.errors import CodecError, TruncatedError

# §9.2.3.11: seven octets.
TIMESTAMP_OCTETS = 7
# §9.2.3.12.3: the enhanced format is seven octets too.
ENHANCED_VP_OCTETS = 7
# Two-digit years map onto this century-wide window.
YEAR_MIN = 1990
YEAR_MAX = 2089
# §9.2.3.11: the tens digit of the zone has three bits (0..7), so at most 79 quarters.
TIMEZONE_QUARTERS_MAX = 79
_QUARTER_MINUTES = 15
_TZ_SIGN_BIT = 0x08

# §9.2.3.12.1: the four ranges of the relative format.
_VP_MINUTES_LAST = 143  # 0..143: (VP + 1) × 5 minutes
_VP_HALF_HOURS_LAST = 167  # 144..167: 12 hours + (VP − 143) × 30 minutes
_VP_DAYS_LAST = 196  # 168..196: (VP − 166) days
# 197..255: (VP − 192) weeks
RELATIVE_VP_MAX = 255

# §9.2.3.12.3: functionality indicator octet.
_EVP_EXTENSION_BIT = 0x80
_EVP_SINGLE_SHOT_BIT = 0x40
_EVP_FORMAT_MASK = 0x07
EVP_FORMAT_NONE = 0
EVP_FORMAT_RELATIVE = 1
EVP_FORMAT_SECONDS = 2
EVP_FORMAT_HHMMSS = 3


def _swapped(value: int) -> int:
    return value % 10 << 4 | value // 10


def _unswapped(octet: int, offset: int) -> int:
    tens, units = octet & 0x0F, octet >> 4
    if tens > 9 or units > 9:
        raise CodecError(f"semi-octet pair {octet:02X} is not two decimal digits", offset)
    return 10 * tens + units


def encode_timestamp(moment: datetime) -> bytes:
    """The seven TP-SCTS octets of an aware ``moment`` (§9.2.3.11)."""
    offset = moment.utcoffset()
    if offset is None:
        raise CodecError("an SMS time stamp needs an aware datetime (tzinfo with an offset)")
    if moment.microsecond:
        raise CodecError("an SMS time stamp has whole seconds; drop the microseconds first")
    if not YEAR_MIN <= moment.year <= YEAR_MAX:
        raise CodecError(f"year {moment.year} outside {YEAR_MIN}..{YEAR_MAX}")
    quarters, rest = divmod(abs(offset), timedelta(minutes=_QUARTER_MINUTES))
    if rest or quarters > TIMEZONE_QUARTERS_MAX:
        raise CodecError(f"UTC offset {offset} is not a whole number of quarter hours within ±{TIMEZONE_QUARTERS_MAX}")
    zone = _swapped(quarters) | (_TZ_SIGN_BIT if offset < timedelta(0) else 0)
    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return bytes(_swapped(field) for field in fields) + bytes([zone])


def parse_timestamp(data: bytes, offset: int = 0) -> datetime:
    """The aware datetime of the seven TP-SCTS octets at ``offset``."""
    if len(data) < offset + TIMESTAMP_OCTETS:
        raise TruncatedError("time stamp needs 7 octets", len(data))
    year, month, day, hour, minute, second = (_unswapped(data[offset + i], offset + i) for i in range(6))
    zone = data[offset + 6]
    quarters = _unswapped(zone & ~_TZ_SIGN_BIT, offset + 6)
    if zone & _TZ_SIGN_BIT:
        quarters = -quarters
    year += 1900 if year + 1900 >= YEAR_MIN else 2000
    try:
        tz = timezone(timedelta(minutes=_QUARTER_MINUTES * quarters))
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise CodecError(f"time stamp is not a valid date and time: {exc}", offset) from exc


def relative_vp_to_timedelta(octet: int) -> timedelta:
    """The duration of a relative TP-VP octet (§9.2.3.12.1)."""
    if not 0 <= octet <= RELATIVE_VP_MAX:
        raise CodecError(f"relative validity period {octet} outside 0..{RELATIVE_VP_MAX}")
    if octet <= _VP_MINUTES_LAST:
        return timedelta(minutes=(octet + 1) * 5)
    if octet <= _VP_HALF_HOURS_LAST:
        return timedelta(hours=12, minutes=(octet - _VP_MINUTES_LAST) * 30)
    if octet <= _VP_DAYS_LAST:
        return timedelta(days=octet - 166)
    return timedelta(weeks=octet - 192)


def relative_vp_at_least(duration: timedelta) -> int:
    """The smallest relative TP-VP octet whose duration is at least ``duration``; CodecError above 63 weeks."""
    if duration > relative_vp_to_timedelta(RELATIVE_VP_MAX):
        raise CodecError(f"validity period {duration} exceeds the relative format's 63 weeks")
    low, high = 0, RELATIVE_VP_MAX
    while low < high:
        middle = (low + high) // 2
        if relative_vp_to_timedelta(middle) >= duration:
            high = middle
        else:
            low = middle + 1
    return low


def relative_vp_from_timedelta(duration: timedelta) -> int:
    """The relative TP-VP octet of exactly ``duration``; CodecError if the format has no such value."""
    octet = relative_vp_at_least(duration)
    if relative_vp_to_timedelta(octet) != duration:
        raise CodecError(f"validity period {duration} has no exact relative encoding")
    return octet


@dataclass(frozen=True)
class EnhancedValidity:
    """The seven octets of an enhanced-format TP-VP (§9.2.3.12.3), kept verbatim."""

    # §9.2.3.12.3: functionality indicator, then the validity period, zero padded.
    octets: bytes

    def __post_init__(self) -> None:
        if len(self.octets) != ENHANCED_VP_OCTETS:
            raise CodecError(f"enhanced validity period is {ENHANCED_VP_OCTETS} octets, not {len(self.octets)}")

    @classmethod
    def build(cls, duration: timedelta | None, *, vp_format: int = EVP_FORMAT_RELATIVE, single_shot: bool = False) -> EnhancedValidity:
        """An enhanced TP-VP holding ``duration`` (None with ``EVP_FORMAT_NONE``) in one of the three formats."""
        head = (_EVP_SINGLE_SHOT_BIT if single_shot else 0) | vp_format
        if vp_format == EVP_FORMAT_NONE:
            if duration is not None:
                raise CodecError("enhanced format 000 carries no validity period")
            value = b""
        elif duration is None:
            raise CodecError(f"enhanced format {vp_format} needs a duration")
        elif vp_format == EVP_FORMAT_RELATIVE:
            value = bytes([relative_vp_from_timedelta(duration)])
        elif vp_format == EVP_FORMAT_SECONDS:
            seconds = duration.total_seconds()
            if seconds != int(seconds) or not 0 <= seconds <= 255:
                raise CodecError(f"{duration} is not 0..255 whole seconds")
            value = bytes([int(seconds)])
        elif vp_format == EVP_FORMAT_HHMMSS:
            whole, rest = divmod(duration, timedelta(seconds=1))
            hours, remainder = divmod(whole, 3600)
            if rest or hours > 99:
                raise CodecError(f"{duration} is not whole seconds below 100 hours")
            value = bytes(_swapped(field) for field in (hours, remainder // 60, remainder % 60))
        else:
            raise CodecError(f"enhanced validity format {vp_format} is reserved")
        return cls(bytes([head]) + value + bytes(ENHANCED_VP_OCTETS - 1 - len(value)))

    @property
    def extended(self) -> bool:
        """Bit 8 of the functionality indicator: extension octets follow (none are defined)."""
        return bool(self.octets[0] & _EVP_EXTENSION_BIT)

    @property
    def single_shot(self) -> bool:
        """Bit 7: the SC makes one delivery attempt only."""
        return bool(self.octets[0] & _EVP_SINGLE_SHOT_BIT)

    @property
    def vp_format(self) -> int:
        """Bits 3..1: 0 none, 1 relative, 2 seconds, 3 HH MM SS, 4..7 reserved."""
        return self.octets[0] & _EVP_FORMAT_MASK

    @property
    def duration(self) -> timedelta | None:
        """The validity period, None for format 0; CodecError for an extended indicator or a reserved format."""
        if self.extended:
            raise CodecError("enhanced validity period with extension octets (none are defined)")
        vp_format = self.vp_format
        if vp_format == EVP_FORMAT_NONE:
            return None
        if vp_format == EVP_FORMAT_RELATIVE:
            return relative_vp_to_timedelta(self.octets[1])
        if vp_format == EVP_FORMAT_SECONDS:
            return timedelta(seconds=self.octets[1])
        if vp_format == EVP_FORMAT_HHMMSS:
            hours, minutes, seconds = (_unswapped(self.octets[i], i) for i in (1, 2, 3))
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
        raise CodecError(f"enhanced validity format {vp_format} is reserved")
