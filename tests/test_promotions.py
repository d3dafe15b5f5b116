"""满百送30 through the ledger, on SQLite and PostgreSQL: caps at their boundaries, atomic bonuses, reversals, the report.

The campaign is ``cards/promotions/manbai-song30.yaml``: a phone-credit top-up
(``airtime_topup``) of at least 100.00 from 2026-05-16 to 2026-08-15, in
Asia/Shanghai, earns 30.00 of phone credit from ``promo-expense``, once per
calendar month and three times per customer. Every instant is injected through
the ledger's clock; the boundaries are the UTC instants of Shanghai midnights
(UTC+8, no daylight saving): 2026-05-15T16:00Z opens the campaign,
2026-05-31T16:00Z starts June, 2026-08-15T16:00Z closes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from workers import Worker

from simwallet.gateway.errors import RejectCode
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import (
    AccountKind,
    AccountStatus,
    Channel,
    Linked,
    Phase,
    Result,
    Reverse,
    Transfer,
    TransferKind,
)
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.promotions.rules import CampaignRule, Outcome, ts_us_from_datetime
from simwallet.gateway.promotions.store import CampaignReport, CampaignStore
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.schema import campaign_events, campaign_usage, transfers

MANBAI_YAML = Path(__file__).resolve().parents[1] / "cards" / "promotions" / "manbai-song30.yaml"
CAMPAIGN = "manbai-song30-2026"
BUDGET_FEN = 30_000_000  # the file's 300000.00
BONUS_FEN = 3_000
TOPUP_FEN = 10_000
FUNDS_FEN = 100_000  # each customer's wallet: 1,000.00
BANK = "bank-icbc"
PROMO = "promo-expense"
OPERATOR = "operator-float"
# Processes topping up one customer's phone at the same time.
CONCURRENT_TOPUPS = 5
WORKER_TIMEOUT_S = 60


def at(iso: str) -> int:
    """Microseconds since the epoch of an ISO 8601 instant such as ``2026-05-31T16:00:00Z``."""
    return ts_us_from_datetime(datetime.fromisoformat(iso))


class Clock:
    """The ledger's clock, set by the test."""

    def __init__(self, iso: str) -> None:
        self.now_us = at(iso)

    def __call__(self) -> int:
        return self.now_us


@dataclass(frozen=True)
class Customer:
    owner: str
    wallet: str
    airtime: str


@dataclass(frozen=True)
class Event:
    transfer_id: int
    owner: str
    outcome: str
    period_key: str
    bonus_id: int | None
    amount: int


