"""What simulated phones receive: deliver_sm into whole messages, filed in bounded per-MSISDN inboxes.

Spec: SMPP 3.4 §4.6.1 (deliver_sm), §5.2.12 (esm_class), §5.3.2.22–24 (SAR
TLVs), §5.3.2.44 (ussd_service_op); 3GPP TS 23.040 §9.2.3.24.1 and .8
(concatenation IEs), §9.2.3.9 (TP-PID); TS 23.038 (GSM 7-bit, UCS2).

Theory of operation. :meth:`Inboxes.receive` takes each deliver_sm a phone
client acknowledged. A part of a concatenated text (a concatenation IE in the
user data header, else the SAR TLVs) waits with its siblings, keyed by
(MSISDN, source, reference, total), until all are there; their user data,
headers removed, is joined and decoded once
(:func:`~simwallet.gateway.sms.segments.decode_payload`), so an escape or a
surrogate pair split between parts still reads right. Whole messages go to the
MSISDN's inbox; :meth:`Inboxes.next` waits for one.

Decisions:

* A deliver_sm whose SMSC message id (:func:`~.router.smsc_message_id`) was
  seen in the last :data:`RECENT_IDS_MAX` is not filed again: the phone shows a
  redelivered SMS once (``duplicates`` counts them).
* An inbox holds at most ``inbox_max`` messages; a full one drops its oldest
  message and counts it in ``dropped``, so a load generator that never reads
  cannot grow memory or stall the SMSC. At most :data:`PARTS_PENDING_MAX`
  concatenated texts are being joined at once; the oldest is forgotten beyond.
* What counts as text: data_coding 0x00, 0x01, 0x03 or 0x08, and not
  protocol_id 0x7F (SIM data download). USSD and receipts are decoded too when
  their coding allows. Everything else (binary SMS-PP with DCS 0xF6 and a
  command packet header) is handed out raw, with ``text`` None.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field, replace

from simwallet.applet.errors import CodecError
from simwallet.applet.protocols.sms_udh import parse_udh
from simwallet.gateway.smpp import DeliverSm, ItsSessionInfo
from simwallet.gateway.sms.errors import SmsError
from simwallet.gateway.sms.segments import ESM_CLASS_UDHI, decode_payload
from simwallet.gateway.smsc.errors import InboxTimeout, PhoneError
from simwallet.gateway.smsc.router import ESM_CLASS_DELIVERY_RECEIPT, smsc_message_id

# Messages one simulated phone keeps unread; a real handset's SIM holds a few dozen.
INBOX_MESSAGES_MAX = 100
# MSISDNs with an inbox at once (a load test's pool of phones).
INBOXES_MAX = 100_000
# SMSC message ids remembered to show a redelivered message once.
RECENT_IDS_MAX = 10_000
# Concatenated texts being joined at once, over all phones.
PARTS_PENDING_MAX = 10_000
# SMPP 3.4 §5.2.19: the text codings a phone shows.
TEXT_CODINGS = frozenset({0x00, 0x01, 0x03, 0x08})
# TS 23.040 §9.2.3.9: TP-PID 0x7F, (U)SIM data download.
PROTOCOL_ID_SIM_DATA_DOWNLOAD = 0x7F
# §5.2.12: esm_class bits 5–2, the message type.
ESM_CLASS_TYPE_MASK = 0x3C


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message a simulated phone received (all parts of a concatenated text joined)."""

    # The receiving phone, and who sent it.
    msisdn: str
    source: str
    # The text, for text SMS, USSD in a text coding, and receipts; None for binary data.
    text: str | None
    data_coding: int
    esm_class: int
    protocol_id: int
    # The user data as received (header included); of a concatenated text, the parts' user data without headers, joined.
    short_message: bytes
    ussd_service_op: int | None = None
    its_session_info: ItsSessionInfo | None = None
    # The SMSC's message id of each deliver_sm it came in.
    message_ids: tuple[str, ...] = ()
    parts: int = 1
    receipted_message_id: str | None = None
    message_state: int | None = None

    @property
    def is_receipt(self) -> bool:
        return self.esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_DELIVERY_RECEIPT


@dataclass(slots=True)
class _Parts:
    """The parts of one concatenated text received so far, by sequence number."""

    total: int
    ids: list[str] = field(default_factory=list)
    payloads: dict[int, bytes] = field(default_factory=dict)


def _split(body: DeliverSm) -> tuple[bytes, tuple[int, int, int] | None]:
    """The user data without its header, and (reference, total, sequence) for a part of a concatenated message."""
    payload = body.payload
    if body.esm_class & ESM_CLASS_UDHI:
        with contextlib.suppress(CodecError):
            header, end = parse_udh(payload)
            payload = payload[end:]
            concatenation = header.concatenation
            if concatenation is not None and concatenation.total > 1:
                return payload, (concatenation.reference, concatenation.total, concatenation.sequence)
    tlvs = body.tlvs
    reference, total, sequence = tlvs.sar_msg_ref_num, tlvs.sar_total_segments, tlvs.sar_segment_seqnum
    if reference is not None and total is not None and sequence is not None and total > 1 and sequence <= total:
        return payload, (reference, total, sequence)
    return payload, None


