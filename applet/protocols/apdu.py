"""Command and response APDUs of ISO/IEC 7816-4 §5.1, with the status words of §5.1.3 and ETSI TS 102 221 §10.2.1.

Theory of operation. A command APDU is a four-byte header, an optional
command data field announced by Lc, and an optional Le (the maximum number of
response bytes expected, Ne). The presence of Lc and Le gives the four cases
of §5.1; each has a short form (one-byte Lc 01..FF, one-byte Le where 00
means 256) and an extended form (Lc as 00 + two bytes; Le as two bytes, or
00 + two bytes when there is no Lc, where 0000 means 65536). Both length
fields of one APDU use the same form.

:class:`CommandApdu` holds ``le`` as Ne (``None`` when the field is absent)
and switches to the extended form by itself when the data or Ne need it.
``extended=True`` asks for the extended form even for small values, and
parsing sets it when the bytes used that form, so every accepted APDU is
rebuilt byte for byte.

A response APDU is the response data followed by SW1 SW2. "Success" follows
the normal-processing class of TS 102 221 §10.2.1.1 and ISO/IEC 7816-4: 9000,
61XX (response bytes available), 91XX (proactive command pending), 92XX and
the GSM 11.11 9FXX. Warnings (62XX, 63XX) are not success: ``check()`` raises
:class:`~simwallet.applet.errors.CardStatusError` for them, because on a UICC
they mean "the command did not do all it was asked" (63CX after VERIFY is a
wrong PIN).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from simwallet.applet.errors import CardStatusError, CodecError, TruncatedError

HEADER_LENGTH = 4
# ISO/IEC 7816-4 §5.1: short Lc is 01..FF, extended Lc 0001..FFFF.
DATA_LENGTH_MAX_SHORT = 255
DATA_LENGTH_MAX = 65535
# ISO/IEC 7816-4 §5.1: Ne is at most 256 in short form, 65536 in extended form.
LE_MAX_SHORT = 256
LE_MAX = 65536
# A response carries at most Ne = 65536 data bytes.
RESPONSE_DATA_LENGTH_MAX = LE_MAX
SW_LENGTH = 2


class ApduCase(enum.IntEnum):
    """ISO/IEC 7816-4 §5.1: which of Lc and Le are present."""

    CASE_1 = 1  # no data, no Le
    CASE_2 = 2  # Le only
    CASE_3 = 3  # data only
    CASE_4 = 4  # data and Le


class Ins(enum.IntEnum):
    """Instruction bytes: ETSI TS 102 221 §10.1.2, TS 102 222 §6.1, GlobalPlatform 2.3 §11.1.2.

    GET STATUS (GlobalPlatform, CLA 80) shares F2 with STATUS (TS 102 221, CLA
    80), so ``Ins.GET_STATUS is Ins.STATUS``; the CLA and the selected
    application tell them apart. The same holds for DELETE and DELETE FILE (E4).
    """

    # TS 102 221 §10.1.2
    DEACTIVATE_FILE = 0x04
    TERMINAL_PROFILE = 0x10
    FETCH = 0x12
    TERMINAL_RESPONSE = 0x14
    VERIFY = 0x20
    CHANGE = 0x24
    DISABLE = 0x26
    ENABLE = 0x28
    UNBLOCK = 0x2C
    INCREASE = 0x32
    ACTIVATE_FILE = 0x44
    MANAGE_CHANNEL = 0x70
    GET_CHALLENGE = 0x84
    AUTHENTICATE = 0x88
    SEARCH_RECORD = 0xA2
    SELECT = 0xA4
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    ENVELOPE = 0xC2
    UPDATE_BINARY = 0xD6
    UPDATE_RECORD = 0xDC
    STATUS = 0xF2
    # TS 102 222 §6.1
    CREATE_FILE = 0xE0
    DELETE_FILE = 0xE4
    # GlobalPlatform Card Specification 2.3 §11 (CLA 80, or 84 with secure messaging)
    INITIALIZE_UPDATE = 0x50
    EXTERNAL_AUTHENTICATE = 0x82
    GET_DATA = 0xCA
    PUT_KEY = 0xD8
    STORE_DATA = 0xE2
    DELETE = 0xE4
    INSTALL = 0xE6
    LOAD = 0xE8
    SET_STATUS = 0xF0
    GET_STATUS = 0xF2


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise CodecError(f"{name} {value} is not a byte")


# ISO/IEC 7816-4 §5.1: CLA INS P1 P2 [Lc data] [Le].
@dataclass(frozen=True)
class CommandApdu:
    """A command APDU; ``le`` is Ne (1..65536) or None when no Le field is sent."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name, getattr(self, name))
        if not isinstance(self.data, bytes):
            raise TypeError(f"APDU data must be bytes, not {type(self.data).__name__}")
        if len(self.data) > DATA_LENGTH_MAX:
            raise CodecError(f"APDU data of {len(self.data)} bytes exceeds {DATA_LENGTH_MAX}")
        if self.le is not None and not 1 <= self.le <= LE_MAX:
            raise CodecError(f"Le (Ne) {self.le} outside 1..{LE_MAX}; use None for no Le field")
        needed = len(self.data) > DATA_LENGTH_MAX_SHORT or (self.le or 0) > LE_MAX_SHORT
        # Case 1 has no length field, so it has no extended form either.
        extended = (self.extended or needed) and self.case is not ApduCase.CASE_1
        # Normalised so that equal APDUs compare equal (dataclass docs: frozen __post_init__).
        object.__setattr__(self, "extended", extended)

    @property
    def case(self) -> ApduCase:
        if self.data:
            return ApduCase.CASE_4 if self.le is not None else ApduCase.CASE_3
        return ApduCase.CASE_2 if self.le is not None else ApduCase.CASE_1

    @property
    def header(self) -> bytes:
        return bytes([self.cla, self.ins, self.p1, self.p2])

    def to_bytes(self) -> bytes:
        out = bytearray(self.header)
        if self.extended:
            if self.data:
                out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                prefix = b"" if self.data else b"\x00"
                out += prefix + (self.le % LE_MAX).to_bytes(2, "big")
        else:
            if self.data:
                out += bytes([len(self.data)]) + self.data
            if self.le is not None:
                out.append(self.le % LE_MAX_SHORT)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> CommandApdu:
        """Parse one whole command APDU (ISO/IEC 7816-3 §12.1.3 decoding of the body)."""
        if len(data) < HEADER_LENGTH:
            raise TruncatedError(f"command APDU of {len(data)} bytes is shorter than its header", len(data))
        cla, ins, p1, p2 = data[:HEADER_LENGTH]
        payload, le, extended = _decode_body(bytes(data[HEADER_LENGTH:]))
        return cls(cla, ins, p1, p2, payload, le, extended)


