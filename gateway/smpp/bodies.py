"""SMPP 3.4 PDU bodies: one frozen dataclass per command, each declaring its wire layout once (§4 "PDU definitions").

Spec: SMPP 3.4 §4.1 (bind_transmitter, bind_receiver, bind_transceiver and
their responses), §4.2 (unbind), §4.3 (generic_nack), §4.4 (submit_sm), §4.6
(deliver_sm), §4.7 (data_sm), §4.11 (enquire_link), §5.1.2.1 (a response's
command_id), §5.2 (interface_version), §5.3.2.32 (message_payload).

Theory of operation. Each body (:class:`SubmitSm`, :class:`DeliverSmResp` …)
declares its mandatory fields in ``LAYOUT``, in the order and with the limits
of its §4 table, and its ``command_id``; :class:`~.codec.PduBody` checks,
encodes and decodes every body by walking that layout (:mod:`.codec` says how
each kind of field is carried and refused). :data:`BODY_TYPES` maps a
command_id to its body type, and :func:`response_type` names the body of a
request's response. The codec's public names (:class:`~.codec.CommandId`,
:class:`~.codec.PduBody`, :func:`~.codec.default_body` …) are re-exported
here, so the rest of the package imports bodies from this module alone.

Decisions, each where the spec leaves room:

* §5.3.2.32 wants sm_length 0 when message_payload is present; published
  delivery receipts carry both, so both are kept, and ``payload`` prefers
  message_payload.
* Bodies without TLVs refuse octets after their last field (ESME_RINVCMDLEN,
  :mod:`.codec`). Every response body takes TLVs, so that a newer SMSC's
  submit_sm_resp with a TLV still settles its request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from simwallet.gateway.smpp.codec import (
    _SHORT_MESSAGE,
    RESPONSE_BIT,
    SHORT_MESSAGE_OCTETS_MAX,
    CommandId,
    PduBody,
    _cstr,
    _Field,
    _int,
    _time,
    default_body,
)
from simwallet.gateway.smpp.errors import CommandStatus
from simwallet.gateway.smpp.tlv import NO_TLVS, OptionalParams

__all__ = [
    "BODY_TYPES",
    "INTERFACE_VERSION_34",
    "RESPONSE_BIT",
    "SHORT_MESSAGE_OCTETS_MAX",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CommandId",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "PduBody",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "default_body",
    "response_type",
]

# §5.2 interface_version: 0x34 for SMPP 3.4.
INTERFACE_VERSION_34 = 0x34


# §4.1.1 bind_transmitter, §4.1.3 bind_receiver, §4.1.5 bind_transceiver.
_BIND_LAYOUT = (
    _cstr("system_id", 16, CommandStatus.ESME_RINVSYSID),
    _cstr("password", 9, CommandStatus.ESME_RINVPASWD),
    _cstr("system_type", 13, CommandStatus.ESME_RINVSYSTYP),
    _int("interface_version"),
    _int("addr_ton", CommandStatus.ESME_RINVSRCTON),
    _int("addr_npi", CommandStatus.ESME_RINVSRCNPI),
    _cstr("address_range", 41, CommandStatus.ESME_RINVSRCADR),
)


@dataclass(frozen=True, slots=True)
class _Bind(PduBody):
    LAYOUT: ClassVar[tuple[_Field, ...]] = _BIND_LAYOUT
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(frozen=True, slots=True)
class BindTransmitter(_Bind):
    """§4.1.1 bind_transmitter: the ESME asks to send messages."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, slots=True)
class BindReceiver(_Bind):
    """§4.1.3 bind_receiver: the ESME asks to receive messages."""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER


@dataclass(frozen=True, slots=True)
class BindTransceiver(_Bind):
    """§4.1.5 bind_transceiver: the ESME asks to do both."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER


# §4.1.2, §4.1.4, §4.1.6 bind_*_resp: system_id, then the sc_interface_version TLV.
@dataclass(frozen=True, slots=True)
class _BindResp(PduBody):
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_cstr("system_id", 16, CommandStatus.ESME_RINVSYSID),)
    HAS_TLVS: ClassVar[bool] = True
    system_id: str = ""
    tlvs: OptionalParams = NO_TLVS


@dataclass(frozen=True, slots=True)
class BindTransmitterResp(_BindResp):
    """§4.1.2 bind_transmitter_resp."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, slots=True)
class BindReceiverResp(_BindResp):
    """§4.1.4 bind_receiver_resp."""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, slots=True)
class BindTransceiverResp(_BindResp):
    """§4.1.6 bind_transceiver_resp."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


# §4.2 unbind, §4.3 generic_nack, §4.11 enquire_link: the header alone.
@dataclass(frozen=True, slots=True)
class Unbind(PduBody):
    """§4.2.1 unbind: either side ends the session."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND


@dataclass(frozen=True, slots=True)
class UnbindResp(PduBody):
    """§4.2.2 unbind_resp."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True)
class EnquireLink(PduBody):
    """§4.11.1 enquire_link: is the other side still there?"""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK


@dataclass(frozen=True, slots=True)
class EnquireLinkResp(PduBody):
    """§4.11.2 enquire_link_resp."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True)
