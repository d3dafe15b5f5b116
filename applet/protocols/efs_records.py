"""Record files a SIM is personalized with: dialling numbers (EF.MSISDN, EF.ADN) and SMS parameters (EF.SMSP).

Spec: 3GPP TS 31.102 §4.2.26 (EF.MSISDN), §4.4.2.3 (EF.ADN, Table 4.4 for
the extended BCD), §4.2.27 (EF.SMSP); 3GPP TS 51.011 §10.5.1 and §10.5.6
(the same records in DF.TELECOM); 3GPP TS 23.040 §9.1.2.5 (TP addresses),
§9.2.3.12.1 (relative validity period); 3GPP TS 24.011 §8.2.5.2 (the service
centre address); ETSI TS 102 221 Annex A (alpha identifiers).

Theory of operation. A record is an alpha identifier of X bytes (X is the
record length less the fixed part, so the same value fits records of any
length) followed by fixed fields. ``to_bytes(record_length)`` writes one
record of exactly that length; ``from_bytes`` takes one record and learns X
from its length. An all-``FF`` dialling number record decodes to the empty
:class:`DiallingNumber` (no number) and encodes back to all ``FF``.

Decisions where the spec leaves room: numbers longer than 20 digits need an
EXT record and are refused; bytes of the 10-byte number field after the
digits are ignored on decoding (cards leave old digits there); alphanumeric
addresses (type of number 5) are not supported.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.alpha import decode_alpha, encode_alpha
from simwallet.applet.protocols.efs_bcd import DIALLING_DIGITS, NIBBLE_PAD, digits_of, nibbles_of, pack_swapped

_PAD = 0xFF
_BYTE_MAX = 0xFF


class Ton(enum.IntEnum):
    """TS 24.008 §10.5.4.7 / TS 31.102 §4.4.2.3: type of number (bits 7..5 of the TON/NPI byte)."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    DEDICATED_ACCESS = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6
    RESERVED = 7


class Npi(enum.IntEnum):
    """TS 24.008 §10.5.4.7: numbering plan identification (bits 4..1); the values not named are reserved."""

    UNKNOWN = 0
    ISDN = 1
    DATA = 3
    TELEX = 4
    NATIONAL = 8
    PRIVATE = 9
    ERMES = 10
    RESERVED = 15


# TS 31.102 §4.4.2.3: the TON/NPI byte has bit 8 = 1.
_TON_NPI_EXT = 0x80
_TON_MAX = 7
_NPI_MAX = 15
# TS 31.102 §4.4.2.3: the dialling number field is 10 bytes (20 digits); more needs EXT1.
DIALLING_NUMBER_BYTES = 10
DIALLING_NUMBER_DIGITS_MAX = 2 * DIALLING_NUMBER_BYTES
# TS 31.102 §4.2.26 / §4.4.2.3: BCD length (1) + TON/NPI (1) + number (10) + CCP (1) + Ext (1).
DIALLING_RECORD_FIXED_BYTES = 14
# TS 31.102 §4.4.2.3: the BCD length counts the TON/NPI byte and the number bytes.
_BCD_LENGTH_MAX = 1 + DIALLING_NUMBER_BYTES
# A record is at most 255 bytes (TS 102 221 §11.1.1.4.3: one-byte record length).
RECORD_BYTES_MAX = 255


def _ton_npi(ton: int, npi: int) -> int:
    return _TON_NPI_EXT | ton << 4 | npi


def _check_ton_npi(ton: int, npi: int, what: str) -> None:
    if not 0 <= ton <= _TON_MAX or not 0 <= npi <= _NPI_MAX:
        raise CodecError(f"{what}: type of number {ton} / numbering plan {npi} out of range (0..7 / 0..15)")


def _check_digits(number: str, what: str) -> None:
    if len(number) > DIALLING_NUMBER_DIGITS_MAX:
        raise CodecError(f"{what}: {len(number)} digits, at most {DIALLING_NUMBER_DIGITS_MAX} fit without an extension record")
    for pos, ch in enumerate(number):
        if ch not in DIALLING_DIGITS:
            raise CodecError(f"{what}: {ch!r} at position {pos + 1} is not one of {DIALLING_DIGITS!r}")


def _optional_byte(value: int | None, what: str) -> int:
    """``None`` is the unused value FF; an identifier is 0..254."""
    if value is None:
        return _PAD
    if not 0 <= value < _PAD:
        raise CodecError(f"{what}: {value} is not 0..254 (FF means none)")
    return value


