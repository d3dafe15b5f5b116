#!/usr/bin/env python3
"""Parts of the gateway benchmark (scripts/bench/gateway.py): the gateway process, the customers, and the phones' load.

* ``python _gwload.py serve --port P --service echo|wallet [--db URL]`` is the
  gateway process the benchmark starts: :class:`~simwallet.gateway.esme.app.Gateway`
  bound to the SMSC on 127.0.0.1:P with ``--binds`` transceiver binds,
  serving through :class:`EchoService` (one fixed reply for every request, no
  database) or the real :class:`~simwallet.gateway.wallet.WalletService` on
  ``--db``, tuned with :func:`~simwallet.gateway.runtime.tune_for_serving`. It
  prints ``gateway bound`` once every bind is up and stops on SIGTERM
  (queued work is served first). Its service is wrapped in
  :class:`TimedService`: SIGUSR1 starts counting batches and the time spent
  inside them, SIGUSR2 prints the counts (one ``service:`` line).
* :func:`setup_customers` registers N cards (one customer each), funds the
  wallets and sets a PIN per customer, before any timing.
* :class:`PhoneLoad` is the phones' side: one transceiver bind to the SMSC
  carrying every benchmark MSISDN, sending text commands (SMS-MO as submit_sm)
  to the gateway's short code and timing each reply (deliver_sm) per phone.

The load is *closed-loop with a window*: ``window`` messages are outstanding
at any time, each from a different phone (a phone waits for its reply before
it sends again, as a person does), and every reply lets the longest-idle
phone send the next message at once. So the pipeline runs at whatever rate
its slowest stage allows, and the figures are that rate and the latencies it
costs at that window. A phone has at most one message outstanding, so a reply
is matched to its request by the receiving MSISDN alone; the latency is
submit_sm sent → the reply's last part received, at the phone.

Nothing here asserts a timing: the benchmark prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from simwallet.gateway.cards import AcceptanceChannel, CardRegistration, CardRegistry
from simwallet.gateway.esme.app import Gateway, GatewayConfig, Service
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Transfer, TransferKind
from simwallet.gateway.runtime import collect_periodically, tune_for_serving
from simwallet.gateway.smpp import BindTransceiver, CommandId, CommandStatus, DeliverSm, DeliverSmResp, Pdu, SessionConfig, SubmitSm
from simwallet.gateway.smpp.aio import SmppConnection, SmppLinkError, SmppRequestError
from simwallet.gateway.sms.catalogue import CATALOGUE, Lang, MessageId
from simwallet.gateway.sms.commands import is_weak_pin
from simwallet.gateway.sms.errors import SmsError
from simwallet.gateway.sms.segments import decode_payload, encode_reply
from simwallet.gateway.smsc.phone import range_regex
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.wallet import Outcome, ServiceReply, ServiceRequest, WalletService, pin_verification_key

SHORT_CODE: Final = "10658000"
GATEWAY_ID, GATEWAY_PASSWORD = "gateway", "gwbench"
PHONES_ID, PHONES_PASSWORD = "phones", "phbench"
FIRST_MSISDN: Final = 8613900000000
# The benchmark's PIN key: a fixed throwaway master, the same in the set-up and in the gateway process.
PIN_KEY: Final = pin_verification_key(b"simwallet bench!")
# Each wallet starts with 500.00 CNY: under the "basic" tier's balance cap, and far more than a run spends.
FUNDING_FEN: Final = 50_000
FUNDING_BATCH: Final = 1000
# One top-up moves 1.00 CNY.
TOPUP_YUAN: Final = 1
# The mix of commands, by weight: balance inquiries and money-moving top-ups, in both languages.
MIX: Final = (("BAL {pin}", 35), ("TOPUP {amount} {pin}", 35), ("余额 {pin}", 15), ("充值 {amount} {pin}", 15))
# How the phones know a reply went right: how each success message of the catalogue starts.
_SUCCESS_IDS: Final = (MessageId.BALANCE, MessageId.TOPUP_OK, MessageId.TOPUP_OK_BONUS)
# Our submit_sm outstanding on the phones' bind at most (each is answered as soon as the SMSC stored it).
PHONE_WINDOW_MAX: Final = 512
BIND_TIMEOUT_S: Final = 30.0
# TS 23.040 §9.2.3.24.1: UDH length, IEI 00 (8-bit reference concatenation), its length 3, ref, total, seq.
_ESM_UDHI: Final = 0x40
_IEI_CONCAT_8: Final = 0x00


# --- the gateway process ----------------------------------------------------------------------------------


class EchoService:
    """The no-op service: the same reply for every request (a balance of 0.00), in the request's language; no database."""

    def __init__(self) -> None:
        self._replies = {
            lang: ServiceReply(message_id=MessageId.BALANCE, params={"balance_fen": 0}, lang=lang, outcome=Outcome.OK) for lang in Lang
        }

    def handle_batch(self, requests: Sequence[ServiceRequest]) -> list[ServiceReply]:
        return [self._replies[request.lang] for request in requests]


