"""SMPP 3.4 optional parameters: tag, length, value (§3.2.4 format, §5.3 definitions).

Theory of operation. The optional part of a PDU body is a run of TLVs, each a
2-octet tag, a 2-octet length and that many octets of value, up to the end of
the PDU. :class:`OptionalParams` keeps them as the ordered tuple of
:class:`Tlv` they came in, so that every TLV stream re-encodes byte for byte;
typed properties (``message_payload``, ``sar_msg_ref_num`` …) decode the ones
this project uses on access, and :meth:`OptionalParams.of` builds them.

A :class:`Tlv` whose tag is one of :data:`TYPED_TAGS` is checked when it is
made, parsed or built: a value of the wrong size is ESME_RINVPARLEN, a value
outside its range ESME_RINVOPTPARAMVAL (§5.1.3). Every other tag is kept as
raw octets, so a vendor's TLV passes through untouched.

Decisions, each where the spec leaves room:

* §5.3 says TLVs may come in any order; equality here is on the ordered tuple,
  which keeps round trips exact. :meth:`OptionalParams.of` emits the typed ones
  in the order of :class:`TlvTag`.
* A typed tag that appears twice is refused (ESME_RINVOPTPARSTREAM): which
  ``sar_segment_seqnum`` counts would be a guess. Unknown tags may repeat.
* ``receipted_message_id`` is a C-Octet String (§5.3.2.12), but SMSCs are
  known to send it without its NUL; both forms parse and re-encode as they came.
* Which TLV a PDU may carry (§4, per PDU) is not enforced: a peer's extra TLV
  is kept, never a reason to refuse its message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from simwallet.gateway.smpp.errors import CommandStatus, FieldError

# §3.2.4: a tag and a length of 2 octets each precede the value.
TLV_HEADER_OCTETS = 4
# §3.2.4: the length field is 16 bits.
TLV_VALUE_OCTETS_MAX = 0xFFFF
# §5.3.2.12: receipted_message_id is a C-Octet String of at most 65 octets, NUL included.
RECEIPTED_MESSAGE_ID_OCTETS_MAX = 65
# §5.3.2 Table 5-3: tags 0x1400-0x3FFF are SMSC vendor specific. The two the project's SMSC and gateway
# agree on (as operators document theirs), both C-Octet Strings of at most VENDOR_TEXT_CHARS_MAX characters:
# the SMSC's id of a message it delivers (a redelivery repeats it: SMPP 3.4 gives an MO deliver_sm no id),
# and a submitter's own reference of a submit_sm, by which the SMSC suppresses duplicates.
VENDOR_SMSC_MESSAGE_ID = 0x1400
VENDOR_CLIENT_REFERENCE = 0x1401
VENDOR_TEXT_CHARS_MAX = 64


class TlvTag(enum.IntEnum):
    """§5.3.2: the tags this project reads and builds (every other tag stays raw)."""

    # §5.3.2.12 receipted_message_id: C-Octet String, max 65.
    RECEIPTED_MESSAGE_ID = 0x001E
    # §5.3.2.17 user_message_reference: Integer, 2 octets.
    USER_MESSAGE_REFERENCE = 0x0204
    # §5.3.2.22 sar_msg_ref_num: Integer, 2 octets.
    SAR_MSG_REF_NUM = 0x020C
    # §5.3.2.23 sar_total_segments: Integer, 1 octet, 1..255.
    SAR_TOTAL_SEGMENTS = 0x020E
    # §5.3.2.24 sar_segment_seqnum: Integer, 1 octet, 1..255.
    SAR_SEGMENT_SEQNUM = 0x020F
    # §5.3.2.25 sc_interface_version: Integer, 1 octet.
    SC_INTERFACE_VERSION = 0x0210
    # §5.3.2.32 message_payload: Octet String, variable.
    MESSAGE_PAYLOAD = 0x0424
    # §5.3.2.35 message_state: Integer, 1 octet.
    MESSAGE_STATE = 0x0427
    # §5.3.2.44 ussd_service_op: Octet String, 1 octet.
    USSD_SERVICE_OP = 0x0501
    # §5.3.2.43 its_session_info: Octet String, 2 octets.
    ITS_SESSION_INFO = 0x1383


TYPED_TAGS = frozenset(int(tag) for tag in TlvTag)

# Exact value size in octets of each fixed-size typed tag.
_FIXED_OCTETS: dict[int, int] = {
    TlvTag.USER_MESSAGE_REFERENCE: 2,
    TlvTag.SAR_MSG_REF_NUM: 2,
    TlvTag.SAR_TOTAL_SEGMENTS: 1,
    TlvTag.SAR_SEGMENT_SEQNUM: 1,
    TlvTag.SC_INTERFACE_VERSION: 1,
    TlvTag.MESSAGE_STATE: 1,
    TlvTag.USSD_SERVICE_OP: 1,
    TlvTag.ITS_SESSION_INFO: 2,
}


class MessageState(enum.IntEnum):
    """§5.2.28: message_state values (kept as plain ints in PDUs; a peer may send others)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


