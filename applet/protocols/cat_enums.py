"""Enumerations and constants of the Card Application Toolkit: ETSI TS 102 223 §8, §9 (TS 101 220 §7.2, TS 31.111 §8).

The values every CAT codec and its users name: tags, command types, device
identities, general results, data coding schemes, events, tones, and the bits
of each command's qualifier. Fields that carry these values are typed ``int``
so that a value an enumeration does not list survives a parse and a build;
:func:`known` turns a byte into the member when there is one.
"""

from __future__ import annotations

from enum import Enum, IntEnum, IntFlag


# TS 101 220 §7.2 Table 7.23, TS 102 223 §9.3: COMPREHENSION-TLV tag values (without the CR flag).
class Tag(IntEnum):
    COMMAND_DETAILS = 0x01
    DEVICE_IDENTITIES = 0x02
    RESULT = 0x03
    DURATION = 0x04
    ALPHA_IDENTIFIER = 0x05
    ADDRESS = 0x06
    SMS_TPDU = 0x0B
    TEXT_STRING = 0x0D
    TONE = 0x0E
    ITEM = 0x0F
    ITEM_IDENTIFIER = 0x10
    RESPONSE_LENGTH = 0x11
    FILE_LIST = 0x12
    LOCATION_INFORMATION = 0x13
    IMEI = 0x14
    HELP_REQUEST = 0x15
    DEFAULT_TEXT = 0x17
    ITEMS_NEXT_ACTION_INDICATOR = 0x18
    EVENT_LIST = 0x19
    CAUSE = 0x1A
    LOCATION_STATUS = 0x1B
    TRANSACTION_IDENTIFIER = 0x1C
    ICON_IDENTIFIER = 0x1E
    ITEM_ICON_IDENTIFIER_LIST = 0x1F
    DATE_TIME_AND_TIME_ZONE = 0x26
    IMMEDIATE_RESPONSE = 0x2B
    LANGUAGE = 0x2D
    AID = 0x2F
    BROWSER_TERMINATION_CAUSE = 0x34
    TEXT_ATTRIBUTE = 0x50
    ITEM_TEXT_ATTRIBUTE_LIST = 0x51
    FRAME_IDENTIFIER = 0x68


# TS 102 223 §9.4: type of command (byte 2 of Command details).
class CommandType(IntEnum):
    REFRESH = 0x01
    MORE_TIME = 0x02
    POLL_INTERVAL = 0x03
    POLLING_OFF = 0x04
    SET_UP_EVENT_LIST = 0x05
    SET_UP_CALL = 0x10
    SEND_SS = 0x11
    SEND_USSD = 0x12
    SEND_SHORT_MESSAGE = 0x13
    SEND_DTMF = 0x14
    LAUNCH_BROWSER = 0x15
    PLAY_TONE = 0x20
    DISPLAY_TEXT = 0x21
    GET_INKEY = 0x22
    GET_INPUT = 0x23
    SELECT_ITEM = 0x24
    SET_UP_MENU = 0x25
    PROVIDE_LOCAL_INFORMATION = 0x26
    TIMER_MANAGEMENT = 0x27
    SET_UP_IDLE_MODE_TEXT = 0x28
    LANGUAGE_NOTIFICATION = 0x35
    OPEN_CHANNEL = 0x40
    CLOSE_CHANNEL = 0x41
    RECEIVE_DATA = 0x42
    SEND_DATA = 0x43
    GET_CHANNEL_STATUS = 0x44


# TS 102 223 §8.7: device identities.
class DeviceIdentity(IntEnum):
    KEYPAD = 0x01
    DISPLAY = 0x02
    EARPIECE = 0x03
    UICC = 0x81
    TERMINAL = 0x82
    NETWORK = 0x83