class TimedService:
    """A service wrapped to count its batches and the time inside them (reset on SIGUSR1, printed on SIGUSR2)."""

    def __init__(self, inner: Service) -> None:
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.batches = self.requests = 0
        self.busy_s = self.cpu_s = 0.0
        self.largest = 0
        self.since = time.perf_counter()

    def handle_batch(self, requests: Sequence[ServiceRequest]) -> list[ServiceReply]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return self.inner.handle_batch(requests)
        finally:
            self.busy_s += time.perf_counter() - started
            self.cpu_s += time.thread_time() - cpu_started
            self.batches += 1
            self.requests += len(requests)
            self.largest = max(self.largest, len(requests))

    def report(self) -> str:
        """One line: ``service: batches B requests R largest L busy_s S cpu_s C wall_s W``."""
        wall = time.perf_counter() - self.since
        return (
            f"service: batches {self.batches} requests {self.requests} largest {self.largest}"
            f" busy_s {self.busy_s:.3f} cpu_s {self.cpu_s:.3f} wall_s {wall:.3f}"
        )


def wallet_service(url: str) -> WalletService:
    engine = open_engine(url, plan_per_execution=True)  # as `simwallet gateway run` opens it
    ledger = Ledger(engine)
    return WalletService(engine, ledger, CardRegistry(engine, ledger), pin_key=PIN_KEY)


async def serve(port: int, service_name: str, db_url: str | None, binds: int) -> None:
    service = TimedService(EchoService() if service_name == "echo" else wallet_service(db_url or ""))
    config = GatewayConfig(port=port, system_id=GATEWAY_ID, password=GATEWAY_PASSWORD, binds=binds)
    gateway = Gateway(config, service)
    tune_for_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, service.reset)
    loop.add_signal_handler(signal.SIGUSR2, lambda: print(service.report(), flush=True))
    task = asyncio.create_task(gateway.run(stop))
    collector = asyncio.create_task(collect_periodically(stop))  # as `simwallet gateway run` does
    async with asyncio.timeout(BIND_TIMEOUT_S):
        while gateway.bound < binds:
            await asyncio.sleep(0.01)
    print("gateway bound", flush=True)
    await task
    await collector


def serve_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="_gwload.py serve", description="The benchmark's gateway process.")
    parser.add_argument("--port", type=int, required=True, help="the SMSC's port on 127.0.0.1")
    parser.add_argument("--service", choices=("echo", "wallet"), required=True)
    parser.add_argument("--db", help="the wallet service's database URL")
    parser.add_argument("--binds", type=int, default=1)
    args = parser.parse_args(argv)
    if args.service == "wallet" and not args.db:
        parser.error("--service wallet needs --db")
    asyncio.run(serve(args.port, args.service, args.db, args.binds))


# --- customers --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phone:
    msisdn: str
    pin: str = field(repr=False)


def make_phones(count: int, seed: int) -> list[Phone]:
    """``count`` MSISDNs from :data:`FIRST_MSISDN`, each with its own PIN (none the policy calls weak)."""
    rng = random.Random(seed)  # bench data, not secrets
    phones = []
    for n in range(count):
        pin = f"{rng.randrange(10**6):06d}"
        while is_weak_pin(pin):
            pin = f"{rng.randrange(10**6):06d}"
        phones.append(Phone(str(FIRST_MSISDN + n), pin))
    return phones


