"""``simwallet phone`` on the network: send, USSD, load, the STK card over the SMSC, and an SMSC that is not there.

Everything real: the project's SMSC simulator and the gateway (ESME) with the
wallet service on SQLite run in an event loop of a background thread
(:class:`Network`); the CLI runs in the test's thread through click's
CliRunner and binds to the SMSC's ``phones`` account over SMPP on loopback,
as a person at a terminal would. The STK test adds the personalized wallet
card behind pyscard → the private pcscd → vpcd. The pure parts of
:mod:`simwallet.provisioning.phone_load` and `phone_net` (mix, plan, percentiles, PIN prompts)
are checked without a network.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from gateway_helpers import fund, open_bank, register, service_transfers
from hypothesis import given, settings
from hypothesis import strategies as st
from pcsc_helpers import wait_for_card
from wallet_helpers import ICCID, WALLET_KVN, WALLET_MASTER, WALLET_PIN, Card, personalized_card

from simwallet.applet.card.link import VpcdLink, port_for_reader
from simwallet.gateway.cards import CardRegistry, CardStatus
from simwallet.gateway.esme.app import Gateway, GatewayConfig
from simwallet.gateway.esme.stk_channel import StkChannel
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.smsc import Account, SmscConfig, SmscServer
from simwallet.gateway.smsc import AccountKind as SmscAccountKind
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.wallet import WalletService, pin_verification_key
from simwallet.provisioning.cli.root import cli
from simwallet.provisioning.pcscd import PrivatePcscd
from simwallet.provisioning.phone_load import LoadPlan, load, parse_mix, percentile
from simwallet.provisioning.phone_net import PhoneNetUsageError, SmscLogin, UssdScreen, asks_for_pin

T = TypeVar("T")

SHORT_CODE = "10658000"
A = "8613800138000"
PIN = "468135"
LOAD_FIRST = 8613800150000
PHONES_PASSWORD = "phsecret"
WAIT_S = 10.0


@dataclass
class Wallet:
    engine: sa.Engine
    ledger: Ledger
    registry: CardRegistry
    service: WalletService

    def customer(self, msisdn: str, customer: str, iccid: str, *, fen: int, pin: str | None = PIN, active: bool = True) -> None:
        register(self.registry, iccid, f"4600{iccid[-11:]}", msisdn, customer, wallet_key_version=WALLET_KVN)
        if active:
            self.registry.set_status(iccid, CardStatus.ACTIVE)
        fund(self.ledger, f"fund-{customer}", customer, fen)
        if pin is not None:
            self.service.set_pin(msisdn, pin)

    def service_transfers(self) -> int:
        return service_transfers(self.engine)

    def balance(self, customer: str) -> int:
        return self.ledger.account(f"{customer}/customer_wallet").balance


@pytest.fixture
def wallet(sqlite_url: str) -> Iterator[Wallet]:
    engine = open_engine(sqlite_url)
    ledger = Ledger(engine)
    registry = CardRegistry(engine, ledger)
    open_bank(ledger)
    service = WalletService(engine, ledger, registry, pin_key=pin_verification_key(bytes(16)))
    try:
        yield Wallet(engine, ledger, registry, service)
    finally:
        engine.dispose()


class Network:
    """The embedded SMSC and the gateway in an event loop of their own thread, for the CLI in the test's thread."""

    def __init__(self, state_dir: Path, wallet: Wallet, stk: StkChannel | None = None, *, phones_tps: float | None = None) -> None:
        self.state_dir, self.wallet, self.stk, self.phones_tps = state_dir, wallet, stk, phones_tps
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="network", daemon=True)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30.0)

    def __enter__(self) -> Self:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._call(self._finish())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _start(self) -> None:
        accounts = (
            Account("gateway", "gwsecret", SmscAccountKind.ESME, prefixes=(SHORT_CODE, "*166")),
            Account("phones", PHONES_PASSWORD, SmscAccountKind.PHONES, tps=self.phones_tps, burst=5 if self.phones_tps else None),
        )
        self.smsc = SmscServer(SmscConfig(accounts), self.state_dir)
        await self.smsc.start()
        self.port = self.smsc.port
        self._stop = asyncio.Event()
        config = GatewayConfig(port=self.smsc.port, system_id="gateway", password="gwsecret")
        self.gateway = Gateway(config, self.wallet.service, stk=self.stk)
        self._task = asyncio.get_running_loop().create_task(self.gateway.run(self._stop))
        async with asyncio.timeout(WAIT_S):
            while not self.gateway.bound:
                await asyncio.sleep(0.01)

    async def _finish(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, WAIT_S)
        await self.smsc.stop()


@pytest.fixture
def network(wallet: Wallet, tmp_path: Path) -> Iterator[Network]:
    with Network(tmp_path / "smsc", wallet) as running:
        yield running