# TS 102 223 §8.12 (and TS 31.111 §8.12 for 14, 34, 35, 37, 39): general result.
class GeneralResult(IntEnum):
    PERFORMED_SUCCESSFULLY = 0x00
    PERFORMED_WITH_PARTIAL_COMPREHENSION = 0x01
    PERFORMED_WITH_MISSING_INFORMATION = 0x02
    REFRESH_PERFORMED_WITH_ADDITIONAL_EFS_READ = 0x03
    PERFORMED_SUCCESSFULLY_ICON_NOT_DISPLAYED = 0x04
    PERFORMED_BUT_MODIFIED_BY_CALL_CONTROL = 0x05
    PERFORMED_SUCCESSFULLY_LIMITED_SERVICE = 0x06
    PERFORMED_WITH_MODIFICATION = 0x07
    REFRESH_PERFORMED_BUT_NAA_NOT_ACTIVE = 0x08
    PERFORMED_SUCCESSFULLY_TONE_NOT_PLAYED = 0x09
    PROACTIVE_SESSION_TERMINATED_BY_USER = 0x10
    BACKWARD_MOVE_REQUESTED_BY_USER = 0x11
    NO_RESPONSE_FROM_USER = 0x12
    HELP_INFORMATION_REQUIRED_BY_USER = 0x13
    USSD_OR_SS_TERMINATED_BY_USER = 0x14
    TERMINAL_CURRENTLY_UNABLE_TO_PROCESS = 0x20
    NETWORK_CURRENTLY_UNABLE_TO_PROCESS = 0x21
    USER_DID_NOT_ACCEPT = 0x22
    USER_CLEARED_DOWN_CALL = 0x23
    ACTION_CONTRADICTS_TIMER_STATE = 0x24
    CALL_CONTROL_TEMPORARY_PROBLEM = 0x25
    LAUNCH_BROWSER_GENERIC_ERROR = 0x26
    MMS_TEMPORARY_PROBLEM = 0x27
    BEYOND_TERMINAL_CAPABILITIES = 0x30
    COMMAND_TYPE_NOT_UNDERSTOOD = 0x31
    COMMAND_DATA_NOT_UNDERSTOOD = 0x32
    COMMAND_NUMBER_NOT_KNOWN = 0x33
    SS_RETURN_ERROR = 0x34
    SMS_RP_ERROR = 0x35
    REQUIRED_VALUES_MISSING = 0x36
    USSD_RETURN_ERROR = 0x37
    MULTIPLE_CARD_COMMANDS_ERROR = 0x38
    CALL_CONTROL_PERMANENT_PROBLEM = 0x39
    BEARER_INDEPENDENT_PROTOCOL_ERROR = 0x3A
    ACCESS_TECHNOLOGY_UNABLE = 0x3B
    FRAMES_ERROR = 0x3C
    MMS_ERROR = 0x3D


# TS 102 223 §8.12.2: additional information for general result 20 ("terminal currently unable").
class TerminalProblem(IntEnum):
    NO_SPECIFIC_CAUSE = 0x00
    SCREEN_IS_BUSY = 0x01
    BUSY_ON_CALL = 0x02
    NO_SERVICE = 0x04
    ACCESS_CONTROL_CLASS_BAR = 0x05
    RADIO_RESOURCE_NOT_GRANTED = 0x06
    NOT_IN_SPEECH_CALL = 0x07
    BUSY_ON_SEND_DTMF = 0x09


# TS 102 223 §8.8: time unit of a Duration.
class TimeUnit(IntEnum):
    MINUTES = 0x00
    SECONDS = 0x01
    TENTHS_OF_SECONDS = 0x02


# TS 102 223 §8.15 (TS 23.038 §4): the three data coding schemes a Text string normally uses.
class Dcs(IntEnum):
    GSM7_PACKED = 0x00
    GSM_8BIT = 0x04
    UCS2 = 0x08


class Alphabet(Enum):
    """What a DCS means for a Text string: packed septets, unpacked default alphabet, or UCS2."""

    GSM7_PACKED = "gsm7-packed"
    GSM_8BIT = "gsm-8bit"
    UCS2 = "ucs2"


# TS 102 223 §8.16: tones of PLAY TONE.
class Tone(IntEnum):
    DIAL = 0x01
    CALLED_SUBSCRIBER_BUSY = 0x02
    CONGESTION = 0x03
    RADIO_PATH_ACKNOWLEDGE = 0x04
    RADIO_PATH_NOT_AVAILABLE = 0x05
    ERROR_SPECIAL_INFORMATION = 0x06
    CALL_WAITING = 0x07
    RINGING = 0x08
    GENERAL_BEEP = 0x10
    POSITIVE_ACKNOWLEDGEMENT = 0x11
    NEGATIVE_ACKNOWLEDGEMENT = 0x12
    RINGING_SPEECH_CALL = 0x13
    ALERT_SMS = 0x14
    CRITICAL_ALERT = 0x15
    VIBRATE_ONLY = 0x20
    HAPPY = 0x30
    SAD = 0x31
    URGENT_ACTION = 0x32
    QUESTION = 0x33
    MESSAGE_RECEIVED = 0x34