class UssdServiceOp(enum.IntEnum):
    """§5.3.2.44: ussd_service_op values (20–31 reserved, 32–255 vendor specific)."""

    PSSD_INDICATION = 0
    PSSR_INDICATION = 1
    USSR_REQUEST = 2
    USSN_REQUEST = 3
    PSSD_RESPONSE = 16
    PSSR_RESPONSE = 17
    USSR_CONFIRM = 18
    USSN_CONFIRM = 19


def _name(tag: int) -> str:
    return TlvTag(tag).name.lower() if tag in TYPED_TAGS else f"tlv 0x{tag:04X}"


def _check_typed(tag: int, value: bytes) -> None:
    """Refuse a typed tag's value of the wrong size or range."""
    size = _FIXED_OCTETS.get(tag)
    if size is not None and len(value) != size:
        raise FieldError(CommandStatus.ESME_RINVPARLEN, f"{len(value)} octets where {size} belong", field=_name(tag))
    if tag in (TlvTag.SAR_TOTAL_SEGMENTS, TlvTag.SAR_SEGMENT_SEQNUM) and value[0] == 0:
        raise FieldError(CommandStatus.ESME_RINVOPTPARAMVAL, "0 outside 1..255", field=_name(tag))
    if tag == TlvTag.RECEIPTED_MESSAGE_ID:
        text = value[:-1] if value.endswith(b"\0") else value
        if len(text) >= RECEIPTED_MESSAGE_ID_OCTETS_MAX or b"\0" in text:
            raise FieldError(
                CommandStatus.ESME_RINVOPTPARAMVAL,
                f"needs at most {RECEIPTED_MESSAGE_ID_OCTETS_MAX - 1} octets and no NUL inside",
                field=_name(tag),
            )


@dataclass(frozen=True, slots=True)
class Tlv:
    """One optional parameter (§3.2.4): tag and value; the length is the value's."""

    # §3.2.4 Tag: 2 octets.
    tag: int
    # §3.2.4 Value: Length octets.
    value: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= 0xFFFF:
            raise FieldError(CommandStatus.ESME_RINVOPTPARSTREAM, f"tag {self.tag} does not fit 16 bits", field="tlv")
        if len(self.value) > TLV_VALUE_OCTETS_MAX:
            raise FieldError(
                CommandStatus.ESME_RINVPARLEN, f"{len(self.value)} octets exceed {TLV_VALUE_OCTETS_MAX}", field=_name(self.tag)
            )
        if self.tag in TYPED_TAGS:
            _check_typed(self.tag, self.value)

    def to_bytes(self) -> bytes:
        return self.tag.to_bytes(2, "big") + len(self.value).to_bytes(2, "big") + self.value


