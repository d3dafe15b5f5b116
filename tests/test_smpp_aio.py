"""The asyncio SMPP driver (simwallet.gateway.smpp.aio): two SmppConnections over a real loopback socket.

Bind and refusals, request/response out of order, the window (a full window
waits), response timeouts, throttling, enquire_link when idle and a silent
peer dropped, the peer closing with requests outstanding, unbind, a peer that
sends garbage (hypothesis), and bind_with_retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simwallet.gateway.smpp import (
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    Pdu,
    PduReader,
    Role,
    SessionConfig,
    SessionState,
    SmppError,
    SubmitSm,
    SubmitSmResp,
)
from simwallet.gateway.smpp.aio import (
    SmppConnection,
    SmppConnectionLost,
    SmppRequestError,
    SmppThrottled,
    SmppTimeout,
    bind_with_retry,
)
from simwallet.gateway.smpp.pdu import CommandId

FAST = SessionConfig(response_timeout_s=2.0, enquire_link_interval_s=30.0, peer_silence_timeout_s=60.0)
TEST_TIMEOUT_S = 10.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await coro

    asyncio.run(bounded())


class Peer:
    """The SMSC end of the tests: accepts connections and hands their requests to the test."""

    def __init__(self, answer: Callable[[SmppConnection, Pdu], None] | None = None, config: SessionConfig = FAST) -> None:
        self.answer = answer
        self.config = config
        self.connections: list[SmppConnection] = []
        self.requests: asyncio.Queue[tuple[SmppConnection, Pdu]] = asyncio.Queue()
        self.port = 0

    def on_request(self, connection: SmppConnection, pdu: Pdu) -> None:
        if pdu.command_id == CommandId.BIND_TRANSCEIVER:
            body = pdu.body
            assert isinstance(body, BindTransceiver)
            status = CommandStatus.ESME_ROK if body.password == "secret" else CommandStatus.ESME_RINVPASWD
            connection.respond(pdu, BindTransceiverResp(system_id="SMSC"), status=status)
        elif self.answer is not None:
            self.answer(connection, pdu)
        else:
            self.requests.put_nowait((connection, pdu))

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(SmppConnection.accept(reader, writer, config=self.config, on_request=self.on_request))


@contextlib.asynccontextmanager
async def serving(peer: Peer) -> AsyncIterator[Peer]:
    server = await asyncio.start_server(peer.accept, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for connection in peer.connections:
            await connection.close()
        await server.wait_closed()


async def esme(peer: Peer, config: SessionConfig = FAST, **kwargs: Any) -> SmppConnection:
    connection = await SmppConnection.connect("127.0.0.1", peer.port, config=config, **kwargs)
    await connection.bind(BindTransceiver(system_id="esme", password="secret"))
    return connection


def submit(n: int = 0) -> SubmitSm:
    return SubmitSm(source_addr="10658000", destination_addr=f"861380000{n:04d}", short_message=b"hello %d" % n)


def ok(connection: SmppConnection, pdu: Pdu) -> None:
    connection.respond(pdu, SubmitSmResp(message_id=f"id-{pdu.sequence_number}"))


def test_bind_and_request() -> None:
    async def main() -> None:
        async with serving(Peer(ok)) as peer:
            client = await esme(peer)
            assert client.state is SessionState.BOUND_TRX and client.bound_as == "esme"
            response = await client.request(submit())
            assert response.command_id == CommandId.SUBMIT_SM_RESP
            assert isinstance(response.body, SubmitSmResp) and response.body.message_id.startswith("id-")
            server_side = peer.connections[0]
            assert server_side.state is SessionState.BOUND_TRX and server_side.bound_as == "esme"
            assert client.in_flight == 0
            await client.close()

    run(main())


def test_wrong_password_refused_and_not_retried() -> None:
    async def main() -> None:
        async with serving(Peer(ok)) as peer:
            client = await SmppConnection.connect("127.0.0.1", peer.port, config=FAST)
            with pytest.raises(SmppRequestError) as refused:
                await client.bind(BindTransceiver(system_id="esme", password="wrong"))
            assert refused.value.command_status == CommandStatus.ESME_RINVPASWD
            assert client.state is SessionState.OPEN
            await client.close()
            tries: list[int] = []

            def backoff(attempt: int, rng: object) -> float:
                tries.append(attempt)
                return 0.01

            with pytest.raises(SmppRequestError):
                await bind_with_retry(
                    "127.0.0.1", peer.port, BindTransceiver(system_id="esme", password="wrong"), on_request=None, backoff=backoff
                )
            assert tries == []

    run(main())


def test_responses_out_of_order_reach_their_callers() -> None:
    async def main() -> None:
        async with serving(Peer()) as peer:
            client = await esme(peer)
            calls = [asyncio.create_task(client.request(submit(n))) for n in range(5)]
            held = [await peer.requests.get() for _ in range(5)]
            for connection, pdu in reversed(held):
                body = pdu.body
                assert isinstance(body, SubmitSm)
                connection.respond(pdu, SubmitSmResp(message_id=body.destination_addr))
            for n, call in enumerate(calls):
                response = await call
                assert isinstance(response.body, SubmitSmResp) and response.body.message_id == f"861380000{n:04d}"

    run(main())


def test_full_window_waits_for_a_slot() -> None:
    async def main() -> None:
        async with serving(Peer()) as peer:
            client = await esme(peer, SessionConfig(window_size_max=2, response_timeout_s=5.0))
            calls = [asyncio.create_task(client.request(submit(n))) for n in range(5)]
            first = [await peer.requests.get() for _ in range(2)]
            await asyncio.sleep(0.1)
            assert peer.requests.empty() and client.in_flight == 2
            assert not any(call.done() for call in calls)
            connection, pdu = first[0]
            ok(connection, pdu)
            third = await peer.requests.get()
            await asyncio.sleep(0.05)
            assert peer.requests.empty() and client.in_flight == 2
            for connection, pdu in [first[1], third]:
                ok(connection, pdu)
            for _ in range(2):
                connection, pdu = await peer.requests.get()
                ok(connection, pdu)
            results = await asyncio.gather(*calls)
            assert len({r.sequence_number for r in results}) == 5 and client.in_flight == 0

    run(main())


def test_response_timeout_frees_the_slot() -> None:
    async def main() -> None:
        async with serving(Peer()) as peer:
            client = await esme(peer, SessionConfig(window_size_max=1, response_timeout_s=0.2))
            with pytest.raises(SmppTimeout) as late:
                await client.request(submit(1))
            assert late.value.request is not None and late.value.request.body == submit(1)
            assert client.in_flight == 0
            # The slot is free again: the next request goes out (and is answered).
            peer.answer = ok
            assert (await client.request(submit(2))).command_status == CommandStatus.ESME_ROK
            # timeout_s bounds the caller's wait only.
            peer.answer = None
            with pytest.raises(SmppTimeout):
                await client.request(submit(3), timeout_s=0.05)

    run(main())


@pytest.mark.parametrize("status", [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL])
def test_throttled_raised_with_the_request(status: CommandStatus) -> None:
    async def main() -> None:
        async with serving(Peer(lambda c, p: c.respond(p, status=status))) as peer:
            client = await esme(peer)
            with pytest.raises(SmppThrottled) as throttled:
                await client.request(submit(7))
            assert throttled.value.command_status == status
            assert throttled.value.request is not None and throttled.value.request.body == submit(7)

    run(main())


def test_other_error_status_is_a_request_error() -> None:
    async def main() -> None:
        async with serving(Peer(lambda c, p: c.respond(p, status=0x45A))) as peer:
            client = await esme(peer)
            with pytest.raises(SmppRequestError) as refused:
                await client.request(submit())
            assert not isinstance(refused.value, SmppThrottled)
            assert refused.value.command_status == 0x45A and refused.value.code == "0x0000045A"
            assert isinstance(refused.value, SmppError)

    run(main())


def test_unhandled_and_failing_requests_are_answered() -> None:
    async def main() -> None:
        async with serving(Peer(ok)) as peer:
            client = await esme(peer)
            smsc = peer.connections[0]
            with pytest.raises(SmppRequestError) as unhandled:
                await smsc.request(DeliverSm(source_addr="8613800000001", destination_addr="10658000"))
            assert unhandled.value.command_status == CommandStatus.ESME_RX_T_APPN
            await client.close()

            def broken(connection: SmppConnection, pdu: Pdu) -> None:
                raise RuntimeError("application bug")

            client = await esme(peer, on_request=broken)
            smsc = peer.connections[1]
            with pytest.raises(SmppRequestError) as failed:
                await smsc.request(DeliverSm(source_addr="8613800000001", destination_addr="10658000"))
            assert failed.value.command_status == CommandStatus.ESME_RSYSERR

    run(main())


async def raw_smsc(port_ready: asyncio.Future[int], seen: list[int], done: asyncio.Event, *, answer_enquire_link: bool) -> None:
    """A hand-written SMSC: answers the bind (and enquire_link if asked), records every command_id."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pdus = PduReader()
        while data := await reader.read(4096):
            pdus.feed(data)
            for pdu in pdus:
                seen.append(pdu.command_id)
                if pdu.command_id == CommandId.BIND_TRANSCEIVER:
                    writer.write(Pdu(BindTransceiverResp(system_id="RAW"), pdu.sequence_number).to_bytes())
                elif pdu.command_id == CommandId.ENQUIRE_LINK and answer_enquire_link:
                    writer.write(Pdu(EnquireLinkResp(), pdu.sequence_number).to_bytes())
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await asyncio.Event().wait()


