"""SMS user data and its header: TP-UDL, TP-UD, TP-UDHI (3GPP TS 23.040 §9.2.3.16, §9.2.3.24).

Theory of operation. :class:`UserData` is the header (a :class:`UserDataHeader`
or None: TP-UDHI is 1 exactly when there is one) and the *body*: the septets
(one per byte) when the DCS says uncompressed GSM 7-bit, the octets otherwise.
:func:`encode_user_data` and :func:`parse_user_data` turn it into TP-UDL and
TP-UD and back:

* 8-bit, UCS2 and compressed data: TP-UDL counts octets, header included.
* GSM 7-bit: TP-UDL counts septets, and the header counts as the septets it
  covers, ceil(8 × (UDHL + 1) / 7); between header and text are the fill bits,
  7 × that − 8 × (UDHL + 1), so that the text starts on a septet boundary
  (§9.2.3.24, figure 9.2.3.24(a)). A header of 6 octets (the 8-bit
  concatenation IE) takes 7 septets with 1 fill bit: 160 − 7 = 153 septets of text.

A header is a list of information elements (IEI, length, data). Three kinds
are typed: :class:`Concatenation` (IEI ``00``, 8-bit reference, §9.2.3.24.1;
``08``, 16-bit reference, §9.2.3.24.8) and :class:`PortAddressing` (``04``,
8-bit ports, §9.2.3.24.3; ``05``, 16-bit ports, §9.2.3.24.4). Everything else,
including the command and response packet identifiers ``70`` and ``71`` of
TS 31.115 §4, is a :class:`RawIe`. A known IEI whose data is malformed
(wrong length; concatenation with 0 segments or a sequence number of 0 or
above the total, which §9.2.3.24.1 tells the receiver to ignore) stays a
:class:`RawIe` too, so parsing never loses bytes and every header re-encodes
as it came. §9.2.3.24: of a repeated non-repeatable IE the last one counts
(:attr:`UserDataHeader.concatenation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.gsm7 import OCTET_BITS, SEPTET_BITS, SEPTET_MAX, pack_septets, packed_length, unpack_septets
from simwallet.applet.protocols.sms_dcs import DataCoding

# §9.2.3.24: TP-UD holds at most 140 octets in SMS-DELIVER and SMS-SUBMIT.
UD_OCTETS_MAX = 140
# 140 octets hold 160 septets.
UD_SEPTETS_MAX = UD_OCTETS_MAX * OCTET_BITS // SEPTET_BITS
# §9.2.3.24: an IE's data length is one octet.
IE_DATA_OCTETS_MAX = 255

# §9.2.3.24.1 / .8 / .3 / .4: the typed IEIs.
IEI_CONCATENATION_8BIT = 0x00
IEI_PORT_8BIT = 0x04
IEI_PORT_16BIT = 0x05
IEI_CONCATENATION_16BIT = 0x08
# TS 31.115 §4: command and response packet identifiers (kept raw).
IEI_CPI = 0x70
IEI_RPI = 0x71
# §9.2.3.24.1: at most 255 segments in one concatenated message.
SEGMENTS_MAX = 255


@dataclass(frozen=True)
class Concatenation:
    """Concatenated short message IE (§9.2.3.24.1: 8-bit reference; §9.2.3.24.8: 16-bit reference)."""

    # Concatenated short message reference number, the same in every segment.
    reference: int
    # Maximum number of short messages in the concatenated short message (1..255).
    total: int
    # Sequence number of the current short message (1..total).
    sequence: int
    # IEI 08 (16-bit reference) instead of 00.
    wide: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.reference <= (0xFFFF if self.wide else 0xFF):
            raise CodecError(f"concatenation reference {self.reference} does not fit {16 if self.wide else 8} bits")
        if not 1 <= self.total <= SEGMENTS_MAX:
            raise CodecError(f"concatenation total {self.total} outside 1..{SEGMENTS_MAX}")
        if not 1 <= self.sequence <= self.total:
            raise CodecError(f"concatenation sequence number {self.sequence} outside 1..{self.total}")

    @property
    def iei(self) -> int:
        return IEI_CONCATENATION_16BIT if self.wide else IEI_CONCATENATION_8BIT

    @property
    def data(self) -> bytes:
        reference = self.reference.to_bytes(2 if self.wide else 1, "big")
        return reference + bytes([self.total, self.sequence])


@dataclass(frozen=True)
class PortAddressing:
    """Application port addressing IE (§9.2.3.24.3: 8-bit ports; §9.2.3.24.4: 16-bit ports)."""

    # Destination port.
    destination: int
    # Originator port.
    originator: int
    # IEI 05 (16-bit ports) instead of 04.
    wide: bool = True

    def __post_init__(self) -> None:
        limit = 0xFFFF if self.wide else 0xFF
        if not (0 <= self.destination <= limit and 0 <= self.originator <= limit):
            raise CodecError(f"ports {self.destination}/{self.originator} do not fit {16 if self.wide else 8} bits")

    @property
    def iei(self) -> int:
        return IEI_PORT_16BIT if self.wide else IEI_PORT_8BIT

    @property
    def data(self) -> bytes:
        size = 2 if self.wide else 1
        return self.destination.to_bytes(size, "big") + self.originator.to_bytes(size, "big")


@dataclass(frozen=True)
class RawIe:
    """Any other information element, kept as IEI and data (CPI ``70``, RPI ``71``, unknown IEIs)."""

    # §9.2.3.24: Information-Element-Identifier.
    iei: int
    # §9.2.3.24: the IE data (its length is the IEIDL octet).
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.iei <= 0xFF:
            raise CodecError(f"IEI {self.iei} outside 0..255")
        if len(self.data) > IE_DATA_OCTETS_MAX:
            raise CodecError(f"IE data of {len(self.data)} octets exceeds {IE_DATA_OCTETS_MAX}")
        if _typed(self.iei, self.data) is not None:
            raise CodecError(f"IEI {self.iei:02X} with valid data is a typed element; build that instead")


InformationElement = Concatenation | PortAddressing | RawIe


def _typed(iei: int, data: bytes) -> Concatenation | PortAddressing | None:
    """The typed element of (iei, data), or None for an unknown IEI or malformed data."""
    try:
        if iei == IEI_CONCATENATION_8BIT and len(data) == 3:
            return Concatenation(data[0], data[1], data[2])
        if iei == IEI_CONCATENATION_16BIT and len(data) == 4:
            return Concatenation(int.from_bytes(data[:2], "big"), data[2], data[3], wide=True)
    except CodecError:
        return None
    if iei == IEI_PORT_8BIT and len(data) == 2:
        return PortAddressing(data[0], data[1], wide=False)
    if iei == IEI_PORT_16BIT and len(data) == 4:
        return PortAddressing(int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big"))
    return None


def information_element(iei: int, data: bytes) -> InformationElement:
    """The element for an IEI and its data: typed when it is one, raw otherwise."""
    typed = _typed(iei, data)
    return typed if typed is not None else RawIe(iei, data)


@dataclass(frozen=True)
class UserDataHeader:
    """A user data header (§9.2.3.24): its information elements in order."""

    elements: tuple[InformationElement, ...] = ()

    def to_bytes(self) -> bytes:
        """UDHL and the elements."""
        body = b"".join(bytes([ie.iei, len(ie.data)]) + ie.data for ie in self.elements)
        if len(body) >= UD_OCTETS_MAX:
            raise CodecError(f"user data header of {len(body)} octets leaves no room in {UD_OCTETS_MAX}")
        return bytes([len(body)]) + body

    def _last(self, kind: type[Concatenation] | type[PortAddressing]) -> Concatenation | PortAddressing | None:
        found = [ie for ie in self.elements if isinstance(ie, kind)]
        return found[-1] if found else None

    @property
    def concatenation(self) -> Concatenation | None:
        """The concatenation IE that counts (the last one, §9.2.3.24), or None."""
        ie = self._last(Concatenation)
        return ie if isinstance(ie, Concatenation) else None

    @property
    def port_addressing(self) -> PortAddressing | None:
        """The application port addressing IE that counts, or None."""
        ie = self._last(PortAddressing)
        return ie if isinstance(ie, PortAddressing) else None

    def find(self, iei: int) -> InformationElement | None:
        """The last element with ``iei``, or None."""
        found = [ie for ie in self.elements if ie.iei == iei]
        return found[-1] if found else None


def parse_udh(data: bytes, offset: int = 0) -> tuple[UserDataHeader, int]:
    """The header at ``offset`` (starting with UDHL) and the offset after it."""
    if len(data) <= offset:
        raise TruncatedError("user data header needs a length octet", len(data))
    end = offset + 1 + data[offset]
    if len(data) < end:
        raise CodecError(f"user data header of {data[offset]} octets overruns the user data", offset)
    elements: list[InformationElement] = []
    position = offset + 1
    while position < end:
        if position + 2 > end:
            raise CodecError("information element header overruns the user data header", position)
        iei, length = data[position], data[position + 1]
        if position + 2 + length > end:
            raise CodecError(f"information element {iei:02X} of {length} octets overruns the user data header", position)
        elements.append(information_element(iei, data[position + 2 : position + 2 + length]))
        position += 2 + length
    return UserDataHeader(tuple(elements)), end


@dataclass(frozen=True)
class UserData:
    """TP-UD: an optional header and the body (septets for uncompressed GSM 7-bit, octets otherwise)."""

    # Septets one per byte (values 0..127) or octets, as the DCS says.
    body: bytes = b""
    # §9.2.3.24: present exactly when TP-UDHI is 1.
    header: UserDataHeader | None = None


def header_septets(header_octets: int) -> int:
    """Septets a header of ``header_octets`` (UDHL octet included) covers in GSM 7-bit user data."""
    return (header_octets * OCTET_BITS + SEPTET_BITS - 1) // SEPTET_BITS


def fill_bits(header_octets: int) -> int:
    """Fill bits between a header of ``header_octets`` (UDHL included) and GSM 7-bit text (0..6)."""
    return header_septets(header_octets) * SEPTET_BITS - header_octets * OCTET_BITS


def encode_user_data(coding: DataCoding, user_data: UserData, octets_max: int = UD_OCTETS_MAX) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD octets) of ``user_data`` under ``coding``; CodecError past ``octets_max``."""
    header = user_data.header.to_bytes() if user_data.header is not None else b""
    if coding.counts_septets:
        for index, septet in enumerate(user_data.body):
            if septet > SEPTET_MAX:
                raise CodecError(f"GSM 7-bit user data holds octet {septet:#04x} at index {index}")
        udl = header_septets(len(header)) + len(user_data.body)
        octets = header + pack_septets(user_data.body, fill_bits(len(header)))
        if packed_length(udl) > octets_max:
            raise CodecError(f"user data of {udl} septets exceeds {octets_max} octets")
    else:
        octets = header + user_data.body
        udl = len(octets)
        if udl > octets_max:
            raise CodecError(f"user data of {udl} octets exceeds {octets_max}")
    return udl, octets


