"""Contents of the elementary files a SIM is personalized with: typed values to file bytes and back.

Spec: ETSI TS 102 221 §13.2 (EF.ICCID), §13.3 (EF.PL); 3GPP TS 31.102
§4.2.1 (EF.LI), §4.2.2 (EF.IMSI), §4.2.6 (EF.HPPLMN), §4.2.8 (EF.UST),
§4.2.12 (EF.SPN), §4.2.15 (EF.ACC), §4.2.18 (EF.AD); the same layouts in
DF.GSM, 3GPP TS 51.011 §10.3. The record files (EF.MSISDN, EF.ADN,
EF.SMSP) are in :mod:`simwallet.applet.protocols.efs_records` and
re-exported here.

Theory of operation. Each file is one frozen dataclass with ``from_bytes``
(the whole file body as READ BINARY returns it) and ``to_bytes``. Files
whose length the card decides (EF.UST, EF.LI, EF.PL) take the file size in
``to_bytes(size)`` and pad the way their clause says (``00`` for a service
table, ``FF`` for unused language entries); the others have a fixed length,
and a caller writing them into a larger file pads with ``FF``. Decoding
ignores bits the clauses call RFU where a card may set them (the high nibble
of EF.AD byte 4) and refuses everything else that does not fit the clause.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.alpha import decode_alpha, encode_alpha
from simwallet.applet.protocols.efs_bcd import (
    DECIMAL_DIGITS,
    luhn_check_digit,
    luhn_valid,
    nibbles_of,
    pack_swapped,
    unpack_swapped,
)
from simwallet.applet.protocols.efs_records import (
    DIALLING_NUMBER_DIGITS_MAX,
    DIALLING_RECORD_FIXED_BYTES,
    SMSP_RECORD_FIXED_BYTES,
    Address,
    DiallingNumber,
    Npi,
    SmsParameters,
    Ton,
    validity_from_minutes,
    validity_minutes,
)

__all__ = [
    "DIALLING_NUMBER_DIGITS_MAX",
    "DIALLING_RECORD_FIXED_BYTES",
    "SMSP_RECORD_FIXED_BYTES",
    "AccessClasses",
    "AdditionalInfo",
    "Address",
    "AdministrativeData",
    "DiallingNumber",
    "HplmnSearchPeriod",
    "Iccid",
    "Imsi",
    "LanguageList",
    "Npi",
    "ServiceProviderName",
    "ServiceTable",
    "SmsParameters",
    "SpnDisplayCondition",
    "Ton",
    "UeOperationMode",
    "luhn_check_digit",
    "luhn_valid",
    "validity_from_minutes",
    "validity_minutes",
]

_PAD = 0xFF
_BYTE_MAX = 0xFF


# --- EF.ICCID -----------------------------------------------------------------------------------

# TS 102 221 §13.2: EF.ICCID is 10 bytes of swapped BCD, unused nibbles F.
ICCID_BYTES = 10
# ITU-T E.118 §4.4: at most 19 digits plus the check digit.
ICCID_DIGITS_MAX = 2 * ICCID_BYTES


@dataclass(frozen=True)
class Iccid:
    """EF.ICCID (TS 102 221 §13.2): the card's identification number, Luhn check digit included."""

    iccid: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.iccid) <= ICCID_DIGITS_MAX or not _decimal(self.iccid):
            raise CodecError(f"EF.ICCID: 1 to {ICCID_DIGITS_MAX} decimal digits, not {self.iccid!r}")

    @property
    def luhn_ok(self) -> bool:
        """Whether the last digit is the Luhn check digit of the others (ITU-T E.118 §4.4)."""
        return luhn_valid(self.iccid)

    @classmethod
    def from_bytes(cls, data: bytes) -> Iccid:
        _exact(data, ICCID_BYTES, "EF.ICCID")
        digits = unpack_swapped(data, what="EF.ICCID")
        if not digits:
            raise CodecError("EF.ICCID holds no digits", 0)
        return cls(digits)

    def to_bytes(self) -> bytes:
        return pack_swapped(self.iccid, ICCID_BYTES, what="EF.ICCID")


# --- EF.IMSI ------------------------------------------------------------------------------------