def setup_customers(url: str, phones: Sequence[Phone]) -> None:
    """Register one card per phone (a customer each), fund every wallet, set every PIN; the schema must be at head."""
    engine = open_engine(url)
    try:
        ledger = Ledger(engine)
        registry = CardRegistry(engine, ledger)
        service = WalletService(engine, ledger, registry, pin_key=PIN_KEY)
        bank = ledger.open_account(AccountKind.BANK_SETTLEMENT, "bank:BENCH")
        for n, phone in enumerate(phones):
            registry.register(
                CardRegistration(
                    iccid=f"898600{n:013d}",
                    imsi=f"46000{n:010d}",
                    msisdn=phone.msisdn,
                    customer_ref=customer_ref(n),
                    profile="wallet-cmcc-zh",
                    channel=AcceptanceChannel.SERVICE_HALL,
                    clerk="bench",
                    scp03_kvn=0x30,
                    ota_key_version=1,
                    wallet_key_version=1,
                    personalized_at=1_780_000_000_000_000,
                )
            )
        wallets = [ledger.account(f"{customer_ref(n)}/{AccountKind.CUSTOMER_WALLET.value}").id for n in range(len(phones))]
        for start in range(0, len(wallets), FUNDING_BATCH):
            chunk = wallets[start : start + FUNDING_BATCH]
            ledger.post_batch([Transfer(f"fund-{w}", bank.id, w, FUNDING_FEN, TransferKind.DEPOSIT, Channel.BANK) for w in chunk])
        for n, phone in enumerate(phones):
            service.set_pin(customer_ref(n), phone.pin)
    finally:
        engine.dispose()


def customer_ref(n: int) -> str:
    return f"customer:G{n:06d}"


# --- the phones -------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one stretch of load did. ``replies``/``latencies_s`` are those received inside the measured interval."""

    seconds: float
    replies: int
    latencies_s: list[float]
    sent_total: int
    answered_total: int
    unexpected: int
    refused: int
    # Set by the benchmark from its CPU probe: every process's CPU during the interval per reply.
    cpu_per_mo_us: float = 0.0

    @property
    def rate(self) -> float:
        return self.replies / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