def _text(data_coding: int, payload: bytes) -> str | None:
    try:
        return decode_payload(data_coding, payload)
    except SmsError:
        return None


class Inboxes:
    """The inboxes of the phones one client carries."""

    def __init__(self, inbox_max: int = INBOX_MESSAGES_MAX) -> None:
        if inbox_max < 1:
            raise PhoneError(f"inbox_max {inbox_max} below 1", field="inbox_max")
        self.inbox_max = inbox_max
        self._inboxes: dict[str, collections.deque[ReceivedMessage]] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._parts: dict[tuple[str, str, int, int], _Parts] = {}
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._ussd_peer: dict[str, str] = {}
        self.received = 0
        self.duplicates = 0
        self.dropped = 0

    def receive(self, body: DeliverSm) -> ReceivedMessage | None:
        """File what ``body`` completes; the message filed, or None (a duplicate, or parts still missing)."""
        message_id = smsc_message_id(body.tlvs)
        if message_id is not None:
            if message_id in self._recent:
                self.duplicates += 1
                return None
            self._recent[message_id] = None
            while len(self._recent) > RECENT_IDS_MAX:
                self._recent.popitem(last=False)
        message = self._read(body, (message_id,) if message_id is not None else ())
        if message is not None:
            self._file(message)
        return message

    def _read(self, body: DeliverSm, ids: tuple[str, ...]) -> ReceivedMessage | None:
        msisdn, tlvs = body.destination_addr, body.tlvs
        raw = ReceivedMessage(
            msisdn,
            body.source_addr,
            None,
            body.data_coding,
            body.esm_class,
            body.protocol_id,
            body.payload,
            tlvs.ussd_service_op,
            tlvs.its_session_info,
            ids,
            1,
            tlvs.receipted_message_id,
            tlvs.message_state,
        )
        if raw.is_receipt:
            return replace(raw, text=body.payload.decode("latin-1"))
        if tlvs.ussd_service_op is not None:
            self._ussd_peer[msisdn] = body.source_addr
            return replace(raw, text=_text(body.data_coding, body.payload))
        if body.data_coding not in TEXT_CODINGS or body.protocol_id == PROTOCOL_ID_SIM_DATA_DOWNLOAD:
            return raw
        payload, concatenation = _split(body)
        if concatenation is None:
            return replace(raw, text=_text(body.data_coding, payload))
        reference, total, sequence = concatenation
        key = (msisdn, body.source_addr, reference, total)
        parts = self._parts.pop(key, None) or _Parts(total)
        parts.ids.extend(ids)
        parts.payloads.setdefault(sequence, payload)
        if len(parts.payloads) < total:
            self._parts[key] = parts
            while len(self._parts) > PARTS_PENDING_MAX:
                del self._parts[next(iter(self._parts))]
            return None
        user_data = b"".join(parts.payloads[number] for number in sorted(parts.payloads))
        return replace(raw, text=_text(body.data_coding, user_data), short_message=user_data, message_ids=tuple(parts.ids), parts=total)

    def _inbox(self, msisdn: str) -> collections.deque[ReceivedMessage]:
        inbox = self._inboxes.get(msisdn)
        if inbox is None:
            if len(self._inboxes) >= INBOXES_MAX:
                raise PhoneError(f"more than {INBOXES_MAX} phones with an inbox", field="msisdn")
            inbox = self._inboxes[msisdn] = collections.deque()
            self._arrived[msisdn] = asyncio.Event()
        return inbox

    def _file(self, message: ReceivedMessage) -> None:
        try:
            inbox = self._inbox(message.msisdn)
        except PhoneError:
            self.dropped += 1
            return
        if len(inbox) >= self.inbox_max:
            inbox.popleft()
            self.dropped += 1
        inbox.append(message)
        self.received += 1
        self._arrived[message.msisdn].set()

    async def next(self, msisdn: str, timeout_s: float) -> ReceivedMessage:
        """The oldest unread message of ``msisdn``, waiting up to ``timeout_s`` (:class:`InboxTimeout`)."""
        inbox = self._inbox(msisdn)
        arrived = self._arrived[msisdn]
        try:
            async with asyncio.timeout(timeout_s):
                while not inbox:
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError as exc:
            raise InboxTimeout(f"no message for {msisdn} within {timeout_s} s", field="msisdn") from exc
        return inbox.popleft()

    def unread(self, msisdn: str) -> int:
        inbox = self._inboxes.get(msisdn)
        return len(inbox) if inbox is not None else 0

    def ussd_peer(self, msisdn: str) -> str | None:
        """Who sent ``msisdn`` its last USSD message (the address an answer goes to)."""
        return self._ussd_peer.get(msisdn)
