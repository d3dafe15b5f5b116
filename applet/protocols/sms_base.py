"""Fields and helpers shared by the SMS TPDU codecs (3GPP TS 23.040 §9.2.2, §9.2.3).

The first-octet bits (§9.2.3.1 TP-MTI, .2 TP-MMS, .3 TP-VPF, .4 TP-SRI,
.5 TP-SRR, .17 TP-RP, .23 TP-UDHI, .25 TP-RD, .26 TP-SRQ, .28 TP-LP), the TP-PI
bits (§9.2.3.27), the TP-FCS values (§9.2.3.22) and the TPDU size limit.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from simwallet.applet.errors import CodecError, TruncatedError
from simwallet.applet.protocols.sms_dcs import DCS_GSM7, DataCoding
from simwallet.applet.protocols.sms_text import decode_text
from simwallet.applet.protocols.sms_udh import UserData

# The largest TPDU any §9.2.2 layout allows (an SMS-SUBMIT with a 12-octet
# TP-DA, 7-octet TP-VP and 140 octets of TP-UD; every report's TP-UD maximum is
# this less its other fields).
TPDU_OCTETS_MAX = 164
# §9.2.3.9 TP-PID values this project uses.
PID_DEFAULT = 0x00
PID_TYPE_0 = 0x40
PID_RETURN_CALL = 0x5F
PID_ME_DATA_DOWNLOAD = 0x7D
PID_SIM_DATA_DOWNLOAD = 0x7F
# §9.2.3.15 TP-ST: 00..1F completed, 20..3F temporary error (SC still trying),
# 40..5F permanent error, 60..7F temporary error (SC stopped trying).
ST_RECEIVED = 0x00
OCTET_MAX = 0xFF

# §9.2.3.1..§9.2.3.26: first-octet bits.
MTI_MASK = 0x03
BIT_MMS = 0x04  # TP-MMS (SC→MS); TP-RD in SMS-SUBMIT
BIT_RD = 0x04
BIT_LP = 0x08  # TP-LP (§9.2.3.28)
VPF_SHIFT = 3  # TP-VPF, bits 5..4 of SMS-SUBMIT
VPF_MASK = 0x03
BIT_SR = 0x20  # TP-SRI (DELIVER), TP-SRR (SUBMIT, COMMAND), TP-SRQ (STATUS-REPORT)
BIT_UDHI = 0x40
BIT_RP = 0x80
# §9.2.3.3 TP-VPF values.
VPF_NONE, VPF_ENHANCED, VPF_RELATIVE, VPF_ABSOLUTE = 0, 1, 2, 3
# §9.2.3.27 TP-PI bits.
PI_PID, PI_DCS, PI_UDL, PI_EXTENSION = 0x01, 0x02, 0x04, 0x80


class Direction(Enum):
    """Which way a TPDU travels; TP-MTI means different types in each."""

    SC_TO_MS = "SC→MS"
    MS_TO_SC = "MS→SC"


class FailureCause(IntEnum):
    """§9.2.3.22 TP-FCS values (all defined values are 80..FF)."""

    TELEMATIC_INTERWORKING_NOT_SUPPORTED = 0x80
    SHORT_MESSAGE_TYPE_0_NOT_SUPPORTED = 0x81
    CANNOT_REPLACE_SHORT_MESSAGE = 0x82
    UNSPECIFIED_PID_ERROR = 0x8F
    DCS_NOT_SUPPORTED = 0x90
    MESSAGE_CLASS_NOT_SUPPORTED = 0x91
    UNSPECIFIED_DCS_ERROR = 0x9F
    COMMAND_CANNOT_BE_ACTIONED = 0xA0
    COMMAND_UNSUPPORTED = 0xA1
    UNSPECIFIED_COMMAND_ERROR = 0xAF
    TPDU_NOT_SUPPORTED = 0xB0
    SC_BUSY = 0xC0
    NO_SC_SUBSCRIPTION = 0xC1
    SC_SYSTEM_FAILURE = 0xC2
    INVALID_SME_ADDRESS = 0xC3
    DESTINATION_SME_BARRED = 0xC4
    SM_REJECTED_DUPLICATE = 0xC5
    VPF_NOT_SUPPORTED = 0xC6
    VP_NOT_SUPPORTED = 0xC7
    SIM_SMS_STORAGE_FULL = 0xD0
    NO_SMS_STORAGE_IN_SIM = 0xD1
    ERROR_IN_MS = 0xD2
    MEMORY_CAPACITY_EXCEEDED = 0xD3
    SIM_APPLICATION_TOOLKIT_BUSY = 0xD4
    SIM_DATA_DOWNLOAD_ERROR = 0xD5
    UNSPECIFIED_ERROR = 0xFF


def check_octet(value: int, name: str) -> None:
    if not 0 <= value <= OCTET_MAX:
        raise CodecError(f"{name} {value} outside 0..255")


def need(data: bytes, offset: int, count: int, what: str) -> None:
    if len(data) < offset + count:
        raise TruncatedError(f"{what} needs {count} octet(s) at offset {offset}", len(data))


def check_tpdu_size(data: bytes) -> None:
    if len(data) > TPDU_OCTETS_MAX:
        raise CodecError(f"TPDU of {len(data)} octets exceeds {TPDU_OCTETS_MAX}", TPDU_OCTETS_MAX)


def udhi_bit(ud: UserData | None) -> int:
    return BIT_UDHI if ud is not None and ud.header is not None else 0


def ud_text(dcs: DataCoding | None, ud: UserData | None) -> str:
    return decode_text(dcs or DCS_GSM7, ud.body) if ud is not None else ""


def first_octet(data: bytes, mti: int) -> int:
    need(data, 0, 1, "TPDU")
    check_tpdu_size(data)
    if data[0] & MTI_MASK != mti:
        raise CodecError(f"TP-MTI {data[0] & MTI_MASK} where {mti} was expected", 0)
    return data[0]