def test_enquire_link_when_idle_and_silent_peer_dropped() -> None:
    async def main() -> None:
        seen: list[int] = []
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        handler_done = asyncio.Event()
        smsc = asyncio.create_task(raw_smsc(ready, seen, handler_done, answer_enquire_link=False))
        port = await ready
        config = SessionConfig(enquire_link_interval_s=0.1, peer_silence_timeout_s=0.5, response_timeout_s=5.0)
        client = await SmppConnection.connect("127.0.0.1", port, config=config)
        await client.bind(BindTransceiver(system_id="esme", password="x"))
        waiting = asyncio.create_task(client.request(submit()))
        await client.wait_closed()
        assert seen.count(CommandId.ENQUIRE_LINK) >= 1
        assert "silent" in client.close_reason
        with pytest.raises(SmppConnectionLost):
            await waiting
        await client.close()
        await handler_done.wait()
        smsc.cancel()

    run(main())


def test_keepalive_holds_an_idle_link() -> None:
    async def main() -> None:
        config = SessionConfig(enquire_link_interval_s=0.1, peer_silence_timeout_s=0.35, response_timeout_s=1.0)
        async with serving(Peer(ok, config)) as peer:
            client = await esme(peer, config)
            await asyncio.sleep(1.0)
            assert not client.closed.is_set() and not peer.connections[0].closed.is_set()
            assert (await client.request(submit())).command_status == CommandStatus.ESME_ROK

    run(main())