class PhoneLoad:
    """The phones' side of the benchmark (module docstring): ``start``, ``run_for``, ``run_count``, ``stop``."""

    def __init__(self, port: int, phones: Sequence[Phone], *, window: int, seed: int) -> None:
        if not 1 <= window <= len(phones):
            raise ValueError(f"window {window} must be 1..{len(phones)} (one outstanding message per phone)")
        self.port = port
        self.window = window
        self._phones = {p.msisdn: p for p in phones}
        self._regex = range_regex(phones[0].msisdn, len(phones))
        self._rng = random.Random(seed)  # the mix, not secrets
        self._texts = [text for text, _ in MIX]
        self._weights = [weight for _, weight in MIX]
        self._success = tuple(CATALOGUE[i].template(lang).split("{")[0] for i in _SUCCESS_IDS for lang in Lang)
        self._idle: collections.deque[str] = collections.deque(p.msisdn for p in phones)
        self._rng.shuffle(self._idle)
        self._sent_at: dict[str, float] = {}
        self._parts: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection: SmppConnection | None = None
        self._sending = False
        self._send_limit: int | None = None
        self._measure_from = self._measure_to = 0.0
        self._latencies: list[float] = []
        self._measured = 0
        self.sent = self.answered = self.unexpected = self.refused = 0
        self._drained = asyncio.Event()

    async def start(self) -> None:
        config = SessionConfig(window_size_max=PHONE_WINDOW_MAX, inbound_window_max=max(256, 2 * self.window))
        connection = await SmppConnection.connect("127.0.0.1", self.port, config=config, on_request=self._on_request)
        await connection.bind(BindTransceiver(system_id=PHONES_ID, password=PHONES_PASSWORD, address_range=self._regex))
        self._connection = connection

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.unbind()

    async def run_for(self, warmup_s: float, seconds: float, drain_s: float, probe: Callable[[str], None] | None = None) -> RunResult:
        """Load for ``warmup_s`` + ``seconds``; count what arrives in the last ``seconds``; then wait for the rest.

        ``probe("start")`` and ``probe("end")`` are called as the measured interval starts and ends.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._begin(start + warmup_s, start + warmup_s + seconds, None)
        await asyncio.sleep(warmup_s)
        if probe is not None:
            probe("start")
        await asyncio.sleep(start + warmup_s + seconds - loop.time())
        if probe is not None:
            probe("end")
        return await self._finish(seconds, drain_s)

    async def run_count(self, total: int, drain_s: float) -> RunResult:
        """Load until ``total`` messages in all were sent (counting earlier runs), then wait for their replies."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._begin(float("inf"), float("inf"), total)  # no latencies kept: this is a memory run
        while self.sent < total and self._connection is not None and not self._connection.closed.is_set():
            await asyncio.sleep(0.05)
        result = await self._finish(0.0, drain_s)
        result.seconds = loop.time() - start
        return result

    def _begin(self, measure_from: float, measure_to: float, limit: int | None) -> None:
        self._measure_from, self._measure_to = measure_from, measure_to
        self._latencies, self._measured = [], 0
        self._send_limit = limit
        self._sending = True
        self._fill()

    async def _finish(self, seconds: float, drain_s: float) -> RunResult:
        self._sending = False
        if self._sent_at:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._drained.wait()
        return RunResult(seconds, self._measured, self._latencies, self.sent, self.answered, self.unexpected, self.refused)

    # Sending.

    def _fill(self) -> None:
        connection = self._connection
        if connection is None:
            return
        loop = asyncio.get_running_loop()
        while self._sending and len(self._sent_at) < self.window and self._idle:
            if self._send_limit is not None and self.sent >= self._send_limit:
                self._sending = False
                break
            msisdn = self._idle.popleft()
            template = self._rng.choices(self._texts, self._weights)[0]
            text = template.format(pin=self._phones[msisdn].pin, amount=TOPUP_YUAN)
            segment = encode_reply(text, ref=0, parts_max=1)[0]
            body = SubmitSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=msisdn,
                destination_addr=SHORT_CODE,
                esm_class=segment.esm_class,
                data_coding=segment.data_coding,
                short_message=segment.short_message,
            )
            self._sent_at[msisdn] = loop.time()
            self.sent += 1
            task = loop.create_task(self._submit(connection, msisdn, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _submit(self, connection: SmppConnection, msisdn: str, body: SubmitSm) -> None:
        try:
            await connection.request(body)
        except (SmppRequestError, SmppLinkError):
            # Refused or cut off: this phone's message is not in the SMSC; the phone is free again.
            self.refused += 1
            self._sent_at.pop(msisdn, None)
            self._idle.append(msisdn)
            self._after_change()

    # Receiving.

    def _on_request(self, connection: SmppConnection, pdu: Pdu) -> None:
        body = pdu.body
        if pdu.command_id != CommandId.DELIVER_SM or not isinstance(body, DeliverSm):
            connection.respond(pdu, status=CommandStatus.ESME_RINVCMDID)
            return
        connection.respond(pdu, DeliverSmResp())
        now = asyncio.get_running_loop().time()
        msisdn = body.destination_addr
        payload = body.payload
        total, seq = 1, 1
        if body.esm_class & _ESM_UDHI and len(payload) >= 6 and payload[1] == _IEI_CONCAT_8:
            total, seq = payload[4], payload[5]
            payload = payload[1 + payload[0] :]
        if seq == 1 and not self._is_success(body.data_coding, payload):
            self.unexpected += 1
        if total > 1:
            got = self._parts.get(msisdn, 0) + 1
            if got < total:
                self._parts[msisdn] = got
                return
            self._parts.pop(msisdn, None)
        sent = self._sent_at.pop(msisdn, None)
        if sent is None:
            self.unexpected += 1  # a reply no message of this phone is waiting for (a duplicate)
            return
        self.answered += 1
        if self._measure_from <= now < self._measure_to:
            self._measured += 1
            self._latencies.append(now - sent)
        self._idle.append(msisdn)
        self._after_change()

    def _after_change(self) -> None:
        if self._sending:
            self._fill()
        elif not self._sent_at:
            self._drained.set()

    def _is_success(self, data_coding: int, payload: bytes) -> bool:
        try:
            text = decode_payload(data_coding, payload)
        except SmsError:
            return False
        return text.startswith(self._success)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "serve":
        sys.exit("usage: _gwload.py serve --port P --service echo|wallet [--db URL] [--binds N]")
    serve_main(sys.argv[2:])