def phone(tmp_path: Path, port: int, *args: str, json_output: bool = False, env: dict[str, str] | None = None) -> Result:
    """``simwallet [--json] phone ARGS --smsc 127.0.0.1:PORT`` with the phones password in the environment."""
    db = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    command = ["--db", db, *(["--json"] if json_output else []), "phone", *args, "--smsc", f"127.0.0.1:{port}"]
    return CliRunner().invoke(cli, command, env={"SIMWALLET_PHONES_PASSWORD": PHONES_PASSWORD, **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- phone send --------------------------------------------------------------------------------------------------


def test_send_prints_the_balance_reply_as_json_and_as_text(wallet: Wallet, network: Network, tmp_path: Path) -> None:
    wallet.customer(A, "customer:A1", "8986001234567890000", fen=50_000)
    password_file = tmp_path / "phones.pw"
    password_file.write_text(PHONES_PASSWORD + "\n")
    result = phone(tmp_path, network.port, "send", A, f"BAL {PIN}", "--password-file", str(password_file), json_output=True, env={})
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["msisdn"], document["to"], len(document["message_ids"])) == (A, SHORT_CODE, 1)
    reply = document["reply"]
    assert reply["source"] == SHORT_CODE and "500.00" in reply["text"] and reply["data_coding"] in (0x00, 0x08)
    assert PIN not in reply["text"]

    result = phone(tmp_path, network.port, "send", A, f"余额 {PIN}")
    assert result.exit_code == 0, result.output
    assert "500.00元" in result.stdout and "sent to 10658000" in result.stderr


def test_a_resend_with_the_same_reference_is_one_message(wallet: Wallet, network: Network, tmp_path: Path) -> None:
    wallet.customer(A, "customer:A1", "8986001234567890000", fen=50_000)
    first = phone(tmp_path, network.port, "send", A, f"TOPUP 50 {PIN}", "--reference", "r-1", json_output=True)
    assert first.exit_code == 0, first.output
    assert "450.00" in json.loads(first.stdout)["reply"]["text"]
    # The same message again (its answer "lost"): the SMSC keeps one copy, so no second posting and no second reply.
    again = phone(tmp_path, network.port, "send", A, f"TOPUP 50 {PIN}", "--reference", "r-1", "--wait", "1", json_output=True)
    assert again.exit_code == 3, again.output
    assert json.loads(again.stdout)["error"]["code"] == "no_reply"
    assert wallet.service_transfers() == 1
    assert wallet.balance("customer:A1") == 45_000
    assert network.smsc.stats().accounts["phones"].duplicates == 1


def test_a_wrong_password_is_refused_with_exit_3(network: Network, tmp_path: Path) -> None:
    result = phone(tmp_path, network.port, "send", A, "BAL 1", env={"SIMWALLET_PHONES_PASSWORD": "wrong"})
    assert result.exit_code == 3
    assert "refused the bind (ESME_RINVPASWD)" in result.stderr and "(smsc_refused)" in result.stderr


# --- phone ussd --------------------------------------------------------------------------------------------------


def test_ussd_script_runs_the_balance_dialogue(wallet: Wallet, network: Network, tmp_path: Path) -> None:
    wallet.customer(A, "customer:A1", "8986001234567890000", fen=50_000)
    result = phone(tmp_path, network.port, "ussd", A, "--script", f"1,{PIN}", json_output=True)
    assert result.exit_code == 0, result.output
    assert PIN not in result.stdout
    document = json.loads(result.stdout)
    assert (document["code"], document["ended"]) == ("*166#", True)
    menu, prompt, final = document["screens"]
    assert "1 余额查询" in menu["text"] and menu["op"] == 2
    assert (menu["hidden"], menu["answered"], menu["answer"]) == (False, True, "1")
    assert "密码" in prompt["text"] and prompt["op"] == 2
    assert (prompt["hidden"], prompt["answered"], prompt["answer"]) == (True, True, None)
    assert final["op"] == 17 and "500.00元" in final["text"] and not final["answered"]

    # In English, as a person sees it: the screens, the answers echoed, the PIN as stars.
    result = phone(tmp_path, network.port, "ussd", A, "*166*2#", "--script", f"1,{PIN}")
    assert result.exit_code == 0, result.output
    assert "Balance" in result.stdout and "> 1\n" in result.stdout and "> ******\n" in result.stdout
    assert "500.00" in result.stdout.splitlines()[-1]
    assert PIN not in result.output


def test_a_script_that_stops_early_leaves_the_dialogue_open(wallet: Wallet, network: Network, tmp_path: Path) -> None:
    wallet.customer(A, "customer:A1", "8986001234567890000", fen=50_000)
    result = phone(tmp_path, network.port, "ussd", A, "--script", "1", json_output=True)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ended"] is False and len(document["screens"]) == 2
    assert document["screens"][-1]["answered"] is False


# --- phone load --------------------------------------------------------------------------------------------------


def test_load_counts_every_message_and_reply_with_latencies(wallet: Wallet, network: Network, tmp_path: Path) -> None:
    users = 10
    for n in range(users):
        wallet.customer(str(LOAD_FIRST + n), f"customer:L{n}", f"8986001234567891{n:03d}", fen=10_000)
    args = ["load", "--users", str(users), "--rate", "50", "--duration", "2", "--first", str(LOAD_FIRST), "--pin", PIN, "--seed", "7"]
    result = phone(tmp_path, network.port, *args, json_output=True)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = {key: report[key] for key in ("planned", "accepted", "throttled", "failed", "not_sent", "replies", "lost", "unmatched")}
    assert counts == {
        "planned": 100,
        "accepted": 100,
        "throttled": 0,
        "failed": 0,
        "not_sent": 0,
        "replies": 100,
        "lost": 0,
        "unmatched": 0,
    }
    mix = report["by_command"]
    assert sum(mix.values()) == 100 and set(mix) == {"BAL", "TOPUP", "PAY", "HIST"}
    latency = report["latency_ms"]
    assert latency["count"] == 100
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] < WAIT_S * 1000
    # Open loop: 100 messages due over 1.98 s, whatever the replies did.
    assert report["send_window_s"] == pytest.approx(1.98) and report["elapsed_s"] >= 1.98
    # Every top-up and payment was posted once; inquiries post nothing.
    assert wallet.service_transfers() == mix["TOPUP"] + mix["PAY"]

    result = phone(tmp_path, network.port, *args[:-1], "8", "--mix", "BAL", "--duration", "0.2")
    assert result.exit_code == 0, result.output
    assert "10 planned: 10 accepted" in result.stdout and "replies   10 (0 lost" in result.stdout and "p99" in result.stdout