class World:
    """One fresh ledger with the campaign created, as an operator would set it up."""

    def __init__(self, url: str, rule: CampaignRule) -> None:
        self.url = url
        self.clock = Clock("2026-05-01T00:00:00Z")
        self.engine = open_engine(url)
        self.ledger = Ledger(self.engine, clock=self.clock)
        self.ledger.open_accounts([
            AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC", BANK),
            AccountSpec(AccountKind.PROMOTION_EXPENSE, "operator", PROMO),
            AccountSpec(AccountKind.OPERATOR_FLOAT, "operator", OPERATOR),
        ])
        self.store = CampaignStore(self.engine, clock=self.clock)
        self.store.create(rule)
        self._keys = 0

    def key(self, prefix: str) -> str:
        self._keys += 1
        return f"{prefix}-{self._keys}"

    def customer(self, n: int, funds: int = FUNDS_FEN) -> Customer:
        c = Customer(f"customer:C{n:03d}", f"C{n:03d}/wallet", f"C{n:03d}/airtime")
        self.ledger.open_accounts([
            AccountSpec(AccountKind.CUSTOMER_WALLET, c.owner, c.wallet),
            AccountSpec(AccountKind.CUSTOMER_AIRTIME, c.owner, c.airtime),
        ])
        self.ledger.post_one(Transfer(self.key("fund"), BANK, c.wallet, funds, TransferKind.DEPOSIT, Channel.BANK))
        return c

    def topup_request(self, c: Customer, amount: int = TOPUP_FEN) -> Transfer:
        return Transfer(self.key("topup"), c.wallet, c.airtime, amount, TransferKind.AIRTIME_TOPUP, Channel.SMS)

    def topup(self, c: Customer, when: str, amount: int = TOPUP_FEN) -> Result:
        self.clock.now_us = at(when)
        (result,) = self.ledger.post_batch([self.topup_request(c, amount)])
        return result

    def reverse(self, transfer_id: int, when: str) -> Result:
        self.clock.now_us = at(when)
        (result,) = self.ledger.post_batch([Reverse(self.key("rev"), transfer_id, Channel.COUNTER)])
        return result

    def balance(self, ref: str) -> int:
        """A customer account's money: credits less debits (posted)."""
        account = self.ledger.account(ref)
        return account.credits_posted - account.debits_posted

    def bonuses_paid(self) -> int:
        """What the promotion expense account paid out, net of bonuses taken back."""
        account = self.ledger.account(PROMO)
        return account.debits_posted - account.credits_posted

    def report(self) -> CampaignReport:
        (report,) = self.store.report(CAMPAIGN)
        return report

    def events(self) -> list[Event]:
        query = sa.select(campaign_events.c.transfer_id, campaign_events.c.owner, campaign_events.c.outcome,
                          campaign_events.c.period_key, campaign_events.c.bonus_id, campaign_events.c.amount)
        with self.engine.connect() as conn:
            return [Event(*row) for row in conn.execute(query.order_by(campaign_events.c.id))]

    def usage(self, c: Customer) -> tuple[int, str | None, int] | None:
        query = sa.select(campaign_usage.c.total_count, campaign_usage.c.period_key, campaign_usage.c.period_count).where(
            campaign_usage.c.campaign_id == CAMPAIGN, campaign_usage.c.owner == c.owner)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else tuple(row)

    def transfer_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()

    def verify(self) -> None:
        report = verify_ledger(self.engine)
        assert report.ok, [(c.name, c.examples) for c in report.checks if not c.ok]


def manbai_rule(budget: str | None = None) -> CampaignRule:
    """The campaign file as shipped, or its text with another budget."""
    text = MANBAI_YAML.read_text(encoding="utf-8")
    if budget is None:
        return CampaignRule.from_yaml(text, MANBAI_YAML.name)
    line = '  budget: "300000.00"'
    assert line in text
    return CampaignRule.from_yaml(text.replace(line, f'  budget: "{budget}"'), f"budget-{budget}.yaml")


@pytest.fixture
def make_world(db_url: str) -> Iterator[Callable[[CampaignRule], World]]:
    worlds: list[World] = []

    def make(rule: CampaignRule) -> World:
        worlds.append(World(db_url, rule))
        return worlds[-1]

    yield make
    for world in worlds:
        world.engine.dispose()


@pytest.fixture
def world(make_world: Callable[[CampaignRule], World]) -> World:
    return make_world(manbai_rule())


def granted(result: Result) -> bool:
    """Whether a top-up came with its bonus (checked to be well formed)."""
    assert result.ok, result.error
    if len(result.transfers) == 1:
        return False
    topup, bonus = result.transfers
    assert (bonus.kind, bonus.cause_id, bonus.amount) == (TransferKind.PROMOTION_BONUS, topup.id, BONUS_FEN)
    return True


def refusals(period: int = 0, campaign: int = 0, budget: int = 0, unpayable: int = 0) -> dict[str, int]:
    """A report's ``refused``: the count per cap."""
    return {Outcome.REFUSED_PERIOD_CAP: period, Outcome.REFUSED_CAMPAIGN_CAP: campaign, Outcome.REFUSED_BUDGET: budget,
            Outcome.REFUSED_UNPAYABLE: unpayable}


# --- Caps at their boundaries ---------------------------------------------------------


