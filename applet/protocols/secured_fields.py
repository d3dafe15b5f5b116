"""The header fields of ETSI TS 102 225 secured packets: SPI, KIc, KID, TAR, CNTR, response status, errors.

Spec: ETSI TS 102 225 §5.1.1 (SPI), §5.1.2 (KIc), §5.1.3 (KID: §5.1.3.1 for a
cryptographic checksum, §5.1.3.2 for a redundancy check), §5.1.1 (TAR, CNTR,
the counter modes and the 2^40 counter range), §5.2.2 (Response Status Codes);
3GPP TS 31.115 §4.2 (SPI octet 2 b6: PoR by SMS-DELIVER-REPORT or SMS-SUBMIT)
and §4.3 (status codes 0B and 0C); ETSI TS 102 226 (the Minimum Security Level
of an application, coded like SPI octet 1).

Every field is a frozen value with ``from_bytes``/``to_bytes``. Bits the
specification reserves (RFU) and reserved codings are refused with
:class:`~simwallet.applet.errors.CodecError`, so every byte value either
decodes and encodes back to itself or raises.

The errors of the secured packet recipes live here too: each carries the
Response Status Code (``status``) that a PoR reporting it would carry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, TypeVar

from simwallet.applet.errors import CodecError, SecurityError, TruncatedError

# TS 102 225 §5.1.1: CNTR is five octets, so the counter runs 0 .. 2^40 - 1;
# at the top value a counter that must increase can never be accepted again.
COUNTER_LENGTH: Final = 5
COUNTER_MAX: Final = (1 << (8 * COUNTER_LENGTH)) - 1
# TS 102 225 §5.1.1: TAR is three octets (values assigned by TS 101 220).
TAR_LENGTH: Final = 3
# TS 102 225 §5.1.1: SPI is two octets; KIc and KID one octet each.
SPI_LENGTH: Final = 2
# TS 102 225 §5.1.2/§5.1.3: b8..b5 of KIc/KID, the key version number 0..15.
KEY_INDEX_MAX: Final = 0x0F


def _one_octet(data: bytes, what: str) -> int:
    if len(data) < 1:
        raise TruncatedError(f"{what} needs 1 octet, got none", offset=0)
    if len(data) > 1:
        raise CodecError(f"{what} is 1 octet, got {len(data)}", offset=1)
    return data[0]


def _check_key_index(key_index: int, what: str) -> None:
    if not 0 <= key_index <= KEY_INDEX_MAX:
        raise CodecError(f"{what} key index {key_index} outside 0..{KEY_INDEX_MAX}")


# --- SPI (TS 102 225 §5.1.1) ------------------------------------------------------------


class ChecksumType(enum.IntEnum):
    """SPI octet 1 b2 b1 (and octet 2 b4 b3 for the PoR): RC/CC/DS."""

    NONE = 0b00
    REDUNDANCY_CHECK = 0b01
    CRYPTOGRAPHIC_CHECKSUM = 0b10
    DIGITAL_SIGNATURE = 0b11


class CounterMode(enum.IntEnum):
    """SPI octet 1 b5 b4: counter presence and the replay check the receiver applies."""

    NO_COUNTER = 0b00
    NO_CHECK = 0b01  # counter available, no replay or sequence checking
    HIGHER = 0b10  # process if and only if CNTR is higher than the RE's value
    ONE_HIGHER = 0b11  # process if and only if CNTR is one higher than the RE's value


class PorMode(enum.IntEnum):
    """SPI octet 2 b2 b1: whether a Proof of Receipt goes back to the sending entity (11 reserved)."""

    NONE = 0b00
    ALWAYS = 0b01
    ON_ERROR = 0b10


class PorTransport(enum.IntEnum):
    """SPI octet 2 b6 (TS 31.115 §4.2): the short message that carries the PoR."""

    DELIVER_REPORT = 0
    SMS_SUBMIT = 1


# TS 102 225 §5.1.1: octet 1 b8..b6 and octet 2 b8 b7 are reserved (set to zero).
_SPI1_RFU: Final = 0b1110_0000
_SPI2_RFU: Final = 0b1100_0000
_POR_MODE_RESERVED: Final = 0b11


@dataclass(frozen=True)
class Spi:
    """The Security Parameter Indicator: what protects the command and what the PoR looks like."""

    # octet 1 b2 b1
    checksum: ChecksumType = ChecksumType.NONE
    # octet 1 b3: ciphering of CNTR onwards
    ciphering: bool = False
    # octet 1 b5 b4
    counter: CounterMode = CounterMode.NO_COUNTER
    # octet 2 b2 b1
    por: PorMode = PorMode.NONE
    # octet 2 b4 b3: RC/CC/DS of the PoR
    por_checksum: ChecksumType = ChecksumType.NONE
    # octet 2 b5: the PoR is ciphered
    por_ciphered: bool = False
    # octet 2 b6 (TS 31.115 §4.2)
    por_transport: PorTransport = PorTransport.DELIVER_REPORT

    def __post_init__(self) -> None:
        for name, kind in (
            ("checksum", ChecksumType),
            ("counter", CounterMode),
            ("por", PorMode),
            ("por_checksum", ChecksumType),
            ("por_transport", PorTransport),
        ):
            if not isinstance(getattr(self, name), kind):
                raise CodecError(f"SPI {name} must be a {kind.__name__}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Spi:
        if len(data) < SPI_LENGTH:
            raise TruncatedError(f"SPI needs {SPI_LENGTH} octets, got {len(data)}", offset=len(data))
        if len(data) > SPI_LENGTH:
            raise CodecError(f"SPI is {SPI_LENGTH} octets, got {len(data)}", offset=SPI_LENGTH)
        first, second = data
        if first & _SPI1_RFU:
            raise CodecError(f"SPI octet 1 {first:02X} has reserved bits b8..b6 set", offset=0)
        if second & _SPI2_RFU:
            raise CodecError(f"SPI octet 2 {second:02X} has reserved bits b8 b7 set", offset=1)
        if second & 0b11 == _POR_MODE_RESERVED:
            raise CodecError(f"SPI octet 2 {second:02X}: PoR indication 11 is reserved", offset=1)
        return cls(
            checksum=ChecksumType(first & 0b11),
            ciphering=bool(first & 0b100),
            counter=CounterMode((first >> 3) & 0b11),
            por=PorMode(second & 0b11),
            por_checksum=ChecksumType((second >> 2) & 0b11),
            por_ciphered=bool(second & 0b1_0000),
            por_transport=PorTransport((second >> 5) & 1),
        )

    def to_bytes(self) -> bytes:
        first = self.checksum | self.ciphering << 2 | self.counter << 3
        second = self.por | self.por_checksum << 2 | self.por_ciphered << 4 | self.por_transport << 5
        return bytes((first, second))


# --- KIc (TS 102 225 §5.1.2) and KID (§5.1.3) ------------------------------------------------


class CipherAlgorithm(enum.IntEnum):
    """KIc b4..b1. b2 b1: 00 implicit, 01 DES, 10 AES, 11 proprietary; b4 b3 pick the DES mode.

    AES has only CBC (b4 b3 = 00); the other nibbles are reserved or
    proprietary-specific and refused. DES-ECB (b4 b3 = 11) is decoded but no
    key set can use it.
    """

    IMPLICIT = 0b0000
    DES_CBC = 0b0001
    AES_CBC = 0b0010
    PROPRIETARY = 0b0011
    TDES_CBC_2KEY = 0b0101
    TDES_CBC_3KEY = 0b1001
    DES_ECB = 0b1101


class CcAlgorithm(enum.IntEnum):
    """KID b4..b1 when SPI asks for a cryptographic checksum (§5.1.3.1); b4 b3 = 11 with DES is reserved."""

    IMPLICIT = 0b0000
    DES_CBC = 0b0001
    AES_CMAC = 0b0010
    PROPRIETARY = 0b0011
    TDES_CBC_2KEY = 0b0101
    TDES_CBC_3KEY = 0b1001


class RcAlgorithm(enum.IntEnum):
    """KID b4..b1 when SPI asks for a redundancy check (§5.1.3.2): b2 b1 = 01 CRC, b4 b3 = 00 CRC16, 01 CRC32."""

    IMPLICIT = 0b0000
    CRC16 = 0b0001
    PROPRIETARY = 0b0011
    CRC32 = 0b0101


_A = TypeVar("_A", bound=enum.IntEnum)


def _split_key_octet(data: bytes, what: str) -> tuple[int, int]:
    value = _one_octet(data, what)
    return value >> 4, value & 0x0F


def _algorithm(kind: type[_A], nibble: int, what: str) -> _A:
    try:
        return kind(nibble)
    except ValueError:
        raise CodecError(f"{what} algorithm coding {nibble:X} (b4..b1) is reserved or unsupported", offset=0) from None


@dataclass(frozen=True)
class Kic:
    """Key and algorithm identifier for ciphering: key index (b8..b5) and algorithm (b4..b1)."""

    key_index: int
    algorithm: CipherAlgorithm

    def __post_init__(self) -> None:
        _check_key_index(self.key_index, "KIc")
        if not isinstance(self.algorithm, CipherAlgorithm):
            raise CodecError("KIc algorithm must be a CipherAlgorithm")

    @classmethod
    def from_bytes(cls, data: bytes) -> Kic:
        index, nibble = _split_key_octet(data, "KIc")
        return cls(index, _algorithm(CipherAlgorithm, nibble, "KIc"))

    def to_bytes(self) -> bytes:
        return bytes((self.key_index << 4 | self.algorithm,))


@dataclass(frozen=True)
class KidCc:
    """KID for a cryptographic checksum (SPI RC/CC/DS = 10): key index and algorithm."""

    key_index: int
    algorithm: CcAlgorithm

    def __post_init__(self) -> None:
        _check_key_index(self.key_index, "KID")
        if not isinstance(self.algorithm, CcAlgorithm):
            raise CodecError("KID (CC) algorithm must be a CcAlgorithm")

    @classmethod
    def from_bytes(cls, data: bytes) -> KidCc:
        index, nibble = _split_key_octet(data, "KID")
        return cls(index, _algorithm(CcAlgorithm, nibble, "KID (CC)"))

    def to_bytes(self) -> bytes:
        return bytes((self.key_index << 4 | self.algorithm,))


@dataclass(frozen=True)
class KidRc:
    """KID for a redundancy check (SPI RC/CC/DS = 01): key index and CRC algorithm."""

    key_index: int
    algorithm: RcAlgorithm

    def __post_init__(self) -> None:
        _check_key_index(self.key_index, "KID")
        if not isinstance(self.algorithm, RcAlgorithm):
            raise CodecError("KID (RC) algorithm must be an RcAlgorithm")

    @classmethod
    def from_bytes(cls, data: bytes) -> KidRc:
        index, nibble = _split_key_octet(data, "KID")
        return cls(index, _algorithm(RcAlgorithm, nibble, "KID (RC)"))

    def to_bytes(self) -> bytes:
        return bytes((self.key_index << 4 | self.algorithm,))


@dataclass(frozen=True)
class KidOpaque:
    """KID when SPI asks for no RC/CC/DS (the octet is not interpreted) or for a DS (coding not specified)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value <= 0xFF:
            raise CodecError(f"KID octet {self.value} outside 00..FF")

    @classmethod
    def from_bytes(cls, data: bytes) -> KidOpaque:
        return cls(_one_octet(data, "KID"))

    def to_bytes(self) -> bytes:
        return bytes((self.value,))