# TS 31.102 §4.2.2: 1 length byte, then up to 8 bytes of IMSI (9 bytes in all).
IMSI_FILE_BYTES = 9
# TS 23.003 §2.2: MCC (3) + MNC (2 or 3) + MSIN, at most 15 digits; 6 leaves one MSIN digit.
IMSI_DIGITS_MIN = 6
IMSI_DIGITS_MAX = 15
# TS 24.008 §10.5.1.4 (the IMSI is coded as a mobile identity): type of identity 001 = IMSI, bit 4 = odd number of digits.
_IMSI_IDENTITY = 0x1
_IMSI_ODD = 0x8


@dataclass(frozen=True)
class Imsi:
    """EF.IMSI (TS 31.102 §4.2.2; DF.GSM: TS 51.011 §10.3.2)."""

    imsi: str

    def __post_init__(self) -> None:
        if not IMSI_DIGITS_MIN <= len(self.imsi) <= IMSI_DIGITS_MAX or not _decimal(self.imsi):
            raise CodecError(f"EF.IMSI: {IMSI_DIGITS_MIN} to {IMSI_DIGITS_MAX} decimal digits, not {self.imsi!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Imsi:
        _exact(data, IMSI_FILE_BYTES, "EF.IMSI")
        # TS 31.102 §4.2.2 byte 1: length of IMSI, the number of bytes used after it.
        length = data[0]
        if length == _PAD:
            raise CodecError("EF.IMSI holds no IMSI (length byte FF)", 0)
        if not 1 <= length <= IMSI_FILE_BYTES - 1:
            raise CodecError(f"EF.IMSI: length byte {length} is not 1..{IMSI_FILE_BYTES - 1}", 0)
        nibbles = nibbles_of(data[1 : 1 + length])
        # Byte 2 low nibble: parity (bit 4) and type of identity (bits 3..1).
        parity = nibbles[0]
        if parity & ~_IMSI_ODD != _IMSI_IDENTITY:
            raise CodecError(f"EF.IMSI: identity nibble {parity:X} is not 1 or 9", 1)
        digits = unpack_swapped(data[1 : 1 + length], what="EF.IMSI", base_offset=1)
        # unpack_swapped read the parity nibble as the first digit: drop it.
        digits = digits[1:]
        if (len(digits) % 2 == 1) != bool(parity & _IMSI_ODD):
            raise CodecError(f"EF.IMSI: {len(digits)} digits, but the parity bit says {'odd' if parity & _IMSI_ODD else 'even'}", 1)
        if 2 * length - 1 - len(digits) > 1:
            raise CodecError(f"EF.IMSI: length byte {length} is longer than {len(digits)} digits need", 0)
        for offset in range(1 + length, IMSI_FILE_BYTES):
            if data[offset] != _PAD:
                raise CodecError(f"EF.IMSI: byte {data[offset]:02X} after the IMSI (only FF allowed)", offset)
        try:
            return cls(digits)
        except CodecError as exc:
            raise CodecError(exc.message, 1) from exc

    def to_bytes(self) -> bytes:
        parity = _IMSI_IDENTITY | (_IMSI_ODD if len(self.imsi) % 2 else 0)
        # The parity nibble and the digits; an even count leaves one F nibble.
        length = (len(self.imsi) + 2) // 2
        # The identity nibble takes the place of a first digit, so the digits pack as "9" + IMSI or "1" + IMSI.
        used = pack_swapped(DECIMAL_DIGITS[parity] + self.imsi, length, what="EF.IMSI")
        return bytes([length]) + used + bytes([_PAD]) * (IMSI_FILE_BYTES - 1 - length)

    @property
    def mcc(self) -> str:
        """The mobile country code (TS 23.003 §2.2): the first three digits."""
        return self.imsi[:3]


# --- EF.AD --------------------------------------------------------------------------------------

# TS 31.102 §4.2.18: 3 mandatory bytes, byte 4 (MNC length) since Rel-99, more bytes RFU.
AD_BYTES_MIN = 3
AD_MNC_BYTE = 4
# TS 31.102 §4.2.18 byte 4: '02' or '03'.
MNC_LENGTHS = (2, 3)
# TS 31.102 §4.2.18: a card may have a longer EF.AD; 16 bytes covers every release to date.
AD_BYTES_MAX = 16
_MNC_LENGTH_MASK = 0x0F


class UeOperationMode(enum.IntEnum):
    """TS 31.102 §4.2.18 byte 1: the UE operation mode."""

    NORMAL = 0x00
    TYPE_APPROVAL = 0x80
    NORMAL_SPECIFIC_FACILITIES = 0x01
    TYPE_APPROVAL_SPECIFIC_FACILITIES = 0x81
    MAINTENANCE_OFF_LINE = 0x02
    CELL_TEST = 0x04


class AdditionalInfo(enum.IntFlag):
    """TS 31.102 §4.2.18 bytes 2-3 (big-endian): additional information; undefined bits are kept as they are."""

    NONE = 0x0000
    CIPHERING_INDICATOR = 0x0001
    CSG_DISPLAY_CONTROL = 0x0002
    PROSE_SERVICES = 0x0004
    EXTENDED_DRX = 0x0008


@dataclass(frozen=True)
class AdministrativeData:
    """EF.AD (TS 31.102 §4.2.18). ``mnc_length`` None: a 3-byte file without byte 4; ``rfu``: bytes 5.. as read."""

    operation_mode: UeOperationMode = UeOperationMode.NORMAL
    additional_info: AdditionalInfo = AdditionalInfo.NONE
    mnc_length: int | None = 2
    rfu: bytes = b""

    def __post_init__(self) -> None:
        if self.mnc_length is not None and self.mnc_length not in MNC_LENGTHS:
            raise CodecError(f"EF.AD: MNC length {self.mnc_length} is not 2 or 3")
        if not 0 <= self.additional_info <= 0xFFFF:
            raise CodecError(f"EF.AD: additional information {int(self.additional_info):#x} does not fit two bytes")
        if self.mnc_length is None and self.rfu:
            raise CodecError("EF.AD: bytes after byte 4 need byte 4 (the MNC length)")
        if AD_MNC_BYTE + len(self.rfu) > AD_BYTES_MAX:
            raise CodecError(f"EF.AD: more than {AD_BYTES_MAX} bytes")

    @classmethod
    def from_bytes(cls, data: bytes) -> AdministrativeData:
        if len(data) < AD_BYTES_MIN:
            raise TruncatedError(f"EF.AD: {len(data)} bytes, at least {AD_BYTES_MIN} needed", len(data))
        if len(data) > AD_BYTES_MAX:
            raise CodecError(f"EF.AD: {len(data)} bytes, more than {AD_BYTES_MAX}", AD_BYTES_MAX)
        try:
            mode = UeOperationMode(data[0])
        except ValueError:
            raise CodecError(f"EF.AD: UE operation mode {data[0]:02X} is not defined", 0) from None
        info = AdditionalInfo(int.from_bytes(data[1:3], "big"))
        if len(data) == AD_BYTES_MIN:
            return cls(mode, info, None)
        # Byte 4: b4..b1 the MNC length, b8..b5 RFU (ignored).
        mnc_length = data[3] & _MNC_LENGTH_MASK
        if mnc_length not in MNC_LENGTHS:
            raise CodecError(f"EF.AD: MNC length {mnc_length} is not 2 or 3", 3)
        return cls(mode, info, mnc_length, bytes(data[4:]))

    def to_bytes(self) -> bytes:
        head = bytes([self.operation_mode]) + int(self.additional_info).to_bytes(2, "big")
        if self.mnc_length is None:
            return head
        return head + bytes([self.mnc_length]) + self.rfu


# --- EF.SPN -------------------------------------------------------------------------------------

# TS 31.102 §4.2.12: display condition (1 byte) and the name (16 bytes).
SPN_NAME_BYTES = 16
SPN_FILE_BYTES = 1 + SPN_NAME_BYTES


class SpnDisplayCondition(enum.IntFlag):
    """TS 31.102 §4.2.12 byte 1; undefined (RFU) bits are kept as they are.

    ``SHOW_PLMN_AT_HOME`` (b1): display the registered PLMN name when it is the
    HPLMN or in EF.SPDI. ``HIDE_SPN_ROAMING`` (b2): the service provider name is
    *not* required when the registered PLMN is neither of those.
    """

    NONE = 0x00
    SHOW_PLMN_AT_HOME = 0x01
    HIDE_SPN_ROAMING = 0x02


@dataclass(frozen=True)
class ServiceProviderName:
    """EF.SPN (TS 31.102 §4.2.12): the name in the alpha coding of TS 102 221 Annex A, 16 bytes."""

    name: str
    display_condition: SpnDisplayCondition = SpnDisplayCondition.NONE

    def __post_init__(self) -> None:
        if not 0 <= self.display_condition <= _BYTE_MAX:
            raise CodecError(f"EF.SPN: display condition {int(self.display_condition)} does not fit one byte")
        # Fails early, with the clause's length, when the name does not fit.
        self.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ServiceProviderName:
        _exact(data, SPN_FILE_BYTES, "EF.SPN")
        try:
            name = decode_alpha(data[1:])
        except CodecError as exc:
            raise CodecError(f"EF.SPN name: {exc.message}", None if exc.offset is None else exc.offset + 1) from exc
        return cls(name, SpnDisplayCondition(data[0]))

    def to_bytes(self) -> bytes:
        try:
            name = encode_alpha(self.name, SPN_NAME_BYTES)
        except CodecError as exc:
            raise CodecError(f"EF.SPN name: {exc.message}") from exc
        return bytes([self.display_condition]) + name


# --- EF.UST -------------------------------------------------------------------------------------

# TS 31.102 §4.2.8: service n is bit ((n-1) mod 8) of byte (n-1) div 8; the file
# has as many bytes as the card's release needs. 255 bytes bound it.
SERVICE_TABLE_BYTES_MAX = 255
SERVICE_NUMBER_MAX = 8 * SERVICE_TABLE_BYTES_MAX


@dataclass(frozen=True)
class ServiceTable:
    """EF.UST (TS 31.102 §4.2.8): the numbers of the services available."""

    services: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for number in self.services:
            if not 1 <= number <= SERVICE_NUMBER_MAX:
                raise CodecError(f"EF.UST: service {number} is not 1..{SERVICE_NUMBER_MAX}")

    @classmethod
    def from_bytes(cls, data: bytes) -> ServiceTable:
        if len(data) > SERVICE_TABLE_BYTES_MAX:
            raise CodecError(f"EF.UST: {len(data)} bytes, more than {SERVICE_TABLE_BYTES_MAX}", SERVICE_TABLE_BYTES_MAX)
        return cls(frozenset(8 * index + bit + 1 for index, byte in enumerate(data) for bit in range(8) if byte >> bit & 1))

    def bytes_needed(self) -> int:
        return (max(self.services) + 7) // 8 if self.services else 0

    def to_bytes(self, size: int | None = None) -> bytes:
        """The table in ``size`` bytes (default: as few as hold the highest service); unused bits 0."""
        needed = self.bytes_needed()
        length = needed if size is None else size
        if length < needed:
            raise CodecError(f"EF.UST: service {max(self.services)} needs {needed} bytes, the file has {length}")
        out = bytearray(length)
        for number in self.services:
            out[(number - 1) // 8] |= 1 << (number - 1) % 8
        return bytes(out)


# --- EF.LI / EF.PL ------------------------------------------------------------------------------

# TS 31.102 §4.2.1 / TS 102 221 §13.3: one language per 2 bytes, ISO 639 alpha-2 in the
# SMS default alphabet with bit 8 = 0 (for a..z the same bytes as ASCII); 'FF FF' unused.
LANGUAGE_ENTRY_BYTES = 2
# Bounds the file: 64 languages exceed any handset's list.
LANGUAGES_MAX = 64
_LANGUAGE_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class LanguageList:
    """EF.LI (TS 31.102 §4.2.1) and EF.PL (TS 102 221 §13.3): ISO 639 codes, most preferred first."""

    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.languages) > LANGUAGES_MAX:
            raise CodecError(f"language list: {len(self.languages)} languages, at most {LANGUAGES_MAX}")
        for code in self.languages:
            if len(code) != LANGUAGE_ENTRY_BYTES or not code.isascii() or not set(code.encode()) <= _LANGUAGE_LETTERS:
                raise CodecError(f"language list: {code!r} is not a two-letter lower-case ISO 639 code")

    @classmethod
    def from_bytes(cls, data: bytes) -> LanguageList:
        if len(data) % LANGUAGE_ENTRY_BYTES:
            raise CodecError(f"language list: {len(data)} bytes is not a whole number of 2-byte entries", len(data) - 1)
        codes: list[str] = []
        for offset in range(0, len(data), LANGUAGE_ENTRY_BYTES):
            entry = data[offset : offset + LANGUAGE_ENTRY_BYTES]
            if entry == b"\xff\xff":
                continue
            if not set(entry) <= _LANGUAGE_LETTERS:
                raise CodecError(f"language list: entry {entry.hex().upper()} is not a lower-case ISO 639 code", offset)
            if len(codes) == LANGUAGES_MAX:
                raise CodecError(f"language list: more than {LANGUAGES_MAX} languages", offset)
            codes.append(entry.decode("ascii"))
        return cls(tuple(codes))

    def to_bytes(self, size: int | None = None) -> bytes:
        """The entries in ``size`` bytes (default: just the entries), unused entries 'FF FF'."""
        body = "".join(self.languages).encode("ascii")
        length = len(body) if size is None else size
        if length < len(body) or length % LANGUAGE_ENTRY_BYTES:
            raise CodecError(f"language list: {len(self.languages)} languages need {len(body)} bytes, a {length}-byte file holds no more")
        return body + bytes([_PAD]) * (length - len(body))


# --- EF.ACC -------------------------------------------------------------------------------------

# TS 31.102 §4.2.15: 2 bytes; byte 1 b8..b1 = classes 15..8, byte 2 b8..b1 = classes 7..0.
ACC_BYTES = 2
ACCESS_CLASS_MAX = 15
# TS 22.011 §4.2: classes 0..9 are allocated to ordinary subscribers; this codec, like
# most issuers, takes the class from the last digit of the IMSI.
ORDINARY_CLASS_MAX = 9


@dataclass(frozen=True)
class AccessClasses:
    """EF.ACC (TS 31.102 §4.2.15): the access control classes of the subscriber."""

    classes: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for number in self.classes:
            if not 0 <= number <= ACCESS_CLASS_MAX:
                raise CodecError(f"EF.ACC: access class {number} is not 0..{ACCESS_CLASS_MAX}")

    @classmethod
    def from_imsi(cls, imsi: str) -> AccessClasses:
        """The ordinary class (0..9) given by the last digit of ``imsi`` (TS 22.011 §4.2)."""
        if not imsi or not _decimal(imsi[-1]):
            raise CodecError(f"EF.ACC: {imsi!r} does not end in a decimal digit")
        return cls(frozenset({int(imsi[-1])}))

    @classmethod
    def from_bytes(cls, data: bytes) -> AccessClasses:
        _exact(data, ACC_BYTES, "EF.ACC")
        bits = int.from_bytes(data, "big")
        return cls(frozenset(n for n in range(ACCESS_CLASS_MAX + 1) if bits >> n & 1))

    def to_bytes(self) -> bytes:
        return sum(1 << n for n in self.classes).to_bytes(ACC_BYTES, "big")


# --- EF.HPPLMN ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HplmnSearchPeriod:
    """EF.HPPLMN (TS 31.102 §4.2.6): the higher-priority PLMN search period.

    ``period`` 0 means no search; 1..255 is the interval in units of n minutes,
    with n given by TS 23.122 §4.4.3.3 for the access technology.
    """

    period: int

    def __post_init__(self) -> None:
        if not 0 <= self.period <= _BYTE_MAX:
            raise CodecError(f"EF.HPPLMN: period {self.period} is not 0..255")

    @classmethod
    def from_bytes(cls, data: bytes) -> HplmnSearchPeriod:
        _exact(data, 1, "EF.HPPLMN")
        return cls(data[0])

    def to_bytes(self) -> bytes:
        return bytes([self.period])


# --- helpers ------------------------------------------------------------------------------------


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _exact(data: bytes, length: int, what: str) -> None:
    if len(data) < length:
        raise TruncatedError(f"{what}: {len(data)} bytes, {length} needed", len(data))
    if len(data) > length:
        raise CodecError(f"{what}: {len(data)} bytes, the file has {length}", length)
