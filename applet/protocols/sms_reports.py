"""SMS report and command TPDUs (3GPP TS 23.040 §9.2.2.1a SMS-DELIVER-REPORT, §9.2.2.2a SMS-SUBMIT-REPORT,
§9.2.2.3 SMS-STATUS-REPORT, §9.2.2.4 SMS-COMMAND); see :mod:`.sms` for the conventions.

The three reports end in TP-PI (§9.2.3.27) and the optional TP-PID, TP-DCS
and TP-UDL/TP-UD it announces; a field is present when it is not None. TP-PI
is mandatory in SMS-DELIVER-REPORT and SMS-SUBMIT-REPORT and sent there even
when it is 0; in SMS-STATUS-REPORT it is sent only when a field follows. When
TP-DCS is absent the user data is read with DCS 00 (GSM 7-bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.sms_address import Address, parse_address
from simwallet.applet.protocols.sms_base import (
    BIT_LP,
    BIT_MMS,
    BIT_SR,
    BIT_UDHI,
    PI_DCS,
    PI_EXTENSION,
    PI_PID,
    PI_UDL,
    PID_DEFAULT,
    ST_RECEIVED,
    TPDU_OCTETS_MAX,
    FailureCause,
    check_octet,
    check_tpdu_size,
    first_octet,
    need,
    ud_text,
    udhi_bit,
)
from simwallet.applet.protocols.sms_dcs import DCS_GSM7, DataCoding
from simwallet.applet.protocols.sms_time import TIMESTAMP_OCTETS, encode_timestamp, parse_timestamp
from simwallet.applet.protocols.sms_udh import UserData, encode_user_data, parse_user_data


def _optional_bytes(
    prefix: bytes, pid: int | None, dcs: DataCoding | None, ud: UserData | None, *, pi_required: bool, after_pi: bytes = b""
) -> bytes:
    """``prefix``, TP-PI, ``after_pi`` (TP-SCTS of SMS-SUBMIT-REPORT), then TP-PID, TP-DCS, TP-UDL/TP-UD (§9.2.3.27)."""
    pi = (PI_PID if pid is not None else 0) | (PI_DCS if dcs is not None else 0) | (PI_UDL if ud is not None else 0)
    if not pi and not pi_required:
        return prefix
    out = prefix + bytes([pi]) + after_pi
    if pid is not None:
        check_octet(pid, "TP-PID")
        out += bytes([pid])
    if dcs is not None:
        out += bytes([dcs.value])
    if ud is not None:
        udl, octets = encode_user_data(dcs or DCS_GSM7, ud, TPDU_OCTETS_MAX - len(out) - 1)
        out += bytes([udl]) + octets
    check_tpdu_size(out)
    return out


def _parse_pi(data: bytes, offset: int) -> tuple[int, int]:
    """TP-PI at ``offset`` and the offset after it and its extension octets (§9.2.3.27, none defined yet)."""
    need(data, offset, 1, "TP-PI")
    pi = data[offset]
    offset += 1
    while data[offset - 1] & PI_EXTENSION:
        need(data, offset, 1, "TP-PI extension octet")
        offset += 1
    return pi, offset


def _parse_optional(data: bytes, offset: int, pi: int, udhi: bool) -> tuple[int | None, DataCoding | None, UserData | None]:
    """The fields TP-PI announces, starting at ``offset`` and ending the TPDU."""
    pid: int | None = None
    dcs: DataCoding | None = None
    ud: UserData | None = None
    if pi & PI_PID:
        need(data, offset, 1, "TP-PID")
        pid = data[offset]
        offset += 1
    if pi & PI_DCS:
        need(data, offset, 1, "TP-DCS")
        dcs = DataCoding(data[offset])
        offset += 1
    if pi & PI_UDL:
        need(data, offset, 1, "TP-UDL")
        ud = parse_user_data(dcs or DCS_GSM7, udhi, data[offset], data, offset + 1, TPDU_OCTETS_MAX - offset - 1)
    else:
        if udhi:
            raise CodecError("TP-UDHI set but no TP-UD", 0)
        if offset != len(data):
            raise CodecError(f"{len(data) - offset} octets after the last field", offset)
    return pid, dcs, ud


def _is_error(data: bytes, rp_error: bool | None) -> bool:
    if rp_error is not None:
        return rp_error
    need(data, 1, 1, "TP-FCS or TP-PI")
    return data[1] >= FailureCause.TELEMATIC_INTERWORKING_NOT_SUPPORTED


@dataclass(frozen=True, kw_only=True)
class SmsDeliverReport:
    """SMS-DELIVER-REPORT (§9.2.2.1a), MS → SC: RP-ACK form, or RP-ERROR form when ``fcs`` is set."""

    # TP-FCS (§9.2.3.22), RP-ERROR only.
    fcs: int | None = None
    # TP-PID, TP-DCS, TP-UDL/TP-UD, each present when not None (TP-PI, §9.2.3.27).
    pid: int | None = None
    dcs: DataCoding | None = None
    ud: UserData | None = None

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        prefix = bytes([0x00 | udhi_bit(self.ud)])
        if self.fcs is not None:
            check_octet(self.fcs, "TP-FCS")
            prefix += bytes([self.fcs])
        return _optional_bytes(prefix, self.pid, self.dcs, self.ud, pi_required=True)

    @property
    def text(self) -> str:
        return ud_text(self.dcs, self.ud)


def parse_sms_deliver_report(data: bytes, rp_error: bool | None = None) -> SmsDeliverReport:
    """An SMS-DELIVER-REPORT; ``rp_error`` says the form (None: inferred, see the module docstring)."""
    first = first_octet(data, 0)
    fcs: int | None = None
    offset = 1
    if _is_error(data, rp_error):
        need(data, 1, 1, "TP-FCS")
        fcs, offset = data[1], 2
    pi, offset = _parse_pi(data, offset)
    pid, dcs, ud = _parse_optional(data, offset, pi, bool(first & BIT_UDHI))
    return SmsDeliverReport(fcs=fcs, pid=pid, dcs=dcs, ud=ud)


@dataclass(frozen=True, kw_only=True)
class SmsSubmitReport:
    """SMS-SUBMIT-REPORT (§9.2.2.2a), SC → MS: RP-ACK form, or RP-ERROR form when ``fcs`` is set."""

    # TP-SCTS (§9.2.3.11).
    scts: datetime
    # TP-FCS (§9.2.3.22), RP-ERROR only.
    fcs: int | None = None
    # TP-PID, TP-DCS, TP-UDL/TP-UD, each present when not None (TP-PI, §9.2.3.27).
    pid: int | None = None
    dcs: DataCoding | None = None
    ud: UserData | None = None

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        prefix = bytes([0x01 | udhi_bit(self.ud)])
        if self.fcs is not None:
            check_octet(self.fcs, "TP-FCS")
            prefix += bytes([self.fcs])
        scts = encode_timestamp(self.scts)
        return _optional_bytes(prefix, self.pid, self.dcs, self.ud, pi_required=True, after_pi=scts)

    @property
    def text(self) -> str:
        return ud_text(self.dcs, self.ud)


def parse_sms_submit_report(data: bytes, rp_error: bool | None = None) -> SmsSubmitReport:
    """An SMS-SUBMIT-REPORT; ``rp_error`` says the form (None: inferred, see the module docstring)."""
    first = first_octet(data, 1)
    fcs: int | None = None
    offset = 1
    if _is_error(data, rp_error):
        need(data, 1, 1, "TP-FCS")
        fcs, offset = data[1], 2
    pi, offset = _parse_pi(data, offset)
    scts = parse_timestamp(data, offset)
    pid, dcs, ud = _parse_optional(data, offset + TIMESTAMP_OCTETS, pi, bool(first & BIT_UDHI))
    return SmsSubmitReport(scts=scts, fcs=fcs, pid=pid, dcs=dcs, ud=ud)


@dataclass(frozen=True, kw_only=True)
class SmsStatusReport:
    """SMS-STATUS-REPORT (§9.2.2.3), SC → MS."""

    # TP-MR (§9.2.3.6) of the SMS-SUBMIT or SMS-COMMAND reported on.
    mr: int
    # TP-RA (§9.2.3.14).
    ra: Address
    # TP-SCTS (§9.2.3.11).
    scts: datetime
    # TP-DT (§9.2.3.13).
    dt: datetime
    # TP-ST (§9.2.3.15).
    st: int = ST_RECEIVED
    # TP-SRQ (§9.2.3.26): True when reporting on an SMS-COMMAND.
    srq: bool = False
    # TP-MMS (§9.2.3.2): True when no more messages are waiting.
    mms: bool = True
    # TP-LP (§9.2.3.28).
    lp: bool = False
    # TP-PID, TP-DCS, TP-UDL/TP-UD, each present when not None (TP-PI, §9.2.3.27).
    pid: int | None = None
    dcs: DataCoding | None = None
    ud: UserData | None = None

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        check_octet(self.mr, "TP-MR")
        check_octet(self.st, "TP-ST")
        first = 0x02 | BIT_MMS * self.mms | BIT_LP * self.lp | BIT_SR * self.srq | udhi_bit(self.ud)
        prefix = bytes([first, self.mr]) + self.ra.to_bytes() + encode_timestamp(self.scts) + encode_timestamp(self.dt) + bytes([self.st])
        out = _optional_bytes(prefix, self.pid, self.dcs, self.ud, pi_required=False)
        check_tpdu_size(out)
        return out

    @property
    def text(self) -> str:
        return ud_text(self.dcs, self.ud)


def parse_sms_status_report(data: bytes) -> SmsStatusReport:
    first = first_octet(data, 2)
    need(data, 1, 1, "TP-MR")
    ra, offset = parse_address(data, 2)
    scts = parse_timestamp(data, offset)
    dt = parse_timestamp(data, offset + TIMESTAMP_OCTETS)
    offset += 2 * TIMESTAMP_OCTETS
    need(data, offset, 1, "TP-ST")
    st = data[offset]
    offset += 1
    udhi = bool(first & BIT_UDHI)
    pid: int | None = None
    dcs: DataCoding | None = None
    ud: UserData | None = None
    if offset < len(data):
        pi, offset = _parse_pi(data, offset)
        pid, dcs, ud = _parse_optional(data, offset, pi, udhi)
    elif udhi:
        raise CodecError("TP-UDHI set but no TP-UD", 0)
    return SmsStatusReport(
        mr=data[1],
        ra=ra,
        scts=scts,
        dt=dt,
        st=st,
        srq=bool(first & BIT_SR),
        mms=bool(first & BIT_MMS),
        lp=bool(first & BIT_LP),
        pid=pid,
        dcs=dcs,
        ud=ud,
    )


@dataclass(frozen=True, kw_only=True)
class SmsCommand:
    """SMS-COMMAND (§9.2.2.4), MS → SC."""

    # TP-MR (§9.2.3.6).
    mr: int
    # TP-CT (§9.2.3.19): 0 enquiry, 1 cancel status report request, 2 delete, 3 enable status report request.
    ct: int
    # TP-MN (§9.2.3.18): the TP-MR of the message the command is about.
    mn: int
    # TP-DA (§9.2.3.8).
    da: Address
    # TP-PID.
    pid: int = PID_DEFAULT
    # TP-CDL and TP-CD (§9.2.3.20, §9.2.3.21), kept as octets.
    cd: bytes = b""
    # TP-SRR (§9.2.3.5).
    srr: bool = False
    # TP-UDHI: TP-CD starts with a header.
    udhi: bool = False

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        for value, name in ((self.mr, "TP-MR"), (self.ct, "TP-CT"), (self.mn, "TP-MN"), (self.pid, "TP-PID")):
            check_octet(value, name)
        check_octet(len(self.cd), "TP-CDL")
        first = 0x02 | BIT_SR * self.srr | BIT_UDHI * self.udhi
        out = bytes([first, self.mr, self.pid, self.ct, self.mn]) + self.da.to_bytes() + bytes([len(self.cd)]) + self.cd
        check_tpdu_size(out)
        return out


def parse_sms_command(data: bytes) -> SmsCommand:
    first = first_octet(data, 2)
    need(data, 1, 4, "TP-MR, TP-PID, TP-CT and TP-MN")
    da, offset = parse_address(data, 5)
    need(data, offset, 1, "TP-CDL")
    end = offset + 1 + data[offset]
    need(data, offset + 1, data[offset], "TP-CD")
    if len(data) > end:
        raise CodecError(f"{len(data) - end} octets after TP-CD", end)
    return SmsCommand(
        mr=data[1],
        pid=data[2],
        ct=data[3],
        mn=data[4],
        da=da,
        cd=data[offset + 1 : end],
        srr=bool(first & BIT_SR),
        udhi=bool(first & BIT_UDHI),
    )