def test_month_changes_at_midnight_shanghai(world: World) -> None:
    c = world.customer(1)
    may = world.topup(c, "2026-05-20T04:00:00Z")
    last_second_of_may = world.topup(c, "2026-05-31T15:59:59Z")  # 23:59:59 on 31 May in Shanghai
    first_second_of_june = world.topup(c, "2026-05-31T16:00:00Z")  # 00:00:00 on 1 June
    assert [granted(r) for r in (may, last_second_of_may, first_second_of_june)] == [True, False, True]
    assert [(e.transfer_id, e.outcome, e.period_key) for e in world.events()] == [
        (may.transfer.id, Outcome.GRANTED, "2026-05"),
        (last_second_of_may.transfer.id, Outcome.REFUSED_PERIOD_CAP, "2026-05"),
        (first_second_of_june.transfer.id, Outcome.GRANTED, "2026-06"),
    ]
    assert world.usage(c) == (2, "2026-06", 1)
    report = world.report()
    assert (report.qualifying, report.granted, report.revoked, report.customers_rewarded) == (3, 2, 0, 1)
    assert report.refused == refusals(period=1)
    assert (report.granted_fen, report.budget_left_fen) == (2 * BONUS_FEN, BUDGET_FEN - 2 * BONUS_FEN)
    world.verify()


def test_first_day_starts_at_midnight_shanghai(world: World) -> None:
    c = world.customer(1)
    before = world.topup(c, "2026-05-15T15:59:59.999999Z")
    assert not granted(before)
    assert world.events() == []  # not a refusal: no campaign was running
    assert world.usage(c) in (None, (0, None, 0))  # nothing counts toward the caps
    first = world.topup(c, "2026-05-15T16:00:00Z")
    assert granted(first)
    assert [(e.transfer_id, e.outcome, e.period_key) for e in world.events()] == [(first.transfer.id, Outcome.GRANTED, "2026-05")]
    assert world.balance(c.airtime) == 2 * TOPUP_FEN + BONUS_FEN
    world.verify()


def test_last_day_ends_at_midnight_shanghai(world: World) -> None:
    c1, c2 = world.customer(1), world.customer(2)
    last = world.topup(c1, "2026-08-15T15:59:59Z")  # 23:59:59 on 15 August in Shanghai
    after = world.topup(c2, "2026-08-15T16:00:00Z")
    assert granted(last)
    assert not granted(after)
    assert [(e.transfer_id, e.outcome, e.period_key) for e in world.events()] == [(last.transfer.id, Outcome.GRANTED, "2026-08")]
    report = world.report()
    assert (report.qualifying, report.granted, report.customers_rewarded) == (1, 1, 1)
    world.verify()


def test_minimum_amount_is_inclusive(world: World) -> None:
    c = world.customer(1)
    short = world.topup(c, "2026-06-01T02:00:00Z", amount=9_999)
    assert not granted(short)
    assert world.events() == []
    exact = world.topup(c, "2026-06-01T02:00:01Z", amount=10_000)
    assert granted(exact)
    assert [(e.transfer_id, e.outcome) for e in world.events()] == [(exact.transfer.id, Outcome.GRANTED)]
    assert world.balance(c.airtime) == 9_999 + 10_000 + BONUS_FEN
    world.verify()


def test_fourth_month_is_refused_by_the_campaign_cap(world: World) -> None:
    c = world.customer(1)
    months = ["2026-05-20T04:00:00Z", "2026-06-20T04:00:00Z", "2026-07-20T04:00:00Z", "2026-08-10T04:00:00Z"]
    results = [world.topup(c, when) for when in months]
    assert [granted(r) for r in results] == [True, True, True, False]
    assert [(e.outcome, e.period_key) for e in world.events()] == [
        (Outcome.GRANTED, "2026-05"), (Outcome.GRANTED, "2026-06"), (Outcome.GRANTED, "2026-07"),
        (Outcome.REFUSED_CAMPAIGN_CAP, "2026-08"),
    ]
    assert world.usage(c) == (3, "2026-07", 1)
    report = world.report()
    assert (report.qualifying, report.granted, report.customers_rewarded, report.granted_fen) == (4, 3, 1, 3 * BONUS_FEN)
    assert report.refused == refusals(campaign=1)
    assert world.balance(c.airtime) == 4 * TOPUP_FEN + 3 * BONUS_FEN
    world.verify()


