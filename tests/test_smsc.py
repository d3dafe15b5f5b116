"""The embedded SMSC (simwallet.gateway.smsc): real SMPP over loopback sockets, a real SQLite store, no mocks.

Routing MO to the ESME owning the longest prefix and MT to the phones bind
carrying the MSISDN; USSD and binary SMS-PP pass unchanged; concatenated MO
arrives as its parts; redelivery with the same message id; queued messages on
(re)bind; throughput limits; receipts (delivered and expired); refused binds;
a bounded queue; and an SMSC process killed and restarted on its state
directory. Plus the pure rules (config, §7.1 times, receipts, routing, store).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from simwallet.gateway.smpp import (
    BindReceiver,
    BindTransceiver,
    CommandStatus,
    DeliverSm,
    ItsSessionInfo,
    MessageState,
    OptionalParams,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    UssdServiceOp,
)
from simwallet.gateway.smpp.aio import SmppConnection, SmppRequestError, SmppThrottled
from simwallet.gateway.sms.segments import MoPart, Reassembler, encode_reply
from simwallet.gateway.smsc import Account, AccountKind, SmscConfig, SmscConfigError, SmscServer, smsc_message_id
from simwallet.gateway.smsc.router import (
    SMSC_MESSAGE_ID_TAG,
    Target,
    TargetKind,
    TokenBucket,
    deliver_for,
    parse_smpp_time,
    receipt_for,
    route,
)
from simwallet.gateway.smsc.store import MessageStore

TEST_TIMEOUT_S = 20.0
GW, OTHER = "10658000", "1065800012"
ACCOUNTS = (
    Account("gw", "secret", AccountKind.ESME, (GW, "*166")),
    Account("other", "secret", AccountKind.ESME, (OTHER,)),
    Account("phones", "secret", AccountKind.PHONES),
    Account("slow", "secret", AccountKind.PHONES, tps=10.0),
)
# A deliver_sm_resp answer: a status, or None to hold the deliver_sm unanswered.
Answer = Callable[[DeliverSm], int | None]


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await coro

    asyncio.run(bounded())


@contextlib.asynccontextmanager
async def smsc(state_dir: Path, **options: Any) -> AsyncIterator[SmscServer]:
    server = SmscServer(SmscConfig(ACCOUNTS, **options), state_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Peer:
    """An SMPP client of the SMSC (an ESME application, or a phone simulator): deliver_sm into a queue."""

    def __init__(self, port: int, system_id: str = "gw", *, address_range: str = "", answer: Answer | None = None) -> None:
        self.port, self.system_id, self.address_range = port, system_id, address_range
        self.answer: Answer = answer or (lambda body: CommandStatus.ESME_ROK)
        self.deliveries: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self.held: list[Pdu] = []
        self.connection: SmppConnection | None = None

    async def __aenter__(self) -> Peer:
        self.connection = await SmppConnection.connect("127.0.0.1", self.port, on_request=self._on_request)
        await self.connection.bind(BindTransceiver(system_id=self.system_id, password="secret", address_range=self.address_range))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    def _on_request(self, connection: SmppConnection, pdu: Pdu) -> None:
        assert isinstance(pdu.body, DeliverSm)
        status = self.answer(pdu.body)
        if status is None:
            self.held.append(pdu)
        else:
            connection.respond(pdu, status=status)
        self.deliveries.put_nowait(pdu.body)

    async def submit(self, **fields: Any) -> str:
        assert self.connection is not None
        response = await self.connection.request(SubmitSm(**fields))
        assert isinstance(response.body, SubmitSmResp)
        return response.body.message_id

    async def next(self, timeout_s: float = 5.0) -> DeliverSm:
        async with asyncio.timeout(timeout_s):
            return await self.deliveries.get()

    async def nothing_more(self, wait_s: float = 0.3) -> None:
        await asyncio.sleep(wait_s)
        assert self.deliveries.empty()


def mo(n: int = 1, to: str = GW, text: bytes = b"BAL 1234", **fields: Any) -> dict[str, Any]:
    return {"source_addr": f"86138000000{n:02d}", "destination_addr": to, "short_message": text, **fields}


# --- routing and passthrough ----------------------------------------------------------------------------


def test_mo_routed_to_the_longest_prefix_and_mt_to_the_phone(tmp_path: Path) -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(smsc(tmp_path))
            gw = await stack.enter_async_context(Peer(server.port))
            other = await stack.enter_async_context(Peer(server.port, "other"))
            low = await stack.enter_async_context(Peer(server.port, "phones", address_range="86138000000[0-4][0-9]"))
            high = await stack.enter_async_context(Peer(server.port, "phones", address_range="86138000000[5-9][0-9]"))
            first = await low.submit(**mo(1, GW, b"BAL 1234", data_coding=0))
            second = await low.submit(**mo(2, OTHER + "34", "余额".encode("utf-16-be"), data_coding=8))
            got = await gw.next()
            assert (got.source_addr, got.destination_addr, got.short_message) == ("8613800000001", GW, b"BAL 1234")
            assert smsc_message_id(got.tlvs) == first
            got = await other.next()
            assert got.destination_addr == OTHER + "34" and got.data_coding == 8 and smsc_message_id(got.tlvs) == second
            await gw.submit(source_addr=GW, destination_addr="8613800000077", short_message=b"to high")
            await gw.submit(source_addr=GW, destination_addr="8613800000033", short_message=b"to low")
            assert (await high.next()).short_message == b"to high"
            assert (await low.next()).short_message == b"to low"
            await high.nothing_more(0.1)
            assert first != second and server.stats().total("delivered") == 4

    run(main())


def test_ussd_ops_and_binary_sms_pp_pass_unchanged(tmp_path: Path) -> None:
    async def main() -> None:
        async with smsc(tmp_path) as server, Peer(server.port) as gw, Peer(server.port, "phones") as phone:
            session = ItsSessionInfo(7, 0)
            dial = OptionalParams.of(ussd_service_op=UssdServiceOp.PSSR_INDICATION, its_session_info=session)
            await phone.submit(**mo(1, "*166#", b"*166#", tlvs=dial))
            got = await gw.next()
            assert got.destination_addr == "*166#" and got.tlvs.ussd_service_op == 1 and got.tlvs.its_session_info == session
            for op in (UssdServiceOp.USSR_REQUEST, UssdServiceOp.USSN_REQUEST, UssdServiceOp.PSSR_RESPONSE):
                tlvs = OptionalParams.of(ussd_service_op=op, its_session_info=ItsSessionInfo(7, 1, op == 17))
                await gw.submit(source_addr="*166", destination_addr="8613800000001", short_message=b"1 Balance", tlvs=tlvs)
                got = await phone.next()
                assert got.tlvs.ussd_service_op == op and got.tlvs.its_session_info == ItsSessionInfo(7, 1, op == 17)
                assert got.short_message == b"1 Balance"
            # TS 31.115 §4: SMS-PP with a command packet: PID 0x7F, DCS 0xF6, UDH 02 70 00.
            packet = bytes.fromhex("027000") + bytes.fromhex("0010 0D 1601 1515 B00010 0000000001 00 00A4000402 3F00".replace(" ", ""))
            await gw.submit(
                source_addr=GW, destination_addr="8613800000001", esm_class=0x40, protocol_id=0x7F, data_coding=0xF6, short_message=packet
            )
            got = await phone.next()
            assert (got.esm_class, got.protocol_id, got.data_coding, got.short_message) == (0x40, 0x7F, 0xF6, packet)

    run(main())


def test_concatenated_mo_arrives_as_its_parts(tmp_path: Path) -> None:
    async def main() -> None:
        text = "TOPUP 100 123456 " * 12
        segments = encode_reply(text, ref=42)
        assert len(segments) == 2
        async with smsc(tmp_path) as server, Peer(server.port) as gw, Peer(server.port, "phones") as phone:
            for segment in segments:
                await phone.submit(**mo(3, GW, segment.short_message, esm_class=segment.esm_class, data_coding=segment.data_coding))
            # The same message in SAR TLVs instead of a header.
            for number, chunk in enumerate((b"TOPUP 100 ", b"123456"), start=1):
                tlvs = OptionalParams.of(sar_msg_ref_num=0x1234, sar_total_segments=2, sar_segment_seqnum=number)
                await phone.submit(**mo(4, GW, chunk, tlvs=tlvs))
            reassembler, texts = Reassembler(), []
            for _ in range(4):
                got = await gw.next()
                t = got.tlvs
                part = MoPart(got.source_addr, got.data_coding, got.esm_class, got.short_message, *_sar(t))
                done = reassembler.receive(part, now=0.0)
                if done is not None:
                    texts.append(done.text)
            assert sorted(texts) == sorted([text, "TOPUP 100 123456"])

    run(main())


def _sar(tlvs: OptionalParams) -> tuple[int | None, int | None, int | None]:
    return tlvs.sar_msg_ref_num, tlvs.sar_total_segments, tlvs.sar_segment_seqnum


# --- store and forward ----------------------------------------------------------------------------------


def test_unacknowledged_deliver_sm_is_redelivered_with_the_same_id(tmp_path: Path) -> None:
    async def main() -> None:
        answers = iter([None, CommandStatus.ESME_ROK])
        async with smsc(tmp_path, redeliver_after_s=0.3) as server:
            gw, phone = Peer(server.port, answer=lambda body: next(answers)), Peer(server.port, "phones")
            async with gw, phone:
                sent = await phone.submit(**mo())
                first, again = await gw.next(), await gw.next(2.0)
                assert smsc_message_id(first.tlvs) == smsc_message_id(again.tlvs) == sent
                await gw.nothing_more()
                stats = server.stats()
                assert stats.accounts["gw"].redelivered == 1 and stats.accounts["gw"].delivered == 1 and stats.stored == 0

    run(main())


def test_queued_messages_reach_the_esme_when_it_binds_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with smsc(tmp_path) as server, Peer(server.port, "phones") as phone:
            sent = [await phone.submit(**mo(n)) for n in range(3)]
            assert server.stats().stored == 3
            async with Peer(server.port, answer=lambda body: None) as holding:
                held = [smsc_message_id((await holding.next()).tlvs) for _ in range(3)]
                assert sorted(held) == sorted(sent)
            # The connection dropped with the deliver_sm unanswered: the next bind gets them again.
            async with Peer(server.port) as gw:
                again = [smsc_message_id((await gw.next()).tlvs) for _ in range(3)]
                assert sorted(again) == sorted(sent)
                await gw.nothing_more(0.1)
            assert server.stats().stored == 0 and server.stats().accounts["gw"].redelivered == 3

    run(main())


def test_receiver_bind_and_deliver_sm_throttled_by_the_esme(tmp_path: Path) -> None:
    async def main() -> None:
        answers = iter([CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_ROK])
        async with smsc(tmp_path) as server, Peer(server.port, "phones") as phone:
            connection = await SmppConnection.connect("127.0.0.1", server.port)
            received: asyncio.Queue[DeliverSm] = asyncio.Queue()

            def on_request(conn: SmppConnection, pdu: Pdu) -> None:
                assert isinstance(pdu.body, DeliverSm)
                conn.respond(pdu, status=next(answers))
                received.put_nowait(pdu.body)

            receiver = await SmppConnection.connect("127.0.0.1", server.port, on_request=on_request)
            await receiver.bind(BindReceiver(system_id="gw", password="secret"))
            await connection.close()
            started = time.monotonic()
            await phone.submit(**mo())
            first = await received.get()
            second = await asyncio.wait_for(received.get(), 5.0)
            assert smsc_message_id(first.tlvs) == smsc_message_id(second.tlvs)
            assert time.monotonic() - started >= 0.12  # the back-off: at least half of 0.25 s
            await asyncio.sleep(0.05)
            stats = server.stats().accounts["gw"]
            assert (stats.peer_throttled, stats.delivered, server.stats().stored) == (1, 1, 0)
            await receiver.close()

    run(main())


def test_throttling_above_the_bind_tps(tmp_path: Path) -> None:
    async def main() -> None:
        async with smsc(tmp_path) as server, Peer(server.port) as gw, Peer(server.port, "slow") as phone:
            started = time.monotonic()
            results = await asyncio.gather(*(phone.submit(**mo(n)) for n in range(20)), return_exceptions=True)
            elapsed = time.monotonic() - started
            accepted = [r for r in results if isinstance(r, str)]
            throttled = [r for r in results if isinstance(r, SmppThrottled)]
            assert len(accepted) + len(throttled) == 20
            assert all(r.command_status == CommandStatus.ESME_RTHROTTLED for r in throttled)
            # Burst of 1 plus 10 per second.
            assert 1 <= len(accepted) <= 1 + 10 * elapsed + 1
            stats = server.stats().accounts["slow"]
            assert (stats.accepted, stats.throttled) == (len(accepted), len(throttled))
            for _ in accepted:
                await gw.next()
            await gw.nothing_more(0.2)
            # The bucket refills: one more goes through.
            assert await phone.submit(**mo(99))

    run(main())


def test_delivery_receipt_and_expiry_receipt(tmp_path: Path) -> None:
    async def main() -> None:
        async with smsc(tmp_path) as server, Peer(server.port) as gw, Peer(server.port, "phones", address_range="86138[0-9]{8}") as phone:
            sent = await gw.submit(source_addr=GW, destination_addr="8613800000001", registered_delivery=1, short_message=b"hello receipt")
            assert (await phone.next()).short_message == b"hello receipt"
            receipt = await gw.next()
            assert receipt.esm_class == 0x04 and receipt.destination_addr == GW and receipt.source_addr == "8613800000001"
            assert receipt.tlvs.receipted_message_id == sent and receipt.tlvs.message_state == MessageState.DELIVERED
            assert smsc_message_id(receipt.tlvs) not in (None, sent)
            pattern = rf"id:{sent} sub:001 dlvrd:001 submit date:\d{{10}} done date:\d{{10}} stat:DELIVRD err:000 text:hello receipt"
            assert re.fullmatch(pattern, receipt.short_message.decode("ascii"))
            # No phones bind carries 8613900000001: the message waits, expires after 1 s (§7.1.2 relative), and says so.
            expiring = await gw.submit(
                source_addr=GW, destination_addr="8613900000001", registered_delivery=1, validity_period="000000000001000R"
            )
            receipt = await gw.next(4.0)
            assert receipt.tlvs.receipted_message_id == expiring and receipt.tlvs.message_state == MessageState.EXPIRED
            assert b"stat:EXPIRED" in receipt.short_message and b"dlvrd:000" in receipt.short_message
            await asyncio.sleep(0.05)  # the receipt's deliver_sm_resp reaches the SMSC
            stats = server.stats()
            assert stats.accounts["gw"].expired == 1 and stats.accounts["gw"].receipts == 2 and stats.stored == 0

    run(main())


def test_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with smsc(tmp_path, queue_max=3) as server:
            for system_id, password, status in (("gw", "wrong", "ESME_RINVPASWD"), ("nobody", "secret", "ESME_RINVSYSID")):
                connection = await SmppConnection.connect("127.0.0.1", server.port)
                with pytest.raises(SmppRequestError) as refused:
                    await connection.bind(BindTransceiver(system_id=system_id, password=password))
                assert refused.value.code == status
                await connection.close()
            async with Peer(server.port, "phones", address_range="8613800000[0-9]{3}") as phone:
                with pytest.raises(SmppRequestError) as refused:
                    await phone.submit(source_addr="8613999999999", destination_addr=GW)
                assert refused.value.command_status == CommandStatus.ESME_RINVSRCADR
                with pytest.raises(SmppRequestError) as refused:
                    await phone.submit(**mo(1, validity_period="garbage-garbage!"))
                assert refused.value.command_status == CommandStatus.ESME_RINVEXPIRY
                # gw is not bound: three wait, the fourth finds the queue full.
                for n in range(3):
                    await phone.submit(**mo(n))
                with pytest.raises(SmppThrottled) as full:
                    await phone.submit(**mo(4))
                assert full.value.command_status == CommandStatus.ESME_RMSGQFUL
                # Another destination has its own queue.
                assert await phone.submit(**mo(5, OTHER))
            stats = server.stats()
            assert stats.accounts["phones"].queue_full == 1 and stats.accounts["phones"].accepted == 4 and stats.stored == 4

    run(main())


# --- a killed SMSC process -----------------------------------------------------------------------------


async def start_process(state_dir: Path) -> tuple[asyncio.subprocess.Process, int]:
    code = "from simwallet.provisioning.cli import main; main()"
    accounts = [f"--account=gw:secret:esme:{GW}", "--account=phones:secret:phones"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "smsc", "run", "--port", "0", "--state-dir", str(state_dir), "--redeliver-after", "60", *accounts,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 10.0)).decode()
    match = re.fullmatch(r"smsc listening on 127\.0\.0\.1:(\d+)\n", line)
    assert match, line
    return process, int(match.group(1))


def test_killed_smsc_loses_no_accepted_message(tmp_path: Path) -> None:
    async def main() -> None:
        process, port = await start_process(tmp_path)
        try:
            async with Peer(port, "phones") as phone:
                sent = [await phone.submit(**mo(n)) for n in range(5)]
            acked = iter([CommandStatus.ESME_ROK, CommandStatus.ESME_ROK, None, None, None])
            async with Peer(port, answer=lambda body: next(acked)) as gw:
                seen = [smsc_message_id((await gw.next()).tlvs) for _ in range(5)]
                assert sorted(seen) == sorted(sent)
                await asyncio.sleep(0.3)  # the two acknowledgements reach the SMSC
                process.send_signal(signal.SIGKILL)
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        process, port = await start_process(tmp_path)
        try:
            async with Peer(port) as gw:
                again = [smsc_message_id((await gw.next()).tlvs) for _ in range(3)]
                assert sorted(again) == sorted(seen[2:])
                await gw.nothing_more()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10.0) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(main())


# --- the pure rules -------------------------------------------------------------------------------------


def test_account_specs_and_toml(tmp_path: Path) -> None:
    account = Account.parse("gateway:secret:esme:10658000,*166:200")
    assert (account.system_id, account.kind, account.prefixes, account.tps, account.bucket_size) == (
        "gateway", AccountKind.ESME, ("10658000", "*166"), 200.0, 20.0
    )  # fmt: skip
    phones = Account.parse("phones:secret:phones:5")
    assert (phones.kind, phones.prefixes, phones.tps, phones.bucket_size) == (AccountKind.PHONES, (), 5.0, 1.0)
    assert "secret" not in repr(account)
    for bad in ("gw:secret", "gw:secret:bank", "gw:secret:esme:1:2:3", "gw:secret:esme:1:fast", "waytoolongsystemid:x:esme"):
        with pytest.raises(SmscConfigError):
            Account.parse(bad)
    with pytest.raises(SmscConfigError, match="owned by"):
        SmscConfig((Account.parse("a:x:esme:100"), Account.parse("b:x:esme:100")))
    path = tmp_path / "smsc.toml"
    path.write_text(
        'redeliver_after_s = 5\nqueue_max = 7\n[[accounts]]\nsystem_id = "gw"\npassword = "pw"\nkind = "esme"\n'
        'prefixes = ["10658000"]\ntps = 50\n[[accounts]]\nsystem_id = "phones"\npassword = "pw"\nkind = "phones"\n'
    )
    config = SmscConfig.from_toml(path)
    assert (config.redeliver_after_s, config.queue_max, [a.system_id for a in config.accounts]) == (5.0, 7, ["gw", "phones"])
    path.write_text("colour = 'blue'\n")
    with pytest.raises(SmscConfigError, match="colour"):
        SmscConfig.from_toml(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        # §7.1.2 relative: 1 second, 1 day 2 hours, 1 month (30 days).
        ("000000000001000R", 1_000_001.0),
        ("000001020000000R", 1_000_000.0 + 86_400 + 7_200),
        ("000100000000000R", 1_000_000.0 + 30 * 86_400),
        # §7.1.1 absolute: 2025-01-01 12:00:00.4 local, 4 quarter hours ahead of UTC -> 11:00:00.4 UTC.
        ("250101120000404+", dt.datetime(2025, 1, 1, 11, 0, 0, 400_000, tzinfo=dt.UTC).timestamp()),
        ("250101120000004-", dt.datetime(2025, 1, 1, 13, 0, 0, tzinfo=dt.UTC).timestamp()),
    ],
)
def test_smpp_times(text: str, expected: float | None) -> None:
    assert parse_smpp_time(text, 1_000_000.0) == expected


@pytest.mark.parametrize("text", ["1", "250101120000004X", "251301120000004+", "2501011200000a4+"])
def test_bad_smpp_times(text: str) -> None:
    from simwallet.gateway.smpp import FieldError

    with pytest.raises(FieldError) as bad:
        parse_smpp_time(text, 0.0)
    assert bad.value.command_status == CommandStatus.ESME_RINVEXPIRY


def test_routing_deliver_sm_and_receipt_text() -> None:
    assert route(ACCOUNTS, "10658000") == Target(TargetKind.ESME, "gw")
    assert route(ACCOUNTS, "106580001299") == Target(TargetKind.ESME, "other")
    assert route(ACCOUNTS, "*166*1#") == Target(TargetKind.ESME, "gw")
    assert route(ACCOUNTS, "8613800000001") == Target(TargetKind.PHONE, "8613800000001")
    submit = SubmitSm(
        source_addr="8613800000001", destination_addr=GW, esm_class=0x43, registered_delivery=1, validity_period="000000000001000R",
        short_message=b"\x05\x00\x03\x01\x02\x01hello world, this is long", tlvs=OptionalParams.of(ussd_service_op=1),
    )  # fmt: skip
    deliver = deliver_for(submit, "0000002A")
    assert deliver.esm_class == 0x40 and deliver.validity_period == "" and deliver.registered_delivery == 0
    assert deliver.tlvs.ussd_service_op == 1 and deliver.tlvs.get(SMSC_MESSAGE_ID_TAG) == b"0000002A\0"
    # Appendix B format, the quoted text without the user data header, 20 characters.
    epoch = dt.datetime(2026, 5, 17, 8, 30, tzinfo=dt.UTC).timestamp()
    receipt = receipt_for(deliver, "0000002A", "0000002B", MessageState.DELIVERED, submitted_at=epoch, done_at=epoch + 60)
    assert (
        receipt.short_message
        == b"id:0000002A sub:001 dlvrd:001 submit date:2605170830 done date:2605170831 stat:DELIVRD err:000 text:hello world, this is"
    )
    assert (receipt.source_addr, receipt.destination_addr, receipt.esm_class) == (GW, "8613800000001", 0x04)
    assert smsc_message_id(receipt.tlvs) == "0000002B" and receipt.tlvs.receipted_message_id == "0000002A"
    bucket = TokenBucket(rate=10.0, size=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.1) and not bucket.take(0.1)


def test_store_survives_reopening_and_never_reuses_ids(tmp_path: Path) -> None:
    store = MessageStore(tmp_path)
    target = Target(TargetKind.ESME, "gw")
    submit = SubmitSm(source_addr="8613800000001", destination_addr=GW, short_message=b"x")
    added = [
        store.add(target, "phones", lambda mid: deliver_for(submit, mid), registered_delivery=1, submitted_at=1.0, expires_at=2.0)
        for _ in range(3)
    ]
    assert [m.message_id for m in added] == ["00000001", "00000002", "00000003"]
    store.remove(added[2].message_id)
    store.close()
    store = MessageStore(tmp_path)
    loaded = store.load()
    assert loaded == added[:2]
    again = store.add(target, "phones", lambda mid: deliver_for(submit, mid), registered_delivery=0, submitted_at=1.0, expires_at=2.0)
    assert again.message_id == "00000004" and store.count() == 3
    store.close()


def test_cli_refuses_bad_accounts_before_listening(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from simwallet.provisioning.cli.root import cli
    from simwallet.provisioning.cli.smsc import build_config

    runner = CliRunner()
    for arguments, message in (
        ([], "no accounts"),
        (["--account", "gw:secret:bank"], "esme or phones"),
        (["--account", "a:x:esme:100", "--account", "b:x:esme:100"], "owned by"),
    ):
        result = runner.invoke(cli, ["smsc", "run", "--port", "0", "--state-dir", str(tmp_path), *arguments])
        assert result.exit_code == 2 and message in result.output, result.output
    path = tmp_path / "smsc.toml"
    path.write_text('queue_max = 9\n[[accounts]]\nsystem_id = "gw"\npassword = "pw"\nkind = "esme"\nprefixes = ["10658000"]\n')
    config = build_config(path, ("phones:pw:phones:5",), redeliver_after_s=2.0, queue_max=None, max_age_s=None)
    assert [a.system_id for a in config.accounts] == ["gw", "phones"]
    assert (config.queue_max, config.redeliver_after_s) == (9, 2.0)


def test_a_submit_sm_with_a_client_reference_seen_before_is_not_delivered_twice(tmp_path: Path) -> None:
    from simwallet.gateway.smpp import Tlv
    from simwallet.gateway.smsc.router import CLIENT_REFERENCE_TAG

    def reply(reference: bytes) -> dict[str, Any]:
        tlvs = OptionalParams.of(unknown=[Tlv(CLIENT_REFERENCE_TAG, reference + b"\0")])
        return {"source_addr": GW, "destination_addr": "8613800000001", "short_message": b"balance 10.00", "tlvs": tlvs}

    async def main() -> None:
        async with smsc(tmp_path) as server, Peer(server.port) as gw:
            first = await gw.submit(**reply(b"ref-1"))
            async with Peer(server.port, "phones", address_range="86138000000[0-9][0-9]") as phone:
                await phone.next()
                await phone.nothing_more()
            assert server.stats().accounts["gw"].duplicates == 0
        # A restart later, the same reply again: the first id, nothing delivered; another reference is a new message.
        async with smsc(tmp_path) as server, Peer(server.port) as gw:
            assert await gw.submit(**reply(b"ref-1")) == first
            second = await gw.submit(**reply(b"ref-2"))
            assert second != first
            async with Peer(server.port, "phones", address_range="86138000000[0-9][0-9]") as phone:
                delivered = await phone.next()
                assert smsc_message_id(delivered.tlvs) == second
                await phone.nothing_more()
            assert server.stats().accounts["gw"].duplicates == 1

    asyncio.run(main())
