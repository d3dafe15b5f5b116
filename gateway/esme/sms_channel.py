"""The SMS command channel, sans I/O: deliver_sm parts in, service requests or direct replies out, replies into submit_sm.

Spec: SMPP 3.4 §4.6.1 (deliver_sm fields), §5.2.12 (esm_class: UDHI 0x40,
message type bits 2-5), §5.3.2.22-24 (SAR TLVs); 3GPP TS 23.040 §9.2.3.24.1
(concatenation); the command language of :mod:`simwallet.gateway.sms.commands`
and the catalogue of :mod:`simwallet.gateway.sms.catalogue`.

Theory of operation
-------------------
:meth:`SmsChannel.receive` takes one deliver_sm (as :class:`Inbound`: the
fields the channel reads, the SMSC's id of the message, and an opaque
``token`` the driver uses to answer it) and says what to do:

* :class:`Hold` — a part of a longer message: do not answer the deliver_sm
  yet. Its parts are answered together once the message is complete and
  served, so a gateway that stops half-way has acknowledged nothing it did
  not act on (the SMSC delivers the parts again).
* :class:`Serve` — a complete command: a :class:`ServiceRequest` keyed
  ``sms:<source>:<smsc id>`` (the id of the first part of a long message,
  which every redelivery repeats) and the tokens to answer once it is served.
* :class:`Answer` — a reply the channel gives by itself (a command it
  cannot parse, a message it cannot decode) with the tokens to answer.

:meth:`SmsChannel.expire` gives up on long messages whose parts stopped
coming: their held tokens are answered and the sender is told the message
was incomplete. :func:`reply_segments` renders a service reply in the
sender's language and cuts it into submit_sm segments (GSM 7-bit when the
text fits the default alphabet, else UCS2; concatenated beyond one).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final

from simwallet.gateway.ledger.model import Channel
from simwallet.gateway.sms.catalogue import Lang, MessageId, render
from simwallet.gateway.sms.commands import parse_command
from simwallet.gateway.sms.errors import CommandSyntaxError, MoDecodeError
from simwallet.gateway.sms.segments import MoPart, Reassembler, Segment, encode_reply
from simwallet.gateway.wallet.outcomes import ServiceReply, ServiceRequest

# SMPP 3.4 §5.2.12: esm_class bits 2-5 give the message type; 0 is a normal message (MO text).
ESM_TYPE_MASK: Final = 0x3C
ESM_TYPE_DEFAULT: Final = 0x00
# TS 23.040 numbers are at most 20 digits (E.164 15, plus room for national prefixes the SMSC leaves).
ADDRESS_DIGITS_MAX: Final = 20
# Tokens held for one incomplete message at most (its parts and their redeliveries).
HELD_TOKENS_MAX: Final = 64


@dataclass(frozen=True)
class Inbound:
    """One deliver_sm as the channel reads it; ``token`` is the driver's handle for answering it."""

    token: Hashable
    smsc_id: str
    source: str
    destination: str
    data_coding: int
    esm_class: int
    short_message: bytes
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None


@dataclass(frozen=True)
class Hold:
    """Keep the deliver_sm unanswered: its message is not complete yet."""


@dataclass(frozen=True)
class Serve:
    request: ServiceRequest
    reply_to: str  # the short code the subscriber wrote to (the reply's source address)
    tokens: tuple[Hashable, ...]


@dataclass(frozen=True)
class Answer:
    destination: str  # the subscriber
    reply_to: str
    text: str
    tokens: tuple[Hashable, ...]


Step = Hold | Serve | Answer


def normalize_address(address: str) -> str | None:
    """The subscriber's number as the service keys it (E.164 digits, no ``+``), or None if it is not a number."""
    digits = address[1:] if address.startswith("+") else address
    if not digits.isascii() or not digits.isdigit() or not 0 < len(digits) <= ADDRESS_DIGITS_MAX:
        return None
    return digits