def _decode_body(body: bytes) -> tuple[bytes, int | None, bool]:
    """(data, Ne, extended) from the bytes after the header."""
    if not body:
        return b"", None, False
    if len(body) == 1:
        return b"", body[0] or LE_MAX_SHORT, False
    if body[0] != 0:
        data, le = _decode_short(body)
        return data, le, False
    data, le = _decode_extended(body)
    return data, le, True


def _decode_short(body: bytes) -> tuple[bytes, int | None]:
    # Short Lc (01..FF), then the data, then optionally a short Le.
    lc = body[0]
    if len(body) == 1 + lc:
        return body[1:], None
    if len(body) == 2 + lc:
        return body[1:-1], body[-1] or LE_MAX_SHORT
    raise CodecError(f"short Lc {lc} disagrees with a body of {len(body)} bytes", HEADER_LENGTH)


def _decode_extended(body: bytes) -> tuple[bytes, int | None]:
    # 00, then either a two-byte Le alone, or a two-byte Lc (0001..FFFF), the
    # data and optionally a two-byte Le.
    if len(body) < 3:
        raise CodecError("extended length field needs three bytes", HEADER_LENGTH)
    word = int.from_bytes(body[1:3], "big")
    if len(body) == 3:
        return b"", word or LE_MAX
    if word == 0:
        raise CodecError("extended Lc 0000 is not allowed", HEADER_LENGTH)
    if len(body) == 3 + word:
        return body[3:], None
    if len(body) == 5 + word:
        return body[3:-2], int.from_bytes(body[-2:], "big") or LE_MAX
    raise CodecError(f"extended Lc {word} disagrees with a body of {len(body)} bytes", HEADER_LENGTH)