@dataclass(frozen=True, slots=True)
class ItsSessionInfo:
    """§5.3.2.43 its_session_info: the USSD/ITS session number and sequence (2 octets)."""

    # Octet 1: session number, 0..255.
    session_number: int
    # Octet 2 bits 7..1: sequence number of the dialogue unit, 0..127.
    sequence_number: int = 0
    # Octet 2 bit 0: 1 on the last message of the session.
    end_of_session: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.session_number <= 0xFF and 0 <= self.sequence_number <= 0x7F):
            raise FieldError(
                CommandStatus.ESME_RINVOPTPARAMVAL,
                f"session {self.session_number}/sequence {self.sequence_number} outside 0..255/0..127",
                field="its_session_info",
            )

    def to_bytes(self) -> bytes:
        return bytes([self.session_number, self.sequence_number << 1 | self.end_of_session])

    @classmethod
    def from_bytes(cls, data: bytes) -> ItsSessionInfo:
        return cls(data[0], data[1] >> 1, bool(data[1] & 1))


@dataclass(frozen=True, slots=True)
class OptionalParams:
    """The TLVs of one PDU body, in wire order."""

    items: tuple[Tlv, ...] = ()

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for item in self.items:
            if item.tag in TYPED_TAGS:
                if item.tag in seen:
                    raise FieldError(CommandStatus.ESME_RINVOPTPARSTREAM, "appears twice", field=_name(item.tag))
                seen.add(item.tag)

    @classmethod
    def of(
        cls,
        *,
        receipted_message_id: str | None = None,
        user_message_reference: int | None = None,
        sar_msg_ref_num: int | None = None,
        sar_total_segments: int | None = None,
        sar_segment_seqnum: int | None = None,
        sc_interface_version: int | None = None,
        message_payload: bytes | None = None,
        message_state: int | None = None,
        ussd_service_op: int | None = None,
        its_session_info: ItsSessionInfo | None = None,
        unknown: Iterable[Tlv] = (),
    ) -> OptionalParams:
        """The TLVs for the values given (None leaves a TLV out), then ``unknown`` as they are."""
        items: list[Tlv] = []
        if receipted_message_id is not None:
            items.append(Tlv(TlvTag.RECEIPTED_MESSAGE_ID, _latin1(receipted_message_id, "receipted_message_id") + b"\0"))
        for tag, number, size in (
            (TlvTag.USER_MESSAGE_REFERENCE, user_message_reference, 2),
            (TlvTag.SAR_MSG_REF_NUM, sar_msg_ref_num, 2),
            (TlvTag.SAR_TOTAL_SEGMENTS, sar_total_segments, 1),
            (TlvTag.SAR_SEGMENT_SEQNUM, sar_segment_seqnum, 1),
            (TlvTag.SC_INTERFACE_VERSION, sc_interface_version, 1),
        ):
            if number is not None:
                items.append(Tlv(tag, _integer(number, size, tag)))
        if message_payload is not None:
            items.append(Tlv(TlvTag.MESSAGE_PAYLOAD, message_payload))
        for tag, number in ((TlvTag.MESSAGE_STATE, message_state), (TlvTag.USSD_SERVICE_OP, ussd_service_op)):
            if number is not None:
                items.append(Tlv(tag, _integer(number, 1, tag)))
        if its_session_info is not None:
            items.append(Tlv(TlvTag.ITS_SESSION_INFO, its_session_info.to_bytes()))
        items.extend(unknown)
        return cls(tuple(items))

    def get(self, tag: int) -> bytes | None:
        """The value of the (last) TLV with ``tag``, or None."""
        found = None
        for item in self.items:
            if item.tag == tag:
                found = item.value
        return found

    def _int(self, tag: int) -> int | None:
        value = self.get(tag)
        return None if value is None else int.from_bytes(value, "big")

    @property
    def unknown(self) -> tuple[Tlv, ...]:
        """The TLVs whose tag is not one of :data:`TYPED_TAGS`, in order."""
        return tuple(item for item in self.items if item.tag not in TYPED_TAGS)

    @property
    def receipted_message_id(self) -> str | None:
        value = self.get(TlvTag.RECEIPTED_MESSAGE_ID)
        return None if value is None else value.rstrip(b"\0").decode("latin-1")

    @property
    def user_message_reference(self) -> int | None:
        return self._int(TlvTag.USER_MESSAGE_REFERENCE)

    @property
    def sar_msg_ref_num(self) -> int | None:
        return self._int(TlvTag.SAR_MSG_REF_NUM)

    @property
    def sar_total_segments(self) -> int | None:
        return self._int(TlvTag.SAR_TOTAL_SEGMENTS)

    @property
    def sar_segment_seqnum(self) -> int | None:
        return self._int(TlvTag.SAR_SEGMENT_SEQNUM)

    @property
    def sc_interface_version(self) -> int | None:
        return self._int(TlvTag.SC_INTERFACE_VERSION)

    @property
    def message_payload(self) -> bytes | None:
        return self.get(TlvTag.MESSAGE_PAYLOAD)

    @property
    def message_state(self) -> int | None:
        return self._int(TlvTag.MESSAGE_STATE)

    @property
    def ussd_service_op(self) -> int | None:
        return self._int(TlvTag.USSD_SERVICE_OP)

    @property
    def its_session_info(self) -> ItsSessionInfo | None:
        value = self.get(TlvTag.ITS_SESSION_INFO)
        return None if value is None else ItsSessionInfo.from_bytes(value)

    def to_bytes(self) -> bytes:
        return b"".join([item.to_bytes() for item in self.items])