@dataclass
class SmsChannel:
    """Turns deliver_sm into service requests; bounded by its :class:`Reassembler`."""

    reassembler: Reassembler = field(default_factory=Reassembler)
    # Tokens of the parts held in incomplete messages, by the SMSC id of the part (a redelivery adds one),
    # with the short code each was written to.
    _held: dict[str, tuple[str, list[Hashable]]] = field(default_factory=dict)

    def receive(self, inbound: Inbound, now: float) -> Step:
        """What to do with one deliver_sm carrying a text (see the module docstring)."""
        source = normalize_address(inbound.source)
        if source is None:
            # Nobody to answer (an alphanumeric sender, a broken address): acknowledge and drop.
            return Answer("", inbound.destination, "", (inbound.token,))
        part = MoPart(
            source,
            inbound.data_coding,
            inbound.esm_class,
            inbound.short_message,
            inbound.sar_msg_ref_num,
            inbound.sar_total_segments,
            inbound.sar_segment_seqnum,
            message_id=inbound.smsc_id,
        )
        try:
            message = self.reassembler.receive(part, now=now)
        except MoDecodeError:
            return Answer(source, inbound.destination, render(MessageId.HELP, _guess_lang(inbound)), (inbound.token,))
        if message is None:
            return self._hold(inbound)
        done = (*self._release(message.message_ids), inbound.token)
        try:
            command = parse_command(message.text)
        except CommandSyntaxError as exc:
            return Answer(source, inbound.destination, render(exc.message_id, exc.lang, **exc.params), done)
        first_id = next((i for i in message.message_ids if i), inbound.smsc_id)
        request = ServiceRequest(key=f"sms:{source}:{first_id}", channel=Channel.SMS, msisdn=source, command=command, lang=command.lang)
        return Serve(request, inbound.destination, done)

    def _hold(self, inbound: Inbound) -> Hold | Answer:
        if not self.reassembler.last_held:
            return Answer("", inbound.destination, "", (inbound.token,))  # a late copy of a part already served
        _, held = self._held.setdefault(inbound.smsc_id, (inbound.destination, []))
        if len(held) >= HELD_TOKENS_MAX:
            # The same part again and again: answer the copy rather than hold without bound.
            return Answer("", inbound.destination, "", (inbound.token,))
        held.append(inbound.token)
        return Hold()

    def expire(self, now: float) -> list[Answer]:
        """Long messages given up (their parts stopped coming): answer their parts and tell the sender."""
        out = []
        for dropped in self.reassembler.expire(now=now):
            reply_to = next((self._held[i][0] for i in dropped.message_ids if i in self._held), "")
            tokens = self._release(dropped.message_ids)
            out.append(Answer(dropped.source, reply_to, render(MessageId.INCOMPLETE, Lang.ZH), tokens))
        return out

    @property
    def held(self) -> int:
        """deliver_sm held unanswered now."""
        return sum(len(tokens) for _, tokens in self._held.values())

    def _release(self, smsc_ids: tuple[str, ...]) -> tuple[Hashable, ...]:
        out: list[Hashable] = []
        for smsc_id in dict.fromkeys(smsc_ids):
            entry = self._held.pop(smsc_id, None)
            if entry is not None:
                out.extend(entry[1])
        return tuple(out)


def reply_segments(reply: ServiceReply, *, ref: int) -> tuple[Segment, ...]:
    """The reply rendered in its language and cut into submit_sm segments (8-bit concatenation reference ``ref``)."""
    return encode_reply(render(reply.message_id, reply.lang, **reply.params), ref=ref)


def text_segments(text: str, *, ref: int) -> tuple[Segment, ...]:
    return encode_reply(text, ref=ref)


def _guess_lang(inbound: Inbound) -> Lang:
    # UCS2 text is nearly always Chinese here; anything else gets English.
    return Lang.ZH if inbound.data_coding == 0x08 else Lang.EN
