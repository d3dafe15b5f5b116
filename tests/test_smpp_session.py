"""SMPP 3.4 sessions (simwallet.gateway.smpp.session): an ESME and an SMSC wired back to back in memory.

Bind, submit/deliver, the window, out-of-order responses, timeouts and the
idle timers, throttling and resends, unbind with requests outstanding,
refusals by state and role (a walk over every pair of the state table), broken
PDUs, and the sequence-number wrap. Time is a number the test passes in.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.gateway.smpp.errors import CommandStatus, FieldError, SmppUsageError, WindowFull
from simwallet.gateway.smpp.pdu import (
    BODY_TYPES,
    RESPONSE_BIT,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    PduBody,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    parse_pdu,
    response_type,
)
from simwallet.gateway.smpp.session import (
    ISSUE,
    ConnectionClosed,
    Event,
    ProtocolViolation,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Role,
    SessionConfig,
    SessionState,
    SmppSession,
    Throttled,
    Unbound,
    UnexpectedResponse,
    refusal,
)
from simwallet.gateway.smpp.tlv import OptionalParams
from simwallet.gateway.smpp.window import CONTROL_REQUESTS_MAX, HEAP_SLACK, RequestWindow, backoff_s

S = SessionState
T0 = 1000.0


def feed(session: SmppSession, data: bytes, now: float = T0) -> list[Event]:
    session.receive_data(data, now)
    return session.events()


def answers(session: SmppSession) -> list[Pdu]:
    """The PDUs the session wrote by itself."""
    data = session.data_to_send()
    pdus = []
    while data:
        length = int.from_bytes(data[:4], "big")
        pdus.append(parse_pdu(data[:length]))
        data = data[length:]
    return pdus


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


def received(events: list[Event]) -> Pdu:
    event = only(events)
    assert isinstance(event, RequestReceived)
    return event.pdu


def pair(config: SessionConfig | None = None) -> tuple[SmppSession, SmppSession]:
    return SmppSession(Role.ESME, T0, config), SmppSession(Role.SMSC, T0, config)


def bind(esme: SmppSession, smsc: SmppSession, kind: type[PduBody] = BindTransceiver, now: float = T0) -> None:
    request = received(feed(smsc, esme.send(kind("gateway", "secret"), now), now))
    event = only(feed(esme, smsc.respond(request, response_type(request.command_id)("SMSC")), now))
    assert isinstance(event, ResponseReceived)


def bound_pair(config: SessionConfig | None = None, kind: type[PduBody] = BindTransceiver) -> tuple[SmppSession, SmppSession]:
    esme, smsc = pair(config)
    bind(esme, smsc, kind)
    return esme, smsc


def submit(text: bytes = b"BAL 1234") -> SubmitSm:
    return SubmitSm(source_addr="10086", destination_addr="8613800138000", short_message=text)


def mo(text: bytes = b"BAL 1234") -> DeliverSm:
    return DeliverSm(source_addr="8613800138000", destination_addr="10086", short_message=text)


# Binding.


@pytest.mark.parametrize(("kind", "state"), [(BindTransmitter, S.BOUND_TX), (BindReceiver, S.BOUND_RX), (BindTransceiver, S.BOUND_TRX)])
def test_bind(kind: type[PduBody], state: SessionState) -> None:
    esme, smsc = pair()
    data = esme.send(kind("gateway", "secret", "OTA"), T0)
    assert esme.state is S.BINDING
    request = received(feed(smsc, data))
    assert smsc.state is S.BINDING
    assert request.body == kind("gateway", "secret", "OTA")
    response = smsc.respond(request, response_type(request.command_id)("SMSC", OptionalParams.of(sc_interface_version=0x34)))
    assert smsc.state is state
    event = only(feed(esme, response))
    assert isinstance(event, ResponseReceived)
    assert event.request == request
    assert isinstance(event.response.body, BindTransceiverResp | BindTransmitterResp | BindReceiverResp)
    assert event.response.body.tlvs.sc_interface_version == 0x34
    assert esme.state is state


def test_bind_refused_then_retried() -> None:
    esme, smsc = pair()
    request = received(feed(smsc, esme.send(BindTransceiver("gateway", "wrong"), T0)))
    event = only(feed(esme, smsc.respond(request, status=CommandStatus.ESME_RINVPASWD)))
    assert isinstance(event, RequestFailed)
    assert event.status == CommandStatus.ESME_RINVPASWD
    assert (esme.state, smsc.state) == (S.OPEN, S.OPEN)
    bind(esme, smsc)
    assert (esme.state, smsc.state) == (S.BOUND_TRX, S.BOUND_TRX)


def test_bind_answered_with_generic_nack() -> None:
    esme, _ = pair()
    sent = parse_pdu(esme.send(BindTransceiver("gateway"), T0))
    event = only(feed(esme, Pdu(GenericNack(), sent.sequence_number, CommandStatus.ESME_RINVCMDLEN).to_bytes()))
    assert isinstance(event, RequestFailed)
    assert esme.state is S.OPEN


# Messages both ways.


def test_submit_and_deliver() -> None:
    esme, smsc = bound_pair()
    data = esme.send(submit(), T0)
    assert esme.last_sent == parse_pdu(data)
    request = received(feed(smsc, data))
    assert request.body == submit()
    event = only(feed(esme, smsc.respond(request, SubmitSmResp("msg-1"))))
    assert isinstance(event, ResponseReceived)
    assert (event.request.body, event.response.body) == (submit(), SubmitSmResp("msg-1"))
    mo_request = received(feed(esme, smsc.send(mo(), T0)))
    assert esme.awaiting_our_response == (mo_request,)
    event = only(feed(smsc, esme.respond(mo_request)))
    assert isinstance(event, ResponseReceived)
    assert event.response.body == DeliverSmResp()
    assert esme.outstanding == smsc.outstanding == esme.awaiting_our_response == ()


def test_data_sm_both_ways() -> None:
    esme, smsc = bound_pair()
    ussd = DataSm(
        source_addr="8613800138000", destination_addr="*166#", tlvs=OptionalParams.of(ussd_service_op=1, message_payload=b"*166#")
    )
    request = received(feed(esme, smsc.send(ussd, T0)))
    assert request.body == ussd
    assert isinstance(only(feed(smsc, esme.respond(request))), ResponseReceived)
    request = received(feed(smsc, esme.send(ussd, T0)))
    assert isinstance(only(feed(esme, smsc.respond(request))), ResponseReceived)


def test_window_full_then_free() -> None:
    esme, smsc = bound_pair(SessionConfig(window_size_max=3))
    sent = [esme.send(submit(bytes([n])), T0) for n in range(3)]
    with pytest.raises(WindowFull) as caught:
        esme.send(submit(b"4th"), T0)
    assert caught.value.command_status == CommandStatus.ESME_RTHROTTLED
    # A keep-alive is not a message: it still goes out.
    keep_alive = esme.send(EnquireLink(), T0)
    requests = [received(feed(smsc, data)) for data in sent]
    feed(smsc, keep_alive)
    assert isinstance(only(feed(esme, smsc.respond(requests[1], SubmitSmResp("2")))), ResponseReceived)
    esme.send(submit(b"4th"), T0)
    with pytest.raises(WindowFull):
        esme.send(submit(b"5th"), T0)


def test_control_requests_are_bounded_too() -> None:
    esme, _ = bound_pair()
    for _ in range(CONTROL_REQUESTS_MAX):
        esme.send(EnquireLink(), T0)
    with pytest.raises(WindowFull):
        esme.send(EnquireLink(), T0)


def test_out_of_order_responses_find_their_requests() -> None:
    esme, smsc = bound_pair()
    requests = [received(feed(smsc, esme.send(submit(b"%d" % n), T0))) for n in range(6)]
    for request in (requests[3], requests[0], requests[5], requests[1], requests[4], requests[2]):
        event = only(feed(esme, smsc.respond(request, SubmitSmResp(f"id-{request.body.short_message.decode()}"))))  # type: ignore[attr-defined]
        assert isinstance(event, ResponseReceived)
        assert event.request == request
        assert event.response.body == SubmitSmResp(f"id-{event.request.body.short_message.decode()}")  # type: ignore[attr-defined]
    assert esme.outstanding == ()


def test_responses_nobody_asked_for() -> None:
    esme, smsc = bound_pair()
    request = received(feed(smsc, esme.send(submit(), T0)))
    # An unknown sequence number.
    stray = Pdu(SubmitSmResp("x"), 4242)
    assert only(feed(esme, stray.to_bytes())) == UnexpectedResponse(stray)
    # The right sequence number but the wrong kind: reported, and the request keeps waiting.
    wrong = Pdu(DeliverSmResp(), request.sequence_number)
    assert only(feed(esme, wrong.to_bytes())) == UnexpectedResponse(wrong)
    assert esme.outstanding == (request,)
    answer = smsc.respond(request, SubmitSmResp("1"))
    assert isinstance(only(feed(esme, answer)), ResponseReceived)
    # The same response again.
    assert isinstance(only(feed(esme, answer)), UnexpectedResponse)


# Time.


def test_response_timeout() -> None:
    config = SessionConfig(response_timeout_s=10.0)
    esme, _ = bound_pair(config)
    first = parse_pdu(esme.send(submit(b"1"), T0))
    second = parse_pdu(esme.send(submit(b"2"), T0 + 5))
    assert esme.next_deadline() == T0 + 10
    assert esme.expired(T0 + 9.9) == []
    assert esme.expired(T0 + 10) == [ResponseTimedOut(first)]
    assert esme.outstanding == (second,)
    assert esme.expired(T0 + 15) == [ResponseTimedOut(second)]
    # A response after its timeout answers nothing any more.
    late = Pdu(SubmitSmResp("late"), first.sequence_number)
    assert only(feed(esme, late.to_bytes(), T0 + 16)) == UnexpectedResponse(late)


def test_bind_timeout_returns_to_open() -> None:
    esme, _ = pair(SessionConfig(response_timeout_s=3.0))
    esme.send(BindTransmitter("gateway"), T0)
    [timed_out] = esme.expired(T0 + 3)
    assert isinstance(timed_out, ResponseTimedOut)
    assert esme.state is S.OPEN


def test_unbind_timeout_closes_and_returns_the_rest() -> None:
    esme, _ = bound_pair(SessionConfig(response_timeout_s=3.0))
    pending = parse_pdu(esme.send(submit(), T0 + 2))
    unbind = parse_pdu(esme.send(Unbind(), T0))
    assert esme.expired(T0 + 3) == [ResponseTimedOut(unbind), Unbound((pending,), by_peer=False)]
    assert esme.state is S.CLOSED
    assert esme.next_deadline() is None


def test_enquire_link_due_and_peer_silent() -> None:
    config = SessionConfig(enquire_link_interval_s=30.0, peer_silence_timeout_s=90.0)
    esme, smsc = bound_pair(config)
    assert not esme.enquire_link_due(T0 + 29.9)
    assert esme.enquire_link_due(T0 + 30)
    assert esme.next_deadline() == T0 + 30
    keep_alive = esme.send(EnquireLink(), T0 + 30)
    assert not esme.enquire_link_due(T0 + 60)
    # While it waits for its answer the next deadline is its response timeout, not the (past) keep-alive time:
    # a driver sleeping until next_deadline() must not spin.
    deadline = esme.next_deadline()
    assert deadline is not None and deadline > T0 + 30
    # The SMSC answers by itself and reports nothing.
    assert feed(smsc, keep_alive, T0 + 30) == []
    [answer] = answers(smsc)
    assert answer == Pdu(EnquireLinkResp(), parse_pdu(keep_alive).sequence_number)
    event = only(feed(esme, answer.to_bytes(), T0 + 31))
    assert isinstance(event, ResponseReceived)
    assert not esme.enquire_link_due(T0 + 60)
    assert esme.enquire_link_due(T0 + 61)
    assert not esme.peer_silent(T0 + 120.9)
    assert esme.peer_silent(T0 + 121)


def test_enquire_link_is_answered_before_bind_and_not_due() -> None:
    esme, smsc = pair()
    assert not esme.enquire_link_due(T0 + 1e6)
    with pytest.raises(SmppUsageError):
        esme.send(EnquireLink(), T0)
    assert feed(smsc, Pdu(EnquireLink(), 9).to_bytes()) == []
    assert answers(smsc) == [Pdu(EnquireLinkResp(), 9)]


# Throttling.


@pytest.mark.parametrize("status", [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL])
def test_throttled_request_comes_back_for_a_resend(status: CommandStatus) -> None:
    esme, smsc = bound_pair(SessionConfig(window_size_max=1))
    request = received(feed(smsc, esme.send(submit(), T0)))
    event = only(feed(esme, smsc.respond(request, status=status)))
    assert event == Throttled(request, status)
    # The slot is free again, and the driver resends the same body under a new number.
    resent = received(feed(smsc, esme.send(event.request.body, T0 + 1)))
    assert resent.body == request.body
    assert resent.sequence_number != request.sequence_number


def test_throttling_by_generic_nack_and_for_deliver_sm() -> None:
    esme, smsc = bound_pair()
    request = received(feed(esme, smsc.send(mo(), T0)))
    refused = esme.respond(request, status=CommandStatus.ESME_RTHROTTLED)
    assert only(feed(smsc, refused)) == Throttled(request, CommandStatus.ESME_RTHROTTLED)
    sent = parse_pdu(esme.send(submit(), T0))
    nack = Pdu(GenericNack(), sent.sequence_number, CommandStatus.ESME_RTHROTTLED)
    assert only(feed(esme, nack.to_bytes())) == Throttled(sent, CommandStatus.ESME_RTHROTTLED)


def test_other_errors_are_failures() -> None:
    esme, smsc = bound_pair()
    request = received(feed(esme, smsc.send(mo(), T0)))
    event = only(feed(smsc, esme.respond(request, status=CommandStatus.ESME_RX_T_APPN)))
    assert isinstance(event, RequestFailed)
    assert event.status == CommandStatus.ESME_RX_T_APPN


def test_backoff_is_exponential_capped_and_jittered() -> None:
    class Fixed:
        def __init__(self, value: float) -> None:
            self.value = value

        def random(self) -> float:
            return self.value

    assert [backoff_s(attempt, Fixed(0.0), base_s=0.5, cap_s=8.0) for attempt in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [backoff_s(attempt, Fixed(1.0), base_s=0.5, cap_s=8.0) for attempt in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    rng = random.Random(7)
    delays = [backoff_s(3, rng) for _ in range(200)]
    assert all(2.0 <= delay <= 4.0 for delay in delays)
    assert len(set(delays)) > 100
    assert backoff_s(10_000, rng, cap_s=30.0) <= 30.0
    with pytest.raises(FieldError):
        backoff_s(-1, rng)


# Unbind.


def test_peer_unbind_hands_back_outstanding_requests() -> None:
    esme, smsc = bound_pair()
    pending = [parse_pdu(esme.send(submit(b"%d" % n), T0)) for n in range(2)]
    unbind = smsc.send(Unbind(), T0)
    assert smsc.state is S.UNBINDING
    assert only(feed(esme, unbind)) == Unbound(tuple(pending), by_peer=True)
    assert esme.state is S.CLOSED
    [answer] = answers(esme)
    assert answer.body == UnbindResp()
    assert only(feed(smsc, answer.to_bytes())) == Unbound((), by_peer=False)
    assert smsc.state is S.CLOSED
    # Nothing more goes in or out.
    assert feed(esme, Pdu(EnquireLink(), 5).to_bytes()) == []
    with pytest.raises(SmppUsageError):
        esme.send(submit(), T0)


def test_while_unbinding_responses_settle_and_new_requests_are_refused() -> None:
    esme, smsc = bound_pair()
    mo_request = received(feed(esme, smsc.send(mo(b"1"), T0)))
    submitted = received(feed(smsc, esme.send(submit(), T0)))
    unbind_data = esme.send(Unbind(), T0)
    assert esme.state is S.UNBINDING
    # Our answer to the MO still goes out, and the SMSC's answer to our submit still settles it.
    assert isinstance(only(feed(smsc, esme.respond(mo_request))), ResponseReceived)
    assert isinstance(only(feed(esme, smsc.respond(submitted, SubmitSmResp("9")))), ResponseReceived)
    # A new MO is refused: the SMSC keeps it for the next bind.
    late = parse_pdu(smsc.send(mo(b"2"), T0))
    violation = only(feed(esme, late.to_bytes()))
    assert isinstance(violation, ProtocolViolation)
    assert answers(esme) == [Pdu(DeliverSmResp(), late.sequence_number, CommandStatus.ESME_RINVBNDSTS)]
    assert isinstance(only(feed(smsc, Pdu(DeliverSmResp(), late.sequence_number, CommandStatus.ESME_RINVBNDSTS).to_bytes())), RequestFailed)
    assert only(feed(smsc, unbind_data)) == Unbound((), by_peer=True)
    assert only(feed(esme, smsc.data_to_send())) == Unbound((), by_peer=False)


def test_both_sides_unbind_at_once() -> None:
    esme, smsc = bound_pair()
    pending = parse_pdu(esme.send(submit(), T0))
    from_esme, from_smsc = esme.send(Unbind(), T0), smsc.send(Unbind(), T0)
    assert only(feed(esme, from_smsc)) == Unbound((pending,), by_peer=True)
    assert only(feed(smsc, from_esme + pending.to_bytes())) == Unbound((), by_peer=True)
    assert (esme.state, smsc.state) == (S.CLOSED, S.CLOSED)
    assert [answer.body for answer in answers(esme)] == [UnbindResp()]


def test_connection_lost_hands_back_outstanding_requests() -> None:
    esme, _ = bound_pair()
    pending = parse_pdu(esme.send(submit(), T0))
    esme.connection_lost()
    assert esme.events() == [ConnectionClosed((pending,), "connection lost")]
    assert esme.state is S.CLOSED
    esme.connection_lost()
    assert esme.events() == []


# Refusals by state and role: the table, walked.


def session_in(role: Role, state: SessionState) -> SmppSession:
    """A session brought to ``state`` by real PDUs from a real peer."""
    esme, smsc = pair()
    mine, peer = (esme, smsc) if role is Role.ESME else (smsc, esme)
    if state is S.OPEN:
        return mine
    if state is S.BINDING:
        request = esme.send(BindTransceiver("gateway"), T0)
        feed(smsc, request)
        return mine
    kind = {S.BOUND_TX: BindTransmitter, S.BOUND_RX: BindReceiver}.get(state, BindTransceiver)
    bind(esme, smsc, kind)
    if state is S.UNBINDING:
        mine.send(Unbind(), T0)
    elif state is S.CLOSED:
        feed(mine, peer.send(Unbind(), T0))
    assert mine.state is state
    mine.data_to_send()
    mine.events()
    return mine


REQUEST_BODIES = [kind() for kind in BODY_TYPES.values() if not kind.command_id & RESPONSE_BIT]


@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
@pytest.mark.parametrize("state", list(SessionState), ids=lambda state: state.value)
@pytest.mark.parametrize("body", REQUEST_BODIES, ids=lambda body: type(body).__name__)
def test_every_request_in_every_state(role: Role, state: SessionState, body: PduBody) -> None:
    session = session_in(role, state)
    request = Pdu(body, 0x1234)
    events = feed(session, request.to_bytes())
    replies = answers(session)
    command = body.command_id
    if state is S.CLOSED:
        assert (events, replies) == ([], [])
    elif command == CommandId.ENQUIRE_LINK:
        assert (events, replies) == ([], [Pdu(EnquireLinkResp(), 0x1234)])
    elif command == CommandId.UNBIND and state in (S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX, S.UNBINDING):
        assert isinstance(only(events), Unbound)
        assert replies == [Pdu(UnbindResp(), 0x1234)]
    elif (status := refusal(role.peer, command, state)) is None:
        assert only(events) == RequestReceived(request)
        assert replies == []
    else:
        violation = only(events)
        assert isinstance(violation, ProtocolViolation)
        assert (violation.status, violation.command_id, violation.sequence_number) == (status, command, 0x1234)
        assert replies == [Pdu(response_type(command)(), 0x1234, status)]


@pytest.mark.parametrize(
    ("role", "state", "body", "status"),
    [
        # Table 2-1 read directly: a submit_sm before bind, to a receiver, from the SMSC; a deliver_sm to a transmitter.
        (Role.SMSC, S.OPEN, submit(), CommandStatus.ESME_RINVBNDSTS),
        (Role.SMSC, S.BOUND_RX, submit(), CommandStatus.ESME_RINVBNDSTS),
        (Role.ESME, S.BOUND_TRX, submit(), CommandStatus.ESME_RINVCMDID),
        (Role.ESME, S.BOUND_TX, mo(), CommandStatus.ESME_RINVBNDSTS),
        (Role.SMSC, S.BOUND_TRX, mo(), CommandStatus.ESME_RINVCMDID),
        # A bind to a bound SMSC, a bind to an ESME; data_sm before bind; an unbind before bind.
        (Role.SMSC, S.BOUND_TX, BindReceiver(), CommandStatus.ESME_RALYBND),
        (Role.ESME, S.OPEN, BindTransmitter(), CommandStatus.ESME_RINVCMDID),
        (Role.ESME, S.OPEN, DataSm(), CommandStatus.ESME_RINVBNDSTS),
        (Role.SMSC, S.OPEN, Unbind(), CommandStatus.ESME_RINVBNDSTS),
    ],
)
def test_refusals_from_the_spec(role: Role, state: SessionState, body: PduBody, status: CommandStatus) -> None:
    session = session_in(role, state)
    violation = only(feed(session, Pdu(body, 77).to_bytes()))
    assert isinstance(violation, ProtocolViolation)
    assert answers(session) == [Pdu(response_type(body.command_id)(), 77, status)]


def test_the_table_covers_both_roles_for_every_shared_request() -> None:
    for command in (CommandId.UNBIND, CommandId.DATA_SM, CommandId.ENQUIRE_LINK):
        assert ISSUE[(Role.ESME, command)] == ISSUE[(Role.SMSC, command)]
    assert (Role.SMSC, CommandId.SUBMIT_SM) not in ISSUE
    assert (Role.ESME, CommandId.DELIVER_SM) not in ISSUE


@pytest.mark.parametrize(
    ("role", "body", "status"),
    [
        (Role.ESME, submit(), CommandStatus.ESME_RINVBNDSTS),
        (Role.SMSC, mo(), CommandStatus.ESME_RINVBNDSTS),
        (Role.SMSC, submit(), CommandStatus.ESME_RINVCMDID),
        (Role.SMSC, BindTransceiver(), CommandStatus.ESME_RINVCMDID),
    ],
)
def test_sending_out_of_turn_is_refused_locally(role: Role, body: PduBody, status: CommandStatus) -> None:
    session = SmppSession(role, T0)
    with pytest.raises(SmppUsageError) as caught:
        session.send(body, T0)
    assert caught.value.command_status == status
    assert session.outstanding == ()


def test_local_misuse() -> None:
    esme, smsc = bound_pair()
    with pytest.raises(SmppUsageError) as caught:
        esme.send(BindTransceiver(), T0)
    assert caught.value.command_status == CommandStatus.ESME_RALYBND
    with pytest.raises(SmppUsageError, match="not a request"):
        esme.send(SubmitSmResp(), T0)
    request = received(feed(smsc, esme.send(submit(), T0)))
    with pytest.raises(SmppUsageError, match="does not answer"):
        smsc.respond(request, DeliverSmResp())
    smsc.respond(request, SubmitSmResp("1"))
    with pytest.raises(SmppUsageError, match="awaits no response"):
        smsc.respond(request, SubmitSmResp("1"))
    with pytest.raises(FieldError):
        SessionConfig(window_size_max=0)
    with pytest.raises(FieldError):
        SessionConfig(response_timeout_s=0)


def test_a_request_may_be_answered_with_generic_nack() -> None:
    esme, smsc = bound_pair()
    request = received(feed(smsc, esme.send(submit(), T0)))
    event = only(feed(esme, smsc.respond(request, GenericNack(), status=CommandStatus.ESME_RSYSERR)))
    assert isinstance(event, RequestFailed)
    assert event.response.command_id == CommandId.GENERIC_NACK


def test_inbound_window_refuses_with_throttled() -> None:
    esme, smsc = bound_pair(SessionConfig(inbound_window_max=2))
    for n in range(2):
        received(feed(esme, smsc.send(mo(b"%d" % n), T0)))
    third = parse_pdu(smsc.send(mo(b"2"), T0))
    assert isinstance(only(feed(esme, third.to_bytes())), ProtocolViolation)
    assert answers(esme) == [Pdu(DeliverSmResp(), third.sequence_number, CommandStatus.ESME_RTHROTTLED)]
    assert only(feed(smsc, Pdu(DeliverSmResp(), third.sequence_number, CommandStatus.ESME_RTHROTTLED).to_bytes())) == Throttled(
        third, CommandStatus.ESME_RTHROTTLED
    )


def test_duplicate_sequence_number_from_the_peer() -> None:
    esme, _ = bound_pair()
    first = Pdu(mo(b"1"), 50)
    assert only(feed(esme, first.to_bytes())) == RequestReceived(first)
    assert isinstance(only(feed(esme, Pdu(mo(b"2"), 50).to_bytes())), ProtocolViolation)
    assert answers(esme) == [Pdu(DeliverSmResp(), 50, CommandStatus.ESME_RSYSERR)]
    assert esme.awaiting_our_response == (first,)


# Broken PDUs from the peer.


def test_unknown_command_gets_generic_nack_and_the_link_goes_on() -> None:
    esme, smsc = bound_pair()
    query_sm = bytes.fromhex("00000016 00000003 00000000 0000002a 313200 000000".replace(" ", ""))
    violation = only(feed(smsc, query_sm))
    assert isinstance(violation, ProtocolViolation)
    assert (violation.status, violation.command_id, violation.sequence_number) == (CommandStatus.ESME_RINVCMDID, 3, 42)
    assert answers(smsc) == [Pdu(GenericNack(), 42, CommandStatus.ESME_RINVCMDID)]
    assert isinstance(only(feed(smsc, esme.send(submit(), T0))), RequestReceived)


def test_malformed_request_gets_its_own_response_with_the_status() -> None:
    esme, smsc = bound_pair()
    data = Pdu(SubmitSm(source_addr="7" * 20, destination_addr="10086"), 61).to_bytes()
    # source_addr one octet over its 21 (NUL included), and command_length to match.
    data = data.replace(b"7" * 20 + b"\0", b"7" * 21 + b"\0")
    data = (len(data)).to_bytes(4, "big") + data[4:]
    violation = only(feed(smsc, data))
    assert isinstance(violation, ProtocolViolation)
    assert violation.status == CommandStatus.ESME_RINVSRCADR
    assert answers(smsc) == [Pdu(SubmitSmResp(), 61, CommandStatus.ESME_RINVSRCADR)]
    assert isinstance(only(feed(smsc, esme.send(submit(), T0))), RequestReceived)


def test_malformed_response_gets_no_answer() -> None:
    esme, _ = bound_pair()
    broken = bytes.fromhex("00000014 80000004 00000000 00000001 41424344".replace(" ", ""))
    assert isinstance(only(feed(esme, broken)), ProtocolViolation)
    assert answers(esme) == []


def test_broken_framing_closes_with_generic_nack() -> None:
    esme, _ = bound_pair()
    pending = parse_pdu(esme.send(submit(), T0))
    events = feed(esme, bytes.fromhex("0000000c 00000015 00000000 00000007".replace(" ", "")))
    assert isinstance(events[0], ProtocolViolation)
    assert events[1] == ConnectionClosed((pending,), events[1].reason)  # type: ignore[union-attr]
    assert answers(esme) == [Pdu(GenericNack(), 7, CommandStatus.ESME_RINVCMDLEN)]
    assert esme.state is S.CLOSED


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=10))
def test_hostile_bytes_only_make_events(data: bytes, cuts: list[int]) -> None:
    esme, _ = bound_pair()
    position = 0
    for size in [*cuts, len(data)]:
        esme.receive_data(data[position : position + size], T0)
        position += size
    esme.events()
    esme.data_to_send()


# Sequence numbers.


def test_sequence_numbers_wrap() -> None:
    esme, _ = bound_pair(SessionConfig(first_sequence_number=0x7FFFFFFE))
    numbers = [parse_pdu(esme.send(submit(), T0)).sequence_number for _ in range(3)]
    assert numbers == [0x7FFFFFFF, 1, 2]  # the bind took 0x7FFFFFFE


def test_sequence_numbers_skip_those_still_waiting() -> None:
    window = RequestWindow(8)
    window.add(Pdu(submit(), 2), T0, 10.0, windowed=True)
    assert [window.allocate(windowed=True) for _ in range(2)] == [1, 3]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 0x7FFFFFFF), st.integers(1, 40))
def test_sequence_numbers_stay_in_range_and_unique(first: int, count: int) -> None:
    window = RequestWindow(64, first_sequence_number=first)
    numbers = []
    for _ in range(count):
        number = window.allocate(windowed=True)
        window.add(Pdu(submit(), number), T0, 1.0, windowed=True)
        numbers.append(number)
    assert all(1 <= number <= 0x7FFFFFFF for number in numbers)
    assert len(set(numbers)) == count


def test_window_and_config_limits() -> None:
    with pytest.raises(FieldError):
        RequestWindow(0)
    with pytest.raises(FieldError):
        RequestWindow(8, first_sequence_number=0x80000000)
    window = RequestWindow(8)
    window.add(Pdu(submit(), 1), T0, 1.0, windowed=True)
    with pytest.raises(FieldError):
        window.add(Pdu(submit(), 1), T0, 1.0, windowed=True)


WINDOW_SIZE = 300


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "keepalive", "pop", "expire"]), st.integers(0, 300), st.floats(0.5, 30.0)), max_size=400))
def test_window_deadlines_and_keepalives_match_a_full_scan(steps: list[tuple[str, int, float]]) -> None:
    # The heap and the per-command counts against the plain definition, through answers, expiries and rebuilds.
    window = RequestWindow(WINDOW_SIZE, first_sequence_number=1)
    now = T0
    for op, pick, timeout in steps:
        now += 0.01
        waiting = [request.sequence_number for request in window.requests()]
        if op in ("add", "keepalive") and window.has_room(windowed=op == "add"):
            number = window.allocate(windowed=op == "add")
            window.add(Pdu(submit() if op == "add" else EnquireLink(), number), now, timeout, windowed=op == "add")
        elif op == "pop" and waiting:
            window.pop(waiting[pick % len(waiting)])
        elif op == "expire":
            window.expired(now + pick / 10)
        entries = [window.get(request.sequence_number) for request in window.requests()]
        assert window.earliest_deadline() == min((e.deadline for e in entries if e is not None), default=None)
        assert window.awaiting(CommandId.ENQUIRE_LINK) == any(r.command_id == CommandId.ENQUIRE_LINK for r in window.requests())
        assert len(window._deadlines) <= 2 * len(window) + HEAP_SLACK + 1  # bounded: answered requests leave the heap


# Many messages, both ways, out of order.


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 60))
def test_traffic_in_any_order_settles_every_request(rng: random.Random, count: int) -> None:
    esme, smsc = bound_pair(SessionConfig(window_size_max=16))
    settled: list[Pdu] = []
    waiting: list[tuple[SmppSession, Pdu]] = []
    sent = 0
    while sent < count or waiting:
        if sent < count and rng.random() < 0.6:
            sender, receiver, body = (esme, smsc, submit(b"%d" % sent)) if rng.random() < 0.5 else (smsc, esme, mo(b"%d" % sent))
            try:
                data = sender.send(body, T0)
            except WindowFull:
                continue
            waiting.append((receiver, received(feed(receiver, data))))
            sent += 1
        elif waiting:
            receiver, request = waiting.pop(rng.randrange(len(waiting)))
            sender = smsc if receiver is esme else esme
            event = only(feed(sender, receiver.respond(request)))
            assert isinstance(event, ResponseReceived)
            assert event.request == request
            settled.append(request)
    assert len(settled) == count
    assert esme.outstanding == smsc.outstanding == ()
