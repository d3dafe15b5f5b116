"""The embedded SMSC: an SMPP 3.4 server with store-and-forward between ESME accounts and simulated phones.

Spec: SMPP 3.4 §2.2–2.3 (binds and sessions), §4.1 (bind), §4.4 (submit_sm),
§4.6 (deliver_sm), §5.1.3 (command_status), Appendix B (delivery receipts).

Theory of operation. Every connection is an
:class:`~simwallet.gateway.smpp.aio.SmppConnection` whose requests come to
:meth:`SmscServer._on_request`:

* A bind is checked against the accounts (ESME_RINVSYSID, ESME_RINVPASWD, an
  address_range that is no regular expression ESME_RBINDFAIL) and becomes a
  :class:`_Bind` with its token bucket.
* A submit_sm is refused with ESME_RTHROTTLED beyond the bind's throughput,
  ESME_RINVSRCADR from a phones bind for an MSISDN it does not carry,
  ESME_RINVEXPIRY for a bad validity period, ESME_RMSGQFUL when its
  destination's queue holds ``queue_max`` messages; otherwise it is routed
  (:func:`~.router.route`), committed to the :class:`~.store.MessageStore`,
  and only then answered with its message id.
* Delivery: a message goes to a live receiving bind of its target, round robin
  among those with a free window slot, else into the backlog of the least
  loaded one; with no such bind it is *parked* under its target until one
  binds. One task per deliver_sm in flight awaits its response: ESME_ROK
  deletes the message (and queues a receipt when asked); no response within
  ``redeliver_after_s`` (the session's response timeout) or a dropped
  connection sends it again at once, to whichever bind is there;
  ESME_RTHROTTLED, ESME_RMSGQFUL and other temporary errors send it again after
  a back-off; ESME_RX_P_APPN, ESME_RX_R_APPN and ESME_RINVDSTADR give it up
  (an UNDELIV receipt when asked).
* Expiry: a message past its validity period (or ``max_age_s``) is dropped when
  it comes up for delivery, and a sweep every :data:`EXPIRY_SWEEP_S` drops the
  parked and backlogged ones; an EXPIRED receipt follows when asked.

Delivery is at least once: a message leaves the store only on ESME_ROK, so a
lost deliver_sm_resp, a killed process or a dropped bind all lead to a
redelivery with the same message id (the ESME deduplicates on it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path

from simwallet.gateway.smpp import (
    BindReceiverResp,
    BindTransceiverResp,
    BindTransmitterResp,
    CommandId,
    CommandStatus,
    FieldError,
    MessageState,
    OptionalParams,
    Pdu,
    SessionConfig,
    SessionState,
    SubmitSm,
    SubmitSmResp,
    backoff_s,
)
from simwallet.gateway.smpp.aio import SmppConnection, SmppConnectionLost, SmppRequestError, SmppThrottled, SmppTimeout
from simwallet.gateway.smpp.bodies import INTERFACE_VERSION_34
from simwallet.gateway.smpp.session import BIND_RESULT
from simwallet.gateway.smsc.config import Account, AccountKind, SmscConfig
from simwallet.gateway.smsc.errors import SmscConfigError, SmscStoreError
from simwallet.gateway.smsc.router import (
    Target,
    TargetKind,
    TokenBucket,
    carries,
    client_reference,
    compile_address_range,
    deliver_for,
    parse_smpp_time,
    receipt_for,
    route,
    wants_receipt,
)
from simwallet.gateway.smsc.store import MessageStore, StoredMessage

log = logging.getLogger(__name__)

# How often parked and backlogged messages are checked for expiry.
EXPIRY_SWEEP_S = 1.0
# Back-off of a deliver_sm refused as throttled or temporarily failed: from a quarter second up to half a minute.
RETRY_BASE_S = 0.25
RETRY_CAP_S = 30.0
# stop() waits this long for each bind's unbind_resp.
STOP_UNBIND_TIMEOUT_S = 1.0
# deliver_sm_resp statuses that give a message up: the receiver will never take it.
PERMANENT_FAILURES = frozenset({CommandStatus.ESME_RX_P_APPN, CommandStatus.ESME_RX_R_APPN, CommandStatus.ESME_RINVDSTADR})
_BIND_RESPONSES: dict[int, type[BindTransmitterResp | BindReceiverResp | BindTransceiverResp]] = {
    CommandId.BIND_TRANSMITTER: BindTransmitterResp,
    CommandId.BIND_RECEIVER: BindReceiverResp,
    CommandId.BIND_TRANSCEIVER: BindTransceiverResp,
}
_RECEIVING = frozenset({SessionState.BOUND_RX, SessionState.BOUND_TRX})


@dataclass(frozen=True, slots=True)
class AccountStats:
    """What happened to one account's traffic (counters since start)."""

    accepted: int = 0  # submit_sm accepted from its binds
    throttled: int = 0  # submit_sm refused with ESME_RTHROTTLED (above the bind's tps)
    queue_full: int = 0  # submit_sm refused with ESME_RMSGQFUL
    refused: int = 0  # submit_sm refused for anything else
    delivered: int = 0  # deliver_sm acknowledged by its binds
    redelivered: int = 0  # deliver_sm sent to its binds again (same message id)
    peer_throttled: int = 0  # deliver_sm its binds answered ESME_RTHROTTLED/ESME_RMSGQFUL
    expired: int = 0  # its messages dropped unsent at expiry
    receipts: int = 0  # receipts queued for it
    duplicates: int = 0  # submit_sm with a client reference seen before: answered with the first message id, not stored