def _alpha_part(data: bytes, fixed: int, what: str) -> str:
    try:
        return decode_alpha(data[: len(data) - fixed])
    except CodecError as exc:
        raise CodecError(f"{what} alpha identifier: {exc.message}", exc.offset) from exc


def _encode_alpha(text: str, length: int, what: str) -> bytes:
    try:
        return encode_alpha(text, length)
    except CodecError as exc:
        raise CodecError(f"{what} alpha identifier: {exc.message}") from exc


def _record_length(record_length: int, fixed: int, what: str) -> int:
    if not fixed <= record_length <= RECORD_BYTES_MAX:
        raise CodecError(f"{what}: record length {record_length} is not {fixed}..{RECORD_BYTES_MAX}")
    return record_length - fixed


def _record_data(data: bytes, fixed: int, what: str) -> None:
    if len(data) < fixed:
        raise TruncatedError(f"{what}: {len(data)} bytes, a record has at least {fixed}", len(data))
    if len(data) > RECORD_BYTES_MAX:
        raise CodecError(f"{what}: {len(data)} bytes, a record has at most {RECORD_BYTES_MAX}", RECORD_BYTES_MAX)


@dataclass(frozen=True)
class DiallingNumber:
    """One EF.MSISDN (TS 31.102 §4.2.26) or EF.ADN (§4.4.2.3) record.

    ``number`` holds digits of the extended BCD alphabet (``0-9 * # p ?``) and no
    ``+``: an international number has ``ton=Ton.INTERNATIONAL``. ``ccp`` and
    ``ext`` are record identifiers, None for FF (none).
    """

    alpha: str = ""
    number: str = ""
    ton: int = Ton.UNKNOWN
    npi: int = Npi.ISDN
    ccp: int | None = None
    ext: int | None = None

    def __post_init__(self) -> None:
        _check_digits(self.number, "dialling number")
        _check_ton_npi(self.ton, self.npi, "dialling number")
        _optional_byte(self.ccp, "dialling number CCP")
        _optional_byte(self.ext, "dialling number extension")

    @classmethod
    def from_bytes(cls, data: bytes) -> DiallingNumber:
        what = "dialling number"
        _record_data(data, DIALLING_RECORD_FIXED_BYTES, what)
        x = len(data) - DIALLING_RECORD_FIXED_BYTES
        alpha = _alpha_part(data, DIALLING_RECORD_FIXED_BYTES, what)
        # Byte X+1: length of BCD number/SSC contents (TON/NPI byte included); FF = no number.
        bcd_length = data[x]
        # Byte X+2: TON and NPI.
        ton_npi = data[x + 1]
        # Bytes X+3..X+12: the number, extended BCD, F padding.
        field = data[x + 2 : x + 2 + DIALLING_NUMBER_BYTES]
        # Bytes X+13 and X+14: capability/configuration identifier and extension record identifier.
        ccp, ext = data[x + 12], data[x + 13]
        number = ""
        if bcd_length != _PAD:
            if not 1 <= bcd_length <= _BCD_LENGTH_MAX:
                raise CodecError(f"{what}: BCD length {bcd_length} is not 1..{_BCD_LENGTH_MAX}", x)
            used = field[: bcd_length - 1]
            number = digits_of(nibbles_of(used), DIALLING_DIGITS, what=what, base_offset=x + 2)
            pad_nibbles = 2 * len(used) - len(number)
            if pad_nibbles > 1:
                raise CodecError(f"{what}: BCD length {bcd_length} is longer than {len(number)} digits need", x)
        return cls(
            alpha,
            number,
            ton_npi >> 4 & _TON_MAX,
            ton_npi & _NPI_MAX,
            None if ccp == _PAD else ccp,
            None if ext == _PAD else ext,
        )

    def to_bytes(self, record_length: int) -> bytes:
        what = "dialling number"
        alpha = _encode_alpha(self.alpha, _record_length(record_length, DIALLING_RECORD_FIXED_BYTES, what), what)
        # The BCD length counts the TON/NPI byte and the number's bytes; FF when there is no number.
        bcd_length = 1 + (len(self.number) + 1) // 2 if self.number else _PAD
        number = pack_swapped(self.number, DIALLING_NUMBER_BYTES, DIALLING_DIGITS, what=what)
        return (
            alpha
            + bytes([bcd_length, _ton_npi(self.ton, self.npi)])
            + number
            + bytes([_optional_byte(self.ccp, what), _optional_byte(self.ext, what)])
        )


# --- EF.SMSP ------------------------------------------------------------------------------------

