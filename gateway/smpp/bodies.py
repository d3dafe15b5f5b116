"""SMPP 3.4 PDU bodies: one frozen dataclass per command, each declaring its wire layout once (§4 "PDU definitions").

Theory of operation. Each body (:class:`SubmitSm`, :class:`DeliverSmResp` …)
declares its mandatory fields in ``LAYOUT``, in the order and with the limits
of its §4 table; one generic checker, encoder and decoder walk that layout:

* Integer fields are one octet (every mandatory integer of these bodies is).
* C-Octet Strings (§3.1) are ``str``, octets taken as Latin-1 so that any
  octet a peer sends survives a round trip; ``octets_max`` counts the NUL, as
  §4 does ("Var. max 16": at most 15 characters).
* ``schedule_delivery_time`` and ``validity_period`` are the fixed C-Octet
  Strings of §7.1: empty or 16 characters.
* ``short_message`` is ``bytes`` (at most 254, §4.4.1); ``sm_length`` is its length.
* Bodies that carry optional parameters end in ``tlvs`` (:mod:`.tlv`, §3.2.4).

A value beyond its limit is refused when the dataclass is made
(:class:`~.errors.FieldError` naming the field, with the §5.1.3 status that
names it: ESME_RINVSRCADR for ``source_addr`` …), so a body that exists can
always be encoded. The decoder enforces the same limits as it reads (a
C-Octet String is searched for its NUL only within its maximum) and builds the
dataclass without checking twice (a submit_sm decodes in about 7 µs).

Decisions, each where the spec leaves room:

* §5.3.2.32 wants sm_length 0 when message_payload is present; published
  delivery receipts carry both, so both are kept, and ``payload`` prefers
  message_payload.
* Bodies without TLVs refuse octets after their last field (ESME_RINVCMDLEN).
  Every response body takes TLVs, so that a newer SMSC's submit_sm_resp with a
  TLV still settles its request.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from simwallet.gateway.smpp.errors import CommandStatus, FieldError
from simwallet.gateway.smpp.tlv import NO_TLVS, OptionalParams, parse_tlvs

# §4.4.1 short_message: 0 to 254 octets.
SHORT_MESSAGE_OCTETS_MAX = 254
# §5.2 interface_version: 0x34 for SMPP 3.4.
INTERFACE_VERSION_34 = 0x34
# §5.1.2.1: command_id bit 31 marks a response.
RESPONSE_BIT = 0x80000000
_BYTE = [bytes([value]) for value in range(256)]


class CommandId(enum.IntEnum):
    """§5.1.2.1 Table 5-1: the SMPP 3.4 command_id values."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


# Field kinds, as plain ints: the codec loops compare them on every field.
_INTEGER = 0
_C_STRING = 1
_TIME = 2
_SHORT_MESSAGE_KIND = 3


@dataclass(frozen=True, slots=True)
class _Field:
    """One mandatory field of a §4 table."""

    name: str
    # _INTEGER (1 octet), _C_STRING, _TIME (fixed C-Octet String, §7.1) or sm_length + short_message.
    kind: int
    # C-Octet Strings: the table's "max", NUL included.
    octets_max: int
    # §5.1.3: the status that names this field when its value is wrong.
    status: CommandStatus


def _int(name: str, status: CommandStatus = CommandStatus.ESME_RINVPARLEN) -> _Field:
    return _Field(name, _INTEGER, 1, status)


def _cstr(name: str, octets_max: int, status: CommandStatus) -> _Field:
    return _Field(name, _C_STRING, octets_max, status)


def _time(name: str, status: CommandStatus) -> _Field:
    # §7.1: "YYMMDDhhmmsstnnp" and its NUL, or the NUL alone.
    return _Field(name, _TIME, 17, status)


_SHORT_MESSAGE = _Field("short_message", _SHORT_MESSAGE_KIND, SHORT_MESSAGE_OCTETS_MAX, CommandStatus.ESME_RINVMSGLEN)
_TIME_LENGTHS = (0, 16)
_DEFAULTS: dict[type[PduBody], PduBody] = {}


