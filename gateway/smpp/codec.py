"""SMPP 3.4 PDU body codec: the command_id values, and one checker, encoder and decoder over every body's layout.

Spec: SMPP 3.4 §3.1 (C-Octet String), §3.2.4 (optional parameters), §4 "PDU
definitions" (the mandatory fields of each body, with their limits), §5.1.2.1
(command_id, Table 5-1), §5.1.3 (the status that names a field at fault),
§7.1 (time format).

Theory of operation. Each body (:mod:`.bodies`: :class:`~.bodies.SubmitSm`,
:class:`~.bodies.DeliverSmResp` …) subclasses :class:`PduBody` and declares
its mandatory fields in ``LAYOUT``, in the order and with the limits of its §4
table, built from the field helpers here; one generic checker, encoder and
decoder walk that layout:

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

Decision, where the spec leaves room: bodies without TLVs refuse octets after
their last field (ESME_RINVCMDLEN); which bodies take TLVs is :mod:`.bodies`'
choice.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from simwallet.gateway.smpp.errors import CommandStatus, FieldError
from simwallet.gateway.smpp.tlv import OptionalParams, parse_tlvs

# §4.4.1 short_message: 0 to 254 octets.
SHORT_MESSAGE_OCTETS_MAX = 254
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
