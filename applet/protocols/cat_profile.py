"""TERMINAL PROFILE: ETSI TS 102 223 §5.2 (the bit table), TS 31.111 §5.2 (the 3GPP bits), TS 102 221 §11.2.1 (the APDU).

Theory of operation. The profile is a string of bytes in which each bit says
whether the handset supports one facility; byte 1 bit 1 is "profile download".
:class:`TerminalProfile` keeps the bytes exactly as received (unknown and RFU
bits survive) and reads and sets facilities named by :class:`Facility`, whose
value is ``(byte, bit)`` counted from 1 as in the spec's table. A few bytes
hold numbers instead of bits (soft keys, channels, screen size); they have
properties of their own. A profile built from a set of facilities is as long
as its highest facility needs; a handset that sends a shorter profile than
the card expects simply lacks the facilities of the missing bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from simwallet.applet.errors import CodecError

# TS 102 221 §11.2.1: the profile is one short APDU's data (Lc 1..255).
TERMINAL_PROFILE_BYTES_MAX = 255
_BITS = 8


# TS 102 223 §5.2 and TS 31.111 §5.2: (byte, bit) of each facility, both counted from 1.
class Facility(Enum):
    # Byte 1: download.
    PROFILE_DOWNLOAD = (1, 1)
    SMS_PP_DATA_DOWNLOAD = (1, 2)
    CELL_BROADCAST_DATA_DOWNLOAD = (1, 3)
    MENU_SELECTION = (1, 4)
    SMS_PP_DATA_DOWNLOAD_ERROR_9EXX = (1, 5)
    TIMER_EXPIRATION = (1, 6)
    USSD_STRING_IN_CALL_CONTROL = (1, 7)
    CALL_CONTROL_AUTOMATIC_REDIAL = (1, 8)
    # Byte 2: other.
    COMMAND_RESULT = (2, 1)
    CALL_CONTROL_BY_NAA = (2, 2)
    CELL_IDENTITY_IN_CALL_CONTROL = (2, 3)
    MO_SHORT_MESSAGE_CONTROL = (2, 4)
    ALPHA_IDENTIFIER_HANDLING = (2, 5)
    UCS2_ENTRY = (2, 6)
    UCS2_DISPLAY = (2, 7)
    DISPLAY_TEXT_EXTENSION_TEXT = (2, 8)
    # Byte 3: proactive UICC.
    DISPLAY_TEXT = (3, 1)
    GET_INKEY = (3, 2)
    GET_INPUT = (3, 3)
    MORE_TIME = (3, 4)
    PLAY_TONE = (3, 5)
    POLL_INTERVAL = (3, 6)
    POLLING_OFF = (3, 7)
    REFRESH = (3, 8)
    # Byte 4: proactive UICC.
    SELECT_ITEM = (4, 1)
    SEND_SHORT_MESSAGE = (4, 2)
    SEND_SS = (4, 3)
    SEND_USSD = (4, 4)
    SET_UP_CALL = (4, 5)
    SET_UP_MENU = (4, 6)
    PROVIDE_LOCAL_INFORMATION_LOCATION_IMEI = (4, 7)
    PROVIDE_LOCAL_INFORMATION_NMR = (4, 8)
    # Byte 5: event driven information.
    SET_UP_EVENT_LIST = (5, 1)
    EVENT_MT_CALL = (5, 2)
    EVENT_CALL_CONNECTED = (5, 3)
    EVENT_CALL_DISCONNECTED = (5, 4)
    EVENT_LOCATION_STATUS = (5, 5)
    EVENT_USER_ACTIVITY = (5, 6)
    EVENT_IDLE_SCREEN_AVAILABLE = (5, 7)
    EVENT_CARD_READER_STATUS = (5, 8)
    # Byte 6: event driven information extensions.
    EVENT_LANGUAGE_SELECTION = (6, 1)
    EVENT_BROWSER_TERMINATION = (6, 2)
    EVENT_DATA_AVAILABLE = (6, 3)
    EVENT_CHANNEL_STATUS = (6, 4)
    # Byte 8: proactive UICC.
    TIMER_MANAGEMENT_START_STOP = (8, 1)
    TIMER_MANAGEMENT_GET_VALUE = (8, 2)
    PROVIDE_LOCAL_INFORMATION_DATE_TIME = (8, 3)
    GET_INKEY_BINARY_CHOICE = (8, 4)
    SET_UP_IDLE_MODE_TEXT = (8, 5)
    RUN_AT_COMMAND = (8, 6)
    SET_UP_CALL_SECOND_ALPHA = (8, 7)
    # Byte 9: proactive UICC.
    SUSTAINED_DISPLAY_TEXT = (9, 1)
    SEND_DTMF = (9, 2)
    PROVIDE_LOCAL_INFORMATION_BCCH = (9, 3)
    PROVIDE_LOCAL_INFORMATION_LANGUAGE = (9, 4)
    PROVIDE_LOCAL_INFORMATION_TIMING_ADVANCE = (9, 5)
    LANGUAGE_NOTIFICATION = (9, 6)
    LAUNCH_BROWSER = (9, 7)
    PROVIDE_LOCAL_INFORMATION_ACCESS_TECHNOLOGY = (9, 8)
    # Byte 10: soft keys.
    SOFT_KEYS_SELECT_ITEM = (10, 1)
    SOFT_KEYS_SET_UP_MENU = (10, 2)
    # Byte 12: bearer independent protocol.
    OPEN_CHANNEL = (12, 1)
    CLOSE_CHANNEL = (12, 2)
    RECEIVE_DATA = (12, 3)
    SEND_DATA = (12, 4)
    GET_CHANNEL_STATUS = (12, 5)
    # Byte 16: screen effects.
    TEXT_WRAPPING = (16, 2)
    TEXT_SCROLLING = (16, 3)
    TEXT_ATTRIBUTES = (16, 4)
    # Byte 18: proactive UICC.
    DISPLAY_TEXT_VARIABLE_TIMEOUT = (18, 1)
    GET_INKEY_HELP_WITH_TIMEOUT = (18, 2)
    GET_INKEY_VARIABLE_TIMEOUT = (18, 4)

    @property
    def byte(self) -> int:
        return self.value[0]

    @property
    def mask(self) -> int:
        return 1 << (self.value[1] - 1)


# TS 102 223 §5.2: bytes that hold numbers — byte 11 soft keys; byte 13 b6..b8 channels; 14 b1..b5 height; 15 b1..b7 width.
_SOFT_KEYS_BYTE = 11
_CHANNELS = (13, 5, 0x07)
_SCREEN_HEIGHT = (14, 0, 0x1F)
_SCREEN_WIDTH = (15, 0, 0x7F)


@dataclass(frozen=True)
class TerminalProfile:
    """The profile bytes as the handset sent them, read through :class:`Facility`."""

    data: bytes

    def __post_init__(self) -> None:
        if not 1 <= len(self.data) <= TERMINAL_PROFILE_BYTES_MAX:
            raise CodecError(f"terminal profile of {len(self.data)} bytes is outside 1..{TERMINAL_PROFILE_BYTES_MAX}")

    @classmethod
    def from_bytes(cls, data: bytes) -> TerminalProfile:
        return cls(bytes(data))

    def to_bytes(self) -> bytes:
        return self.data

    @classmethod
    def from_facilities(cls, facilities: Iterable[Facility], length: int | None = None) -> TerminalProfile:
        """A profile with exactly ``facilities`` set, ``length`` bytes long (default: as short as they allow)."""
        wanted = frozenset(facilities)
        needed = max((f.byte for f in wanted), default=1)
        size = needed if length is None else length
        if size < needed:
            raise CodecError(f"facility in byte {needed} does not fit a profile of {size} bytes")
        return cls(bytes(size)).with_facilities(*wanted)

    def supports(self, facility: Facility) -> bool:
        index = facility.byte - 1
        return index < len(self.data) and bool(self.data[index] & facility.mask)

    @property
    def facilities(self) -> frozenset[Facility]:
        return frozenset(f for f in Facility if self.supports(f))

    def with_facilities(self, *facilities: Facility) -> TerminalProfile:
        """This profile with ``facilities`` set as well (grown with zero bytes when needed)."""
        data = bytearray(self.data)
        for f in facilities:
            if f.byte > len(data):
                data.extend(bytes(f.byte - len(data)))
            data[f.byte - 1] |= f.mask
        return TerminalProfile(bytes(data))

    def _number(self, byte: int, shift: int, mask: int) -> int:
        return (self.data[byte - 1] >> shift) & mask if byte <= len(self.data) else 0

    def _with_number(self, field: tuple[int, int, int], value: int) -> TerminalProfile:
        byte, shift, mask = field
        if not 0 <= value <= mask:
            raise CodecError(f"value {value} does not fit byte {byte} of the terminal profile (0..{mask})")
        data = bytearray(self.data) + bytes(max(0, byte - len(self.data)))
        data[byte - 1] = (data[byte - 1] & ~(mask << shift) & 0xFF) | value << shift
        return TerminalProfile(bytes(data))

    @property
    def soft_keys(self) -> int:
        """Byte 11: maximum number of soft keys available."""
        return self._number(_SOFT_KEYS_BYTE, 0, 0xFF)

    def with_soft_keys(self, count: int) -> TerminalProfile:
        return self._with_number((_SOFT_KEYS_BYTE, 0, 0xFF), count)

    @property
    def channels(self) -> int:
        """Byte 13, bits 6..8: number of channels supported (bearer independent protocol)."""
        return self._number(*_CHANNELS)

    def with_channels(self, count: int) -> TerminalProfile:
        return self._with_number(_CHANNELS, count)

    @property
    def screen_height(self) -> int:
        """Byte 14, bits 1..5: characters down the display."""
        return self._number(*_SCREEN_HEIGHT)

    def with_screen_height(self, chars: int) -> TerminalProfile:
        return self._with_number(_SCREEN_HEIGHT, chars)

    @property
    def screen_width(self) -> int:
        """Byte 15, bits 1..7: characters across the display."""
        return self._number(*_SCREEN_WIDTH)

    def with_screen_width(self, chars: int) -> TerminalProfile:
        return self._with_number(_SCREEN_WIDTH, chars)


def parse_terminal_profile(data: bytes) -> TerminalProfile:
    """The TERMINAL PROFILE in ``data`` (the APDU's data field); CodecError if empty or too long."""
    return TerminalProfile.from_bytes(data)
