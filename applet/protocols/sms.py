"""SMS transfer protocol data units (3GPP TS 23.040 §9.2.2, fields §9.2.3).

Theory of operation. Each TPDU is a frozen dataclass whose fields carry the
spec's abbreviations (``oa``, ``pid``, ``dcs``, ``scts``, ``ud`` …), with
``to_bytes()`` and a ``parse_…()`` function; :func:`parse_sms_tpdu`
dispatches on TP-MTI, which only says the type together with the direction:

=========  ======================  =====================
TP-MTI     SC → MS (MT)            MS → SC (MO)
=========  ======================  =====================
``00``     SMS-DELIVER             SMS-DELIVER-REPORT
``01``     SMS-SUBMIT-REPORT       SMS-SUBMIT
``10``     SMS-STATUS-REPORT       SMS-COMMAND
``11``     reserved                reserved
=========  ======================  =====================

Flags that are bits of the first octet are booleans as on the wire (``mms``
is TP-MMS: True means "no more messages are waiting"). TP-UDHI is not a field:
it is 1 exactly when the user data has a header. TP-VPF follows from the
type of ``vp``: None, :class:`EnhancedValidity`, :class:`datetime.timedelta`
(relative) or :class:`datetime.datetime` (absolute). The user data is a
:class:`UserData` whose body is septets or octets as the DCS says
(:mod:`.sms_udh`); ``.text`` decodes it.

The reports carry TP-PI and then optional TP-PID, TP-DCS and TP-UDL/TP-UD;
a field is present when it is not None. SMS-DELIVER-REPORT and
SMS-SUBMIT-REPORT come in an RP-ACK form and an RP-ERROR form, the latter
with TP-FCS (``fcs`` not None). The TPDU itself does not say which: the parser
takes ``rp_error`` from the RP layer, or when it is None infers it from the
second octet (every defined TP-FCS value is ``80``..``FF``, and a TP-PI with
bit 8 set, announcing extension octets that no release defines, is taken for a
TP-FCS).

Decisions, each where the spec leaves room:

* §9.2.2: unused bits are sent as 0 and ignored on receipt, as are the TP-PI
  reserved bits and TP-PI extension octets; such input parses but does not
  re-encode byte for byte.
* No TPDU exceeds :data:`TPDU_OCTETS_MAX` octets. Each maximum TP-UD length of
  §9.2.2 for the reports is that number less the fields before the user data,
  so the report encoders and parsers enforce it that way; SMS-DELIVER and
  SMS-SUBMIT also hold TP-UD to 140 octets.
* TP-MTI ``11`` (reserved) is refused rather than read as an SMS-DELIVER.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.sms_address import (
    Address,
    Npi,
    Ton,
    parse_address,
    parse_rp_address,
    parse_toa_value,
)
from simwallet.applet.protocols.sms_base import (
    BIT_LP,
    BIT_MMS,
    BIT_RD,
    BIT_RP,
    BIT_SR,
    BIT_UDHI,
    MTI_MASK,
    OCTET_MAX,
    PID_DEFAULT,
    PID_ME_DATA_DOWNLOAD,
    PID_RETURN_CALL,
    PID_SIM_DATA_DOWNLOAD,
    PID_TYPE_0,
    TPDU_OCTETS_MAX,
    VPF_ABSOLUTE,
    VPF_ENHANCED,
    VPF_MASK,
    VPF_NONE,
    VPF_RELATIVE,
    VPF_SHIFT,
    Direction,
    FailureCause,
    check_octet,
    first_octet,
    need,
    ud_text,
    udhi_bit,
)
from simwallet.applet.protocols.sms_dcs import (
    DCS_8BIT,
    DCS_GSM7,
    DCS_SIM_DATA_DOWNLOAD,
    DCS_UCS2,
    Alphabet,
    CodingGroup,
    DataCoding,
    IndicationType,
    MessageClass,
)
from simwallet.applet.protocols.sms_reports import (
    SmsCommand,
    SmsDeliverReport,
    SmsStatusReport,
    SmsSubmitReport,
    parse_sms_command,
    parse_sms_deliver_report,
    parse_sms_status_report,
    parse_sms_submit_report,
)
from simwallet.applet.protocols.sms_text import (
    Reassembler,
    SplitText,
    decode_text,
    encode_text,
    split_for_concatenation,
)
from simwallet.applet.protocols.sms_time import (
    ENHANCED_VP_OCTETS,
    TIMESTAMP_OCTETS,
    EnhancedValidity,
    encode_timestamp,
    parse_timestamp,
    relative_vp_at_least,
    relative_vp_from_timedelta,
    relative_vp_to_timedelta,
)
from simwallet.applet.protocols.sms_udh import (
    SEGMENTS_MAX,
    UD_OCTETS_MAX,
    UD_SEPTETS_MAX,
    Concatenation,
    PortAddressing,
    RawIe,
    UserData,
    UserDataHeader,
    encode_user_data,
    parse_user_data,
)

__all__ = [
    "DCS_8BIT",
    "DCS_GSM7",
    "DCS_SIM_DATA_DOWNLOAD",
    "DCS_UCS2",
    "PID_DEFAULT",
    "PID_ME_DATA_DOWNLOAD",
    "PID_RETURN_CALL",
    "PID_SIM_DATA_DOWNLOAD",
    "PID_TYPE_0",
    "SEGMENTS_MAX",
    "TPDU_OCTETS_MAX",
    "UD_OCTETS_MAX",
    "UD_SEPTETS_MAX",
    "Address",
    "Alphabet",
    "CodingGroup",
    "Concatenation",
    "DataCoding",
    "Direction",
    "EnhancedValidity",
    "FailureCause",
    "IndicationType",
    "MessageClass",
    "Npi",
    "PortAddressing",
    "RawIe",
    "Reassembler",
    "SmsCommand",
    "SmsDeliver",
    "SmsDeliverReport",
    "SmsStatusReport",
    "SmsSubmit",
    "SmsSubmitReport",
    "SplitText",
    "Ton",
    "Tpdu",
    "UserData",
    "UserDataHeader",
    "decode_text",
    "encode_text",
    "parse_sms_command",
    "parse_sms_deliver",
    "parse_sms_deliver_report",
    "parse_sms_status_report",
    "parse_sms_submit",
    "parse_sms_submit_report",
    "parse_sms_tpdu",
    "parse_toa_value",
    "relative_vp_at_least",
    "relative_vp_from_timedelta",
    "relative_vp_to_timedelta",
    "split_for_concatenation",
    "split_smsc_address",
    "submits_for_text",
]


@dataclass(frozen=True, kw_only=True)
class SmsDeliver:
    """SMS-DELIVER (§9.2.2.1), SC → MS."""

    # TP-OA (§9.2.3.7).
    oa: Address
    # TP-SCTS (§9.2.3.11).
    scts: datetime
    # TP-UDHI, TP-UDL, TP-UD (§9.2.3.23, .16, .24).
    ud: UserData = field(default_factory=UserData)
    # TP-PID (§9.2.3.9).
    pid: int = PID_DEFAULT
    # TP-DCS (§9.2.3.10).
    dcs: DataCoding = DCS_GSM7
    # TP-MMS (§9.2.3.2): True when no more messages are waiting.
    mms: bool = True
    # TP-LP (§9.2.3.28).
    lp: bool = False
    # TP-SRI (§9.2.3.4).
    sri: bool = False
    # TP-RP (§9.2.3.17).
    rp: bool = False

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        check_octet(self.pid, "TP-PID")
        first = 0x00 | BIT_MMS * self.mms | BIT_LP * self.lp | BIT_SR * self.sri | udhi_bit(self.ud) | BIT_RP * self.rp
        udl, ud = encode_user_data(self.dcs, self.ud)
        return bytes([first]) + self.oa.to_bytes() + bytes([self.pid, self.dcs.value]) + encode_timestamp(self.scts) + bytes([udl]) + ud

    @property
    def text(self) -> str:
        return ud_text(self.dcs, self.ud)


def parse_sms_deliver(data: bytes) -> SmsDeliver:
    first = first_octet(data, 0)
    oa, offset = parse_address(data, 1)
    need(data, offset, 2 + TIMESTAMP_OCTETS + 1, "SMS-DELIVER")
    pid, dcs = data[offset], DataCoding(data[offset + 1])
    scts = parse_timestamp(data, offset + 2)
    offset += 2 + TIMESTAMP_OCTETS
    ud = parse_user_data(dcs, bool(first & BIT_UDHI), data[offset], data, offset + 1)
    return SmsDeliver(
        oa=oa,
        scts=scts,
        ud=ud,
        pid=pid,
        dcs=dcs,
        mms=bool(first & BIT_MMS),
        lp=bool(first & BIT_LP),
        sri=bool(first & BIT_SR),
        rp=bool(first & BIT_RP),
    )


Validity = timedelta | datetime | EnhancedValidity | None


def _vp_bytes(vp: Validity) -> tuple[int, bytes]:
    if vp is None:
        return VPF_NONE, b""
    if isinstance(vp, EnhancedValidity):
        return VPF_ENHANCED, vp.octets
    if isinstance(vp, datetime):
        return VPF_ABSOLUTE, encode_timestamp(vp)
    return VPF_RELATIVE, bytes([relative_vp_from_timedelta(vp)])


@dataclass(frozen=True, kw_only=True)
class SmsSubmit:
    """SMS-SUBMIT (§9.2.2.2), MS → SC."""

    # TP-DA (§9.2.3.8).
    da: Address
    # TP-MR (§9.2.3.6).
    mr: int = 0
    # TP-UDHI, TP-UDL, TP-UD.
    ud: UserData = field(default_factory=UserData)
    # TP-PID.
    pid: int = PID_DEFAULT
    # TP-DCS.
    dcs: DataCoding = DCS_GSM7
    # TP-VPF and TP-VP (§9.2.3.3, §9.2.3.12): relative, absolute, enhanced or none.
    vp: Validity = None
    # TP-RD (§9.2.3.25).
    rd: bool = False
    # TP-SRR (§9.2.3.5).
    srr: bool = False
    # TP-RP (§9.2.3.17).
    rp: bool = False

    def __post_init__(self) -> None:
        self.to_bytes()

    def to_bytes(self) -> bytes:
        check_octet(self.mr, "TP-MR")
        check_octet(self.pid, "TP-PID")
        vpf, vp = _vp_bytes(self.vp)
        first = 0x01 | BIT_RD * self.rd | vpf << VPF_SHIFT | BIT_SR * self.srr | udhi_bit(self.ud) | BIT_RP * self.rp
        udl, ud = encode_user_data(self.dcs, self.ud)
        head = bytes([first, self.mr]) + self.da.to_bytes() + bytes([self.pid, self.dcs.value]) + vp
        return head + bytes([udl]) + ud

    @property
    def text(self) -> str:
        return ud_text(self.dcs, self.ud)


def parse_sms_submit(data: bytes) -> SmsSubmit:
    first = first_octet(data, 1)
    need(data, 1, 1, "TP-MR")
    da, offset = parse_address(data, 2)
    need(data, offset, 2, "TP-PID and TP-DCS")
    pid, dcs = data[offset], DataCoding(data[offset + 1])
    offset += 2
    vpf = first >> VPF_SHIFT & VPF_MASK
    vp: Validity = None
    if vpf == VPF_RELATIVE:
        need(data, offset, 1, "relative TP-VP")
        vp = relative_vp_to_timedelta(data[offset])
        offset += 1
    elif vpf == VPF_ENHANCED:
        need(data, offset, ENHANCED_VP_OCTETS, "enhanced TP-VP")
        vp = EnhancedValidity(data[offset : offset + ENHANCED_VP_OCTETS])
        offset += ENHANCED_VP_OCTETS
    elif vpf == VPF_ABSOLUTE:
        vp = parse_timestamp(data, offset)
        offset += TIMESTAMP_OCTETS
    need(data, offset, 1, "TP-UDL")
    ud = parse_user_data(dcs, bool(first & BIT_UDHI), data[offset], data, offset + 1)
    return SmsSubmit(
        da=da, mr=data[1], ud=ud, pid=pid, dcs=dcs, vp=vp, rd=bool(first & BIT_RD), srr=bool(first & BIT_SR), rp=bool(first & BIT_RP)
    )


Tpdu = SmsDeliver | SmsSubmit | SmsStatusReport | SmsDeliverReport | SmsSubmitReport | SmsCommand


def parse_sms_tpdu(data: bytes, direction: Direction, *, rp_error: bool | None = None) -> Tpdu:
    """The TPDU in ``data`` by TP-MTI and ``direction``; ``rp_error`` as in the report parsers."""
    need(data, 0, 1, "TPDU")
    mti = data[0] & MTI_MASK
    if direction is Direction.SC_TO_MS:
        if mti == 0:
            return parse_sms_deliver(data)
        if mti == 1:
            return parse_sms_submit_report(data, rp_error)
        if mti == 2:
            return parse_sms_status_report(data)
    else:
        if mti == 0:
            return parse_sms_deliver_report(data, rp_error)
        if mti == 1:
            return parse_sms_submit(data)
        if mti == 2:
            return parse_sms_command(data)
    raise CodecError("TP-MTI 11 is reserved", 0)


def split_smsc_address(data: bytes) -> tuple[Address | None, bytes]:
    """Split the SMSC address (RP form, TS 24.011 §8.2.5.1) off the front of an AT-style PDU."""
    address, offset = parse_rp_address(data)
    return address, data[offset:]


def submits_for_text(
    da: Address,
    text: str,
    *,
    reference: int,
    first_mr: int,
    wide_reference: bool = False,
    vp: Validity = None,
    srr: bool = False,
    message_class: int | None = None,
) -> list[SmsSubmit]:
    """The SMS-SUBMITs that carry ``text`` to ``da``: TP-MR counts up from ``first_mr`` (mod 256)."""
    check_octet(first_mr, "TP-MR")
    split = split_for_concatenation(text, reference, wide_reference=wide_reference, message_class=message_class)
    return [
        SmsSubmit(da=da, mr=(first_mr + index) & OCTET_MAX, ud=part, dcs=split.coding, vp=vp, srr=srr)
        for index, part in enumerate(split.parts)
    ]
