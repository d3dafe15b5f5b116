"""The wire framing of ETSI TS 102 225 command and response packets in the SMS-PP form of 3GPP TS 31.115.

Spec: ETSI TS 102 225 §5.1.1 (command packet: CPL, CHL, SPI, KIc, KID, TAR,
CNTR, PCNTR, RC/CC/DS, secured data) and §5.2 (response packet: RPL, RHL, TAR,
CNTR, PCNTR, Response Status Code, RC/CC/DS, additional response data);
3GPP TS 31.115 §4.2 (the command packet in a short message: the Command Packet
Identifier is the UDH information element 70 with no data, ``02 70 00``, and
CPL is two octets) and §4.3 (the response packet: Response Packet
Identifier 71, ``02 71 00``); ETSI TS 102 226 §5.1.2 (the compact remote
response carried as additional response data).

These are the crypto-free layers. A *frame* is the packet as it travels:
the clear header and the *body* from CNTR onwards, which is ciphertext when
SPI asks for ciphering. A *body* is the deciphered body split into its
fields. The recipes in :mod:`.secured` put the two together with the keys.

A frame parser recognises the UDH by its three octets: without one, those
octets would be a CPL and a CHL (or RHL) of zero, which no packet can have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.secured_fields import (
    COUNTER_LENGTH,
    SPI_LENGTH,
    TAR_LENGTH,
    Kic,
    Kid,
    ResponseStatus,
    Spi,
    Tar,
    check_counter_value,
    decode_counter,
    encode_counter,
    kid_from_bytes,
    kid_type,
    response_status,
)

# TS 31.115 §4.2: UDHL 02, IEI 70 (Command Packet Identifier), IEIDL 00.
COMMAND_UDH: Final = b"\x02\x70\x00"
# TS 31.115 §4.3: UDHL 02, IEI 71 (Response Packet Identifier), IEIDL 00.
RESPONSE_UDH: Final = b"\x02\x71\x00"
# 3GPP TS 23.040 §9.2.3.24: one short message carries at most 140 octets of
# 8-bit user data, UDH included. A frame sent with its UDH is one SMS; longer
# packets travel concatenated, framed by the SMS layer, without this UDH.
SMS_USER_DATA_MAX_OCTETS: Final = 140
# TS 31.115 §4.2 and §4.3: CPL and RPL are two octets.
PACKET_LENGTH_MAX: Final = 0xFFFF
# TS 102 225 §5.1.1: CHL counts SPI(2) KIc(1) KID(1) TAR(3) CNTR(5) PCNTR(1) and RC/CC/DS.
COMMAND_HEADER_FIXED: Final = SPI_LENGTH + 1 + 1 + TAR_LENGTH + COUNTER_LENGTH + 1
# TS 102 225 §5.2: RHL counts TAR(3) CNTR(5) PCNTR(1) status(1) and RC/CC/DS.
RESPONSE_HEADER_FIXED: Final = TAR_LENGTH + COUNTER_LENGTH + 1 + 1
# CHL and RHL are one octet each, which bounds the RC/CC/DS.
COMMAND_CHECKSUM_MAX: Final = 0xFF - COMMAND_HEADER_FIXED
RESPONSE_CHECKSUM_MAX: Final = 0xFF - RESPONSE_HEADER_FIXED
# Octets of a command frame before its body: CHL SPI KIc KID TAR (after CPL).
_COMMAND_CLEAR: Final = 1 + SPI_LENGTH + 1 + 1 + TAR_LENGTH
# Octets of a response frame before its body: RHL TAR (after RPL).
_RESPONSE_CLEAR: Final = 1 + TAR_LENGTH
# The body opens with CNTR and PCNTR (command) or CNTR, PCNTR and the status (response).
_COMMAND_BODY_FIXED: Final = COUNTER_LENGTH + 1
_RESPONSE_BODY_FIXED: Final = COUNTER_LENGTH + 1 + 1
# ISO/IEC 7816-4 §5.1: a short response carries at most 256 data bytes.
LAST_RESPONSE_DATA_MAX: Final = 256


def _check_bytes(value: object, what: str) -> None:
    if not isinstance(value, bytes):
        raise CodecError(f"{what} must be bytes, not {type(value).__name__}")


def _split_udh(data: bytes, udh: bytes) -> int:
    """Return where the packet starts: 3 after a matching UDH, else 0; refuse an SMS that is too long."""
    if data[: len(udh)] != udh:
        return 0
    if len(data) > SMS_USER_DATA_MAX_OCTETS:
        raise CodecError(f"{len(data)} octets of user data exceed one short message", offset=SMS_USER_DATA_MAX_OCTETS)
    return len(udh)


def _length_prefixed(data: bytes, start: int, what: str) -> int:
    """Read the two-octet CPL/RPL at ``start`` and check it against the buffer; return it."""
    if len(data) < start + 2:
        raise TruncatedError(f"{what} needs 2 octets", offset=len(data))
    length = int.from_bytes(data[start : start + 2], "big")
    end = start + 2 + length
    if len(data) < end:
        raise TruncatedError(f"{what} {length} runs past the {len(data) - start - 2} octets that follow", offset=len(data))
    if len(data) > end:
        raise CodecError(f"{len(data) - end} octets follow the packet that {what} delimits", offset=end)
    return length


@dataclass(frozen=True)
class CommandFrame:
    """A command packet as sent: clear header and body (CNTR onwards, ciphertext if SPI ciphers)."""

    spi: Spi
    kic: Kic
    kid: Kid
    tar: Tar
    # TS 102 225 §5.1.1: the length of RC/CC/DS, CHL minus the fixed 13.
    checksum_length: int
    # CNTR ‖ PCNTR ‖ RC/CC/DS ‖ secured data ‖ padding, ciphered or not.
    body: bytes
    # TS 31.115 §4.2: the UDH 02 70 00 in front (one SMS), or none.
    with_udh: bool = True

    def __post_init__(self) -> None:
        _check_bytes(self.body, "command body")
        if not isinstance(self.kid, kid_type(self.spi.checksum)):
            raise CodecError(f"KID of type {type(self.kid).__name__} does not fit RC/CC/DS {self.spi.checksum.name}")
        if not 0 <= self.checksum_length <= COMMAND_CHECKSUM_MAX:
            raise CodecError(f"RC/CC/DS length {self.checksum_length} outside 0..{COMMAND_CHECKSUM_MAX}")
        if len(self.body) < _COMMAND_BODY_FIXED + self.checksum_length:
            raise CodecError(f"command body of {len(self.body)} octets cannot hold CNTR, PCNTR and RC/CC/DS")
        if self.cpl > PACKET_LENGTH_MAX:
            raise CodecError(f"command packet of {self.cpl} octets exceeds CPL {PACKET_LENGTH_MAX}")
        if self.with_udh and len(COMMAND_UDH) + 2 + self.cpl > SMS_USER_DATA_MAX_OCTETS:
            raise CodecError(f"command packet of {self.cpl} octets does not fit one short message with its UDH")

    @property
    def cpl(self) -> int:
        """TS 102 225 §5.1.1 Command Packet Length: octets from CHL to the end of the packet."""
        return _COMMAND_CLEAR + len(self.body)

    @property
    def chl(self) -> int:
        """TS 102 225 §5.1.1 Command Header Length: octets from SPI to the end of RC/CC/DS."""
        return COMMAND_HEADER_FIXED + self.checksum_length

    def clear_header(self) -> bytes:
        """CPL ‖ CHL ‖ SPI ‖ KIc ‖ KID ‖ TAR: the clear octets the checksum covers (never the UDH)."""
        return (
            self.cpl.to_bytes(2, "big")
            + bytes((self.chl,))
            + self.spi.to_bytes()
            + self.kic.to_bytes()
            + self.kid.to_bytes()
            + self.tar.to_bytes()
        )

    def to_bytes(self) -> bytes:
        return (COMMAND_UDH if self.with_udh else b"") + self.clear_header() + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> CommandFrame:
        start = _split_udh(data, COMMAND_UDH)
        cpl = _length_prefixed(data, start, "CPL")
        header = start + 2
        if cpl < _COMMAND_CLEAR + _COMMAND_BODY_FIXED:
            raise CodecError(f"CPL {cpl} is shorter than a command header", offset=start)
        chl = data[header]
        if chl < COMMAND_HEADER_FIXED:
            raise CodecError(f"CHL {chl} is shorter than the fixed {COMMAND_HEADER_FIXED}", offset=header)
        if 1 + chl > cpl:
            raise CodecError(f"CHL {chl} runs past CPL {cpl}", offset=header)
        spi = Spi.from_bytes(data[header + 1 : header + 3])
        kic = Kic.from_bytes(data[header + 3 : header + 4])
        kid = kid_from_bytes(data[header + 4 : header + 5], spi.checksum)
        tar = Tar.from_bytes(data[header + 5 : header + 8])
        body = bytes(data[header + _COMMAND_CLEAR :])
        return cls(spi, kic, kid, tar, chl - COMMAND_HEADER_FIXED, body, with_udh=start > 0)


@dataclass(frozen=True)
class CommandBody:
    """The deciphered body of a command packet: CNTR, PCNTR, RC/CC/DS, secured data with its padding."""

    counter: int
    padding_count: int
    checksum: bytes
    # The secured data followed by the PCNTR padding octets.
    secured_data: bytes

    def __post_init__(self) -> None:
        check_counter_value(self.counter)
        _check_bytes(self.checksum, "RC/CC/DS")
        _check_bytes(self.secured_data, "secured data")
        if not 0 <= self.padding_count <= 0xFF:
            raise CodecError(f"PCNTR {self.padding_count} outside 00..FF")
        if len(self.checksum) > COMMAND_CHECKSUM_MAX:
            raise CodecError(f"RC/CC/DS of {len(self.checksum)} octets exceeds {COMMAND_CHECKSUM_MAX}")

    def to_bytes(self) -> bytes:
        return encode_counter(self.counter) + bytes((self.padding_count,)) + self.checksum + self.secured_data

    @classmethod
    def from_bytes(cls, data: bytes, checksum_length: int) -> CommandBody:
        fixed = _COMMAND_BODY_FIXED + checksum_length
        if len(data) < fixed:
            raise TruncatedError(f"command body needs {fixed} octets, got {len(data)}", offset=len(data))
        return cls(
            counter=decode_counter(data[:COUNTER_LENGTH]),
            padding_count=data[COUNTER_LENGTH],
            checksum=bytes(data[_COMMAND_BODY_FIXED:fixed]),
            secured_data=bytes(data[fixed:]),
        )


@dataclass(frozen=True)
class ResponseFrame:
    """A response packet (PoR) as sent: clear header and body (CNTR onwards, ciphertext if the PoR is ciphered)."""

    tar: Tar
    # TS 102 225 §5.2: the length of RC/CC/DS, RHL minus the fixed 10.
    checksum_length: int
    # CNTR ‖ PCNTR ‖ status ‖ RC/CC/DS ‖ additional response data ‖ padding.
    body: bytes
    # TS 31.115 §4.3: the UDH 02 71 00 in front, or none.
    with_udh: bool = True

    def __post_init__(self) -> None:
        _check_bytes(self.body, "response body")
        if not 0 <= self.checksum_length <= RESPONSE_CHECKSUM_MAX:
            raise CodecError(f"RC/CC/DS length {self.checksum_length} outside 0..{RESPONSE_CHECKSUM_MAX}")
        if len(self.body) < _RESPONSE_BODY_FIXED + self.checksum_length:
            raise CodecError(f"response body of {len(self.body)} octets cannot hold CNTR, PCNTR, status and RC/CC/DS")
        if self.rpl > PACKET_LENGTH_MAX:
            raise CodecError(f"response packet of {self.rpl} octets exceeds RPL {PACKET_LENGTH_MAX}")
        if self.with_udh and len(RESPONSE_UDH) + 2 + self.rpl > SMS_USER_DATA_MAX_OCTETS:
            raise CodecError(f"response packet of {self.rpl} octets does not fit one short message with its UDH")

    @property
    def rpl(self) -> int:
        """TS 102 225 §5.2 Response Packet Length: octets from RHL to the end of the packet."""
        return _RESPONSE_CLEAR + len(self.body)

    @property
    def rhl(self) -> int:
        """TS 102 225 §5.2 Response Header Length: octets from TAR to the end of RC/CC/DS."""
        return RESPONSE_HEADER_FIXED + self.checksum_length

    def clear_header(self) -> bytes:
        """UDH ‖ RPL ‖ RHL ‖ TAR: the clear octets the checksum covers (the UDH always, TS 31.115 §4.3)."""
        return RESPONSE_UDH + self.rpl.to_bytes(2, "big") + bytes((self.rhl,)) + self.tar.to_bytes()

    def to_bytes(self) -> bytes:
        return (RESPONSE_UDH if self.with_udh else b"") + self.clear_header()[len(RESPONSE_UDH) :] + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> ResponseFrame:
        start = _split_udh(data, RESPONSE_UDH)
        rpl = _length_prefixed(data, start, "RPL")
        header = start + 2
        if rpl < _RESPONSE_CLEAR + _RESPONSE_BODY_FIXED:
            raise CodecError(f"RPL {rpl} is shorter than a response header", offset=start)
        rhl = data[header]
        if rhl < RESPONSE_HEADER_FIXED:
            raise CodecError(f"RHL {rhl} is shorter than the fixed {RESPONSE_HEADER_FIXED}", offset=header)
        if 1 + rhl > rpl:
            raise CodecError(f"RHL {rhl} runs past RPL {rpl}", offset=header)
        tar = Tar.from_bytes(data[header + 1 : header + 4])
        body = bytes(data[header + _RESPONSE_CLEAR :])
        return cls(tar, rhl - RESPONSE_HEADER_FIXED, body, with_udh=start > 0)


@dataclass(frozen=True)
class ResponseBody:
    """The deciphered body of a PoR: CNTR, PCNTR, status, RC/CC/DS, additional data with its padding."""

    counter: int
    padding_count: int
    status: ResponseStatus
    checksum: bytes
    # The additional response data followed by the PCNTR padding octets.
    secured_data: bytes

    def __post_init__(self) -> None:
        check_counter_value(self.counter)
        _check_bytes(self.checksum, "RC/CC/DS")
        _check_bytes(self.secured_data, "additional response data")
        if not isinstance(self.status, ResponseStatus):
            raise CodecError("response status must be a ResponseStatus")
        if not 0 <= self.padding_count <= 0xFF:
            raise CodecError(f"PCNTR {self.padding_count} outside 00..FF")
        if len(self.checksum) > RESPONSE_CHECKSUM_MAX:
            raise CodecError(f"RC/CC/DS of {len(self.checksum)} octets exceeds {RESPONSE_CHECKSUM_MAX}")

    def to_bytes(self) -> bytes:
        fixed = encode_counter(self.counter) + bytes((self.padding_count, self.status))
        return fixed + self.checksum + self.secured_data

    @classmethod
    def from_bytes(cls, data: bytes, checksum_length: int) -> ResponseBody:
        fixed = _RESPONSE_BODY_FIXED + checksum_length
        if len(data) < fixed:
            raise TruncatedError(f"response body needs {fixed} octets, got {len(data)}", offset=len(data))
        return cls(
            counter=decode_counter(data[:COUNTER_LENGTH]),
            padding_count=data[COUNTER_LENGTH],
            status=response_status(data[COUNTER_LENGTH + 1], offset=COUNTER_LENGTH + 1),
            checksum=bytes(data[_RESPONSE_BODY_FIXED:fixed]),
            secured_data=bytes(data[fixed:]),
        )


@dataclass(frozen=True)
class CompactRemoteResponse:
    """TS 102 226 §5.1.2 compact remote response: commands executed, last status word, last response data."""

    commands_executed: int
    last_sw: int
    last_data: bytes = b""

    def __post_init__(self) -> None:
        _check_bytes(self.last_data, "last response data")
        if not 0 <= self.commands_executed <= 0xFF:
            raise CodecError(f"number of commands {self.commands_executed} outside 0..255")
        if not 0 <= self.last_sw <= 0xFFFF:
            raise CodecError(f"status word {self.last_sw} outside 0000..FFFF")
        if len(self.last_data) > LAST_RESPONSE_DATA_MAX:
            raise CodecError(f"last response data of {len(self.last_data)} bytes exceeds {LAST_RESPONSE_DATA_MAX}")

    def to_bytes(self) -> bytes:
        return bytes((self.commands_executed,)) + self.last_sw.to_bytes(2, "big") + self.last_data

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRemoteResponse:
        if len(data) < 3:
            raise TruncatedError(f"compact remote response needs 3 octets, got {len(data)}", offset=len(data))
        if len(data) > 3 + LAST_RESPONSE_DATA_MAX:
            raise CodecError(f"compact remote response of {len(data)} octets is too long", offset=3 + LAST_RESPONSE_DATA_MAX)
        return cls(data[0], int.from_bytes(data[1:3], "big"), bytes(data[3:]))