class GenericNack(PduBody):
    """§4.3 generic_nack: the answer to a PDU whose header could not be acted on."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


# §4.4.1 submit_sm and §4.6.1 deliver_sm: the same mandatory fields.
_SHORT_MESSAGE_LAYOUT = (
    _cstr("service_type", 6, CommandStatus.ESME_RINVSERTYP),
    _int("source_addr_ton", CommandStatus.ESME_RINVSRCTON),
    _int("source_addr_npi", CommandStatus.ESME_RINVSRCNPI),
    _cstr("source_addr", 21, CommandStatus.ESME_RINVSRCADR),
    _int("dest_addr_ton", CommandStatus.ESME_RINVDSTTON),
    _int("dest_addr_npi", CommandStatus.ESME_RINVDSTNPI),
    _cstr("destination_addr", 21, CommandStatus.ESME_RINVDSTADR),
    _int("esm_class", CommandStatus.ESME_RINVESMCLASS),
    _int("protocol_id"),
    _int("priority_flag", CommandStatus.ESME_RINVPRTFLG),
    _time("schedule_delivery_time", CommandStatus.ESME_RINVSCHED),
    _time("validity_period", CommandStatus.ESME_RINVEXPIRY),
    _int("registered_delivery", CommandStatus.ESME_RINVREGDLVFLG),
    _int("replace_if_present_flag", CommandStatus.ESME_RINVREPFLAG),
    _int("data_coding"),
    _int("sm_default_msg_id", CommandStatus.ESME_RINVDFTMSGID),
    _SHORT_MESSAGE,
)


@dataclass(frozen=True, slots=True)
class _ShortMessage(PduBody):
    LAYOUT: ClassVar[tuple[_Field, ...]] = _SHORT_MESSAGE_LAYOUT
    HAS_TLVS: ClassVar[bool] = True
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: OptionalParams = NO_TLVS

    @property
    def payload(self) -> bytes:
        """The user data: message_payload when present (§5.3.2.32), else short_message."""
        payload = self.tlvs.message_payload
        return self.short_message if payload is None else payload


@dataclass(frozen=True, slots=True)
class SubmitSm(_ShortMessage):
    """§4.4.1 submit_sm: a short message from the ESME for the SMSC to deliver (MT)."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True)
class DeliverSm(_ShortMessage):
    """§4.6.1 deliver_sm: a short message from the SMSC to the ESME (MO, or a delivery receipt)."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM


# §4.7.1 data_sm: addresses of up to 65 octets, no short_message.
@dataclass(frozen=True, slots=True)
class DataSm(PduBody):
    """§4.7.1 data_sm: a message either way, its user data in message_payload (USSD uses it)."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    LAYOUT: ClassVar[tuple[_Field, ...]] = (
        _cstr("service_type", 6, CommandStatus.ESME_RINVSERTYP),
        _int("source_addr_ton", CommandStatus.ESME_RINVSRCTON),
        _int("source_addr_npi", CommandStatus.ESME_RINVSRCNPI),
        _cstr("source_addr", 65, CommandStatus.ESME_RINVSRCADR),
        _int("dest_addr_ton", CommandStatus.ESME_RINVDSTTON),
        _int("dest_addr_npi", CommandStatus.ESME_RINVDSTNPI),
        _cstr("destination_addr", 65, CommandStatus.ESME_RINVDSTADR),
        _int("esm_class", CommandStatus.ESME_RINVESMCLASS),
        _int("registered_delivery", CommandStatus.ESME_RINVREGDLVFLG),
        _int("data_coding"),
    )
    HAS_TLVS: ClassVar[bool] = True
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: OptionalParams = NO_TLVS

    @property
    def payload(self) -> bytes:
        """The user data (data_sm carries it in message_payload)."""
        return self.tlvs.message_payload or b""


# §4.4.2 submit_sm_resp, §4.6.2 deliver_sm_resp (message_id unused: NULL), §4.7.2 data_sm_resp.
@dataclass(frozen=True, slots=True)
class _MessageIdResp(PduBody):
    LAYOUT: ClassVar[tuple[_Field, ...]] = (_cstr("message_id", 65, CommandStatus.ESME_RINVMSGID),)
    HAS_TLVS: ClassVar[bool] = True
    message_id: str = ""
    tlvs: OptionalParams = NO_TLVS


@dataclass(frozen=True, slots=True)
class SubmitSmResp(_MessageIdResp):
    """§4.4.2 submit_sm_resp: message_id is the SMSC's id for the message."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP


@dataclass(frozen=True, slots=True)
class DeliverSmResp(_MessageIdResp):
    """§4.6.2 deliver_sm_resp: message_id unused (empty)."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, slots=True)
class DataSmResp(_MessageIdResp):
    """§4.7.2 data_sm_resp."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP


BODY_TYPES: dict[int, type[PduBody]] = {
    kind.command_id: kind
    for kind in (
        BindTransmitter,
        BindTransmitterResp,
        BindReceiver,
        BindReceiverResp,
        BindTransceiver,
        BindTransceiverResp,
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        GenericNack,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        DataSm,
        DataSmResp,
    )
}


def response_type(command_id: int) -> type[PduBody]:
    """The body type of the response to a request with ``command_id`` (§5.1.2.1: bit 31 set)."""
    return BODY_TYPES[command_id | RESPONSE_BIT]