# ISO/IEC 7816-4 §5.1: [response data] SW1 SW2.
@dataclass(frozen=True)
class ResponseApdu:
    data: bytes
    sw: int

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise TypeError(f"APDU data must be bytes, not {type(self.data).__name__}")
        if len(self.data) > RESPONSE_DATA_LENGTH_MAX:
            raise CodecError(f"response data of {len(self.data)} bytes exceeds {RESPONSE_DATA_LENGTH_MAX}")
        if not 0 <= self.sw <= 0xFFFF:
            raise CodecError(f"status word {self.sw:#x} is not two bytes")

    @classmethod
    def status(cls, sw: int) -> ResponseApdu:
        """A response without data."""
        return cls(b"", sw)

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(SW_LENGTH, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> ResponseApdu:
        if len(data) < SW_LENGTH:
            raise TruncatedError(f"response APDU of {len(data)} bytes has no status word", len(data))
        return cls(bytes(data[:-SW_LENGTH]), int.from_bytes(data[-SW_LENGTH:], "big"))

    def is_success(self) -> bool:
        """Normal processing (TS 102 221 §10.2.1.1, ISO/IEC 7816-4 §5.1.3)."""
        return is_success_sw(self.sw)

    def is_warning(self) -> bool:
        """Warning processing: 62XX (memory unchanged) or 63XX (memory changed)."""
        return self.sw1 in (0x62, 0x63)

    def check(self) -> ResponseApdu:
        """Return self on success; raise CardStatusError carrying ``sw`` otherwise."""
        if not self.is_success():
            raise CardStatusError(self.sw)
        return self

    @property
    def meaning(self) -> str:
        return describe_sw(self.sw)


# SW1 of the normal-processing words that carry a length or extra information in SW2.
_SUCCESS_SW1 = frozenset({0x61, 0x91, 0x92, 0x9F})


def is_success_sw(sw: int) -> bool:
    return sw == 0x9000 or sw >> 8 in _SUCCESS_SW1


# ISO/IEC 7816-4 §5.1.3 and ETSI TS 102 221 §10.2.1: status words with a fixed meaning.
STATUS_WORDS = MappingProxyType({
    # Normal processing
    0x9000: "Normal ending of the command",
    # Postponed processing (TS 102 221 §10.2.1.2)
    0x9300: "SIM Application Toolkit is busy; command cannot be executed at present",
    # Warnings, non-volatile memory unchanged
    0x6200: "Warning: no information given, state of non-volatile memory unchanged",
    0x6281: "Warning: part of returned data may be corrupted",
    0x6282: "Warning: end of file or record reached before reading Le bytes, or unsuccessful search",
    0x6283: "Warning: selected file invalidated",
    0x6284: "Warning: FCI not formatted according to ISO/IEC 7816-4",
    0x6285: "Warning: selected file in termination state",
    0x62F1: "Warning: more data available",
    0x62F2: "Warning: more data available and proactive command pending",
    0x62F3: "Warning: response data available",
    # Warnings, non-volatile memory changed
    0x6300: "Warning: no information given, state of non-volatile memory changed",
    0x6310: "Warning: more data available (GlobalPlatform GET STATUS)",
    0x6381: "Warning: file filled up by the last write",
    0x63F1: "Warning: more data expected",
    0x63F2: "Warning: more data expected and proactive command pending",
    # Execution errors
    0x6400: "Execution error: no information given, state of non-volatile memory unchanged",
    0x6500: "Execution error: no information given, state of non-volatile memory changed",
    0x6581: "Execution error: memory problem",
    # Checking errors
    0x6700: "Wrong length",
    0x6800: "Functions in CLA not supported",
    0x6881: "Logical channel not supported",
    0x6882: "Secure messaging not supported",
    0x6900: "Command not allowed, no information given",
    0x6981: "Command incompatible with file structure",
    0x6982: "Security status not satisfied",
    0x6983: "Authentication/PIN method blocked",
    0x6984: "Referenced data invalidated",
    0x6985: "Conditions of use not satisfied",
    0x6986: "Command not allowed (no EF selected)",
    0x6987: "Expected secure messaging data objects missing",
    0x6988: "Incorrect secure messaging data objects",
    0x6989: "Command not allowed: secure channel security not satisfied",
    0x6A80: "Incorrect parameters in the data field",
    0x6A81: "Function not supported",
    0x6A82: "File or application not found",
    0x6A83: "Record not found",
    0x6A84: "Not enough memory space in the file",
    0x6A85: "Lc inconsistent with TLV structure",
    0x6A86: "Incorrect parameters P1-P2",
    0x6A87: "Lc inconsistent with P1-P2",
    0x6A88: "Referenced data not found",
    0x6A89: "File already exists",
    0x6A8A: "DF name already exists",
    0x6B00: "Wrong parameters P1-P2",
    0x6D00: "Instruction code not supported or invalid",
    0x6E00: "Class not supported",
    0x6F00: "Technical problem, no precise diagnosis",
    # Application errors (TS 102 221 §10.2.1.6)
    0x9850: "INCREASE cannot be performed, maximum value reached",
    0x9862: "Authentication error, application specific",
    0x9863: "Security session or association expired",
    0x9864: "Minimum UICC suspension time is too long",
    # GlobalPlatform Card Specification 2.3 §11
    0x9484: "Algorithm not supported",
    0x9485: "Invalid key check value",
})

# Families whose SW2 is a count or a detail: {n} is SW2 as a number.
SW1_FAMILIES = MappingProxyType({
    0x61: "{n} response bytes still available (GET RESPONSE)",
    0x6C: "Wrong Le field; exact length is {n}",
    0x91: "Normal ending; proactive command of {n} bytes pending (FETCH)",
    0x92: "Normal ending, with extra information concerning an ongoing data transfer session",
    0x9F: "Normal ending; {n} response bytes available (GSM 11.11)",
    0x62: "Warning: state of non-volatile memory unchanged",
    0x63: "Warning: state of non-volatile memory changed",
    0x64: "Execution error: state of non-volatile memory unchanged",
    0x65: "Execution error: state of non-volatile memory changed",
    0x66: "Security-related issue",
    0x67: "Wrong length",
    0x68: "Functions in CLA not supported",
    0x69: "Command not allowed",
    0x6A: "Wrong parameters",
    0x6F: "Technical problem, no precise diagnosis",
    0x98: "Application error",
})
# SW1 values whose SW2 = 00 stands for 256 (a one-byte Ne).
_SW2_ZERO_IS_256 = frozenset({0x61, 0x6C})
_VERIFY_FAILED_MASK = 0xFFF0
_VERIFY_FAILED = 0x63C0


def describe_sw(sw: int) -> str:
    """The meaning of a status word, resolving the XX and X families."""
    if not 0 <= sw <= 0xFFFF:
        raise CodecError(f"status word {sw:#x} is not two bytes")
    exact = STATUS_WORDS.get(sw)
    if exact is not None:
        return exact
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw & _VERIFY_FAILED_MASK == _VERIFY_FAILED:
        # TS 102 221 §10.2.1.3: after VERIFY and friends, X tries remain;
        # after an update command, it succeeded after X internal retries.
        return f"Verification failed, {sw2 & 0x0F} retries left"
    family = SW1_FAMILIES.get(sw1)
    if family is not None:
        n = (sw2 or 256) if sw1 in _SW2_ZERO_IS_256 else sw2
        detail = family.format(n=n)
        return detail if "{n}" in family else f"{detail} (SW2 = {sw2:02X})"
    return "Unknown status word"
