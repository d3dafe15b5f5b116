"""The gateway's ESME: binds to the SMSC, serves each deliver_sm through its channel and the wallet service, answers with submit_sm.

Spec: SMPP 3.4 §2.3 (binds), §4.4 (submit_sm), §4.6 (deliver_sm), §5.2.12
(esm_class: a delivery receipt is message type 0x04); the channel modules of
this package; the at-least-once delivery of SMSCs (a deliver_sm not answered
is delivered again).

Theory of operation
-------------------
``binds`` tasks each keep one bind up (:func:`~simwallet.gateway.smpp.aio.bind_with_retry`,
with back-off). Every deliver_sm goes to its channel as soon as it is read
(:class:`~simwallet.gateway.esme.sms_channel.SmsChannel` for text); what the
channel wants served is queued, and one batcher takes up to ``batch_max``
requests at a time to the service (:meth:`handle_batch`, in a worker thread:
the event loop keeps reading). For each reply it sends the submit_sm(s) and,
once the SMSC has taken them (submit_sm_resp OK: the reply is the SMSC's to
deliver now), answers the deliver_sm(s) the request came in. So nothing is
acknowledged before it is acted on: a gateway that stops at any point leaves
the SMSC holding every message it did not finish, and the SMSC's redelivery
meets the service's stored reply (the same answer, no second posting).

A submit_sm refused with ESME_RTHROTTLED or ESME_RMSGQFUL is sent again after
a back-off; one that fails because its bind dropped is sent again on another
bind (or the next). The window of each bind bounds what is in flight.

Metrics (prometheus-client, one registry per gateway): MO and MT counted per
service, the MO→MT latency histogram (deliver_sm read to the last
submit_sm_resp of its reply), binds up, throttles, replays and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from simwallet.applet.protocols.sms_udh import IEI_CPI
from simwallet.gateway.errors import GatewayError
from simwallet.gateway.esme.metrics import GatewayMetrics
from simwallet.gateway.esme.sms_channel import Answer, Hold, Inbound, Serve, SmsChannel, reply_segments, text_segments
from simwallet.gateway.esme.stk_channel import StkChannel, StkInbound, StkReject, StkServe
from simwallet.gateway.esme.ussd_channel import UssdChannel, UssdHold, UssdInbound, UssdReply, UssdServe
from simwallet.gateway.esme.ussd_menus import ussd_segment
from simwallet.gateway.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    OptionalParams,
    Pdu,
    PduBody,
    SmppError,
    SubmitSm,
    Tlv,
)
from simwallet.gateway.smpp.aio import SmppConnection, SmppConnectionLost, SmppThrottled, bind_with_retry
from simwallet.gateway.smpp.session import SessionConfig, SessionState
from simwallet.gateway.smpp.tlv import VENDOR_CLIENT_REFERENCE, VENDOR_SMSC_MESSAGE_ID, VENDOR_TEXT_CHARS_MAX, text_tlv, tlv_text
from simwallet.gateway.smpp.window import backoff_s
from simwallet.gateway.sms.errors import SmsError
from simwallet.gateway.sms.segments import ESM_CLASS_UDHI, Segment, decode_payload
from simwallet.gateway.wallet.outcomes import ServiceReply, ServiceRequest

logger = logging.getLogger(__name__)

_BOUND: Final = frozenset({SessionState.BOUND_TRX, SessionState.BOUND_TX})

# Requests the batcher hands the service at once (the service's own limit is the upper bound).
BATCH_MAX: Final = 256
# How long the batcher waits for more requests once it has one (a few ms buy batches of hundreds under load).
BATCH_WAIT_S: Final = 0.002
# Requests waiting for the batcher at most; beyond it deliver_sm are answered ESME_RMSGQFUL (the SMSC retries later).
QUEUE_MAX: Final = 4096
# Attempts to place one submit_sm before its reply is given up (logged; the SMSC redelivers the request).
SUBMIT_ATTEMPTS_MAX: Final = 8
# esm_class message type of a delivery receipt (SMPP 3.4 §5.2.12).
ESM_TYPE_MASK: Final = 0x3C
ESM_TYPE_RECEIPT: Final = 0x04


class Service(Protocol):
    """What the gateway needs of :class:`~simwallet.gateway.wallet.service.WalletService` (or the benchmark's echo)."""

    def handle_batch(self, requests: Sequence[ServiceRequest]) -> list[ServiceReply]: ...


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "gateway"
    password: str = field(default="", repr=False)
    system_type: str = ""
    binds: int = 1
    # "trx": transceiver binds; "tx+rx": a transmitter and a receiver bind each (SMSCs that want them apart).
    bind_type: str = "trx"
    # Requests outstanding per bind (SMPP window) and submit_sm per second over all binds (None: as fast as taken).
    window: int = 64
    throughput_per_s: float | None = None
    batch_max: int = BATCH_MAX
    batch_wait_s: float = BATCH_WAIT_S
    # Batches the service works on at once (each in a worker thread, its own transactions).
    batches_in_flight: int = 1
    ussd_code: str = "*166#"


@dataclass(frozen=True)
class _Token:
    """Which deliver_sm to answer: its connection and PDU."""

    connection: SmppConnection
    pdu: Pdu
    received: float


@dataclass
class _Work:
    """A request for the service, the deliver_sm(s) it came in, and how its reply goes out (True: the SMSC took it)."""

    request: ServiceRequest
    tokens: tuple[Hashable, ...]
    received: float
    send: Callable[[ServiceReply], Awaitable[bool]]


class Gateway:
    """The ESME: ``await run(stop)`` serves until ``stop`` is set, then drains and unbinds."""

    def __init__(
        self,
        config: GatewayConfig,
        service: Service,
        *,
        stk: StkChannel | None = None,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.service = service
        self.stk = stk
        self.metrics = metrics or GatewayMetrics()
        self._clock = clock
        self._sms = SmsChannel()
        self._ussd = UssdChannel(config.ussd_code)
        self._in_flight = asyncio.Semaphore(max(1, config.batches_in_flight))
        if config.bind_type not in ("trx", "tx+rx") or config.window < 1 or (config.throughput_per_s or 1) <= 0:
            raise ValueError("bind_type is trx or tx+rx; window at least 1; throughput_per_s positive")
        self._pace = None if config.throughput_per_s is None else Pacer(config.throughput_per_s, clock)
        self._queue: asyncio.Queue[_Work] = asyncio.Queue(QUEUE_MAX)
        self._connections: list[SmppConnection] = []
        self._refs = itertools.cycle(range(1, 256))
        self._rng = random.Random()  # noqa: S311 (back-off jitter and bind choice, not secrecy)

    # -- running --------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kinds: tuple[type[PduBody], ...] = (BindTransceiver,) if self.config.bind_type == "trx" else (BindTransmitter, BindReceiver)
        tasks = [
            asyncio.create_task(self._keep_bound(i, kind, stop), name=f"bind {i} {kind.__name__}")
            for i in range(self.config.binds)
            for kind in kinds
        ]
        batcher = asyncio.create_task(self._batcher(stop), name="batcher")
        sweeper = asyncio.create_task(self._sweeper(stop), name="sweeper")
        await stop.wait()
        # Drain: what is queued is served and answered before the binds go.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained(), timeout=10.0)
        for task in (batcher, sweeper):
            task.cancel()
        for connection in list(self._connections):
            with contextlib.suppress(SmppError, OSError):
                await connection.unbind()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, batcher, sweeper, return_exceptions=True)

    async def _drained(self) -> None:
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        await self._queue.join()

    async def _keep_bound(self, index: int, kind: type[PduBody], stop: asyncio.Event) -> None:
        c = self.config
        body = kind(system_id=c.system_id, password=c.password, system_type=c.system_type)  # type: ignore[call-arg]
        session = SessionConfig(window_size_max=c.window)
        while not stop.is_set():
            try:
                connection = await bind_with_retry(c.host, c.port, body, on_request=self._on_request, config=session, stop=stop)
            except SmppConnectionLost:
                return  # stopped while binding
            self._connections.append(connection)
            self.metrics.binds_up.inc()
            try:
                await connection.wait_closed()
            finally:
                self._connections.remove(connection)
                self.metrics.binds_up.dec()
            logger.info("bind %d lost; binding again", index)

    # -- inbound ------------------------------------------------------------------------------------------

    def _on_request(self, connection: SmppConnection, pdu: Pdu) -> None:
        body = pdu.body
        if not isinstance(body, DeliverSm):
            connection.respond(pdu, status=CommandStatus.ESME_RINVCMDID)
            return
        now = self._clock()
        if body.esm_class & ESM_TYPE_MASK == ESM_TYPE_RECEIPT:
            self.metrics.receipts.inc()
            connection.respond(pdu, DeliverSmResp())
            return
        token = _Token(connection, pdu, now)
        op = body.tlvs.ussd_service_op
        if op is not None:
            self.metrics.mo.labels("ussd").inc()
            self._ussd_request(token, body, op)
            return
        if self.stk is not None and is_secured_packet(body):
            self.metrics.mo.labels("stk").inc()
            asyncio.get_running_loop().create_task(self._stk_request(token, body))
            return
        self.metrics.mo.labels("sms").inc()
        tlvs = body.tlvs
        inbound = Inbound(
            token,
            smsc_message_id(pdu),
            body.source_addr,
            body.destination_addr,
            body.data_coding,
            body.esm_class,
            body.payload,
            tlvs.sar_msg_ref_num,
            tlvs.sar_total_segments,
            tlvs.sar_segment_seqnum,
        )
        step = self._sms.receive(inbound, now)
        if isinstance(step, Hold):
            return
        if isinstance(step, Answer):
            asyncio.get_running_loop().create_task(self._answer_directly(step))
            return
        self._enqueue(_Work(step.request, step.tokens, now, functools.partial(self._send_sms, step)))

    def _enqueue(self, work: _Work) -> None:
        try:
            self._queue.put_nowait(work)
        except asyncio.QueueFull:
            self.metrics.errors.labels("queue_full").inc()
            for t in work.tokens:
                _respond(t, status=CommandStatus.ESME_RMSGQFUL)

    def _ussd_request(self, token: _Token, body: DeliverSm, op: int) -> None:
        """A USSD dialogue step: the menu answers at once; a complete request is served like any other."""
        try:
            text = decode_payload(body.data_coding, body.payload)
        except SmsError:
            text = ""  # unreadable: the menu treats it as a wrong answer
        smsc_id = smsc_message_id(token.pdu)
        if smsc_id.startswith("h"):  # no SMSC id: a digest would make two equal answers look like one redelivered
            smsc_id = f"{smsc_id}-{token.pdu.sequence_number}"
        inbound = UssdInbound(token, smsc_id, body.source_addr, body.destination_addr, op, text)
        try:
            step = self._ussd.receive(inbound, token.received)
        except GatewayError as exc:
            logger.warning("ussd: dropped a deliver_sm from %s: %s", body.source_addr[-4:], exc.code)
            _respond(token)
            return
        if isinstance(step, UssdHold):
            return
        if isinstance(step, UssdReply):
            asyncio.get_running_loop().create_task(self._send_ussd(step))
            return
        # The channel answers the deliver_sm(s) with the result (complete()), so the work carries no tokens.
        self._enqueue(_Work(step.request, (), token.received, functools.partial(self._ussd_result, step)))

    async def _ussd_result(self, serve: UssdServe, reply: ServiceReply) -> bool:
        return await self._send_ussd(self._ussd.complete(serve.session, reply))

    async def _send_ussd(self, reply: UssdReply) -> bool:
        sent = True
        if reply.text:
            data_coding, short_message = ussd_segment(reply.text)
            body = SubmitSm(
                source_addr=reply.service_code,
                destination_addr=reply.msisdn,
                data_coding=data_coding,
                short_message=short_message,
                tlvs=OptionalParams.of(ussd_service_op=int(reply.op)),
            )
            sent = await self._submit(body)
            if sent:
                self.metrics.mt.labels("ussd").inc()
        if sent:
            for t in reply.tokens:
                _respond(t)
        return sent

    async def _stk_request(self, token: _Token, body: DeliverSm) -> None:
        """A secured request of the wallet applet: checked (in a worker thread: it locks the card's counter row), then served."""
        assert self.stk is not None
        inbound = StkInbound(
            token, smsc_message_id(token.pdu), body.source_addr, body.destination_addr, body.data_coding, body.esm_class,
            body.protocol_id, body.payload,
        )  # fmt: skip
        try:
            step = await asyncio.to_thread(self.stk.receive, inbound)
        except GatewayError:
            # The database failed: leave it unanswered, the SMSC delivers it again.
            logger.exception("stk: cannot check a request")
            self.metrics.errors.labels("stk_store").inc()
            return
        if isinstance(step, StkReject):
            self.metrics.errors.labels(f"stk_{step.reason.value}").inc()
            _respond(token)  # dropped: answered to the SMSC, nothing sent to the phone
            return
        if step.answer is not None:
            if await self._send_stk(step, step.answer):
                _respond(token)
            return
        assert step.request is not None
        self._enqueue(_Work(step.request, (token,), token.received, functools.partial(self._send_stk, step)))

    async def _send_stk(self, serve: StkServe, reply: ServiceReply) -> bool:
        assert self.stk is not None
        try:
            out = await asyncio.to_thread(self.stk.respond, serve, reply)
        except GatewayError:
            logger.exception("stk: cannot secure an answer")
            self.metrics.errors.labels("stk_store").inc()
            return False
        body = SubmitSm(
            source_addr=out.source,
            destination_addr=out.destination,
            protocol_id=out.protocol_id,
            esm_class=out.esm_class,
            data_coding=out.data_coding,
            short_message=out.short_message,
            # The request's reference: an answer secured again for a redelivered request (under a higher
            # counter) is not delivered to a card that has the first one.
            tlvs=OptionalParams.of(unknown=[client_reference(serve.key, 0)]),
        )
        if not await self._submit(body):
            return False
        self.metrics.mt.labels("stk").inc()
        return True

    async def _send_sms(self, serve: Serve, reply: ServiceReply) -> bool:
        segments = reply_segments(reply, ref=_concatenation_ref(serve.request.key))
        return await self._submit_all(serve.reply_to, serve.request.msisdn, segments, "sms", reference=serve.request.key)

    async def _answer_directly(self, answer: Answer) -> None:
        if answer.destination and answer.text:
            await self._submit_all(answer.reply_to, answer.destination, text_segments(answer.text, ref=next(self._refs)), "sms")
        for t in answer.tokens:
            _respond(t)

    async def _sweeper(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            now = self._clock()
            for answer in self._sms.expire(now):
                await self._answer_directly(answer)
            for ended in self._ussd.expire(now):
                await self._send_ussd(ended.reply)

    # -- serving --------------------------------------------------------------------------------------------

    async def _batcher(self, stop: asyncio.Event) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = self._clock() + self.config.batch_wait_s
            while len(batch) < self.config.batch_max:
                remaining = deadline - self._clock()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    batch.append(self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining))
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            # Up to batches_in_flight batches at once: one batch's database round trips overlap another's Python.
            await self._in_flight.acquire()
            # The batch goes to the worker thread now: the previous batch's reply tasks are already queued
            # on the loop, and a task started here would wait for all of them before handing it over.
            served = asyncio.get_running_loop().run_in_executor(None, self.service.handle_batch, [w.request for w in batch])
            asyncio.get_running_loop().create_task(self._serve_batch(batch, served))

    async def _serve_batch(self, batch: list[_Work], served: asyncio.Future[list[ServiceReply]]) -> None:
        try:
            replies = await served
        except Exception:
            # Nothing answered: the SMSC delivers every one of them again.
            logger.exception("the service failed a batch of %d requests", len(batch))
            self.metrics.errors.labels("service").inc()
            for _ in batch:
                self._queue.task_done()
            return
        finally:
            self._in_flight.release()
        for work, reply in zip(batch, replies, strict=True):
            asyncio.get_running_loop().create_task(self._reply(work, reply))

    async def _reply(self, work: _Work, reply: ServiceReply) -> None:
        try:
            if reply.replayed:
                self.metrics.replays.inc()
            sent = await work.send(reply)
            if sent and reply.stored:
                for t in work.tokens:
                    _respond(t)
                self.metrics.latency.observe(self._clock() - work.received)
        finally:
            self._queue.task_done()

    async def _submit_all(
        self, source: str, destination: str, segments: Sequence[Segment], service: str, *, reference: str | None = None
    ) -> bool:
        """Send the parts of one reply; ``reference`` (the request key) makes each part's client reference."""
        for index, segment in enumerate(segments):
            tlvs = OptionalParams() if reference is None else OptionalParams.of(unknown=[client_reference(reference, index)])
            body = SubmitSm(
                source_addr=source,
                destination_addr=destination,
                esm_class=segment.esm_class,
                data_coding=segment.data_coding,
                short_message=segment.short_message,
                tlvs=tlvs,
            )
            if not await self._submit(body):
                return False
            self.metrics.mt.labels(service).inc()
        return True

    async def _submit(self, body: SubmitSm) -> bool:
        if self._pace is not None:
            await self._pace.wait()
        for attempt in range(SUBMIT_ATTEMPTS_MAX):
            connection = self._any_connection()
            if connection is None:
                await asyncio.sleep(backoff_s(attempt, self._rng, base_s=0.05, cap_s=1.0))
                continue
            try:
                await connection.request(body)
                return True
            except SmppThrottled:
                self.metrics.throttles.inc()
                await asyncio.sleep(backoff_s(attempt, self._rng, base_s=0.05, cap_s=2.0))
            except SmppError as exc:
                self.metrics.errors.labels("submit").inc()
                logger.warning("submit_sm failed (%s); trying again", exc.code)
                await asyncio.sleep(backoff_s(attempt, self._rng, base_s=0.05, cap_s=1.0))
        logger.error("a reply could not be placed after %d attempts; the SMSC will deliver its request again", SUBMIT_ATTEMPTS_MAX)
        return False

    @property
    def bound(self) -> int:
        """Binds up now (the health endpoint's answer)."""
        return sum(1 for c in self._connections if c.state in _BOUND)

    def _any_connection(self) -> SmppConnection | None:
        live = [c for c in self._connections if c.state in _BOUND]
        return self._rng.choice(live) if live else None


class Pacer:
    """At most ``rate`` per second, evenly spaced (no burst): the SMSC's throughput agreement kept from our side."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def _respond(token: Hashable, *, status: int = CommandStatus.ESME_ROK) -> None:
    assert isinstance(token, _Token)
    with contextlib.suppress(SmppError, OSError):
        token.connection.respond(token.pdu, DeliverSmResp() if status == CommandStatus.ESME_ROK else None, status=status)


def is_secured_packet(body: DeliverSm) -> bool:
    """A TS 31.115 SMS-PP command packet: 8-bit data with a user data header whose first element is the CPI (IEI 0x70)."""
    payload = body.payload
    return bool(body.esm_class & ESM_CLASS_UDHI) and body.data_coding & 0x0C == 0x04 and len(payload) >= 3 and payload[1] == IEI_CPI


def client_reference(request_key: str, part: int) -> Tlv:
    """The client reference TLV of a reply's ``part``: the same request answered again carries the same references."""
    # An SMSC that suppresses duplicates keys on it (the embedded one does): a reply sent again after a
    # redelivery is not delivered twice.
    return text_tlv(VENDOR_CLIENT_REFERENCE, hashlib.sha256(f"{request_key}#{part}".encode()).hexdigest()[:32])


def _concatenation_ref(request_key: str) -> int:
    # The same reply sent again uses the same 8-bit reference, so a phone joins no mix of two sends.
    return hashlib.sha256(request_key.encode()).digest()[0]


def smsc_message_id(pdu: Pdu, tag: int = VENDOR_SMSC_MESSAGE_ID) -> str:
    """The SMSC's id of an MO message, which its redeliveries repeat.

    SMPP 3.4 gives an MO deliver_sm no message id; SMSCs put theirs in a vendor TLV (the embedded SMSC
    and the default here: 0x1400, a C-Octet String). Without it, a digest of what the message says
    and who sent it stands in: a redelivery is the same message, so it keys the same.
    """
    value = tlv_text(pdu.body.tlvs, tag) if isinstance(pdu.body, DeliverSm) else None
    if value:
        return value[:VENDOR_TEXT_CHARS_MAX]
    body = pdu.body
    assert isinstance(body, DeliverSm)
    digest = hashlib.sha256(b"\0".join([body.source_addr.encode("latin-1"), body.destination_addr.encode("latin-1"), body.payload]))
    return "h" + digest.hexdigest()[:32]