def _getter(names: tuple[str, ...]) -> Callable[[object], tuple[Any, ...]]:
    """A function returning the named attributes as a tuple (attrgetter, whatever the count)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    return lambda body: tuple(getattr(body, name) for name in names)


def _plan(layout: tuple[_Field, ...]) -> tuple[tuple[int, int, CommandStatus, tuple[str, ...]], ...]:
    """The layout with runs of integer fields merged: (kind, octets, status, names) per step."""
    steps: list[tuple[int, int, CommandStatus, tuple[str, ...]]] = []
    for spec in layout:
        if spec.kind == _INTEGER and steps and steps[-1][0] == _INTEGER:
            kind, count, status, names = steps[-1]
            steps[-1] = (kind, count + 1, status, (*names, spec.name))
        else:
            steps.append((spec.kind, spec.octets_max, spec.status, (spec.name,)))
    return tuple(steps)


class PduBody:
    """Base of the typed bodies: the generic checker, encoder and decoder over ``LAYOUT``."""

    __slots__ = ()
    command_id: ClassVar[CommandId]
    LAYOUT: ClassVar[tuple[_Field, ...]] = ()
    HAS_TLVS: ClassVar[bool] = False
    # Derived from LAYOUT for speed: the field names (with "tlvs" last), their getter, the codec's steps.
    _NAMES: ClassVar[tuple[str, ...]] = ()
    _VALUES: ClassVar[Callable[[object], tuple[Any, ...]]] = staticmethod(_getter(()))
    _PLAN: ClassVar[tuple[tuple[int, int, CommandStatus, tuple[str, ...]], ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._NAMES = tuple(spec.name for spec in cls.LAYOUT) + (("tlvs",) if cls.HAS_TLVS else ())
        cls._VALUES = staticmethod(_getter(cls._NAMES))
        cls._PLAN = _plan(cls.LAYOUT)

    def __post_init__(self) -> None:
        values = type(self)._VALUES(self)
        for spec, value in zip(self.LAYOUT, values, strict=False):
            kind = spec.kind
            if kind == _INTEGER:
                if value.__class__ is int and 0 <= value <= 0xFF:
                    continue
            elif kind == _C_STRING:
                if value.__class__ is str and len(value) < spec.octets_max and value.isascii() and "\0" not in value:
                    continue
            elif kind == _SHORT_MESSAGE_KIND and value.__class__ is bytes and len(value) <= SHORT_MESSAGE_OCTETS_MAX:
                continue
            _check(spec, value)
        if self.HAS_TLVS and not isinstance(values[-1], OptionalParams):
            raise FieldError(CommandStatus.ESME_RINVOPTPARSTREAM, f"{values[-1]!r} is not OptionalParams", field="tlvs")

    def encode_body(self) -> bytes:
        """The body octets (everything after the header)."""
        parts: list[bytes] = []
        append = parts.append
        values = type(self)._VALUES(self)
        index = 0
        for kind, size, _, _ in self._PLAN:
            if kind == _INTEGER:
                append(bytes(values[index : index + size]))
                index += size
                continue
            value = values[index]
            index += 1
            if kind == _SHORT_MESSAGE_KIND:
                append(_BYTE[len(value)])
                append(value)
            else:
                append(value.encode("latin-1"))
                append(b"\0")
        if self.HAS_TLVS:
            append(values[-1].to_bytes())
        return b"".join(parts)

    @classmethod
    def decode_body(cls, data: bytes, position: int) -> Self:
        """The body in ``data[position:]``; raises :class:`FieldError` naming the field at fault.

        The decoder enforces every limit the constructor does (a C-Octet String
        is only searched for its NUL within its maximum), so it builds the
        dataclass without running the checks again.
        """
        end = len(data)
        values: list[Any] = []
        for kind, size, status, names in cls._PLAN:
            if kind == _INTEGER:
                stop = position + size
                if stop > end:
                    raise FieldError(CommandStatus.ESME_RINVCMDLEN, "the PDU ends before this field", field=names[max(end - position, 0)])
                values += data[position:stop]
                position = stop
            elif kind == _SHORT_MESSAGE_KIND:
                position = _read_short_message(data, position, values)
            else:
                nul = data.find(b"\0", position, position + size)
                if nul < 0:
                    if end - position < size:
                        raise FieldError(CommandStatus.ESME_RINVCMDLEN, "no NUL before the end of the PDU", field=names[0])
                    raise FieldError(status, f"longer than {size - 1} octets", field=names[0])
                if kind == _TIME and nul - position not in _TIME_LENGTHS:
                    raise FieldError(status, f"{nul - position} characters where §7.1 asks for 0 or 16", field=names[0])
                values.append(data[position:nul].decode("latin-1"))
                position = nul + 1
        if cls.HAS_TLVS:
            values.append(parse_tlvs(data, position, end))
        elif position != end:
            raise FieldError(CommandStatus.ESME_RINVCMDLEN, f"{end - position} octets after the last field", field=None)
        body = object.__new__(cls)
        for name, value in zip(cls._NAMES, values, strict=True):
            object.__setattr__(body, name, value)
        return body


def _read_short_message(data: bytes, position: int, values: list[Any]) -> int:
    """Append the short_message at ``position`` (its sm_length first) to ``values``; return the position after it."""
    if position >= len(data):
        raise FieldError(CommandStatus.ESME_RINVCMDLEN, "the PDU ends before this field", field="sm_length")
    length = data[position]
    position += 1
    if length > SHORT_MESSAGE_OCTETS_MAX:
        raise FieldError(CommandStatus.ESME_RINVMSGLEN, f"sm_length {length} exceeds {SHORT_MESSAGE_OCTETS_MAX}", field="sm_length")
    if position + length > len(data):
        raise FieldError(CommandStatus.ESME_RINVCMDLEN, f"sm_length {length} overruns the PDU", field="sm_length")
    values.append(data[position : position + length])
    return position + length


def _check(spec: _Field, value: object) -> None:
    """Refuse a value that the field cannot carry (§4 tables, §5.2); the slow path of ``__post_init__``."""
    if spec.kind == _INTEGER:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise FieldError(spec.status, f"{value!r} is not an integer 0..255", field=spec.name)
        return
    if spec.kind == _SHORT_MESSAGE_KIND:
        if not isinstance(value, bytes) or len(value) > SHORT_MESSAGE_OCTETS_MAX:
            size = len(value) if isinstance(value, bytes) else value
            raise FieldError(spec.status, f"{size!r} is not bytes of at most {SHORT_MESSAGE_OCTETS_MAX} octets", field=spec.name)
        return
    if not isinstance(value, str):
        raise FieldError(spec.status, f"{value!r} is not a str", field=spec.name)
    if len(value) >= spec.octets_max:
        raise FieldError(
            spec.status, f"{len(value)} octets exceed {spec.octets_max - 1} (max {spec.octets_max} with the NUL)", field=spec.name
        )
    if spec.kind == _TIME and len(value) not in _TIME_LENGTHS:
        raise FieldError(spec.status, f"{len(value)} characters where §7.1 asks for 0 or 16", field=spec.name)
    if "\0" in value:
        raise FieldError(spec.status, "holds a NUL, which would end the C-Octet String early", field=spec.name)
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise FieldError(spec.status, "holds a character beyond one octet", field=spec.name) from exc


def default_body(kind: type[PduBody]) -> PduBody:
    """The body with every field at its default (a response's "no body" form)."""
    body = _DEFAULTS.get(kind)
    if body is None:
        make: Callable[[], PduBody] = kind
        body = _DEFAULTS[kind] = make()
    return body


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
