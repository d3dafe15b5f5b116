"""The asyncio driver of an SMPP 3.4 link, for either side: one TCP connection over one :class:`SmppSession`.

Spec: SMPP 3.4 §2.2 (session states), §2.3 (Table 2-1), §2.8 (asynchronous
operation: windowed requests answered in any order), §4.11 (enquire_link).

Theory of operation. The sans-I/O :class:`~.session.SmppSession` does the
protocol; this module only moves bytes and time. One pump task per connection
reads whatever the socket has, feeds it to the session, hands out the events
(futures for our requests, ``on_request`` for the peer's), runs the timers
(overdue responses, enquire_link when the peer is quiet, dropping a silent
peer) and writes what the session answered by itself. Whatever is written
during one pass of the event loop (the pump's answers, every task's requests
and responses) leaves in one transport write at the end of the pass. Every
request of ours gets a future keyed by its sequence_number;
:meth:`SmppConnection.request` waits for a window slot (parked on a FIFO of
futures, woken one per freed slot), sends, and awaits that future. The clock
is the event loop's (``loop.time()``), the one both the session's ``now`` and
the read deadlines use.

Decisions:

* ``on_request`` runs synchronously inside the pump, so the application sees
  the peer's requests in wire order; it answers later (or at once) with
  :meth:`SmppConnection.respond`, which writes without awaiting. Without an
  ``on_request`` a bind is refused (ESME_RBINDFAIL) and a message is refused
  with ESME_RX_T_APPN (temporary: the peer keeps it and tries again). An
  exception in ``on_request`` is logged and the request answered ESME_RSYSERR.
* :meth:`respond` on a closed connection does nothing: the peer never got the
  answer, so it still owns the message and redelivers it.
* ``request(timeout_s=…)`` bounds the caller's wait only; the window slot is
  freed by the response or by the session's ``response_timeout_s``.
* The pump stops reading while the transport holds more than
  :data:`WRITE_BUFFER_OCTETS_HIGH` unsent octets: a peer that does not read
  gets no more work from us (backpressure instead of memory).
* Errors: everything here is a :class:`~.errors.SmppError`. The peer's error
  status is :class:`SmppRequestError` (ESME_RTHROTTLED and ESME_RMSGQFUL
  :class:`SmppThrottled`, carrying the request to send again); a missing
  response :class:`SmppTimeout`; a connection that failed, closed or unbound
  while a request waited :class:`SmppConnectionLost`. :func:`bind_with_retry`
  gives up at once on ESME_RINVPASWD and ESME_RINVSYSID (trying again cannot help).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
from collections.abc import Callable

from simwallet.gateway.errors import RemotePeerError
from simwallet.gateway.smpp import session as ev
from simwallet.gateway.smpp.errors import CommandStatus, SmppError, SmppUsageError, WindowFull, command_status, status_name
from simwallet.gateway.smpp.pdu import EnquireLink, Pdu, PduBody, Unbind
from simwallet.gateway.smpp.session import BIND_RESULT, WINDOWED, Role, SessionConfig, SessionState, SmppSession
from simwallet.gateway.smpp.window import RandomSource, backoff_s

log = logging.getLogger(__name__)

# One read takes at most this much: a few hundred PDUs, then the pump writes and looks at the timers.
READ_OCTETS_MAX = 256 * 1024
# Unsent octets beyond which the pump waits for the peer to read before reading more from it.
WRITE_BUFFER_OCTETS_HIGH = 1024 * 1024
# The least the pump sleeps when a deadline has just passed (the session's timers have a granularity of their own).
DEADLINE_SLACK_S = 0.001
# Connecting to a peer on the same site takes milliseconds; ten seconds means it is not there.
CONNECT_TIMEOUT_S = 10.0
# An unbind_resp comes at once or the peer is gone.
UNBIND_TIMEOUT_S = 5.0

OnRequest = Callable[["SmppConnection", Pdu], None]
Backoff = Callable[[int, RandomSource], float]
# Bind refusals that no retry can cure.
_PERMANENT_BIND_REFUSALS = frozenset({CommandStatus.ESME_RINVPASWD, CommandStatus.ESME_RINVSYSID})


class SmppLinkError(SmppError, RemotePeerError):
    """What happened to a request on the link: refused, unanswered, or cut off."""


class SmppRequestError(SmppLinkError):
    """The peer answered ``request`` with an error ``command_status`` (``response`` is its answer)."""

    def __init__(self, status: int, message: str = "", *, request: Pdu | None = None, response: Pdu | None = None) -> None:
        known = command_status(status)
        super().__init__(known if isinstance(known, CommandStatus) else CommandStatus.ESME_RUNKNOWNERR, message or status_name(status))
        # A vendor status (0x400–0x4FF) keeps its number and its hex name.
        self.command_status = known  # type: ignore[assignment]
        self.code = status_name(status)
        self.request = request
        self.response = response


class SmppThrottled(SmppRequestError):
    """ESME_RTHROTTLED or ESME_RMSGQFUL: send ``request`` again after a back-off."""


class SmppTimeout(SmppLinkError, TimeoutError):
    """No response came in time; ``request`` may or may not have been acted on."""

    def __init__(self, message: str, *, request: Pdu | None = None) -> None:
        super().__init__(CommandStatus.ESME_RUNKNOWNERR, message)
        self.request = request


class SmppConnectionLost(SmppLinkError, ConnectionError):
    """The connection could not be made, or closed (or unbound) while a request waited."""

    def __init__(self, message: str) -> None:
        super().__init__(CommandStatus.ESME_RUNKNOWNERR, message)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer_name(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class SmppConnection:
    """One SMPP link driven by asyncio (see the module docstring)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        role: Role,
        config: SessionConfig | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._writer = writer
        self._session = SmppSession(role, self._loop.time(), config)
        self._on_request = on_request
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        self._windowed = 0
        # When each request of ours (enquire_link and unbind included) is due its response, and when the peer last spoke:
        # the pump's own view of its deadlines, for when the session's next_deadline() lies in the past (see _read_deadline).
        self._due: dict[int, float] = {}
        self._last_received = self._loop.time()
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = asyncio.Event()
        self._close_reason = ""
        self.peer = _peer_name(writer)
        self.bound_as: str | None = None
        # The pump's read deadline while it waits for the peer (brought forward by _wake_pump).
        self._read_timeout: asyncio.Timeout | None = None
        # What this pass of the event loop wrote, sent in one transport write at the pass's end (see _write).
        self._out = bytearray()
        _set_nodelay(writer)
        self._pump_task = self._loop.create_task(self._pump(), name=f"smpp-pump {self.peer}")

    # Construction.

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        role: Role = Role.ESME,
        config: SessionConfig | None = None,
        on_request: OnRequest | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> SmppConnection:
        """Open a TCP connection to ``host:port``; :class:`SmppConnectionLost` when that fails."""
        try:
            async with asyncio.timeout(connect_timeout_s):
                reader, writer = await asyncio.open_connection(host, port, limit=READ_OCTETS_MAX)
        except (OSError, TimeoutError) as exc:
            raise SmppConnectionLost(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from exc
        return cls(reader, writer, role=role, config=config, on_request=on_request)

    @classmethod
    def accept(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        role: Role = Role.SMSC,
        config: SessionConfig | None = None,
        on_request: OnRequest | None = None,
    ) -> SmppConnection:
        """Drive a connection a server accepted (``asyncio.start_server``'s callback arguments)."""
        return cls(reader, writer, role=role, config=config, on_request=on_request)

    # State.

    @property
    def state(self) -> SessionState:
        return self._session.state

    @property
    def role(self) -> Role:
        return self._session.role

    @property
    def config(self) -> SessionConfig:
        return self._session.config

    @property
    def closed(self) -> asyncio.Event:
        """Set once the connection is closed (``closed.is_set()``, ``await closed.wait()``)."""
        return self._closed

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def in_flight(self) -> int:
        """Our message requests awaiting their response (window slots taken)."""
        return self._windowed

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # Requests.

    async def bind(self, body: PduBody) -> Pdu:
        """Send a bind_transmitter/receiver/transceiver; the bind_*_resp, or :class:`SmppRequestError` if refused."""
        if body.command_id not in BIND_RESULT:
            raise SmppUsageError(CommandStatus.ESME_RINVCMDID, f"{type(body).__name__} is not a bind")
        response = await self.request(body)
        self.bound_as = str(getattr(body, "system_id", "")) or None
        return response

    async def request(self, body: PduBody, *, timeout_s: float | None = None) -> Pdu:
        """Send ``body`` when the window has room and return the peer's ESME_ROK response.

        Raises :class:`SmppThrottled`, :class:`SmppRequestError`,
        :class:`SmppTimeout` or :class:`SmppConnectionLost` (see the module docstring).
        """
        while True:
            if self._closed.is_set() or self._session.state is SessionState.CLOSED:
                raise SmppConnectionLost(f"connection to {self.peer} is closed: {self._close_reason or 'closed'}")
            try:
                now = self._loop.time()
                data = self._session.send(body, now)
                break
            except WindowFull:
                waiter: asyncio.Future[None] = self._loop.create_future()
                self._slot_waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    # Our wake-up, if one came, belongs to the next in line.
                    if waiter.done() and not waiter.cancelled():
                        self._wake_waiters()
                    raise
        pdu = self._session.last_sent
        assert pdu is not None  # send() just set it
        self._due[pdu.sequence_number] = now + self.config.response_timeout_s
        future: asyncio.Future[Pdu] = self._loop.create_future()
        self._pending[pdu.sequence_number] = future
        if pdu.command_id in WINDOWED:
            self._windowed += 1
        self._write(data)
        self._wake_pump()
        if timeout_s is None:
            return await future
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            raise SmppTimeout(f"no response to {pdu.command_id.name.lower()} within {timeout_s} s", request=pdu) from exc

    def respond(self, request: Pdu, body: PduBody | None = None, *, status: int = CommandStatus.ESME_ROK) -> None:
        """Answer a request of the peer's; does nothing once the connection is closed."""
        if self._session.state is SessionState.CLOSED:
            return
        data = self._session.respond(request, body, status=status)
        if status == CommandStatus.ESME_ROK and request.command_id in BIND_RESULT:
            self.bound_as = str(getattr(request.body, "system_id", "")) or None
        self._write(data)

    async def unbind(self, timeout_s: float = UNBIND_TIMEOUT_S) -> None:
        """Unbind (when bound) and close; waits at most ``timeout_s`` for the unbind_resp."""
        if self._session.state in (SessionState.BOUND_TX, SessionState.BOUND_RX, SessionState.BOUND_TRX):
            self._send_control(Unbind(), self._loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._closed.wait()
        await self.close()

    async def close(self) -> None:
        """Close the connection now; requests still waiting fail with :class:`SmppConnectionLost`."""
        self._shutdown("closed by this side")
        if self._pump_task is not asyncio.current_task():
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # The pump.

    async def _pump(self) -> None:
        session, loop = self._session, self._loop
        try:
            while not self._closed.is_set():
                deadline = self._read_deadline()
                data: bytes | None = None
                try:
                    async with asyncio.timeout_at(deadline) as self._read_timeout:
                        data = await self._reader.read(READ_OCTETS_MAX)
                except TimeoutError:
                    pass
                self._read_timeout = None
                now = loop.time()
                if data == b"":
                    session.connection_lost()
                elif data:
                    self._last_received = now
                    session.receive_data(data, now)
                self._dispatch(session.events())
                self._tick(now)
                self._write(session.data_to_send())
                if session.state is SessionState.CLOSED:
                    self._shutdown(self._close_reason or "session closed")
                    break
                transport = self._writer.transport
                if transport.get_write_buffer_size() + len(self._out) > WRITE_BUFFER_OCTETS_HIGH:
                    await self._writer.drain()
        except (OSError, EOFError) as exc:
            self._shutdown(f"connection error: {exc}")
        finally:
            self._shutdown(self._close_reason or "pump stopped")

    def _tick(self, now: float) -> None:
        session = self._session
        self._dispatch(session.expired(now))
        if session.enquire_link_due(now):
            with contextlib.suppress(SmppError):
                self._send_control(EnquireLink(), now)
        if session.peer_silent(now):
            self._close_reason = f"peer silent for {session.config.peer_silence_timeout_s} s"
            session.connection_lost()
            self._dispatch(session.events())

    def _dispatch(self, events: list[ev.Event]) -> None:
        for event in events:
            if isinstance(event, ev.RequestReceived):
                self._deliver(event.pdu)
            elif isinstance(event, ev.ResponseReceived):
                self._settle(event.request, result=event.response)
            elif isinstance(event, ev.Throttled):
                error = SmppThrottled(event.status, f"{status_name(event.status)}: try again later", request=event.request)
                self._settle(event.request, error=error)
            elif isinstance(event, ev.RequestFailed):
                name = event.request.command_id.name.lower()
                refused = SmppRequestError(
                    event.status, f"{name} refused: {status_name(event.status)}", request=event.request, response=event.response
                )
                self._settle(event.request, error=refused)
            elif isinstance(event, ev.ResponseTimedOut):
                name = event.request.command_id.name.lower()
                timeout = SmppTimeout(f"no response to {name} within {self.config.response_timeout_s} s", request=event.request)
                self._settle(event.request, error=timeout)
            elif isinstance(event, ev.Unbound):
                self._close_reason = "unbound by the peer" if event.by_peer else "unbound"
            elif isinstance(event, ev.ConnectionClosed):
                self._close_reason = self._close_reason or event.reason
            elif isinstance(event, ev.ProtocolViolation | ev.UnexpectedResponse):
                log.warning("smpp %s: %s", self.peer, event)
        self._wake_waiters()

    def _deliver(self, pdu: Pdu) -> None:
        handler = self._on_request
        if handler is None:
            refusal = CommandStatus.ESME_RBINDFAIL if pdu.command_id in BIND_RESULT else CommandStatus.ESME_RX_T_APPN
            self.respond(pdu, status=refusal)
            return
        try:
            handler(self, pdu)
        except Exception:
            log.exception("smpp %s: on_request failed for %s", self.peer, pdu.command_id.name.lower())
            with contextlib.suppress(SmppUsageError):
                self.respond(pdu, status=CommandStatus.ESME_RSYSERR)

    def _settle(self, request: Pdu, *, result: Pdu | None = None, error: SmppError | None = None) -> None:
        self._due.pop(request.sequence_number, None)
        future = self._pending.pop(request.sequence_number, None)
        if future is None:
            return  # our enquire_link, or a request whose caller gave up
        if request.command_id in WINDOWED:
            self._windowed -= 1
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
            # The caller may have stopped waiting (timeout_s); the error must not be logged as never retrieved.
            future.exception()
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def _send_control(self, body: PduBody, now: float) -> None:
        self._write(self._session.send(body, now))
        sent = self._session.last_sent
        if sent is not None:
            self._due[sent.sequence_number] = now + self.config.response_timeout_s

    def _read_deadline(self) -> float | None:
        """When the pump must look at the timers again.

        The session's :meth:`~.session.SmppSession.next_deadline` keeps the
        enquire_link time of a quiet peer even while our enquire_link awaits its
        response; waiting for it would spin. Then the pump's own books say when
        something can next happen: a response falling due, or the peer's silence.
        """
        deadline = self._session.next_deadline()
        now = self._loop.time()
        if deadline is None or deadline > now:
            return deadline
        silence = self._last_received + self.config.peer_silence_timeout_s
        return max(min([silence, *self._due.values()]), now + DEADLINE_SLACK_S)

    def _wake_pump(self) -> None:
        """Bring the pump's read deadline forward when a request just sent is due before it."""
        timeout = self._read_timeout
        deadline = self._session.next_deadline()
        if timeout is not None and deadline is not None:
            current = timeout.when()
            if current is None or deadline < current:
                timeout.reschedule(deadline)

    def _wake_waiters(self) -> None:
        room = self.config.window_size_max - self._windowed
        while room > 0 and self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def _write(self, data: bytes) -> None:
        """Queue ``data``; everything queued during one pass of the event loop leaves in one write (one send(2)).

        Under load many tasks send a request or a response in the same pass; with
        TCP_NODELAY each write would be its own segment and system call.
        """
        if not data or self._writer.transport.is_closing():
            return
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out += data

    def _flush(self) -> None:
        if self._out and not self._writer.transport.is_closing():
            self._writer.write(bytes(self._out))
        self._out.clear()

    def _shutdown(self, reason: str) -> None:
        """Close once: the session, the transport, every waiting request and every window waiter."""
        if self._closed.is_set():
            return
        self._close_reason = self._close_reason or reason
        self._session.connection_lost()
        self._session.events()
        lost = f"connection to {self.peer} closed: {self._close_reason}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SmppConnectionLost(lost))
                # Nobody may be awaiting it any more; the exception must not be reported as never retrieved.
                future.exception()
        self._pending.clear()
        self._due.clear()
        self._windowed = 0
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._closed.set()
        self._flush()
        self._writer.close()


async def bind_with_retry(
    host: str,
    port: int,
    bind_body: PduBody,
    *,
    on_request: OnRequest | None,
    config: SessionConfig | None = None,
    attempts_max: int | None = None,
    backoff: Backoff = backoff_s,
    rng: RandomSource | None = None,
    stop: asyncio.Event | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> SmppConnection:
    """Connect and bind until it works, waiting ``backoff(attempt, rng)`` between tries.

    Raises the last error after ``attempts_max`` tries (None: no limit), at once
    for a refused password or system_id, and :class:`SmppConnectionLost` when
    ``stop`` is set.
    """
    rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter, not secrecy)
    attempt = 0
    while True:
        if stop is not None and stop.is_set():
            raise SmppConnectionLost(f"gave up binding to {host}:{port}: stopped")
        connection: SmppConnection | None = None
        try:
            connection = await SmppConnection.connect(host, port, config=config, on_request=on_request, connect_timeout_s=connect_timeout_s)
            await connection.bind(bind_body)
            return connection
        except SmppLinkError as exc:
            if connection is not None:
                await connection.close()
            attempt += 1
            permanent = isinstance(exc, SmppRequestError) and exc.command_status in _PERMANENT_BIND_REFUSALS
            if permanent or (attempts_max is not None and attempt >= attempts_max):
                raise
            log.info("bind to %s:%s failed (%s); attempt %d", host, port, exc, attempt)
        delay = backoff(attempt - 1, rng)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