def test_load_above_the_smscs_limit_counts_the_throttled_and_answers_the_rest(wallet: Wallet, tmp_path: Path) -> None:
    # The library function scripts/bench reuses, against a phones account limited to 25 submit_sm/s.
    users = 5
    for n in range(users):
        wallet.customer(str(LOAD_FIRST + n), f"customer:L{n}", f"8986001234567891{n:03d}", fen=10_000)
    with Network(tmp_path / "smsc", wallet, phones_tps=25.0) as network:
        login = SmscLogin("127.0.0.1", network.port, "phones", PHONES_PASSWORD)
        plan = LoadPlan(str(LOAD_FIRST), users, 100.0, 1.0, PIN, mix=(("BAL", 1),), reply_wait_s=WAIT_S)
        report = asyncio.run(load(login, plan, rng=random.Random(1)))
        throttled = network.smsc.stats().accounts["phones"].throttled
    assert report.planned == 100 and report.accepted + report.throttled == 100 and report.failed == report.not_sent == 0
    assert 0 < report.throttled == throttled and report.accepted >= 25
    assert report.replies == report.accepted and report.lost == 0 and report.latency is not None
    assert report.latency.count == report.accepted and report.by_command == (("BAL", 100),)


def test_load_refuses_a_mix_it_does_not_know(tmp_path: Path) -> None:
    result = phone(tmp_path, free_port(), "load", "--first", str(LOAD_FIRST), "--pin", PIN, "--mix", "BAL:1,FLY:2")
    assert result.exit_code == 2 and "'FLY' is not one of BAL, TOPUP, PAY, HIST" in result.output


# --- an SMSC that is not there -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("send", A, "BAL 1"), ("ussd", A, "--script", "1"), ("load", "--first", str(LOAD_FIRST), "--pin", PIN, "--duration", "1")],
    ids=["send", "ussd", "load"],
)
def test_an_unreachable_smsc_exits_3_with_a_clear_message(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()
    result = phone(tmp_path, port, *args, "--connect-timeout", "1")
    assert result.exit_code == 3, result.output
    assert f"cannot reach the SMSC at 127.0.0.1:{port}" in result.stderr and "(smsc_unreachable)" in result.stderr
    result = phone(tmp_path, port, *args, json_output=True)
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["exit_code"], error["field"]) == ("smsc_unreachable", 3, "smsc")


# --- phone stk over the network ----------------------------------------------------------------------------------


@pytest.fixture
def card_in_reader(pcscd: PrivatePcscd, context: int) -> Iterator[Card]:
    card = personalized_card(None)
    link = VpcdLink(card.uicc, port=port_for_reader(0, base_port=pcscd.base_port))
    link.start()
    reader = pcscd.reader_names[0]
    try:
        wait_for_card(context, reader)
        yield card
    finally:
        link.stop()
        wait_for_card(context, reader, present=False)