Kid = KidCc | KidRc | KidOpaque


def kid_type(checksum: ChecksumType) -> type[KidCc] | type[KidRc] | type[KidOpaque]:
    """The KID class that SPI's RC/CC/DS indication calls for."""
    if checksum is ChecksumType.CRYPTOGRAPHIC_CHECKSUM:
        return KidCc
    if checksum is ChecksumType.REDUNDANCY_CHECK:
        return KidRc
    return KidOpaque


def kid_from_bytes(data: bytes, checksum: ChecksumType) -> Kid:
    """Decode a KID octet as SPI's RC/CC/DS indication says it is coded."""
    return kid_type(checksum).from_bytes(data)


# --- TAR and CNTR (TS 102 225 §5.1.1) -------------------------------------------------------


@dataclass(frozen=True)
class Tar:
    """Toolkit Application Reference: the three octets naming the receiving application."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != TAR_LENGTH:
            raise CodecError(f"TAR must be {TAR_LENGTH} bytes")

    @classmethod
    def from_bytes(cls, data: bytes) -> Tar:
        if len(data) < TAR_LENGTH:
            raise TruncatedError(f"TAR needs {TAR_LENGTH} octets, got {len(data)}", offset=len(data))
        if len(data) > TAR_LENGTH:
            raise CodecError(f"TAR is {TAR_LENGTH} octets, got {len(data)}", offset=TAR_LENGTH)
        return cls(bytes(data))

    def to_bytes(self) -> bytes:
        return self.value

    def __repr__(self) -> str:
        return f"Tar({self.value.hex().upper()})"


def check_counter_value(counter: int) -> int:
    """Return ``counter`` if CNTR can carry it (0 .. 2^40 - 1), else raise :class:`CodecError`."""
    if isinstance(counter, bool) or not isinstance(counter, int) or not 0 <= counter <= COUNTER_MAX:
        raise CodecError(f"counter {counter!r} outside 0..2^40-1")
    return counter


def encode_counter(counter: int) -> bytes:
    """The five CNTR octets, most significant first."""
    return check_counter_value(counter).to_bytes(COUNTER_LENGTH, "big")


def decode_counter(data: bytes) -> int:
    if len(data) != COUNTER_LENGTH:
        raise TruncatedError(f"CNTR needs {COUNTER_LENGTH} octets, got {len(data)}", offset=len(data))
    return int.from_bytes(data, "big")


# --- Response Status Code (TS 102 225 §5.2.2, TS 31.115) -------------------------------------


class ResponseStatus(enum.IntEnum):
    """The Response Status Code of a PoR; other values are reserved and refused."""

    POR_OK = 0x00
    CHECKSUM_FAILED = 0x01  # RC/CC/DS failed
    COUNTER_LOW = 0x02
    COUNTER_HIGH = 0x03
    COUNTER_BLOCKED = 0x04
    CIPHERING_ERROR = 0x05
    UNIDENTIFIED_SECURITY_ERROR = 0x06
    INSUFFICIENT_MEMORY = 0x07
    MORE_TIME = 0x08
    TAR_UNKNOWN = 0x09
    INSUFFICIENT_SECURITY_LEVEL = 0x0A
    # TS 31.115 §4.3: the actual response goes back by SMS-SUBMIT / by USSD.
    RESPONSE_BY_SMS_SUBMIT = 0x0B
    RESPONSE_BY_USSD = 0x0C


def response_status(value: int, offset: int | None = None) -> ResponseStatus:
    try:
        return ResponseStatus(value)
    except ValueError:
        raise CodecError(f"response status code {value:02X} is reserved", offset=offset) from None


# --- Minimum Security Level (TS 102 226) ----------------------------------------------------


@dataclass(frozen=True)
class MinimumSecurityLevel:
    """An application's Minimum Security Level, coded like SPI octet 1 (b8..b6 RFU).

    A command packet meets it when its SPI asks for at least this RC/CC/DS
    (none < RC < CC < DS), ciphering if this asks for it, and at least this
    counter mode (none < no check < higher < one higher).
    """

    checksum: ChecksumType = ChecksumType.NONE
    ciphering: bool = False
    counter: CounterMode = CounterMode.NO_COUNTER

    @classmethod
    def from_bytes(cls, data: bytes) -> MinimumSecurityLevel:
        value = _one_octet(data, "MSL")
        if value & _SPI1_RFU:
            raise CodecError(f"MSL {value:02X} has reserved bits b8..b6 set", offset=0)
        return cls(ChecksumType(value & 0b11), bool(value & 0b100), CounterMode((value >> 3) & 0b11))

    def to_bytes(self) -> bytes:
        return bytes((self.checksum | self.ciphering << 2 | self.counter << 3,))

    def require(self, spi: Spi) -> None:
        """Raise :class:`InsufficientSecurityError` unless ``spi`` meets this level."""
        if spi.checksum < self.checksum:
            raise InsufficientSecurityError(f"RC/CC/DS {spi.checksum.name} is below the minimum {self.checksum.name}")
        if self.ciphering and not spi.ciphering:
            raise InsufficientSecurityError("the minimum security level requires ciphering")
        if spi.counter < self.counter:
            raise InsufficientSecurityError(f"counter mode {spi.counter.name} is below the minimum {self.counter.name}")


NO_MINIMUM: Final = MinimumSecurityLevel()


# --- errors -------------------------------------------------------------------------------------


class OtaSecurityError(SecurityError):
    """A secured packet failed a check; ``status`` is the Response Status Code a PoR would report.

    ``tar``, ``spi`` and ``counter`` are the packet's own (unauthenticated)
    values where the check got far enough to read them, so that the receiving
    entity can build its PoR; each is ``None`` otherwise. Messages never hold
    key material or expected checksum values.
    """

    status: ResponseStatus = ResponseStatus.UNIDENTIFIED_SECURITY_ERROR

    def __init__(self, message: str, *, tar: Tar | None = None, spi: Spi | None = None, counter: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tar = tar
        self.spi = spi
        self.counter = counter

    def __str__(self) -> str:
        return f"{self.status:02X} {self.status.name}: {self.message}"


class ChecksumError(OtaSecurityError):
    """RC/CC/DS failed (status 01)."""

    status = ResponseStatus.CHECKSUM_FAILED


class CounterLowError(OtaSecurityError):
    """CNTR is not higher than the receiver's value (status 02)."""

    status = ResponseStatus.COUNTER_LOW


class CounterHighError(OtaSecurityError):
    """CNTR is more than one higher where exactly one higher was required (status 03)."""

    status = ResponseStatus.COUNTER_HIGH


class CounterBlockedError(OtaSecurityError):
    """The receiver's counter is at 2^40 - 1 and cannot move on (status 04)."""

    status = ResponseStatus.COUNTER_BLOCKED


class CipheringError(OtaSecurityError):
    """The ciphered part cannot be deciphered or its padding count is wrong (status 05)."""

    status = ResponseStatus.CIPHERING_ERROR


class UnidentifiedSecurityError(OtaSecurityError):
    """A security problem with no more specific code, such as a PoR for another TAR (status 06)."""

    status = ResponseStatus.UNIDENTIFIED_SECURITY_ERROR


class TarUnknownError(OtaSecurityError):
    """No application (no key set) answers to this TAR (status 09)."""

    status = ResponseStatus.TAR_UNKNOWN


class InsufficientSecurityError(OtaSecurityError):
    """The SPI asks for less than the application's Minimum Security Level (status 0A)."""

    status = ResponseStatus.INSUFFICIENT_SECURITY_LEVEL