@dataclass(frozen=True, slots=True)
class SmscStats:
    """A snapshot for tests and benchmarks."""

    accounts: dict[str, AccountStats]
    # Messages in the store (accepted, not yet acknowledged).
    stored: int
    binds: int

    def total(self, counter: str) -> int:
        return sum(int(getattr(stats, counter)) for stats in self.accounts.values())


@dataclass(slots=True)
class _Message:
    """A stored message and its delivery bookkeeping."""

    stored: StoredMessage
    attempts: int = 0
    retries: int = 0
    done: bool = False


@dataclass(slots=True, eq=False)
class _Bind:
    connection: SmppConnection
    account: Account
    state: SessionState
    address_range: re.Pattern[str] | None
    bucket: TokenBucket | None
    inflight: int = 0
    backlog: collections.deque[_Message] = field(default_factory=collections.deque)

    @property
    def receives(self) -> bool:
        return self.state in _RECEIVING and not self.connection.closed.is_set()

    def serves(self, target: Target) -> bool:
        if target.kind is TargetKind.ESME:
            return self.account.system_id == target.name
        return self.account.kind is AccountKind.PHONES and carries(self.address_range, target.name)


class SmscServer:
    """The SMSC simulator (see the module docstring); ``start``, ``stop``, ``port``, ``stats``."""

    def __init__(
        self,
        config: SmscConfig,
        state_dir: Path,
        *,
        session_config: SessionConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.session_config = replace(session_config or SessionConfig(), response_timeout_s=config.redeliver_after_s)
        self._wall = wall_clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (retry jitter)
        self._store: MessageStore | None = None
        self._server: asyncio.Server | None = None
        self._binds: dict[SmppConnection, _Bind] = {}
        self._connections: set[SmppConnection] = set()
        self._messages: dict[str, _Message] = {}
        self._queued: collections.Counter[str] = collections.Counter()
        self._parked: dict[str, tuple[Target, collections.deque[_Message]]] = {}
        self._counters: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._tasks: set[asyncio.Task[None]] = set()
        self._round_robin = 0
        self._stopping = False
        self.port = 0

    # Life cycle.

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Open the store, queue what it holds, and listen (port 0: an ephemeral one, then in ``port``)."""
        self._store = MessageStore(self.state_dir)
        for stored in self._store.load():
            self._admit(stored)
        self._server = await asyncio.start_server(self._accept, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._sweep())
        log.info("smsc listening on %s:%d with %d stored messages", host, self.port, len(self._messages))

    async def stop(self) -> None:
        """Stop accepting, unbind every bind, and close the store; undelivered messages stay in it."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(connection.unbind(STOP_UNBIND_TIMEOUT_S) for connection in list(self._connections)))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._store is not None:
            self._store.close()

    def stats(self) -> SmscStats:
        names = {account.system_id for account in self.config.accounts} | set(self._counters)
        accounts = {name: AccountStats(**self._counters.get(name, collections.Counter())) for name in sorted(names)}
        return SmscStats(accounts, len(self._messages), len(self._binds))

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Connections and binds.

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = SmppConnection.accept(reader, writer, config=self.session_config, on_request=self._on_request)
        if self._stopping:
            await connection.close()
            return
        self._connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self._connections.discard(connection)
            bind = self._binds.pop(connection, None)
            if bind is not None:
                log.info("smsc: %s (%s) unbound: %s", bind.account.system_id, connection.peer, connection.close_reason)
                backlog, bind.backlog = bind.backlog, collections.deque()
                for message in backlog:
                    self._assign(message)

    def _on_request(self, connection: SmppConnection, pdu: Pdu) -> None:
        if pdu.command_id in BIND_RESULT:
            self._on_bind(connection, pdu)
        elif pdu.command_id == CommandId.SUBMIT_SM:
            self._on_submit(connection, pdu)
        else:
            connection.respond(pdu, status=CommandStatus.ESME_RINVCMDID)

    def _on_bind(self, connection: SmppConnection, pdu: Pdu) -> None:
        body = pdu.body
        system_id, password, address_range = (getattr(body, name) for name in ("system_id", "password", "address_range"))
        account = self.config.account(system_id)
        status = CommandStatus.ESME_ROK
        pattern: re.Pattern[str] | None = None
        if account is None:
            status = CommandStatus.ESME_RINVSYSID
        elif not hmac.compare_digest(password.encode("latin-1"), account.password.encode("latin-1")):
            status = CommandStatus.ESME_RINVPASWD
        elif account.kind is AccountKind.PHONES:
            try:
                pattern = compile_address_range(address_range)
            except SmscConfigError:
                status = CommandStatus.ESME_RBINDFAIL
        if account is None or status != CommandStatus.ESME_ROK:
            connection.respond(pdu, status=status)
            return
        answer = _BIND_RESPONSES[pdu.command_id]
        connection.respond(pdu, answer(system_id=self.config.system_id, tlvs=OptionalParams.of(sc_interface_version=INTERFACE_VERSION_34)))
        now = asyncio.get_running_loop().time()
        bucket = TokenBucket(account.tps, account.bucket_size, now) if account.tps is not None else None
        bind = _Bind(connection, account, BIND_RESULT[pdu.command_id], pattern, bucket)
        self._binds[connection] = bind
        log.info("smsc: %s bound from %s as %s", account.system_id, connection.peer, bind.state.value)
        if bind.receives:
            for key, (target, queue) in list(self._parked.items()):
                if bind.serves(target):
                    del self._parked[key]
                    for message in queue:
                        self._assign(message)

    def _on_submit(self, connection: SmppConnection, pdu: Pdu) -> None:
        bind = self._binds.get(connection)
        body = pdu.body
        if bind is None or not isinstance(body, SubmitSm):
            connection.respond(pdu, status=CommandStatus.ESME_RINVBNDSTS)
            return
        counters = self._counters[bind.account.system_id]
        if bind.bucket is not None and not bind.bucket.take(asyncio.get_running_loop().time()):
            counters["throttled"] += 1
            connection.respond(pdu, status=CommandStatus.ESME_RTHROTTLED)
            return
        status, expires_at, target = self._check(bind, body)
        if status == CommandStatus.ESME_ROK and self._queued[target.key] >= self.config.queue_max:
            counters["queue_full"] += 1
            connection.respond(pdu, status=CommandStatus.ESME_RMSGQFUL)
            return
        if status != CommandStatus.ESME_ROK:
            counters["refused"] += 1
            connection.respond(pdu, status=status)
            return
        assert self._store is not None  # requests arrive only after start()
        reference = client_reference(body)
        try:
            earlier = None if reference is None else self._store.by_client_reference(bind.account.system_id, reference)
        except SmscStoreError:
            earlier = None
        if earlier is not None:
            # The same message again (its sender did not see our answer, or sent it again after a restart).
            counters["duplicates"] += 1
            connection.respond(pdu, SubmitSmResp(message_id=earlier))
            return
        try:
            stored = self._store.add(
                target,
                bind.account.system_id,
                lambda message_id: deliver_for(body, message_id),
                registered_delivery=body.registered_delivery,
                submitted_at=self._wall(),
                expires_at=expires_at,
                client_reference=reference,
            )
        except SmscStoreError:
            log.exception("smsc: cannot store a message from %s", bind.account.system_id)
            counters["refused"] += 1
            connection.respond(pdu, status=CommandStatus.ESME_RSYSERR)
            return
        connection.respond(pdu, SubmitSmResp(message_id=stored.message_id))
        counters["accepted"] += 1
        self._admit(stored)

    def _check(self, bind: _Bind, body: SubmitSm) -> tuple[int, float, Target]:
        """(status, expiry, target) of a submit_sm; ESME_ROK when it may be accepted."""
        target = route(self.config.accounts, body.destination_addr)
        now = self._wall()
        if bind.account.kind is AccountKind.PHONES and not carries(bind.address_range, body.source_addr):
            return CommandStatus.ESME_RINVSRCADR, 0.0, target
        if not body.destination_addr:
            return CommandStatus.ESME_RINVDSTADR, 0.0, target
        try:
            validity = parse_smpp_time(body.validity_period, now)
        except FieldError as exc:
            return exc.command_status, 0.0, target
        if validity is not None and validity <= now:
            return CommandStatus.ESME_RINVEXPIRY, 0.0, target
        return CommandStatus.ESME_ROK, validity if validity is not None else now + self.config.max_age_s, target

    # Delivery.

    def _admit(self, stored: StoredMessage) -> None:
        message = _Message(stored)
        self._messages[stored.message_id] = message
        self._queued[stored.target.key] += 1
        self._assign(message)

    def _assign(self, message: _Message) -> None:
        """Send ``message`` now, put it in a bind's backlog, or park it until a bind for its target comes."""
        if message.done or self._stopping:
            return
        if message.stored.expires_at <= self._wall():
            self._finish(message, MessageState.EXPIRED)
            return
        target = message.stored.target
        binds = [bind for bind in self._binds.values() if bind.receives and bind.serves(target)]
        if not binds:
            parked = self._parked.setdefault(target.key, (target, collections.deque()))
            parked[1].append(message)
            return
        window = self.session_config.window_size_max
        count = len(binds)
        for offset in range(count):
            bind = binds[(self._round_robin + offset) % count]
            if bind.inflight < window:
                self._round_robin += offset + 1
                self._start(message, bind)
                return
        min(binds, key=lambda bind: len(bind.backlog)).backlog.append(message)

    def _start(self, message: _Message, bind: _Bind) -> None:
        bind.inflight += 1
        self._spawn(self._deliver(message, bind))

    async def _deliver(self, message: _Message, bind: _Bind) -> None:
        counters = self._counters[bind.account.system_id]
        if message.attempts:
            counters["redelivered"] += 1
        message.attempts += 1
        try:
            await bind.connection.request(message.stored.deliver)
        except SmppThrottled:
            counters["peer_throttled"] += 1
            self._retry_later(message)
        except (SmppTimeout, SmppConnectionLost):
            self._assign(message)
        except SmppRequestError as exc:
            if exc.command_status in PERMANENT_FAILURES:
                self._finish(message, MessageState.UNDELIVERABLE, error=int(exc.command_status))
            else:
                self._retry_later(message)
        else:
            counters["delivered"] += 1
            self._finish(message, MessageState.DELIVERED)
        finally:
            bind.inflight -= 1
            self._drain_backlog(bind)

    def _drain_backlog(self, bind: _Bind) -> None:
        if self._stopping:
            return
        if not bind.receives:
            backlog, bind.backlog = bind.backlog, collections.deque()
            for message in backlog:
                self._assign(message)
            return
        while bind.backlog and bind.inflight < self.session_config.window_size_max:
            message = bind.backlog.popleft()
            if message.stored.expires_at <= self._wall():
                self._finish(message, MessageState.EXPIRED)
            else:
                self._start(message, bind)

    def _retry_later(self, message: _Message) -> None:
        delay = backoff_s(message.retries, self._rng, base_s=RETRY_BASE_S, cap_s=RETRY_CAP_S)
        message.retries += 1
        asyncio.get_running_loop().call_later(delay, self._assign, message)

    def _finish(self, message: _Message, state: MessageState, *, error: int = 0) -> None:
        """Drop ``message`` from the store, and queue its receipt when one was asked for."""
        if message.done:
            return
        message.done = True
        stored = message.stored
        assert self._store is not None
        try:
            self._store.remove(stored.message_id)
        except SmscStoreError:
            log.exception("smsc: message %s stays in the store (it may be delivered again after a restart)", stored.message_id)
        del self._messages[stored.message_id]
        self._queued[stored.target.key] -= 1
        if state is MessageState.EXPIRED:
            self._counters[stored.origin]["expired"] += 1
        if not stored.is_receipt and wants_receipt(stored.registered_delivery, state):
            self._receipt(stored, state, error)

    def _receipt(self, original: StoredMessage, state: MessageState, error: int) -> None:
        origin = self.config.account(original.origin)
        if origin is None:
            return
        if origin.kind is AccountKind.ESME:
            target = Target(TargetKind.ESME, origin.system_id)
        else:
            target = Target(TargetKind.PHONE, original.deliver.source_addr)
        now = self._wall()
        assert self._store is not None
        try:
            stored = self._store.add(
                target,
                self.config.system_id,
                lambda receipt_id: receipt_for(
                    original.deliver, original.message_id, receipt_id, state, submitted_at=original.submitted_at, done_at=now, error=error
                ),
                registered_delivery=0,
                submitted_at=now,
                expires_at=now + self.config.max_age_s,
            )
        except SmscStoreError:
            log.exception("smsc: the receipt for %s is lost", original.message_id)
            return
        self._counters[origin.system_id]["receipts"] += 1
        self._admit(stored)

    async def _sweep(self) -> None:
        """Drop the parked and backlogged messages that expired while they waited."""
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            now = self._wall()
            if self._store is not None:
                with contextlib.suppress(SmscStoreError):
                    self._store.forget_client_references(now - self.config.max_age_s)
            queues = [queue for _, queue in self._parked.values()] + [bind.backlog for bind in self._binds.values()]
            for queue in queues:
                expired = [message for message in queue if message.stored.expires_at <= now]
                for message in expired:
                    queue.remove(message)
                    self._finish(message, MessageState.EXPIRED)
            for key in [key for key, (_, queue) in self._parked.items() if not queue]:
                del self._parked[key]