# --- The bonus is atomic with its top-up -------------------------------------------------


def test_bonus_is_in_the_same_result_as_the_topup(world: World) -> None:
    c = world.customer(1)
    request = world.topup_request(c)
    world.clock.now_us = at("2026-06-03T10:00:00Z")
    (result,) = world.ledger.post_batch([request])
    topup, bonus = result.transfers
    ids = {ref: world.ledger.account(ref).id for ref in (c.wallet, c.airtime, PROMO)}
    assert (topup.kind, topup.debit_account_id, topup.credit_account_id, topup.amount) == (
        TransferKind.AIRTIME_TOPUP, ids[c.wallet], ids[c.airtime], TOPUP_FEN)
    assert (bonus.kind, bonus.cause_id, bonus.debit_account_id, bonus.credit_account_id, bonus.amount, bonus.phase) == (
        TransferKind.PROMOTION_BONUS, topup.id, ids[PROMO], ids[c.airtime], BONUS_FEN, Phase.SINGLE)
    assert bonus.ts_us == topup.ts_us == at("2026-06-03T10:00:00Z")
    assert world.ledger.transfer(bonus.id) == bonus
    assert [(e.transfer_id, e.bonus_id, e.amount) for e in world.events()] == [(topup.id, bonus.id, BONUS_FEN)]
    assert (world.balance(c.wallet), world.balance(c.airtime)) == (FUNDS_FEN - TOPUP_FEN, TOPUP_FEN + BONUS_FEN)
    assert world.bonuses_paid() == BONUS_FEN
    # The same request again is the same result, bonus included, and grants nothing more.
    world.clock.now_us = at("2026-06-03T10:05:00Z")
    (again,) = world.ledger.post_batch([request])
    assert again.duplicate and again.transfers == result.transfers
    assert world.report().granted == 1
    assert len(world.events()) == 1
    world.verify()


def test_failed_topup_grants_nothing(world: World) -> None:
    poor = world.customer(1, funds=5_000)
    result = world.topup(poor, "2026-06-03T10:00:00Z")
    assert result.error is not None and result.error.reject_code == RejectCode.EXCEEDS_CREDITS
    assert result.transfers == ()
    assert world.events() == []
    assert (world.balance(poor.wallet), world.balance(poor.airtime), world.bonuses_paid()) == (5_000, 0, 0)
    report = world.report()
    assert (report.qualifying, report.granted, report.granted_fen) == (0, 0, 0)
    world.verify()


def test_linked_chain_with_a_failing_member_grants_nothing(world: World) -> None:
    c, other = world.customer(1), world.customer(2)
    count = world.transfer_count()
    topup = world.topup_request(c)
    # The qualifying top-up comes first: its bonus is already granted in memory when the next member fails.
    fails = Transfer(world.key("p2p"), c.wallet, other.wallet, FUNDS_FEN, TransferKind.P2P, Channel.SMS)
    world.clock.now_us = at("2026-06-03T10:00:00Z")
    results = world.ledger.post_batch([Linked((topup, fails))])
    assert [r.error.reject_code if r.error else None for r in results] == [RejectCode.LINKED_EVENT_FAILED, RejectCode.EXCEEDS_CREDITS]
    assert all(r.transfers == () for r in results)
    assert world.transfer_count() == count
    assert world.events() == []
    assert world.usage(c) in (None, (0, None, 0))
    assert (world.balance(c.wallet), world.balance(c.airtime), world.bonuses_paid()) == (FUNDS_FEN, 0, 0)
    info = world.store.show(CAMPAIGN)
    assert (info.granted_count, info.granted_fen) == (0, 0)
    # The month's grant is still to be had.
    assert granted(world.topup(c, "2026-06-03T10:01:00Z"))
    world.verify()


