"""The wallet service (gateway/wallet) on SQLite and PostgreSQL: every command, the PIN policy, idempotency, crashes.

Real databases through the ``db_url`` fixture, real cards registered by the
card registry, a real ledger; commands come from the SMS parser
(``parse_command``), so the texts below are what a customer would send.
The clock is 2026-06-01 10:00 in Shanghai, inside the 满百送30 campaign window
(cards/promotions/manbai-song30.yaml, 2026-05-16 .. 2026-08-15).

Operator accounts the tests open, as an operator would: ``merchant:M123456``,
``biller:water``, ``biller:electricity``, ``biller:gas`` (no ``biller:phone``:
phone bills are "unknown" here), ``bank:ICBC`` to fund wallets, and
``promo-expense`` for campaign bonuses.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from ledger_book import Clock, us

from simwallet.gateway.cards import AcceptanceChannel, CardRegistration, CardRegistry, CardStatus
from simwallet.gateway.errors import StoreError
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.limits import Tier
from simwallet.gateway.ledger.model import AccountKind, AccountStatus, Channel, Linked, Request, Result, Transfer, TransferKind
from simwallet.gateway.promotions.rules import CampaignRule
from simwallet.gateway.promotions.store import CampaignStore
from simwallet.gateway.sms.catalogue import Biller, EntryKind, HistoryEntry, Lang, LimitKind, MessageId, render
from simwallet.gateway.sms.commands import Balance, ChangePin, Command, TopUp, parse_command
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.schema import metadata, transfers, wallet_replies
from simwallet.gateway.wallet import (
    REQUEST_KEY_LEN_MAX,
    SERVICE_BATCH_MAX,
    Outcome,
    ServiceReply,
    ServiceRequest,
    UnknownCustomer,
    WalletService,
    WalletUsageError,
    pin_verification_key,
)
from simwallet.gateway.wallet.outcomes import decode_params, encode_params

MANBAI_YAML = Path(__file__).resolve().parents[1] / "cards" / "promotions" / "manbai-song30.yaml"
T0_US = us(2026, 6, 1, 2)  # 10:00 in Shanghai
PIN_KEY = pin_verification_key(bytes(range(16)))
# PINs no fixed text of the parser, the catalogue or the fixtures contains.
PIN_A, PIN_B, NEW_PIN_A, WRONG = "468135", "579024", "802461", "913572"
A, B = "8613800138000", "8613900139000"
NO_PIN = "8613700137000"  # registered, no PIN set yet
BLOCKED, RETIRED = "8613600136000", "8613500135000"
STRANGER = "8618800188000"  # no card
FUNDS_A, FUNDS_B = 100_000, 20_000
WALLET_A, WALLET_B = "customer:A0000001/customer_wallet", "customer:B0000002/customer_wallet"
AIRTIME_A, AIRTIME_B = "customer:A0000001/customer_airtime", "customer:B0000002/customer_airtime"
BASIC = Tier("basic", per_txn_max=300_000, per_day_max=500_000, balance_max=150_000)
WALLET_TABLES = ("wallet_pins", "marketing_opt_outs", "wallet_replies")


@dataclass
class World:
    engine: sa.Engine
    ledger: Ledger
    registry: CardRegistry
    service: WalletService
    clock: Clock
    keys: int = 0

    def request(self, msisdn: str, text: str, *, key: str | None = None) -> ServiceRequest:
        command = parse_command(text)
        if key is None:
            self.keys += 1
            key = f"k{self.keys}"
        return ServiceRequest(key=f"sms:{msisdn}:{key}", channel=Channel.SMS, msisdn=msisdn, command=command, lang=command.lang)

    def send(self, msisdn: str, text: str, *, key: str | None = None) -> ServiceReply:
        return self.service.handle(self.request(msisdn, text, key=key))

    def balance(self, ref: str) -> int:
        return self.ledger.account(ref).balance

    def count(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())

    def service_transfers(self) -> int:
        return self.count(transfers, transfers.c.idempotency_key.like("svc:%"))


def _register(registry: CardRegistry, n: int, msisdn: str, customer: str) -> None:
    registry.register(
        CardRegistration(
            iccid=f"89860012345678900{n:02d}",
            imsi=f"4600012345670{n:02d}",
            msisdn=msisdn,
            customer_ref=customer,
            profile="cmcc-wallet-v1",
            channel=AcceptanceChannel.SERVICE_HALL,
            clerk="clerk-017",
            scp03_kvn=0x30,
            ota_key_version=1,
            wallet_key_version=1,
            personalized_at=T0_US - 86_400_000_000,
        )
    )


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = open_engine(db_url)
    clock = Clock(T0_US)
    ledger = Ledger(engine, clock=clock)
    registry = CardRegistry(engine, ledger, clock=clock)
    ledger.set_tier(BASIC)
    for n, (msisdn, customer) in enumerate(
        [
            (A, "customer:A0000001"),
            (B, "customer:B0000002"),
            (NO_PIN, "customer:N0000003"),
            (BLOCKED, "customer:K4"),
            (RETIRED, "customer:R5"),
        ]
    ):
        _register(registry, n, msisdn, customer)
    registry.set_status("8986001234567890003", CardStatus.BLOCKED)
    registry.set_status("8986001234567890004", CardStatus.RETIRED)
    registry.set_status("8986001234567890000", CardStatus.ACTIVE)
    ledger.open_accounts(
        [
            AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC"),
            AccountSpec(AccountKind.PROMOTION_EXPENSE, "operator", "promo-expense"),
            AccountSpec(AccountKind.MERCHANT, "merchant:M123456", "merchant:M123456"),
            *(AccountSpec(AccountKind.BILLER, f"biller:{b}", f"biller:{b}") for b in ("water", "electricity", "gas")),
        ]
    )
    for key, wallet, amount in (("fund-a", WALLET_A, FUNDS_A), ("fund-b", WALLET_B, FUNDS_B)):
        ledger.post_one(Transfer(key, "bank:ICBC/bank_settlement", wallet, amount, TransferKind.DEPOSIT, Channel.BANK))
    service = WalletService(engine, ledger, registry, pin_key=PIN_KEY, clock=clock)
    service.set_pin(A, PIN_A)
    service.set_pin("customer:B0000002", PIN_B)
    try:
        yield World(engine, ledger, registry, service, clock)
    finally:
        engine.dispose()


def check(reply: ServiceReply, message_id: MessageId, outcome: Outcome = Outcome.OK, **params: object) -> None:
    assert (reply.message_id, reply.outcome, dict(reply.params)) == (message_id, outcome, params)
    text = render(reply.message_id, reply.lang, **reply.params)  # every reply renders in its language
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text) == (reply.lang is Lang.ZH)


# --- every command, both languages -----------------------------------------------------------

SCRIPT = {
    Lang.ZH: [
        "余额 468135",
        "充值 100 468135",
        "充值 50 13900139000 468135",
        "付款 13900139000 20 468135",
        "付款 M123456 30 468135",
        "缴费 电费 1234567 40 468135",
        "银行余额 468135",
        "明细 468135",
        "改密 468135 802461 802461",
        "余额 802461",
        "余额 468135",
        "退订",
        "订阅",
        "帮助 充值",
    ],
    Lang.EN: [
        "BAL 468135",
        "TOPUP 100 468135",
        "TOPUP 50 13900139000 468135",
        "PAY 13900139000 20 468135",
        "PAY M123456 30 468135",
        "BILL ELEC 1234567 40 468135",
        "BANK 468135",
        "HIST 468135",
        "PIN 468135 802461 802461",
        "BAL 802461",
        "BAL 468135",
        "STOP",
        "START",
        "HELP TOPUP",
    ],
}


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "one-batch"])
@pytest.mark.parametrize("lang", [Lang.ZH, Lang.EN], ids=["zh", "en"])
def test_every_command_in_both_languages(world: World, lang: Lang, batched: bool) -> None:
    requests = [world.request(A, text) for text in SCRIPT[lang]]
    assert all(r.lang is lang for r in requests)
    replies = world.service.handle_batch(requests) if batched else [world.service.handle(r) for r in requests]
    assert all(r.lang is lang and not r.replayed for r in replies)
    check(replies[0], MessageId.BALANCE, balance_fen=100_000)
    check(replies[1], MessageId.TOPUP_OK, msisdn=A, amount_fen=10_000, balance_fen=90_000)
    check(replies[2], MessageId.TOPUP_OK, msisdn=B, amount_fen=5_000, balance_fen=85_000)
    check(replies[3], MessageId.PAY_OK, payee=B, amount_fen=2_000, balance_fen=83_000)
    check(replies[4], MessageId.PAY_OK, payee="M123456", amount_fen=3_000, balance_fen=80_000)
    check(replies[5], MessageId.BILL_OK, biller=Biller.ELECTRICITY, account="1234567", amount_fen=4_000, balance_fen=76_000)
    check(replies[6], MessageId.BANK_NOT_LINKED, Outcome.REFUSED)
    day = date(2026, 6, 1)
    entries = (
        HistoryEntry(day, EntryKind.BILL, -4_000),
        HistoryEntry(day, EntryKind.PAY, -3_000),
        HistoryEntry(day, EntryKind.PAY, -2_000),
        HistoryEntry(day, EntryKind.TOPUP, -5_000),
        HistoryEntry(day, EntryKind.TOPUP, -10_000),
    )
    check(replies[7], MessageId.HISTORY, entries=entries)
    check(replies[8], MessageId.PIN_CHANGED)
    check(replies[9], MessageId.BALANCE, balance_fen=76_000)
    check(replies[10], MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(replies[11], MessageId.STOPPED)
    check(replies[12], MessageId.STARTED)
    check(replies[13], MessageId.HELP_TOPUP)
    # Each money request made exactly its transfer, of the right kind, channel and memo.
    assert [len(r.transfer_ids) for r in replies[1:6]] == [1] * 5
    posted = [world.ledger.transfer(r.transfer_ids[0]) for r in replies[1:6]]
    assert [t.kind for t in posted] == [TransferKind.AIRTIME_TOPUP] * 2 + [
        TransferKind.P2P,
        TransferKind.MERCHANT_PAYMENT,
        TransferKind.BILL_PAYMENT,
    ]
    assert {t.channel for t in posted} == {Channel.SMS} and posted[4].memo == "1234567"
    assert world.balance(WALLET_A) == 76_000 and world.balance(WALLET_B) == FUNDS_B + 2_000
    assert world.balance(AIRTIME_A) == 10_000 and world.balance(AIRTIME_B) == 5_000
    assert world.balance("biller:electricity") == 4_000 and world.balance("merchant:M123456") == 3_000
    assert world.service.pin_state(A).wrong_tries == 1
    assert not world.service.marketing_opted_out(A)
    # Help is never stored; every other request is, once.
    assert world.count(wallet_replies) == len(requests) - 1


def test_stop_and_start_are_per_number_and_idempotent(world: World) -> None:
    for _ in range(2):
        check(world.send(STRANGER, "退订"), MessageId.STOPPED)  # no card needed to refuse marketing
        check(world.send(B, "STOP"), MessageId.STOPPED)
    assert world.service.marketing_opted_out(STRANGER) and world.service.marketing_opted_out(B)
    assert not world.service.marketing_opted_out(A)
    check(world.send(B, "START"), MessageId.STARTED)
    check(world.send(B, "START"), MessageId.STARTED)
    assert not world.service.marketing_opted_out(B)
    # In one batch the last word counts.
    world.service.handle_batch([world.request(A, "STOP"), world.request(A, "START"), world.request(A, "退订")])
    assert world.service.marketing_opted_out(A)


# --- PIN policy -----------------------------------------------------------------------------


def test_three_wrong_pins_lock_until_unlock(world: World) -> None:
    check(world.send(A, f"BAL {WRONG}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(world.send(A, f"BAL {WRONG}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=1)
    check(world.send(A, f"TOPUP 10 {WRONG}"), MessageId.WALLET_LOCKED, Outcome.LOCKED)
    state = world.service.pin_state(A)
    assert state.locked and state.tries_left == 0 and state.customer_ref == "customer:A0000001"
    # The right PIN does not open a locked wallet, nor say it was right.
    check(world.send(A, f"TOPUP 10 {PIN_A}"), MessageId.WALLET_LOCKED, Outcome.LOCKED)
    assert world.service_transfers() == 0
    assert world.service.unlock(f"+{A}").tries_left == 3
    check(world.send(A, f"BAL {PIN_A}"), MessageId.BALANCE, balance_fen=FUNDS_A)


def test_right_pin_resets_the_count(world: World) -> None:
    check(world.send(A, f"余额 {WRONG}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(world.send(A, f"余额 {WRONG}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=1)
    check(world.send(A, f"余额 {PIN_A}"), MessageId.BALANCE, balance_fen=FUNDS_A)
    check(world.send(A, f"余额 {WRONG}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)


def test_change_pin(world: World) -> None:
    # A wrong old PIN counts toward the lock.
    check(world.send(A, f"改密 {WRONG} {NEW_PIN_A} {NEW_PIN_A}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(world.send(A, f"改密 {PIN_A} {NEW_PIN_A} {NEW_PIN_A}"), MessageId.PIN_CHANGED)
    assert world.service.pin_state(A).wrong_tries == 0
    check(world.send(A, f"余额 {PIN_A}"), MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(world.send(A, f"余额 {NEW_PIN_A}"), MessageId.BALANCE, balance_fen=FUNDS_A)
    # A command built without the parser (an STK menu) is checked the same way.
    weak = ChangePin(lang=Lang.EN, old_pin=NEW_PIN_A, new_pin="123456")
    request = ServiceRequest(key="stk:1", channel=Channel.STK, msisdn=A, command=weak, lang=Lang.EN)
    check(world.service.handle(request), MessageId.PIN_WEAK, Outcome.SYNTAX)
    # The service hall sets a PIN and resets the count; weak PINs and unknown customers are refused.
    world.send(A, f"余额 {WRONG}")
    assert world.service.set_pin("customer:A0000001", PIN_A).wrong_tries == 0
    check(world.send(A, f"余额 {PIN_A}"), MessageId.BALANCE, balance_fen=FUNDS_A)
    with pytest.raises(WalletUsageError):
        world.service.set_pin(A, "111111")
    with pytest.raises(UnknownCustomer):
        world.service.set_pin(STRANGER, PIN_A)
    with pytest.raises(UnknownCustomer):
        world.service.set_pin("customer:nobody", PIN_A)


def test_unregistered_blocked_retired_and_no_pin(world: World) -> None:
    check(world.send(STRANGER, f"BAL {PIN_A}"), MessageId.UNREGISTERED, Outcome.UNREGISTERED)
    check(world.send(RETIRED, f"余额 {PIN_A}"), MessageId.UNREGISTERED, Outcome.UNREGISTERED)
    check(world.send(BLOCKED, f"余额 {PIN_A}"), MessageId.ACCOUNT_FROZEN, Outcome.CARD_BLOCKED)
    check(world.send(NO_PIN, f"TOPUP 10 {PIN_A}"), MessageId.PIN_NOT_SET, Outcome.NO_PIN)
    check(world.send(STRANGER, "HELP"), MessageId.HELP)
    assert world.service_transfers() == 0
    with pytest.raises(UnknownCustomer):
        world.service.pin_state(STRANGER)
    assert not world.service.pin_state(NO_PIN).pin_set


def test_stk_card_verified_pin(world: World) -> None:
    def stk(msisdn: str, command: Command, key: str) -> ServiceRequest:
        return ServiceRequest(key=key, channel=Channel.STK, msisdn=msisdn, command=command, lang=Lang.ZH, pin_verified_by_card=True)

    check(world.service.handle(stk(A, Balance(lang=Lang.ZH, pin=""), "stk:a1")), MessageId.BALANCE, balance_fen=FUNDS_A)
    # The backend holds no PIN for this customer: the card's check is enough.
    top_up = TopUp(lang=Lang.ZH, amount_fen=1_000, target=None, pin="")
    check(world.service.handle(stk(NO_PIN, top_up, "stk:n1")), MessageId.INSUFFICIENT_FUNDS, Outcome.REFUSED, balance_fen=0)
    # A wallet locked on another channel stays locked for the applet too.
    for _ in range(3):
        world.send(A, f"BAL {WRONG}")
    check(world.service.handle(stk(A, Balance(lang=Lang.ZH, pin=""), "stk:a2")), MessageId.WALLET_LOCKED, Outcome.LOCKED)
    with pytest.raises(WalletUsageError):
        ServiceRequest(
            key="sms:x", channel=Channel.SMS, msisdn=A, command=Balance(lang=Lang.ZH, pin=""), lang=Lang.ZH, pin_verified_by_card=True
        )


# --- money: refusals, P2P, top-ups for others, promotions -----------------------------------


def test_insufficient_funds(world: World) -> None:
    check(world.send(A, f"付款 M123456 1500 {PIN_A}"), MessageId.INSUFFICIENT_FUNDS, Outcome.REFUSED, balance_fen=FUNDS_A)
    # The balance in the reply is the one at that point of the batch.
    replies = world.service.handle_batch([world.request(A, f"PAY M123456 600 {PIN_A}"), world.request(A, f"PAY M123456 600 {PIN_A}")])
    check(replies[0], MessageId.PAY_OK, payee="M123456", amount_fen=60_000, balance_fen=40_000)
    check(replies[1], MessageId.INSUFFICIENT_FUNDS, Outcome.REFUSED, balance_fen=40_000)
    assert world.balance(WALLET_A) == 40_000


def test_limits_name_themselves(world: World) -> None:
    fen = BASIC.per_txn_max
    check(
        world.send(A, f"PAY M123456 3500 {PIN_A}"),
        MessageId.LIMIT_EXCEEDED,
        Outcome.REFUSED,
        limit=LimitKind.PER_TRANSACTION,
        limit_fen=fen,
    )
    # The payee's maximum balance: B holds 200.00, 1,400.00 more would pass 1,500.00.
    # The reply says so without telling the payer the payee's limit.
    reply = world.send(A, f"PAY 13900139000 1400 {PIN_A}")
    check(reply, MessageId.PAYEE_LIMIT, Outcome.REFUSED, payee="8613900139000")
    assert "1,500" not in render(reply.message_id, reply.lang, **reply.params)
    world.ledger.set_tier(Tier("basic", per_txn_max=300_000, per_day_max=60_000, per_month_max=80_000, balance_max=150_000))
    check(world.send(A, f"PAY M123456 500 {PIN_A}"), MessageId.PAY_OK, payee="M123456", amount_fen=50_000, balance_fen=50_000)
    check(world.send(A, f"PAY M123456 200 {PIN_A}"), MessageId.LIMIT_EXCEEDED, Outcome.REFUSED, limit=LimitKind.PER_DAY, limit_fen=60_000)
    world.clock.advance(86_400)
    check(world.send(A, f"PAY M123456 400 {PIN_A}"), MessageId.LIMIT_EXCEEDED, Outcome.REFUSED, limit=LimitKind.PER_MONTH, limit_fen=80_000)
    assert world.service_transfers() == 1


def test_unknown_or_frozen_payees(world: World) -> None:
    check(world.send(A, f"PAY M999999 10 {PIN_A}"), MessageId.PAYEE_UNKNOWN, Outcome.REFUSED, payee="M999999")
    check(world.send(A, f"缴费 固话 12345678 10 {PIN_A}"), MessageId.BILLER_INVALID, Outcome.REFUSED)
    check(world.send(A, f"付款 18800188000 10 {PIN_A}"), MessageId.PAYEE_UNKNOWN, Outcome.REFUSED, payee=STRANGER)
    check(world.send(A, f"付款 13500135000 10 {PIN_A}"), MessageId.PAYEE_UNKNOWN, Outcome.REFUSED, payee=RETIRED)
    check(world.send(A, f"充值 10 18800188000 {PIN_A}"), MessageId.PAYEE_UNKNOWN, Outcome.REFUSED, payee=STRANGER)
    check(world.send(A, f"付款 13800138000 10 {PIN_A}"), MessageId.PAYEE_INVALID, Outcome.REFUSED)  # oneself
    world.ledger.set_status(WALLET_B, AccountStatus.FROZEN)
    check(world.send(A, f"PAY 13900139000 10 {PIN_A}"), MessageId.PAYEE_UNKNOWN, Outcome.REFUSED, payee=B)
    world.ledger.set_status(WALLET_A, AccountStatus.FROZEN)
    check(world.send(A, f"PAY M123456 10 {PIN_A}"), MessageId.ACCOUNT_FROZEN, Outcome.REFUSED)
    assert world.service_transfers() == 0


def test_p2p_between_two_customers(world: World) -> None:
    check(world.send(A, f"付款 13900139000 300 {PIN_A}"), MessageId.PAY_OK, payee=B, amount_fen=30_000, balance_fen=70_000)
    check(world.send(B, f"PAY 13800138000 100.50 {PIN_B}"), MessageId.PAY_OK, payee=A, amount_fen=10_050, balance_fen=39_950)
    assert world.balance(WALLET_A) == 80_050 and world.balance(WALLET_B) == 39_950
    history = world.send(B, f"HIST {PIN_B}")
    day = date(2026, 6, 1)
    expected = (
        HistoryEntry(day, EntryKind.PAY, -10_050),
        HistoryEntry(day, EntryKind.RECEIVE, 30_000),
        HistoryEntry(day, EntryKind.LOAD, 20_000),
    )
    check(history, MessageId.HISTORY, entries=expected)


def test_top_up_another_number_opens_its_phone_credit(world: World) -> None:
    assert not world.ledger.accounts(owner="customer:B0000002", kind=AccountKind.CUSTOMER_AIRTIME)
    check(world.send(A, f"TOPUP 13900139000 25 {PIN_A}"), MessageId.TOPUP_OK, msisdn=B, amount_fen=2_500, balance_fen=97_500)
    assert world.balance(AIRTIME_B) == 2_500
    check(world.send(B, f"充值 10 {PIN_B}"), MessageId.TOPUP_OK, msisdn=B, amount_fen=1_000, balance_fen=19_000)
    assert world.balance(AIRTIME_B) == 3_500


def test_promotion_bonus_shows_in_the_reply(world: World) -> None:
    # 满百送30 is triggered by the airtime top-up itself (trigger.kind airtime_topup), not by a deposit.
    rule = CampaignRule.from_yaml(MANBAI_YAML.read_text(encoding="utf-8"), MANBAI_YAML.name)
    assert rule.trigger.kind is TransferKind.AIRTIME_TOPUP
    CampaignStore(world.engine, clock=world.clock).create(rule)
    reply = world.send(A, f"充值 100 {PIN_A}")
    check(reply, MessageId.TOPUP_OK_BONUS, msisdn=A, amount_fen=10_000, bonus_fen=3_000, balance_fen=90_000)
    assert len(reply.transfer_ids) == 2 and world.ledger.transfer(reply.transfer_ids[1]).kind is TransferKind.PROMOTION_BONUS
    assert world.balance(AIRTIME_A) == 13_000
    assert "另赠话费30.00元" in render(reply.message_id, reply.lang, **reply.params)
    # Once per calendar month.
    check(world.send(A, f"TOPUP 100 {PIN_A}"), MessageId.TOPUP_OK, msisdn=A, amount_fen=10_000, balance_fen=80_000)
    # A top-up of another number: the ledger pays the bonus into the payer's phone credit.
    reply = world.send(B, f"TOPUP 100 13800138000 {PIN_B}")
    check(reply, MessageId.TOPUP_OK_BONUS, msisdn=A, amount_fen=10_000, bonus_fen=3_000, balance_fen=10_000)
    assert world.balance(AIRTIME_B) == 3_000 and world.balance(AIRTIME_A) == 33_000
    # A replay shows the same bonus and grants nothing more.
    again = world.service.handle(world.request(B, f"TOPUP 100 13800138000 {PIN_B}", key=f"k{world.keys}"))
    assert again.replayed and again.params == reply.params and world.balance(AIRTIME_B) == 3_000


# --- idempotency and crashes ------------------------------------------------------------------


def test_same_key_twice_posts_once_and_replays(world: World) -> None:
    first = world.send(A, f"TOPUP 100 {PIN_A}", key="m1")
    second = world.send(A, f"TOPUP 100 {PIN_A}", key="m1")
    assert not first.replayed and second.replayed
    assert (second.message_id, dict(second.params), second.transfer_ids, second.outcome) == (
        first.message_id,
        dict(first.params),
        first.transfer_ids,
        first.outcome,
    )
    assert world.service_transfers() == 1 and world.balance(WALLET_A) == 90_000
    # A wrong PIN is one try, however often the SMSC delivers it.
    for _ in range(3):
        reply = world.send(A, f"BAL {WRONG}", key="m2")
        check(reply, MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    assert world.service.pin_state(A).wrong_tries == 1


class Crash(Exception):
    """Stands for the gateway process dying."""


def test_crash_after_posting_leaves_nothing_and_the_redelivery_posts_once(world: World) -> None:
    def die() -> None:
        raise Crash

    doomed = WalletService(world.engine, world.ledger, world.registry, pin_key=PIN_KEY, clock=world.clock, after_post=die)
    request = world.request(A, f"PAY 13900139000 100 {PIN_A}", key="c1")
    wrong = world.request(A, f"BAL {WRONG}", key="c2")
    with pytest.raises(Crash):
        doomed.handle_batch([request, wrong])
    # One transaction per batch: the posting, the PIN try and the replies went with it.
    assert world.service_transfers() == 0 and world.count(wallet_replies) == 0
    assert world.service.pin_state(A).wrong_tries == 0
    replies = world.service.handle_batch([request, wrong])
    check(replies[0], MessageId.PAY_OK, payee=B, amount_fen=10_000, balance_fen=90_000)
    check(replies[1], MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    assert not replies[0].replayed and world.service.pin_state(A).wrong_tries == 1
    assert world.service_transfers() == 1 and world.balance(WALLET_A) == 90_000 and world.balance(WALLET_B) == 30_000
    assert world.service.handle(request).replayed and world.service_transfers() == 1


def test_a_payment_whose_reply_was_pruned_is_answered_from_the_ledger(world: World) -> None:
    request = world.request(A, f"PAY 13900139000 100 {PIN_A}", key="c3")
    check(world.service.handle(request), MessageId.PAY_OK, payee=B, amount_fen=10_000, balance_fen=90_000)
    with world.engine.begin() as conn:
        conn.execute(sa.delete(wallet_replies))  # the retention job ran before a very late redelivery
    # Meanwhile the wallet was locked: the payment happened, and the redelivery must say so (no PIN asked again).
    for _ in range(3):
        world.send(A, f"BAL {WRONG}")
    retry = world.service.handle(request)
    check(retry, MessageId.PAY_OK, payee=B, amount_fen=10_000, balance_fen=90_000)
    assert world.service.pin_state(A).wrong_tries == 3
    assert world.service_transfers() == 1 and world.balance(WALLET_A) == 90_000


class FlakyLedger(Ledger):
    """A ledger whose database goes away for the next ``failures`` batches."""

    failures = 1

    def post_batch_in(self, conn: sa.Connection, items: Sequence[Request | Linked]) -> list[Result]:
        if self.failures:
            self.failures -= 1
            raise StoreError("injected: the database went away")
        return super().post_batch_in(conn, items)


def test_trouble_answers_unavailable_and_is_not_stored(world: World, caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakyLedger(world.engine, clock=world.clock)
    service = WalletService(world.engine, flaky, world.registry, pin_key=PIN_KEY, clock=world.clock)
    request = world.request(A, f"TOPUP 100 {PIN_A}", key="u1")
    with caplog.at_level(logging.ERROR, logger="simwallet.gateway.wallet.service"):
        reply = service.handle(request)
    check(reply, MessageId.UNAVAILABLE, Outcome.UNAVAILABLE)
    assert "StoreError (store_error)" in caplog.text and request.key in caplog.text
    assert world.count(wallet_replies) == 0 and world.service_transfers() == 0
    check(service.handle(request), MessageId.TOPUP_OK, msisdn=A, amount_fen=10_000, balance_fen=90_000)
    # A service started with another PIN key fails loudly instead of locking wallets.
    other = WalletService(world.engine, world.ledger, world.registry, pin_key=bytes(32), clock=world.clock)
    check(other.handle(world.request(A, f"BAL {PIN_A}")), MessageId.UNAVAILABLE, Outcome.UNAVAILABLE)
    assert "PinKeyMismatch" in caplog.text and world.service.pin_state(A).wrong_tries == 0


def test_batch_of_customers_in_order(world: World) -> None:
    topup = world.request(A, f"TOPUP 100 {PIN_A}", key="b4")
    batch = [
        world.request(A, f"BAL {WRONG}", key="b1"),
        world.request(B, f"余额 {PIN_B}", key="b2"),
        world.request(A, f"BAL {WRONG}", key="b3"),
        topup,
        world.request(B, f"付款 13800138000 50 {PIN_B}", key="b5"),
        world.request(A, f"BAL {PIN_A}", key="b6"),
        *(world.request(A, f"BAL {WRONG}", key=f"b{n}") for n in (7, 8, 9)),
        world.request(A, f"BAL {PIN_A}", key="b10"),
        topup,  # redelivered within the batch
        world.request(STRANGER, "HELP", key="b11"),
    ]
    replies = world.service.handle_batch(batch)
    check(replies[0], MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(replies[1], MessageId.BALANCE, balance_fen=FUNDS_B)
    check(replies[2], MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=1)
    check(replies[3], MessageId.TOPUP_OK, msisdn=A, amount_fen=10_000, balance_fen=90_000)
    check(replies[4], MessageId.PAY_OK, payee=A, amount_fen=5_000, balance_fen=15_000)
    check(replies[5], MessageId.BALANCE, balance_fen=95_000)
    check(replies[6], MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=2)
    check(replies[7], MessageId.PIN_WRONG, Outcome.PIN_WRONG, tries_left=1)
    check(replies[8], MessageId.WALLET_LOCKED, Outcome.LOCKED)
    check(replies[9], MessageId.WALLET_LOCKED, Outcome.LOCKED)
    assert replies[10].replayed and replies[10].transfer_ids == replies[3].transfer_ids
    check(replies[11], MessageId.HELP)
    assert world.service_transfers() == 2 and world.count(wallet_replies) == 10
    # The whole batch again: every reply replayed, nothing posted, no try counted.
    again = world.service.handle_batch(batch)
    assert all(r.replayed for r in again[:11]) and not again[11].replayed
    assert [(r.message_id, dict(r.params)) for r in again] == [(r.message_id, dict(r.params)) for r in replies]
    assert world.service_transfers() == 2 and world.service.pin_state(A).wrong_tries == 3


CONCURRENT_SENDERS = 8


def test_concurrent_wrong_pins_all_count(world: World) -> None:
    """Gateway processes (here threads, each with its own connection) get wrong PINs of one wallet at once.

    Every try counts: exactly two say "tries left 2, 1" and the others find the wallet locked.
    """
    barrier = threading.Barrier(CONCURRENT_SENDERS)
    requests = [world.request(A, f"BAL {WRONG}") for _ in range(CONCURRENT_SENDERS)]
    replies: list[ServiceReply] = []

    def send(request: ServiceRequest) -> None:
        barrier.wait()
        replies.append(world.service.handle(request))

    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.params.get("tries_left", 0) for r in replies if r.outcome is Outcome.PIN_WRONG) == [1, 2]  # type: ignore[type-var]
    assert sum(r.outcome is Outcome.LOCKED for r in replies) == CONCURRENT_SENDERS - 2
    assert world.service.pin_state(A).wrong_tries == 3


def test_prune_replies(world: World) -> None:
    reply = world.send(A, f"TOPUP 100 {PIN_A}", key="p1")
    world.clock.advance(10)
    world.send(A, f"BAL {PIN_A}", key="p2")
    assert world.service.prune_replies(world.clock.now_us) == 1
    assert world.count(wallet_replies) == 1
    # A redelivery after pruning is answered from the ledger's key: not posted again.
    again = world.send(A, f"TOPUP 100 {PIN_A}", key="p1")
    assert not again.replayed and again.transfer_ids == reply.transfer_ids and world.service_transfers() == 1


# --- secrecy ----------------------------------------------------------------------------------


def _dump(engine: sa.Engine) -> str:
    reflected = sa.MetaData()
    reflected.reflect(engine)
    parts: list[str] = []
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts.extend(bytes(v).hex() if isinstance(v, bytes | memoryview) else str(v) for v in row)
    return "\n".join(parts)


def test_no_pin_in_the_database_or_the_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # SQL and parameters too
    try:
        world.send(A, f"BAL {WRONG}")
        world.send(A, f"改密 {PIN_A} {NEW_PIN_A} {NEW_PIN_A}")
        world.send(B, f"TOPUP 10 {PIN_B}")
        world.send(NO_PIN, f"BAL {PIN_A}")
        world.service.handle(
            ServiceRequest(key="stk:x", channel=Channel.STK, msisdn=A, command=Balance(lang=Lang.EN, pin="12"), lang=Lang.EN)
        )
        world.service.set_pin(NO_PIN, "357913")
        WalletService(world.engine, world.ledger, world.registry, pin_key=bytes(32)).handle(world.request(A, f"BAL {NEW_PIN_A}"))
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert "SELECT" in caplog.text  # the SQL log was on
    dump = _dump(world.engine)
    assert "wallet_pins" not in dump and len(dump) > 1000
    for pin in (PIN_A, PIN_B, NEW_PIN_A, WRONG, "357913"):
        assert pin not in dump and pin.encode().hex() not in dump
        assert pin not in caplog.text and pin.encode().hex() not in caplog.text.lower()
    url = world.engine.url
    if url.get_backend_name() == "sqlite":
        world.engine.dispose()
        assert url.database is not None
        with sqlite3.connect(url.database) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = Path(url.database).read_bytes()
        assert all(pin.encode() not in raw for pin in (PIN_A, PIN_B, NEW_PIN_A, WRONG, "357913"))


# --- values and schema --------------------------------------------------------------------------


def test_requests_are_checked() -> None:
    cmd = Balance(lang=Lang.ZH, pin=PIN_A)

    def make(**changes: object) -> ServiceRequest:
        fields: dict[str, object] = {"key": "sms:1:2", "channel": Channel.SMS, "msisdn": A, "command": cmd, "lang": Lang.ZH, **changes}
        return ServiceRequest(**fields)  # type: ignore[arg-type]

    assert make(channel="ussd", lang="en").channel is Channel.USSD
    for bad in (
        {"key": ""},
        {"key": "x" * (REQUEST_KEY_LEN_MAX + 1)},
        {"key": "sms:1#2"},
        {"key": "sms:\n"},
        {"channel": Channel.COUNTER},
        {"channel": "fax"},
        {"lang": "fr"},
        {"msisdn": "+8613800138000"},
        {"msisdn": "013800138000"},
        {"command": "BAL 468135"},
        {"pin_verified_by_card": 1},
    ):
        with pytest.raises(WalletUsageError) as caught:
            make(**bad)
        assert PIN_A not in str(caught.value)
    assert PIN_A not in repr(make())


def test_batches_are_bounded(world: World) -> None:
    with pytest.raises(WalletUsageError):
        world.service.handle_batch([world.request(A, "HELP")] * (SERVICE_BATCH_MAX + 1))
    assert world.service.handle_batch([]) == []


def test_stored_params_round_trip() -> None:
    entries = (HistoryEntry(date(2026, 6, 1), EntryKind.BONUS, 3_000), HistoryEntry(date(2026, 5, 31), EntryKind.BILL, -4_000))
    for message_id, params in (
        (MessageId.HISTORY, {"entries": entries}),
        (MessageId.LIMIT_EXCEEDED, {"limit": LimitKind.PER_DAY, "limit_fen": 60_000}),
        (MessageId.BILL_OK, {"biller": Biller.GAS, "account": "AB1234", "amount_fen": 1, "balance_fen": -2}),
        (MessageId.PIN_WRONG, {"tries_left": 1}),
        (MessageId.HELP, {}),
    ):
        assert decode_params(message_id, encode_params(message_id, params)) == params


def test_migration_creates_the_declared_wallet_tables(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert [d for d in diff if any(name in repr(d) for name in WALLET_TABLES)] == []
        assert set(WALLET_TABLES) <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