def test_stk_over_the_smsc_shows_the_balance_on_the_cards_screen(card_in_reader: Card, wallet: Wallet, tmp_path: Path) -> None:
    wallet.customer(A, "customer:A1", ICCID, fen=50_000, pin=None, active=False)
    stk = StkChannel(wallet.engine, wallet.registry, {WALLET_KVN: WALLET_MASTER}.get)
    with Network(tmp_path / "smsc", wallet, stk) as network:
        result = phone(tmp_path, network.port, "stk", A, "--reader", "0", "--script", f"1,{WALLET_PIN}", json_output=True)
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        # The card's request went card → handset → SMSC → gateway → ledger, and the answer back to the card's screen.
        assert document["screen"] == ["请求已发送，请稍候……", "您的手机钱包余额为500.00元"]
        [sms] = document["sms"]
        assert sms["destination"] == "1065800010" and sms["tar"] == "B00010" and sms["message_id"]
        [answer] = document["network"]["received"]
        assert (answer["pid"], answer["dcs"], answer["text"]) == ("7F", "F6", None)
        assert card_in_reader.wallet.state.server_counter == 1

        result = phone(tmp_path, network.port, "stk", A, "--reader", "0", "--script", f"1,{WALLET_PIN}")
        assert result.exit_code == 0, result.output
        assert "[sms out] " in result.stdout and "[sms in] from 1065800010" in result.stdout
        assert result.stdout.index("[sms in]") < result.stdout.index("[screen] 您的手机钱包余额为500.00元")
    assert network.gateway.metrics.mo.labels("stk")._value.get() == 2


def test_stk_over_the_network_needs_the_msisdn(tmp_path: Path) -> None:
    result = phone(tmp_path, free_port(), "stk", "--reader", "0")
    assert result.exit_code == 2 and "needs its number" in result.output


# --- the pure parts ----------------------------------------------------------------------------------------------


def test_the_mix_is_parsed_and_checked() -> None:
    assert parse_mix("BAL:60, topup:20,PAY:10,HIST") == (("BAL", 60), ("TOPUP", 20), ("PAY", 10), ("HIST", 1))
    for bad in ("BAL:0", "BAL:x", "BAL,BAL", "", "BAL:-1", "NOPE:1"):
        with pytest.raises(PhoneNetUsageError) as caught:
            parse_mix(bad)
        assert caught.value.field == "mix"


def test_a_plan_beyond_its_limits_is_refused() -> None:
    plan = LoadPlan("8613800150000", 10, 50.0, 2.0, PIN)
    assert plan.messages == 100 and PIN not in repr(plan)
    assert LoadPlan("8613800150000", 1, 0.1, 1.0, PIN).messages == 1
    cases: list[tuple[str, dict[str, Any]]] = [
        ("users", {"users": 0}),
        ("rate", {"rate_per_s": 0.0}),
        ("duration", {"duration_s": 3601.0}),
        ("rate", {"rate_per_s": 20_000.0, "duration_s": 3600.0}),
        ("first", {"first": "+86138"}),
        ("mix", {"mix": (("FLY", 1),)}),
    ]
    for field, kwargs in cases:
        values: dict[str, Any] = {"first": "8613800150000", "users": 10, "rate_per_s": 50.0, "duration_s": 2.0, "pin": PIN} | kwargs
        with pytest.raises(PhoneNetUsageError) as caught:
            LoadPlan(**values)
        assert caught.value.field == field


def test_pin_prompts_are_told_from_menus() -> None:
    assert asks_for_pin("余额查询\n请输入6位钱包密码\n0 返回")
    assert asks_for_pin("Balance\nEnter your 6-digit wallet PIN to confirm\n0 Back")
    assert not asks_for_pin("手机钱包\n1 余额查询\n6 修改密码\n0 English")
    assert not asks_for_pin("Mobile Wallet\n1 Balance\n6 Change PIN\n0 Chinese")
    assert UssdScreen("请输入6位钱包密码", 2).hidden and not UssdScreen("请输入6位钱包密码", 17).hidden
    assert UssdScreen("x", 3).ends and UssdScreen("x", 17).ends and not UssdScreen("x", 2).ends


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=300))
def test_percentiles_are_ordered_samples(samples: list[float]) -> None:
    ordered = sorted(samples)
    p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
    assert p50 <= p90 <= p99 <= ordered[-1] and {p50, p90, p99} <= set(samples)
    # Nearest rank: at least q % of the samples are at or below the q-th percentile.
    assert sum(x <= p90 for x in samples) >= 0.9 * len(samples)
    assert percentile(ordered, 100) == ordered[-1] and percentile(ordered, 0) == ordered[0]