def test_failed_chain_leaves_the_grant_to_a_later_topup_of_the_same_batch(make_world: Callable[[CampaignRule], World]) -> None:
    # A budget of one bonus: the failed chain must hand back the budget, not only the customer's monthly grant.
    world = make_world(manbai_rule(budget="30.00"))
    c, other = world.customer(1), world.customer(2)
    fails = Transfer(world.key("p2p"), c.wallet, other.wallet, FUNDS_FEN, TransferKind.P2P, Channel.SMS)
    chain = Linked((world.topup_request(c), world.topup_request(c), fails))
    later = world.topup_request(c)
    world.clock.now_us = at("2026-06-03T10:00:00Z")
    *failed, result = world.ledger.post_batch([chain, later])
    assert [r.ok for r in failed] == [False, False, False]
    assert granted(result)
    assert [(e.transfer_id, e.outcome) for e in world.events()] == [(result.transfer.id, Outcome.GRANTED)]
    assert world.usage(c) == (1, "2026-06", 1)
    report = world.report()
    assert (report.qualifying, report.granted, report.granted_fen, report.budget_left_fen) == (1, 1, BONUS_FEN, 0)
    assert world.balance(c.airtime) == TOPUP_FEN + BONUS_FEN
    world.verify()


def test_two_topups_in_one_batch_get_one_bonus(world: World) -> None:
    c = world.customer(1)
    world.clock.now_us = at("2026-06-03T10:00:00Z")
    first, second = world.ledger.post_batch([world.topup_request(c), world.topup_request(c)])
    assert (granted(first), granted(second)) == (True, False)
    assert [(e.transfer_id, e.outcome) for e in world.events()] == [
        (first.transfer.id, Outcome.GRANTED), (second.transfer.id, Outcome.REFUSED_PERIOD_CAP)]
    world.verify()


@pytest.mark.slow
def test_concurrent_topups_of_one_customer(world: World, tmp_path: Path) -> None:
    c = world.customer(1)
    when = at("2026-07-08T09:30:00Z")
    workers: list[Worker] = []
    try:
        for n in range(CONCURRENT_TOPUPS):
            workers.append(Worker.start("topup", [
                "--url", world.url, "--ts-us", str(when), "--key", f"concurrent-{n}", "--wallet", c.wallet,
                "--airtime", c.airtime, "--amount", str(TOPUP_FEN),
            ], tmp_path / f"topup{n}.stderr"))
        for worker in workers:
            worker.wait_ready()
        for worker in workers:
            worker.send("go")
        outputs = [json.loads(worker.finish(WORKER_TIMEOUT_S)) for worker in workers]
    finally:
        for worker in workers:
            worker.stop()
    assert all(o["ok"] for o in outputs)
    rewarded = [o for o in outputs if len(o["transfers"]) == 2]
    assert len(rewarded) == 1, outputs
    topup, bonus = rewarded[0]["transfers"]
    assert (bonus["kind"], bonus["cause_id"], bonus["amount"]) == ("promotion_bonus", topup["id"], BONUS_FEN)
    outcomes = {e.transfer_id: e.outcome for e in world.events()}
    assert outcomes == {o["transfers"][0]["id"]: Outcome.GRANTED if o is rewarded[0] else Outcome.REFUSED_PERIOD_CAP
                        for o in outputs}
    report = world.report()
    assert (report.qualifying, report.granted, report.customers_rewarded, report.granted_fen) == (
        CONCURRENT_TOPUPS, 1, 1, BONUS_FEN)
    assert report.refused == refusals(period=CONCURRENT_TOPUPS - 1)
    assert world.usage(c) == (1, "2026-07", 1)
    assert world.balance(c.airtime) == CONCURRENT_TOPUPS * TOPUP_FEN + BONUS_FEN
    world.verify()


# --- Budget ------------------------------------------------------------------------------


