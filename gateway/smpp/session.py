"""The SMPP 3.4 session of either side, sans I/O (§2.2 session states, §2.3 Table 2-1 PDU summary).

Theory of operation. One :class:`SmppSession` per connection, for the ESME
(the gateway) or the SMSC (the embedded simulator): bytes in, events out;
requests in, bytes out. It never touches a socket or a clock:

* :meth:`~SmppSession.receive_data` takes what the socket read;
  :meth:`~SmppSession.next_event` then hands out :class:`RequestReceived`,
  :class:`ResponseReceived`, :class:`RequestFailed`, :class:`Throttled`,
  :class:`UnexpectedResponse`, :class:`ProtocolViolation`, :class:`Unbound`
  and :class:`ConnectionClosed`.
* :meth:`~SmppSession.send` numbers a request and returns its bytes;
  :meth:`~SmppSession.respond` answers a :class:`RequestReceived`.
* What the session answers by itself (enquire_link_resp, unbind_resp,
  generic_nack, a refusal) waits in :meth:`~SmppSession.data_to_send`; the
  driver writes it after every :meth:`~SmppSession.receive_data`.
* Time comes in as ``now`` (the driver's monotonic seconds):
  :meth:`~SmppSession.expired` returns what the passing of time caused,
  :meth:`~SmppSession.enquire_link_due` and :meth:`~SmppSession.peer_silent`
  answer the idle timers, :meth:`~SmppSession.next_deadline` says when to look.

States: OPEN → (BINDING) → BOUND_TX / BOUND_RX / BOUND_TRX → (UNBINDING) → CLOSED.
BINDING (a bind in flight) and UNBINDING (our unbind in flight) are the
transitional states §2.2 leaves implicit. Which request each side may issue in
which state is the table :data:`ISSUE`, from Table 2-1; a request from the peer
that the table refuses is answered by the session with its own response
carrying the status of :func:`refusal` (ESME_RINVCMDID for a request the
peer's role never issues, ESME_RALYBND for a second bind, ESME_RINVBNDSTS
otherwise), and reported as a :class:`ProtocolViolation`.

Decisions, each where the spec leaves room:

* enquire_link is answered in every state but CLOSED (Table 2-1 lists the
  bound states only; SMPP 5.0 allows OPEN, and a keep-alive answered early
  costs nothing). It is sent only when bound.
* An unbind from the peer is answered at once and closes the session; the
  requests still awaiting responses come back in :class:`Unbound`. Requests
  the peer sent that we have not answered are the peer's to redeliver.
* After our own unbind, new requests from the peer are refused with
  ESME_RINVBNDSTS (it keeps them for the next bind); responses still settle.
* A malformed request with a known command_id gets its own response with the
  error status; an unknown command_id gets generic_nack ESME_RINVCMDID; a bad
  command_length gets generic_nack ESME_RINVCMDLEN and closes the session
  (the stream cannot be resynchronised). Malformed responses get no answer.
* A response whose command_id does not fit the request with its sequence
  number is reported as an :class:`UnexpectedResponse`; the request keeps
  waiting (and times out if nothing better comes).
* More than ``inbound_window_max`` of the peer's message requests awaiting our
  response: the next is refused with ESME_RTHROTTLED (a bound on memory). A
  request reusing a sequence_number that still awaits our response is refused
  with ESME_RSYSERR (SMPP has no better status for it).
* data_sm goes both ways in every bound state, as Table 2-1 lists it, even
  to and from a receiver or transmitter.
* The idle timers count from the last octets received: an enquire_link is due
  after ``enquire_link_interval_s`` of quiet from the peer, whatever we sent.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass

from simwallet.gateway.smpp.errors import (
    CommandStatus,
    FieldError,
    FramingError,
    MalformedPdu,
    SmppProtocolError,
    SmppUsageError,
    status_name,
)
from simwallet.gateway.smpp.pdu import (
    BODY_TYPES,
    RESPONSE_BIT,
    CommandId,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduBody,
    PduReader,
    UnbindResp,
    response_type,
)
from simwallet.gateway.smpp.window import RequestWindow


class Role(enum.Enum):
    """Which end of the link this session is."""

    ESME = "esme"
    SMSC = "smsc"

    @property
    def peer(self) -> Role:
        return Role.SMSC if self is Role.ESME else Role.ESME


class SessionState(enum.Enum):
    """§2.2 session states, with the two transitional ones."""

    OPEN = "open"
    BINDING = "binding"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


_S = SessionState
BOUND = frozenset({_S.BOUND_TX, _S.BOUND_RX, _S.BOUND_TRX})

# §2.3 Table 2-1: (issuer, request) → the states in which the issuer may send it. A pair not listed is never allowed.
ISSUE: dict[tuple[Role, CommandId], frozenset[SessionState]] = {
    (Role.ESME, CommandId.BIND_TRANSMITTER): frozenset({_S.OPEN}),
    (Role.ESME, CommandId.BIND_RECEIVER): frozenset({_S.OPEN}),
    (Role.ESME, CommandId.BIND_TRANSCEIVER): frozenset({_S.OPEN}),
    (Role.ESME, CommandId.UNBIND): BOUND,
    (Role.SMSC, CommandId.UNBIND): BOUND,
    (Role.ESME, CommandId.SUBMIT_SM): frozenset({_S.BOUND_TX, _S.BOUND_TRX}),
    (Role.SMSC, CommandId.DELIVER_SM): frozenset({_S.BOUND_RX, _S.BOUND_TRX}),
    (Role.ESME, CommandId.DATA_SM): BOUND,
    (Role.SMSC, CommandId.DATA_SM): BOUND,
    (Role.ESME, CommandId.ENQUIRE_LINK): BOUND,
    (Role.SMSC, CommandId.ENQUIRE_LINK): BOUND,
}
# The bound state each accepted bind leads to.
BIND_RESULT: dict[int, SessionState] = {
    CommandId.BIND_TRANSMITTER: _S.BOUND_TX,
    CommandId.BIND_RECEIVER: _S.BOUND_RX,
    CommandId.BIND_TRANSCEIVER: _S.BOUND_TRX,
}
# Message requests: they take a window slot, and only their refusals can be throttling.
WINDOWED = frozenset({CommandId.SUBMIT_SM, CommandId.DELIVER_SM, CommandId.DATA_SM})
# §5.1.3: the statuses that mean "not now, send it again later".
THROTTLING = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})


def refusal(issuer: Role, command_id: int, state: SessionState) -> CommandStatus | None:
    """The status refusing ``command_id`` from ``issuer`` in ``state``, or None when Table 2-1 allows it."""
    states = ISSUE.get((issuer, CommandId(command_id))) if command_id in BODY_TYPES else None
    if states is None:
        return CommandStatus.ESME_RINVCMDID
    if command_id in BIND_RESULT and state is not _S.OPEN:
        return CommandStatus.ESME_RALYBND
    if state not in states:
        return CommandStatus.ESME_RINVBNDSTS
    return None


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The session's limits and timers (seconds of the driver's monotonic clock)."""

    # Message requests awaiting responses at once: 1,000 MO/s over a 50 ms round trip needs 50.
    window_size_max: int = 64
    # The peer's message requests awaiting our response; beyond it they are refused with ESME_RTHROTTLED.
    inbound_window_max: int = 256
    # How long a request waits for its response before it is handed back as timed out.
    response_timeout_s: float = 10.0
    # Quiet from the peer after which an enquire_link is due (SMPP 5.0 §4.1.2: typically 30 s to 120 s).
    enquire_link_interval_s: float = 30.0
    # Quiet from the peer after which the link counts as dead: three missed keep-alives.
    peer_silence_timeout_s: float = 90.0
    # The first sequence_number this side uses (tests start near the wrap).
    first_sequence_number: int = 1

    def __post_init__(self) -> None:
        for name in ("window_size_max", "inbound_window_max"):
            if getattr(self, name) < 1:
                raise FieldError(CommandStatus.ESME_RSYSERR, "must be at least 1", field=name)
        for name in ("response_timeout_s", "enquire_link_interval_s", "peer_silence_timeout_s"):
            if not getattr(self, name) > 0:
                raise FieldError(CommandStatus.ESME_RSYSERR, "must be positive", field=name)


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer sent a request the session accepted; answer it with :meth:`SmppSession.respond`."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A request of ours was answered with ESME_ROK."""

    request: Pdu
    response: Pdu


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A request of ours was answered with an error status (or a generic_nack)."""

    request: Pdu
    response: Pdu

    @property
    def status(self) -> int:
        return self.response.command_status


@dataclass(frozen=True, slots=True)
class Throttled:
    """A message request of ours was refused as ESME_RTHROTTLED or ESME_RMSGQFUL: back off and send it again."""

    request: Pdu
    status: int


@dataclass(frozen=True, slots=True)
class ResponseTimedOut:
    """No response to ``request`` came within ``response_timeout_s``; it left the window."""

    request: Pdu


@dataclass(frozen=True, slots=True)
class UnexpectedResponse:
    """A response that answers no request of ours (late, duplicated, or of the wrong kind)."""

    response: Pdu


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke SMPP; ``status`` is what the session answered (if anything: see data_to_send)."""

    status: int
    detail: str
    command_id: int | None
    sequence_number: int | None