# TS 31.102 §4.2.27: parameter indicators (1) + TP-DA (12) + TS-SCA (12) + TP-PID + TP-DCS + TP-VP.
SMSP_RECORD_FIXED_BYTES = 28
_ADDRESS_BYTES = 12
# TS 31.102 §4.2.27: a parameter indicator bit 0 means the parameter is present; b8..b6 are reserved, set to 1.
_INDICATOR_DA = 0x01
_INDICATOR_SCA = 0x02
_INDICATOR_PID = 0x04
_INDICATOR_DCS = 0x08
_INDICATOR_VP = 0x10
_INDICATORS_RESERVED = 0xE0


@dataclass(frozen=True)
class Address:
    """A short message address: digits (no ``+``), type of number and numbering plan."""

    number: str
    ton: int = Ton.INTERNATIONAL
    npi: int = Npi.ISDN

    def __post_init__(self) -> None:
        _check_digits(self.number, "address")
        _check_ton_npi(self.ton, self.npi, "address")
        if self.ton == Ton.ALPHANUMERIC:
            raise CodecError("address: alphanumeric addresses (type of number 5) are not supported")

    def _bcd(self) -> bytes:
        return bytes([_ton_npi(self.ton, self.npi)]) + pack_swapped(self.number, DIALLING_NUMBER_BYTES, DIALLING_DIGITS, what="address")

    def to_tp_address(self) -> bytes:
        """TS 23.040 §9.1.2.5 in a 12-byte field: the length counts digits (semi-octets)."""
        return bytes([len(self.number)]) + self._bcd()

    def to_service_centre(self) -> bytes:
        """TS 24.011 §8.2.5.2 in a 12-byte field: the length counts bytes, the TON/NPI byte included."""
        return bytes([1 + (len(self.number) + 1) // 2]) + self._bcd()

    @classmethod
    def from_tp_address(cls, data: bytes, offset: int = 0) -> Address | None:
        """A 12-byte TP address field; None when its length byte is FF (unused)."""
        digits = data[0]
        if digits == _PAD:
            return None
        if digits > DIALLING_NUMBER_DIGITS_MAX:
            raise CodecError(f"TP address: {digits} digits, at most {DIALLING_NUMBER_DIGITS_MAX}", offset)
        return cls._read(data, digits, offset)

    @classmethod
    def from_service_centre(cls, data: bytes, offset: int = 0) -> Address | None:
        """A 12-byte service centre address field; None when its length byte is FF (unused)."""
        length = data[0]
        if length == _PAD:
            return None
        if not 1 <= length <= _BCD_LENGTH_MAX:
            raise CodecError(f"service centre address: length {length} is not 1..{_BCD_LENGTH_MAX}", offset)
        nibbles = nibbles_of(data[2 : 2 + length - 1])
        # The digit count is the nibbles before the F end mark (at most one).
        count = len(nibbles) - 1 if nibbles and nibbles[-1] == NIBBLE_PAD else len(nibbles)
        return cls._read(data, count, offset)

    @classmethod
    def _read(cls, data: bytes, count: int, offset: int) -> Address:
        ton_npi = data[1]
        nibbles = nibbles_of(data[2 : 2 + (count + 1) // 2])[:count]
        if NIBBLE_PAD in nibbles:
            raise CodecError("address: F end mark inside the digits", offset + 2 + nibbles.index(NIBBLE_PAD) // 2)
        number = digits_of(nibbles, DIALLING_DIGITS, what="address", base_offset=offset + 2)
        try:
            return cls(number, ton_npi >> 4 & _TON_MAX, ton_npi & _NPI_MAX)
        except CodecError as exc:
            raise CodecError(exc.message, offset + 1) from exc


@dataclass(frozen=True)
class SmsParameters:
    """One EF.SMSP record (TS 31.102 §4.2.27). A parameter that is None is absent (its indicator bit is 1).

    ``validity`` is the relative TP-VP byte (TS 23.040 §9.2.3.12.1); see
    :func:`validity_minutes` and :func:`validity_from_minutes`.
    """

    alpha: str = ""
    destination: Address | None = None
    service_centre: Address | None = None
    pid: int | None = None
    dcs: int | None = None
    validity: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("TP-PID", self.pid), ("TP-DCS", self.dcs), ("TP-VP", self.validity)):
            if value is not None and not 0 <= value <= _BYTE_MAX:
                raise CodecError(f"SMS parameters: {name} {value} is not 0..255")

    @classmethod
    def from_bytes(cls, data: bytes) -> SmsParameters:
        what = "SMS parameters"
        _record_data(data, SMSP_RECORD_FIXED_BYTES, what)
        y = len(data) - SMSP_RECORD_FIXED_BYTES
        alpha = _alpha_part(data, SMSP_RECORD_FIXED_BYTES, what)
        # Byte Y+1: parameter indicators.
        indicators = data[y]
        # Bytes Y+2..Y+13: TP-Destination Address; Y+14..Y+25: TS-Service Centre Address.
        da_at, sca_at = y + 1, y + 1 + _ADDRESS_BYTES
        destination = None if indicators & _INDICATOR_DA else Address.from_tp_address(data[da_at : da_at + _ADDRESS_BYTES], da_at)
        centre = None if indicators & _INDICATOR_SCA else Address.from_service_centre(data[sca_at : sca_at + _ADDRESS_BYTES], sca_at)
        # Bytes Y+26, Y+27, Y+28: TP-Protocol Identifier, TP-Data Coding Scheme, TP-Validity Period.
        pid, dcs, vp = data[y + 25], data[y + 26], data[y + 27]
        return cls(
            alpha,
            destination,
            centre,
            None if indicators & _INDICATOR_PID else pid,
            None if indicators & _INDICATOR_DCS else dcs,
            None if indicators & _INDICATOR_VP else vp,
        )

    def to_bytes(self, record_length: int) -> bytes:
        what = "SMS parameters"
        alpha = _encode_alpha(self.alpha, _record_length(record_length, SMSP_RECORD_FIXED_BYTES, what), what)
        indicators = _INDICATORS_RESERVED
        unused = bytes([_PAD]) * _ADDRESS_BYTES
        if self.destination is None:
            indicators |= _INDICATOR_DA
        if self.service_centre is None:
            indicators |= _INDICATOR_SCA
        tail = bytearray()
        for bit, value in ((_INDICATOR_PID, self.pid), (_INDICATOR_DCS, self.dcs), (_INDICATOR_VP, self.validity)):
            if value is None:
                indicators |= bit
            tail.append(_PAD if value is None else value)
        return (
            alpha
            + bytes([indicators])
            + (unused if self.destination is None else self.destination.to_tp_address())
            + (unused if self.service_centre is None else self.service_centre.to_service_centre())
            + bytes(tail)
        )


# TS 23.040 §9.2.3.12.1: the four ranges of the relative validity period.
_VP_5_MIN_LAST = 143
_VP_30_MIN_LAST = 167
_VP_DAYS_LAST = 196
_MINUTES_12_HOURS = 12 * 60
_MINUTES_DAY = 24 * 60
_MINUTES_WEEK = 7 * _MINUTES_DAY


def validity_minutes(vp: int) -> int:
    """The validity period, in minutes, of a relative TP-VP byte (TS 23.040 §9.2.3.12.1)."""
    if not 0 <= vp <= _BYTE_MAX:
        raise CodecError(f"TP-VP {vp} is not 0..255")
    if vp <= _VP_5_MIN_LAST:
        return (vp + 1) * 5
    if vp <= _VP_30_MIN_LAST:
        return _MINUTES_12_HOURS + (vp - _VP_5_MIN_LAST) * 30
    if vp <= _VP_DAYS_LAST:
        return (vp - 166) * _MINUTES_DAY
    return (vp - 192) * _MINUTES_WEEK


def validity_from_minutes(minutes: int) -> int:
    """The relative TP-VP byte of exactly ``minutes``; CodecError names the nearest periods when none matches."""
    if minutes <= _MINUTES_12_HOURS:
        vp, exact = divmod(minutes, 5)
        vp -= 1
    elif minutes <= _MINUTES_DAY:
        vp, exact = divmod(minutes - _MINUTES_12_HOURS, 30)
        vp += _VP_5_MIN_LAST
    elif minutes <= 30 * _MINUTES_DAY:
        vp, exact = divmod(minutes, _MINUTES_DAY)
        vp += 166
    else:
        vp, exact = divmod(minutes, _MINUTES_WEEK)
        vp += 192
    if exact == 0 and 0 <= vp <= _BYTE_MAX and validity_minutes(vp) == minutes:
        return vp
    below = [v for v in range(_BYTE_MAX + 1) if validity_minutes(v) < minutes]
    above = [v for v in range(_BYTE_MAX + 1) if validity_minutes(v) > minutes]
    near = ", ".join(f"{validity_minutes(v)} ({v})" for v in (below[-1:] + above[:1]))
    raise CodecError(f"TP-VP: {minutes} minutes has no relative encoding; nearest: {near}")