def test_peer_close_fails_pending_requests() -> None:
    async def main() -> None:
        async with serving(Peer()) as peer:
            client = await esme(peer)
            calls = [asyncio.create_task(client.request(submit(n))) for n in range(3)]
            for _ in range(3):
                await peer.requests.get()
            await peer.connections[0].close()
            for call in calls:
                with pytest.raises(SmppConnectionLost):
                    await call
            await client.wait_closed()
            with pytest.raises(SmppConnectionLost):
                await client.request(submit())
            # Answering on a closed connection is a no-op: the peer redelivers.
            client.respond(Pdu(DeliverSm(), 1))

    run(main())


def test_unbind_closes_both_ends() -> None:
    async def main() -> None:
        async with serving(Peer(ok)) as peer:
            client = await esme(peer)
            await client.unbind()
            assert client.closed.is_set() and client.close_reason == "unbound"
            server_side = peer.connections[0]
            await server_side.wait_closed()
            assert server_side.close_reason == "unbound by the peer"
            with pytest.raises(SmppConnectionLost):
                await client.request(submit())

    run(main())


def test_bind_with_retry_waits_for_the_server() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        peer = Peer(ok)
        tries: list[int] = []

        def backoff(attempt: int, rng: object) -> float:
            tries.append(attempt)
            return 0.05

        async def later() -> asyncio.Server:
            await asyncio.sleep(0.3)
            return await asyncio.start_server(peer.accept, "127.0.0.1", port)

        starting = asyncio.create_task(later())
        body = BindTransceiver(system_id="esme", password="secret")
        client = await bind_with_retry("127.0.0.1", port, body, on_request=None, backoff=backoff)
        assert client.state is SessionState.BOUND_TRX and len(tries) >= 2 and tries[:2] == [0, 1]
        server = await starting
        await client.close()
        server.close()
        stop = asyncio.Event()
        stop.set()
        with pytest.raises(SmppConnectionLost):
            await bind_with_retry("127.0.0.1", port, body, on_request=None, stop=stop)
        with pytest.raises(SmppConnectionLost):
            await bind_with_retry("127.0.0.1", port, body, on_request=None, attempts_max=2, backoff=backoff)

    run(main())


@settings(max_examples=25, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=300), chunk=st.integers(1, 64))
def test_garbage_from_the_peer_never_crashes_the_pump(garbage: bytes, chunk: int) -> None:
    async def main() -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        accepted: list[SmppConnection] = []

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(SmppConnection.accept(reader, writer, config=FAST, on_request=lambda c, p: c.respond(p)))

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for start in range(0, len(garbage), chunk):
            writer.write(garbage[start : start + chunk])
            await writer.drain()
        writer.write(Pdu(EnquireLink(), 77).to_bytes())
        writer.write_eof()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()
        await accepted[0].wait_closed()
        await accepted[0].close()
        server.close()
        await server.wait_closed()
        assert errors == []

    run(main())


def test_role_of_the_accepting_side_is_the_smsc() -> None:
    async def main() -> None:
        async with serving(Peer(ok)) as peer:
            client = await esme(peer)
            assert client.role is Role.ESME and peer.connections[0].role is Role.SMSC
            assert peer.connections[0].peer.startswith("127.0.0.1:")

    run(main())