def user_data_octets(coding: DataCoding, udl: int) -> int:
    """Octets of TP-UD that a TP-UDL of ``udl`` announces."""
    return packed_length(udl) if coding.counts_septets else udl


def parse_user_data(coding: DataCoding, udhi: bool, udl: int, data: bytes, offset: int, octets_max: int = UD_OCTETS_MAX) -> UserData:
    """The user data announced by ``udl``, which must be exactly ``data[offset:]``."""
    size = user_data_octets(coding, udl)
    if size > octets_max:
        raise CodecError(f"TP-UDL {udl} announces {size} octets, more than {octets_max}", offset - 1)
    available = len(data) - offset
    if available < size:
        raise TruncatedError(f"TP-UD needs {size} octets, {available} left", len(data))
    if available > size:
        raise CodecError(f"{available - size} octets after TP-UD", offset + size)
    header: UserDataHeader | None = None
    start = offset
    if udhi:
        if size == 0:
            raise CodecError("TP-UDHI set but TP-UD is empty", offset)
        header, start = parse_udh(data, offset)
    if not coding.counts_septets:
        return UserData(data[start:], header)
    header_octets = start - offset
    covered = header_septets(header_octets)
    if covered > udl:
        raise CodecError(f"user data header covers {covered} septets, TP-UDL is {udl}", offset - 1)
    body = unpack_septets(data[start:], udl - covered, fill_bits(header_octets))
    return UserData(body, header)