# TS 102 223 §8.25: events of SET UP EVENT LIST and EVENT DOWNLOAD.
class EventType(IntEnum):
    MT_CALL = 0x00
    CALL_CONNECTED = 0x01
    CALL_DISCONNECTED = 0x02
    LOCATION_STATUS = 0x03
    USER_ACTIVITY = 0x04
    IDLE_SCREEN_AVAILABLE = 0x05
    CARD_READER_STATUS = 0x06
    LANGUAGE_SELECTION = 0x07
    BROWSER_TERMINATION = 0x08
    DATA_AVAILABLE = 0x09
    CHANNEL_STATUS = 0x0A
    ACCESS_TECHNOLOGY_CHANGE = 0x0B
    DISPLAY_PARAMETERS_CHANGED = 0x0C
    LOCAL_CONNECTION = 0x0D
    NETWORK_SEARCH_MODE_CHANGE = 0x0E
    BROWSING_STATUS = 0x0F


# TS 102 223 §8.1 (TS 24.008 §10.5.4.7): the usual type-of-number / numbering-plan bytes.
TON_NPI_UNKNOWN_ISDN = 0x81
TON_NPI_INTERNATIONAL_ISDN = 0x91

# TS 102 223 §8.31: icon qualifier bit 1.
ICON_SELF_EXPLANATORY = 0x00
ICON_NOT_SELF_EXPLANATORY = 0x01


# TS 102 223 §8.6: command qualifier of DISPLAY TEXT.
class DisplayTextQualifier(IntFlag):
    HIGH_PRIORITY = 0x01
    WAIT_FOR_USER_CLEAR = 0x80


# TS 102 223 §8.6: command qualifier of GET INKEY.
class GetInkeyQualifier(IntFlag):
    ALPHABET = 0x01
    UCS2 = 0x02
    YES_NO = 0x04
    IMMEDIATE_DIGIT_RESPONSE = 0x08
    HELP_AVAILABLE = 0x80


# TS 102 223 §8.6: command qualifier of GET INPUT (b3: "user input shall not be revealed").
class GetInputQualifier(IntFlag):
    ALPHABET = 0x01
    UCS2 = 0x02
    HIDDEN = 0x04
    PACKED = 0x08
    HELP_AVAILABLE = 0x80


# TS 102 223 §8.6: command qualifier of SELECT ITEM.
class SelectItemQualifier(IntFlag):
    PRESENTATION_SPECIFIED = 0x01
    NAVIGATION_OPTIONS = 0x02
    SOFT_KEY_PREFERRED = 0x04
    HELP_AVAILABLE = 0x80


# TS 102 223 §8.6: command qualifier of SET UP MENU.
class SetUpMenuQualifier(IntFlag):
    SOFT_KEY_PREFERRED = 0x01
    HELP_AVAILABLE = 0x80


# TS 31.111 §8.6: command qualifier of SEND SHORT MESSAGE.
class SendShortMessageQualifier(IntFlag):
    PACKING_REQUIRED = 0x01


# TS 102 223 §8.6: command qualifier of PLAY TONE.
class PlayToneQualifier(IntFlag):
    VIBRATE = 0x01


# TS 102 223 §8.6: command qualifier of PROVIDE LOCAL INFORMATION.
class LocalInformationType(IntEnum):
    LOCATION_INFORMATION = 0x00
    IMEI = 0x01
    NETWORK_MEASUREMENT_RESULTS = 0x02
    DATE_TIME_AND_TIME_ZONE = 0x03
    LANGUAGE_SETTING = 0x04
    TIMING_ADVANCE = 0x05
    ACCESS_TECHNOLOGY = 0x06
    ESN = 0x07
    IMEISV = 0x08
    SEARCH_MODE = 0x09
    BATTERY_STATE = 0x0A


# TS 102 223 §8.6: command qualifier of REFRESH.
class RefreshMode(IntEnum):
    NAA_INITIALIZATION_AND_FULL_FILE_CHANGE = 0x00
    FILE_CHANGE = 0x01
    NAA_INITIALIZATION_AND_FILE_CHANGE = 0x02
    NAA_INITIALIZATION = 0x03
    UICC_RESET = 0x04
    NAA_APPLICATION_RESET = 0x05
    NAA_SESSION_RESET = 0x06


def known(enum: type[IntEnum], value: int) -> int:
    """The enumeration member for ``value`` when there is one, else the plain int."""
    try:
        return enum(value)
    except ValueError:
        return value
