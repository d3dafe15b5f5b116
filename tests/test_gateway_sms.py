"""The gateway end to end: phones → the embedded SMSC → the gateway (ESME) → the wallet service → the ledger, and back.

Everything real: SMPP over loopback between the project's SMSC simulator
(gateway/smsc), its phone client and the gateway; the wallet service on the
``db_url`` database (SQLite and a throwaway PostgreSQL); no mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from gateway_helpers import fund, open_bank, register, service_transfers

from simwallet.gateway.cards import CardRegistry, CardStatus
from simwallet.gateway.esme.app import Gateway, GatewayConfig
from simwallet.gateway.esme.metrics import GatewayMetrics, MetricsServer
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.smsc import Account, SmscConfig, SmscServer
from simwallet.gateway.smsc import AccountKind as SmscAccountKind
from simwallet.gateway.smsc.phone import PhoneClient, Phones
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.wallet import ServiceReply, ServiceRequest, WalletService, pin_verification_key

SHORT_CODE = "10658000"
A, B = "8613800138000", "8613800138001"
PIN_A, PIN_B, WRONG = "468135", "579024", "913572"
PIN_KEY = pin_verification_key(bytes(range(16)))
WAIT_S = 10.0


@dataclass
class World:
    engine: sa.Engine
    ledger: Ledger
    service: WalletService

    def service_transfers(self) -> int:
        return service_transfers(self.engine)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = open_engine(db_url)
    ledger = Ledger(engine)
    registry = CardRegistry(engine, ledger)
    for n, (msisdn, customer) in enumerate([(A, "customer:A1"), (B, "customer:B2")]):
        register(registry, f"89860012345678900{n:02d}", f"4600012345670{n:02d}", msisdn, customer)
        registry.set_status(f"89860012345678900{n:02d}", CardStatus.ACTIVE)
    open_bank(ledger)
    fund(ledger, "fund-a", "customer:A1", 50_000)
    service = WalletService(engine, ledger, registry, pin_key=PIN_KEY)
    service.set_pin(A, PIN_A)
    service.set_pin(B, PIN_B)
    try:
        yield World(engine, ledger, service)
    finally:
        engine.dispose()


class CrashOnce:
    """A gateway process that dies once right after the service stored its replies (before any reply is sent)."""

    def __init__(self, service: WalletService) -> None:
        self.service = service
        self.crashed = False

    def handle_batch(self, requests: Sequence[ServiceRequest]) -> list[ServiceReply]:
        replies = self.service.handle_batch(requests)
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("the gateway died here")
        return replies


@contextlib.asynccontextmanager
async def running(tmp_path: Path, service: object, *, redeliver_after_s: float = 5.0) -> AsyncIterator[tuple[PhoneClient, Gateway]]:
    config = SmscConfig(
        (
            Account("gateway", "gwsecret", SmscAccountKind.ESME, prefixes=(SHORT_CODE, "*166")),
            Account("phones", "phsecret", SmscAccountKind.PHONES),
        ),
        redeliver_after_s=redeliver_after_s,
    )
    smsc = SmscServer(config, tmp_path / "smsc")
    await smsc.start()
    gateway = Gateway(GatewayConfig(port=smsc.port, system_id="gateway", password="gwsecret"), service)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    phones = PhoneClient("127.0.0.1", smsc.port, "phones", "phsecret", r"86138\d{8}")
    await phones.start()
    try:
        yield phones, gateway
    finally:
        await phones.stop()
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
        await smsc.stop()


async def ask(phones: PhoneClient, msisdn: str, text: str) -> str:
    await phones.send_text(msisdn, SHORT_CODE, text)
    reply = await phones.next_message(msisdn, WAIT_S)
    assert reply.source == SHORT_CODE and reply.text is not None
    return reply.text


def test_commands_in_both_languages_with_pins_and_the_lock(world: World, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, world.service) as (phones, _):
            assert "500.00" in await ask(phones, A, f"BAL {PIN_A}")
            zh = await ask(phones, A, f"余额 {PIN_A}")
            assert "500.00元" in zh
            topped = await ask(phones, A, f"充值 50 {PIN_A}")
            assert "450.00元" in topped
            assert "pin" in (await ask(phones, B, f"BAL {WRONG}")).lower()
            await ask(phones, B, f"BAL {WRONG}")
            locked = await ask(phones, B, f"BAL {WRONG}")
            assert "locked" in locked.lower()
            assert "locked" in (await ask(phones, B, f"BAL {PIN_B}")).lower()  # the right PIN no longer opens it
            assert "6 digits" in await ask(phones, A, "balance please")  # a helpful syntax reply, no posting
            long_text = f"付款 {B[2:]} 12.5 {PIN_A}" + "　" * 80  # two UCS2 parts; full-width spaces are forgiven
            paid = await ask(phones, A, long_text)
            assert "12.50" in paid

    asyncio.run(scenario())
    assert world.ledger.account("customer:A1/customer_wallet").balance == 50_000 - 5_000 - 1_250
    assert world.service_transfers() == 2
    assert world.service.pin_state(B).locked


def test_a_crash_after_the_posting_gives_one_posting_and_one_reply(world: World, tmp_path: Path) -> None:
    service = CrashOnce(world.service)

    async def scenario() -> GatewayMetrics:
        async with running(tmp_path, service, redeliver_after_s=0.5) as (phones, gateway):
            await phones.send_text(A, SHORT_CODE, f"TOPUP 100 {PIN_A}")
            # Not acknowledged: the SMSC delivers it again, and the stored reply is sent, once.
            reply = await phones.next_message(A, WAIT_S)
            assert reply.text is not None and "400.00" in reply.text
            with pytest.raises(TimeoutError):
                await phones.next_message(A, 1.5)
            return gateway.metrics

    metrics = asyncio.run(scenario())
    assert service.crashed
    assert world.service_transfers() == 1
    assert world.ledger.account("customer:A1/customer_wallet").balance == 40_000
    assert metrics.replays._value.get() == 1


def test_metrics_and_health_over_http(world: World, tmp_path: Path) -> None:
    async def fetch(port: int, path: str) -> tuple[str, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.decode().partition("\r\n\r\n")
        return head.splitlines()[0], body

    async def scenario() -> None:
        async with running(tmp_path, world.service) as (phones, gateway):
            server = MetricsServer(gateway.metrics, lambda: gateway.bound > 0)
            await server.start()
            try:
                await ask(phones, A, f"BAL {PIN_A}")
                status, body = await fetch(server.port, "/health")
                assert status.endswith("200 OK") and body == "ok\n"
                status, body = await fetch(server.port, "/metrics")
                assert status.endswith("200 OK")
                assert 'simwallet_mo_total{service="sms"} 1.0' in body and "simwallet_binds_up 1.0" in body
                assert "simwallet_mo_mt_seconds_count 1.0" in body
                assert PIN_A not in body
                assert (await fetch(server.port, "/nope"))[0].endswith("404 Not Found")
            finally:
                await server.stop()

    asyncio.run(scenario())


def test_the_gateway_stays_under_the_smscs_limit_and_loses_nothing(world: World, tmp_path: Path) -> None:
    # 40 customers' top-ups at once; the gateway's bind may submit 25 messages/s: the replies are throttled
    # and resent until each is taken, one per request.
    count = 40
    first = 8613800139000
    registry = CardRegistry(world.engine, world.ledger)
    for n in range(count):
        msisdn = str(first + n)
        register(registry, f"8986001234567891{n:03d}", f"460001234568{n:03d}", msisdn, f"customer:L{n}")
        fund(world.ledger, f"fund-{n}", f"customer:L{n}", 10_000)
        world.service.set_pin(msisdn, PIN_A)

    async def scenario() -> tuple[int, int, dict[str, int]]:
        accounts = (
            Account("gateway", "gwsecret", SmscAccountKind.ESME, prefixes=(SHORT_CODE,), tps=25.0, burst=5),
            Account("phones", "phsecret", SmscAccountKind.PHONES),
        )
        smsc = SmscServer(SmscConfig(accounts), tmp_path / "smsc")
        await smsc.start()
        stop = asyncio.Event()
        gateway = Gateway(GatewayConfig(port=smsc.port, system_id="gateway", password="gwsecret"), world.service)
        task = asyncio.create_task(gateway.run(stop))
        phones = Phones("127.0.0.1", smsc.port, "phones", "phsecret", first=str(first), count=count)
        await phones.start()
        try:
            sent = await phones.send_from_all(SHORT_CODE, f"TOPUP 10 {PIN_A}")
            assert sent.accepted == count
            replies = {m: (await phones.next_message(m, WAIT_S)).text or "" for m in phones.msisdns}
            with pytest.raises(TimeoutError):
                await phones.next_message(phones.msisdns[0], 0.5)
            stats = smsc.stats().accounts["gateway"]
            return stats.accepted, stats.throttled, {m: int("90.00" in text) for m, text in replies.items()}
        finally:
            await phones.stop()
            stop.set()
            await asyncio.wait_for(task, WAIT_S)
            await smsc.stop()

    accepted, throttled, ok = asyncio.run(scenario())
    assert accepted == count and throttled > 0
    assert sum(ok.values()) == count
    assert world.service_transfers() == count


def test_a_ussd_dialogue_on_star_166_in_both_languages(world: World, tmp_path: Path) -> None:
    from simwallet.gateway.smpp import UssdServiceOp

    async def step(phones: PhoneClient, text: str, op: int) -> tuple[int | None, str]:
        await phones.send_ussd(A, text, op)
        message = await phones.next_message(A, WAIT_S)
        assert message.text is not None
        return message.ussd_service_op, message.text

    async def scenario() -> None:
        async with running(tmp_path, world.service) as (phones, _):
            op, menu = await step(phones, "*166#", UssdServiceOp.PSSR_INDICATION)
            assert op == UssdServiceOp.USSR_REQUEST and "余额查询" in menu
            op, prompt = await step(phones, "1", UssdServiceOp.USSR_CONFIRM)
            assert op == UssdServiceOp.USSR_REQUEST and "密码" in prompt
            op, result = await step(phones, PIN_A, UssdServiceOp.USSR_CONFIRM)
            assert op == UssdServiceOp.PSSR_RESPONSE and "500.00元" in result and PIN_A not in result
            # English, straight to top-up: amount, self, then the PIN.
            op, menu = await step(phones, "*166*2#", UssdServiceOp.PSSR_INDICATION)
            assert op == UssdServiceOp.USSR_REQUEST and "Balance" in menu
            texts = [menu]
            for answer in ("2", "1", "20", PIN_A):
                op, text = await step(phones, answer, UssdServiceOp.USSR_CONFIRM)
                texts.append(text)
                if op == UssdServiceOp.PSSR_RESPONSE:
                    break
            assert op == UssdServiceOp.PSSR_RESPONSE, texts
            assert "480.00" in texts[-1], texts

    asyncio.run(scenario())
    assert world.service_transfers() == 1


def test_transmitter_and_receiver_binds_with_a_throughput_of_our_own(world: World, tmp_path: Path) -> None:
    async def scenario() -> int:
        config = SmscConfig(
            (
                Account("gateway", "gwsecret", SmscAccountKind.ESME, prefixes=(SHORT_CODE,)),
                Account("phones", "phsecret", SmscAccountKind.PHONES),
            )
        )
        smsc = SmscServer(config, tmp_path / "smsc")
        await smsc.start()
        gateway_config = GatewayConfig(
            port=smsc.port, system_id="gateway", password="gwsecret", bind_type="tx+rx", window=4, throughput_per_s=50.0
        )
        stop = asyncio.Event()
        task = asyncio.create_task(Gateway(gateway_config, world.service).run(stop))
        try:
            async with PhoneClient("127.0.0.1", smsc.port, "phones", "phsecret", A) as phones:
                for _ in range(5):
                    assert "500.00" in await ask(phones, A, f"BAL {PIN_A}")
                return smsc.stats().binds
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT_S)
            await smsc.stop()

    assert asyncio.run(scenario()) == 3  # the gateway's transmitter and receiver, and the phones