NO_TLVS = OptionalParams()


def parse_tlvs(data: bytes, position: int, end: int) -> OptionalParams:
    """The TLVs in ``data[position:end]``; a TLV cut short is ESME_RINVOPTPARSTREAM (§5.1.3).

    The wire bounds tag and length to 16 bits, so only the typed tags need the
    checks of :class:`Tlv`; the rest are built without running them again.
    """
    if position == end:
        return NO_TLVS
    items: list[Tlv] = []
    seen: set[int] = set()
    while position < end:
        if end - position < TLV_HEADER_OCTETS:
            raise FieldError(CommandStatus.ESME_RINVOPTPARSTREAM, f"{end - position} stray octets after the last TLV", field="tlv")
        tag = data[position] << 8 | data[position + 1]
        length = data[position + 2] << 8 | data[position + 3]
        position += TLV_HEADER_OCTETS
        if position + length > end:
            raise FieldError(
                CommandStatus.ESME_RINVOPTPARSTREAM,
                f"value of {length} octets overruns the PDU by {position + length - end}",
                field=_name(tag),
            )
        value = data[position : position + length]
        position += length
        if tag in TYPED_TAGS:
            _check_typed(tag, value)
            if tag in seen:
                raise FieldError(CommandStatus.ESME_RINVOPTPARSTREAM, "appears twice", field=_name(tag))
            seen.add(tag)
        item = object.__new__(Tlv)
        object.__setattr__(item, "tag", tag)
        object.__setattr__(item, "value", value)
        items.append(item)
    params = object.__new__(OptionalParams)
    object.__setattr__(params, "items", tuple(items))
    return params


def _integer(number: int, size: int, tag: int) -> bytes:
    if not 0 <= number < 1 << (8 * size):
        raise FieldError(CommandStatus.ESME_RINVOPTPARAMVAL, f"{number} does not fit {size} octet(s)", field=_name(tag))
    return number.to_bytes(size, "big")


def text_tlv(tag: int, text: str) -> Tlv:
    """A C-Octet String TLV: ``text`` in Latin-1 cut to :data:`VENDOR_TEXT_CHARS_MAX` characters, then NUL."""
    return Tlv(tag, _latin1(text, _name(tag))[:VENDOR_TEXT_CHARS_MAX] + b"\0")


def tlv_text(tlvs: OptionalParams, tag: int) -> str | None:
    """The text of a C-Octet String TLV (its NUL dropped, Latin-1), or None when ``tlvs`` lack it."""
    value = tlvs.get(tag)
    return None if value is None else value.rstrip(b"\0").decode("latin-1")


def _latin1(text: str, field: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise FieldError(CommandStatus.ESME_RINVOPTPARAMVAL, "holds a character beyond one octet", field=field) from exc