def test_budget_runs_out(make_world: Callable[[CampaignRule], World], tmp_path: Path) -> None:
    path = tmp_path / "manbai-budget-60.yaml"
    path.write_text(MANBAI_YAML.read_text(encoding="utf-8").replace('budget: "300000.00"', 'budget: "60.00"'), encoding="utf-8")
    rule = CampaignRule.from_yaml(path.read_text(encoding="utf-8"), path.name)
    assert (rule.caps.budget_fen, rule.reward.amount_fen) == (6_000, BONUS_FEN)
    world = make_world(rule)
    customers = [world.customer(n) for n in (1, 2, 3)]
    results = [world.topup(c, f"2026-06-0{n}T02:00:00Z") for n, c in enumerate(customers, 1)]
    assert [granted(r) for r in results] == [True, True, False]
    assert [(e.owner, e.outcome) for e in world.events()] == [
        (customers[0].owner, Outcome.GRANTED), (customers[1].owner, Outcome.GRANTED), (customers[2].owner, Outcome.REFUSED_BUDGET),
    ]
    report = world.report()
    assert (report.qualifying, report.granted, report.customers_rewarded) == (3, 2, 2)
    assert report.refused == refusals(budget=1)
    assert (report.granted_fen, report.budget_fen, report.budget_left_fen) == (6_000, 6_000, 0)
    assert world.bonuses_paid() == 6_000
    assert world.balance(customers[2].airtime) == TOPUP_FEN
    world.verify()


# --- Reversals -----------------------------------------------------------------------------


def test_reversal_takes_the_bonus_back(world: World) -> None:
    c = world.customer(1)
    topup, bonus = world.topup(c, "2026-06-05T03:00:00Z").transfers
    result = world.reverse(topup.id, "2026-06-06T03:00:00Z")
    back, bonus_back = result.transfers
    assert (back.kind, back.reverses_id, back.debit_account_id, back.credit_account_id, back.amount) == (
        TransferKind.REVERSAL, topup.id, topup.credit_account_id, topup.debit_account_id, TOPUP_FEN)
    assert (bonus_back.kind, bonus_back.reverses_id, bonus_back.cause_id, bonus_back.debit_account_id,
            bonus_back.credit_account_id, bonus_back.amount) == (
        TransferKind.REVERSAL, bonus.id, back.id, bonus.credit_account_id, bonus.debit_account_id, BONUS_FEN)
    assert (world.balance(c.wallet), world.balance(c.airtime), world.bonuses_paid()) == (FUNDS_FEN, 0, 0)
    assert [(e.outcome, e.transfer_id, e.bonus_id, e.amount, e.period_key) for e in world.events()] == [
        (Outcome.GRANTED, topup.id, bonus.id, BONUS_FEN, "2026-06"), ("revoked", topup.id, bonus.id, BONUS_FEN, "2026-06"),
    ]
    assert world.usage(c) == (0, "2026-06", 0)
    report = world.report()
    assert (report.qualifying, report.granted, report.revoked, report.granted_fen, report.budget_left_fen) == (
        1, 1, 1, 0, BUDGET_FEN)
    world.verify()
    # The customer's June grant is free again.
    assert granted(world.topup(c, "2026-06-07T03:00:00Z"))
    report = world.report()
    assert (report.qualifying, report.granted, report.revoked, report.granted_fen) == (2, 2, 1, BONUS_FEN)
    assert report.refused == refusals()
    assert world.usage(c) == (1, "2026-06", 1)
    world.verify()


def test_reversal_fails_when_the_bonus_was_spent(world: World) -> None:
    c = world.customer(1)
    topup, _ = world.topup(c, "2026-06-05T03:00:00Z").transfers
    # Calls use 20.00 of the 130.00 phone credit: the top-up could be taken back, the bonus then no longer.
    world.ledger.post_one(Transfer(world.key("calls"), c.airtime, OPERATOR, 2_000, TransferKind.ADJUSTMENT, Channel.SYSTEM,
                                   memo="calls"))
    count, events, usage = world.transfer_count(), world.events(), world.usage(c)
    balances = [world.balance(c.wallet), world.balance(c.airtime), world.bonuses_paid()]
    result = world.reverse(topup.id, "2026-06-06T03:00:00Z")
    assert result.error is not None
    assert (result.error.reject_code, result.error.field) == (RejectCode.EXCEEDS_CREDITS, "debit_account")
    assert result.transfers == ()
    assert world.transfer_count() == count
    assert world.events() == events
    assert world.usage(c) == usage == (1, "2026-06", 1)
    assert [world.balance(c.wallet), world.balance(c.airtime), world.bonuses_paid()] == balances == [
        FUNDS_FEN - TOPUP_FEN, TOPUP_FEN + BONUS_FEN - 2_000, BONUS_FEN]
    report = world.report()
    assert (report.granted, report.revoked, report.granted_fen) == (1, 0, BONUS_FEN)
    world.verify()