@dataclass(frozen=True, slots=True)
class Unbound:
    """The session closed by unbind; ``outstanding`` are our requests that never got a response."""

    outstanding: tuple[Pdu, ...]
    by_peer: bool


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session closed without unbind (connection lost, broken framing); ``outstanding`` as in Unbound."""

    outstanding: tuple[Pdu, ...]
    reason: str


Event = (
    RequestReceived
    | ResponseReceived
    | RequestFailed
    | Throttled
    | ResponseTimedOut
    | UnexpectedResponse
    | ProtocolViolation
    | Unbound
    | ConnectionClosed
)


class SmppSession:
    """One SMPP link, ESME or SMSC side."""

    def __init__(self, role: Role, now: float, config: SessionConfig | None = None) -> None:
        self.role = role
        self.config = config if config is not None else SessionConfig()
        self._state = _S.OPEN
        self._reader = PduReader()
        self._window = RequestWindow(self.config.window_size_max, first_sequence_number=self.config.first_sequence_number)
        # The peer's requests awaiting our response, by sequence_number.
        self._inbound: dict[int, Pdu] = {}
        self._events: collections.deque[Event] = collections.deque()
        self._outgoing = bytearray()
        self._last_received = now
        self._last_sent: Pdu | None = None

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def last_sent(self) -> Pdu | None:
        """The request most recently returned by :meth:`send` (its sequence_number, for the driver's books)."""
        return self._last_sent

    @property
    def outstanding(self) -> tuple[Pdu, ...]:
        """Our requests awaiting responses, in send order."""
        return self._window.requests()

    @property
    def awaiting_our_response(self) -> tuple[Pdu, ...]:
        """The peer's requests we have not answered yet."""
        return tuple(self._inbound.values())

    # Sending.

    def send(self, request: PduBody, now: float) -> bytes:
        """Number ``request``, keep it until its response, and return its bytes.

        Raises :class:`SmppUsageError` when Table 2-1 does not let this side
        send it now, and :class:`WindowFull` when the driver must wait.
        """
        if not isinstance(request, PduBody) or request.command_id & RESPONSE_BIT:
            raise SmppUsageError(CommandStatus.ESME_RINVCMDID, f"{type(request).__name__} is not a request; answer with respond()")
        command = request.command_id
        refused = CommandStatus.ESME_RINVBNDSTS if self._state is _S.CLOSED else refusal(self.role, command, self._state)
        if refused is not None:
            raise SmppUsageError(refused, f"{self.role.value} may not send {command.name.lower()} in state {self._state.value}")
        windowed = command in WINDOWED
        pdu = Pdu(request, self._window.allocate(windowed=windowed))
        self._window.add(pdu, now, self.config.response_timeout_s, windowed=windowed)
        if command in BIND_RESULT:
            self._state = _S.BINDING
        elif command == CommandId.UNBIND:
            self._state = _S.UNBINDING
        self._last_sent = pdu
        return pdu.to_bytes()

    def respond(self, request: Pdu, body: PduBody | None = None, *, status: int = CommandStatus.ESME_ROK) -> bytes:
        """Answer a request from a :class:`RequestReceived` (``body`` defaults to the empty response).

        Answering a bind moves an SMSC session to the bound state on ESME_ROK,
        back to OPEN otherwise.
        """
        if self._state is _S.CLOSED:
            raise SmppUsageError(CommandStatus.ESME_RINVBNDSTS, "the session is closed")
        if self._inbound.get(request.sequence_number) != request:
            raise SmppUsageError(CommandStatus.ESME_RSYSERR, f"sequence_number {request.sequence_number} awaits no response of ours")
        kind = response_type(request.command_id)
        if body is None:
            body = kind()
        elif type(body) not in (kind, GenericNack):
            raise SmppUsageError(CommandStatus.ESME_RINVCMDID, f"{type(body).__name__} does not answer {request.command_id.name.lower()}")
        answer = Pdu(body, request.sequence_number, status)
        del self._inbound[request.sequence_number]
        if request.command_id in BIND_RESULT and self._state is _S.BINDING:
            self._state = BIND_RESULT[request.command_id] if status == CommandStatus.ESME_ROK else _S.OPEN
        return answer.to_bytes()

    def data_to_send(self) -> bytes:
        """The session's own answers since the last call (enquire_link_resp, refusals …)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # Receiving.

    def receive_data(self, data: bytes, now: float) -> None:
        """Take octets read from the connection; events and answers follow. Ignored once CLOSED."""
        if self._state is _S.CLOSED or not data:
            return
        self._last_received = now
        self._reader.feed(data)
        while not self._closed():
            try:
                pdu = self._reader.next_pdu()
            except FramingError as exc:
                self._violation(exc)
                self._answer(Pdu(GenericNack(), exc.sequence_number or 0, exc.command_status))
                reason = f"framing: {exc.message}"
                self._events.append(ConnectionClosed(self._close(), reason))
                return
            except MalformedPdu as exc:
                self._violation(exc)
                self._answer_malformed(exc)
                continue
            if pdu is None:
                return
            if pdu.is_response:
                self._on_response(pdu)
            else:
                self._on_request(pdu)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Every pending event, oldest first."""
        drained = list(self._events)
        self._events.clear()
        return drained

    def connection_lost(self) -> None:
        """The connection is gone: close, handing back what still awaited a response."""
        if self._state is not _S.CLOSED:
            self._events.append(ConnectionClosed(self._close(), "connection lost"))

    # Time.

    def expired(self, now: float) -> list[Event]:
        """The requests whose response is overdue (:class:`ResponseTimedOut`), removed from the window.

        An overdue bind returns the session to OPEN; an overdue unbind closes it
        (an :class:`Unbound` follows, with the rest of the outstanding requests).
        """
        happened: list[Event] = []
        for entry in self._window.expired(now):
            happened.append(ResponseTimedOut(entry.request))
            command = entry.request.command_id
            if command in BIND_RESULT and self._state is _S.BINDING:
                self._state = _S.OPEN
            elif command == CommandId.UNBIND and self._state is _S.UNBINDING:
                happened.append(Unbound(self._close(), by_peer=False))
        return happened

    def enquire_link_due(self, now: float) -> bool:
        """Bound, the peer quiet for ``enquire_link_interval_s``, and no enquire_link already waiting."""
        return (
            self._state in BOUND
            and now - self._last_received >= self.config.enquire_link_interval_s
            and not self._window.awaiting(CommandId.ENQUIRE_LINK)
        )

    def peer_silent(self, now: float) -> bool:
        """Nothing heard from the peer for ``peer_silence_timeout_s``: the driver should drop the link."""
        return self._state is not _S.CLOSED and now - self._last_received >= self.config.peer_silence_timeout_s

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`expired`, :meth:`enquire_link_due` or :meth:`peer_silent` may change."""
        if self._state is _S.CLOSED:
            return None
        deadlines = [self._last_received + self.config.peer_silence_timeout_s]
        keepalive_out = self._window.awaiting(CommandId.ENQUIRE_LINK)
        if self._state in BOUND and not keepalive_out:
            # While our enquire_link waits for its answer, its own response deadline is the one that matters.
            deadlines.append(self._last_received + self.config.enquire_link_interval_s)
        earliest = self._window.earliest_deadline()
        if earliest is not None:
            deadlines.append(earliest)
        return min(deadlines)

    # Inside.

    def _answer(self, pdu: Pdu) -> None:
        self._outgoing += pdu.to_bytes()

    def _violation(self, error: SmppProtocolError) -> None:
        self._events.append(ProtocolViolation(error.command_status, str(error), error.command_id, error.sequence_number))

    def _answer_malformed(self, error: MalformedPdu) -> None:
        command, sequence = error.command_id, error.sequence_number
        if command is None or sequence is None or command & RESPONSE_BIT:
            return
        body = response_type(command)() if command in BODY_TYPES else GenericNack()
        self._answer(Pdu(body, sequence, error.command_status))

    def _refuse(self, pdu: Pdu, status: CommandStatus, why: str) -> None:
        self._answer(Pdu(response_type(pdu.command_id)(), pdu.sequence_number, status))
        detail = f"{pdu.command_id.name.lower()} refused with {status_name(status)}: {why}"
        self._events.append(ProtocolViolation(status, detail, pdu.command_id, pdu.sequence_number))

    def _on_request(self, pdu: Pdu) -> None:
        command = pdu.command_id
        if command == CommandId.ENQUIRE_LINK:
            self._answer(Pdu(EnquireLinkResp(), pdu.sequence_number))
            return
        if command == CommandId.UNBIND and (self._state in BOUND or self._state is _S.UNBINDING):
            self._answer(Pdu(UnbindResp(), pdu.sequence_number))
            # Both sides unbinding at once: our own unbind is settled by theirs, not handed back.
            outstanding = tuple(request for request in self._close() if request.command_id != CommandId.UNBIND)
            self._events.append(Unbound(outstanding, by_peer=True))
            return
        refused = refusal(self.role.peer, command, self._state)
        if refused is not None:
            self._refuse(pdu, refused, f"not allowed from the {self.role.peer.value} in state {self._state.value}")
        elif pdu.sequence_number in self._inbound:
            self._refuse(pdu, CommandStatus.ESME_RSYSERR, "its sequence_number already awaits our response")
        elif command in WINDOWED and len(self._inbound) >= self.config.inbound_window_max:
            self._refuse(pdu, CommandStatus.ESME_RTHROTTLED, f"{len(self._inbound)} requests already await our response")
        else:
            self._inbound[pdu.sequence_number] = pdu
            if command in BIND_RESULT:
                self._state = _S.BINDING
            self._events.append(RequestReceived(pdu))

    def _on_response(self, pdu: Pdu) -> None:
        entry = self._window.get(pdu.sequence_number)
        expected = None if entry is None else entry.request.command_id | RESPONSE_BIT
        if entry is None or pdu.command_id not in (expected, CommandId.GENERIC_NACK):
            self._events.append(UnexpectedResponse(pdu))
            return
        self._window.pop(pdu.sequence_number)
        request = entry.request
        command = request.command_id
        accepted = pdu.command_status == CommandStatus.ESME_ROK and pdu.command_id == expected
        if command in BIND_RESULT and self._state is _S.BINDING:
            self._state = BIND_RESULT[command] if accepted else _S.OPEN
        if command == CommandId.UNBIND and self._state is _S.UNBINDING:
            self._events.append(Unbound(self._close(), by_peer=False))
        elif accepted:
            self._events.append(ResponseReceived(request, pdu))
        elif command in WINDOWED and pdu.command_status in THROTTLING:
            self._events.append(Throttled(request, pdu.command_status))
        else:
            self._events.append(RequestFailed(request, pdu))

    def _closed(self) -> bool:
        # A method, not an inline test: handlers called in the loop of receive_data may close the session.
        return self._state is _S.CLOSED

    def _close(self) -> tuple[Pdu, ...]:
        """Move to CLOSED and hand back the requests that never got a response."""
        self._state = _S.CLOSED
        self._inbound.clear()
        return self._window.drain()