# --- The report ------------------------------------------------------------------------------


def test_report_counts_every_outcome(make_world: Callable[[CampaignRule], World]) -> None:
    world = make_world(manbai_rule(budget="120.00"))  # four bonuses
    c1, c2, c3 = (world.customer(n) for n in (1, 2, 3))
    steps = [
        (c1, "2026-05-20T04:00:00Z", TOPUP_FEN, Outcome.GRANTED),
        (c1, "2026-05-21T04:00:00Z", TOPUP_FEN, Outcome.REFUSED_PERIOD_CAP),
        (c1, "2026-06-20T04:00:00Z", TOPUP_FEN, Outcome.GRANTED),
        (c1, "2026-07-20T04:00:00Z", TOPUP_FEN, Outcome.GRANTED),
        (c1, "2026-08-10T04:00:00Z", TOPUP_FEN, Outcome.REFUSED_CAMPAIGN_CAP),
        (c2, "2026-07-21T04:00:00Z", TOPUP_FEN, Outcome.GRANTED),
        (c3, "2026-07-22T04:00:00Z", TOPUP_FEN, Outcome.REFUSED_BUDGET),
        (c3, "2026-07-22T05:00:00Z", TOPUP_FEN - 1, None),  # does not qualify: no event
        (c3, "2026-08-16T04:00:00Z", TOPUP_FEN, None),  # after the campaign: no event
    ]
    results = [world.topup(c, when, amount) for c, when, amount, _ in steps]
    assert [granted(r) for r in results] == [outcome == Outcome.GRANTED for *_, outcome in steps]
    assert [(e.transfer_id, e.outcome) for e in world.events()] == [
        (r.transfer.id, outcome) for r, (*_, outcome) in zip(results, steps, strict=True) if outcome is not None]
    report = world.report()
    assert (report.id, report.name, report.status) == (CAMPAIGN, "满百送30", "active")
    assert (report.qualifying, report.granted, report.revoked, report.customers_rewarded) == (7, 4, 0, 2)
    assert report.refused == refusals(period=1, campaign=1, budget=1)
    assert (report.granted_fen, report.budget_fen, report.budget_left_fen) == (12_000, 12_000, 0)
    world.verify()
    # Reversing c2's rewarded top-up gives its bonus back to the budget, and c3 gets it.
    assert world.reverse(results[5].transfer.id, "2026-07-23T04:00:00Z").ok
    assert granted(world.topup(c3, "2026-07-24T04:00:00Z"))
    report = world.report()
    assert (report.qualifying, report.granted, report.revoked) == (8, 5, 1)
    assert report.refused == refusals(period=1, campaign=1, budget=1)
    assert (report.granted_fen, report.budget_left_fen) == (12_000, 0)
    assert world.bonuses_paid() == 12_000
    world.verify()


def test_an_unpayable_bonus_never_refuses_the_topup(world: World) -> None:
    """A frozen expense account or a payer without an airtime account: the top-up goes through, the bonus is refused."""
    c = world.customer(1)
    world.ledger.set_status(PROMO, AccountStatus.FROZEN)
    result = world.topup(c, "2026-05-20T04:00:00Z")
    assert result.ok and not granted(result)
    assert world.balance(c.airtime) == TOPUP_FEN
    assert [e.outcome for e in world.events()] == [Outcome.REFUSED_UNPAYABLE]
    assert world.usage(c) in (None, (0, None, 0))  # nothing was granted, nothing counts toward the caps
    world.ledger.set_status(PROMO, AccountStatus.OPEN)
    assert granted(world.topup(c, "2026-05-21T04:00:00Z"))  # May's one bonus is still there to be had
    report = world.report()
    assert (report.qualifying, report.granted, report.refused) == (2, 1, refusals(unpayable=1))
    world.verify()
