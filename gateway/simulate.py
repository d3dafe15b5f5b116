"""A month of seed-like wallet traffic, replayed through the ledger's batch API.

Modelled on the Shanghai Mobile 手机钱包 campaign report (seeds): customers
fund their wallets from bank cards (head-office, branch and UnionPay-linked
banks), top up phone credit (话费充值, the 满百送30 campaign's trigger), pay
utility bills (公共事业缴费: electricity, water, gas), pay merchants and send
money to each other, on SMS, USSD, the STK menu, hall counters and soft POS.
Some payments go through two-phase bank holds, and a few transfers are
reversed by the operator (a clerk's mistake, a disputed payment).

Everything is driven by an injected ``random.Random`` and the simulated clock,
so a seed gives the same month every time. Events are posted in batches per
simulated hour, through :meth:`Ledger.post_batch` — the call the gateway makes.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.limits import LOCAL_TZ
from simwallet.gateway.ledger.model import (
    AccountKind,
    Channel,
    PostPending,
    Request,
    Result,
    Reverse,
    Transfer,
    TransferKind,
    VoidPending,
)
from simwallet.gateway.promotions.rules import CampaignRule
from simwallet.gateway.promotions.store import CampaignStore

T = TypeVar("T")

# The three ways banks joined the seed's platform: head office, branch, and via UnionPay.
BANKS = ("bank:ICBC-HQ", "bank:BOCOM-SH", "bank:UNIONPAY")
BILLERS = ("biller:electricity", "biller:water", "biller:gas")
MERCHANTS = ("merchant:cinema", "merchant:convenience", "merchant:insurance")
TOPUP_AMOUNTS_FEN = (3_000, 5_000, 10_000, 10_000, 20_000, 30_000)  # 30, 50, 100, 100, 200, 300 CNY
TIER_MIX = (("basic", 0.55), ("verified", 0.40), ("premium", 0.05))
CHANNEL_MIX = ((Channel.SMS, 0.35), (Channel.STK, 0.25), (Channel.USSD, 0.15), (Channel.POS, 0.15), (Channel.COUNTER, 0.10))
# Hold timeout of a bank payment: the bank host answers well within it.
BANK_HOLD_TIMEOUT_S = 120
# When the simulated banks answer a hold.
BANK_ANSWER_S = 30
# Share of payments later reversed at a customer's or clerk's request.
REVERSAL_SHARE = 0.005
# Customers simulated at most: keeps a demo run within minutes on a laptop.
CUSTOMERS_MAX = 200_000


@dataclass
class MonthSummary:
    customers: int
    days: int
    first_day: date
    by_kind: Counter[str] = field(default_factory=Counter)
    fen_by_kind: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    batches: int = 0


@dataclass
class _Customer:
    owner: str
    wallet: int
    airtime: int


def _pick(rng: random.Random, mix: tuple[tuple[T, float], ...]) -> T:
    return rng.choices([m[0] for m in mix], weights=[m[1] for m in mix])[0]


def setup_world(ledger: Ledger, customers: int, rng: random.Random) -> tuple[list[_Customer], dict[str, int]]:
    """Open the operator's, banks', billers', merchants' and customers' accounts."""
    if not 0 < customers <= CUSTOMERS_MAX:
        raise ValueError(f"customers must be 1..{CUSTOMERS_MAX}")
    specs = [AccountSpec(AccountKind.BANK_SETTLEMENT, bank, ref=bank) for bank in BANKS]
    specs += [AccountSpec(AccountKind.BILLER, biller, ref=biller) for biller in BILLERS]
    specs += [AccountSpec(AccountKind.MERCHANT, m, ref=m) for m in MERCHANTS]
    specs += [AccountSpec(AccountKind.PROMOTION_EXPENSE, "operator", ref="promo-expense"),
              AccountSpec(AccountKind.FEE_INCOME, "operator", ref="fee-income")]
    house = {a.ref: a.id for a in ledger.open_accounts(specs)}
    owners = [f"customer:C{n:07d}" for n in range(1, customers + 1)]
    people = []
    for start in range(0, customers, 5000):
        chunk = owners[start:start + 5000]
        opened = ledger.open_accounts(
            [AccountSpec(AccountKind.CUSTOMER_WALLET, o, tier=_pick(rng, TIER_MIX)) for o in chunk]
            + [AccountSpec(AccountKind.CUSTOMER_AIRTIME, o) for o in chunk])
        wallets = {a.owner: a.id for a in opened if a.kind == AccountKind.CUSTOMER_WALLET}
        airtime = {a.owner: a.id for a in opened if a.kind == AccountKind.CUSTOMER_AIRTIME}
        people += [_Customer(o, wallets[o], airtime[o]) for o in chunk]
    return people, house


HOUR_US = 3600 * 1_000_000


def _local_us(day: date, hour: int) -> int:
    """Microseconds since the epoch of ``hour``:00 on a local (Asia/Shanghai) day."""
    start = datetime(day.year, day.month, day.day, hour, tzinfo=LOCAL_TZ)
    return int(start.astimezone(UTC).timestamp()) * 1_000_000


class MonthSimulation:
    """Generates and posts one simulated month; see the module docstring."""

    def __init__(self, ledger: Ledger, set_clock: Callable[[int], None], rng: random.Random,
                 customers: list[_Customer], house: dict[str, int]) -> None:
        self._ledger = ledger
        self._set_clock = set_clock
        self._rng = rng
        self._people = customers
        self._house = house
        self._n = 0
        self._recent: list[int] = []  # posted transfer ids that may be reversed
        self._holds: list[int] = []  # pending bank holds awaiting the bank's answer

    def run(self, first_day: date, days: int, summary: MonthSummary) -> MonthSummary:
        # Opening deposits at the service hall, the evening before the month starts.
        self._set_clock(_local_us(first_day, 0) - 4 * HOUR_US)
        for chunk in range(0, len(self._people), 5000):
            opening: list[Request] = [
                Transfer(self._key("open"), self._house[self._rng.choice(BANKS)], c.wallet,
                         self._rng.choice((10_000, 20_000, 50_000, 80_000)), TransferKind.DEPOSIT, Channel.COUNTER)
                for c in self._people[chunk:chunk + 5000]]
            self._record(opening, self._ledger.post_batch(opening), summary)
        for day in range(days):
            local_day = first_day + timedelta(days=day)
            for hour in range(7, 23):  # the wallet sleeps when its customers do
                start_us = _local_us(local_day, hour)
                self._set_clock(start_us)
                requests = self._hour(hour)
                self._record(requests, self._ledger.post_batch(requests), summary)
                # The banks answer this hour's holds half a minute later.
                self._set_clock(start_us + BANK_ANSWER_S * 1_000_000)
                answers = self._bank_answers()
                self._record(answers, self._ledger.post_batch(answers), summary)
            # Holds no bank answered lapse; the nightly sweep expires them.
            self._set_clock(_local_us(local_day, 23) + HOUR_US)
            for result in self._ledger.expire_due():
                for row in result.transfers:
                    summary.by_kind[f"{row.kind.value} (expire)"] += 1
                    summary.fen_by_kind[f"{row.kind.value} (expire)"] += row.amount
        return summary

    def _bank_answers(self) -> list[Request]:
        """Most holds are approved, some declined, a few never answered (they expire)."""
        out: list[Request] = []
        for pending_id in self._holds:
            roll = self._rng.random()
            if roll < 0.93:
                out.append(PostPending(self._key("post"), pending_id, Channel.BANK))
            elif roll < 0.98:
                out.append(VoidPending(self._key("void"), pending_id, Channel.BANK))
        self._holds = []
        return out

    def _key(self, prefix: str) -> str:
        self._n += 1
        return f"sim-{prefix}-{self._n}"

    def _hour(self, hour: int) -> list[Request]:
        rng, people, house = self._rng, self._people, self._house
        peak = 2.0 if hour in (8, 12, 18, 19) else 1.0
        n_events = int(len(people) * 0.012 * peak)
        out: list[Request] = []
        for _ in range(n_events):
            c = rng.choice(people)
            channel = _pick(rng, CHANNEL_MIX)
            roll = rng.random()
            if roll < 0.30:  # fund the wallet from a bank card
                amount = rng.choice((10_000, 20_000, 30_000, 50_000, 100_000))
                bank = rng.choice(BANKS)
                pending = rng.random() < 0.3
                out.append(Transfer(self._key("dep"), house[bank], c.wallet, amount, TransferKind.DEPOSIT,
                                    Channel.BANK if pending else channel, pending=pending,
                                    timeout_s=BANK_HOLD_TIMEOUT_S if pending else 0))
            elif roll < 0.62:  # 话费充值: the campaign's trigger
                out.append(Transfer(self._key("top"), c.wallet, c.airtime, rng.choice(TOPUP_AMOUNTS_FEN),
                                    TransferKind.AIRTIME_TOPUP, channel))
            elif roll < 0.80:  # 公共事业缴费
                out.append(Transfer(self._key("bill"), c.wallet, house[rng.choice(BILLERS)], rng.randint(2_000, 40_000),
                                    TransferKind.BILL_PAYMENT, channel))
            elif roll < 0.92:
                other = rng.choice(people)
                if other is not c:
                    out.append(Transfer(self._key("p2p"), c.wallet, other.wallet, rng.randint(500, 50_000), TransferKind.P2P, channel))
            else:
                out.append(Transfer(self._key("pay"), c.wallet, house[rng.choice(MERCHANTS)], rng.randint(1_000, 30_000),
                                    TransferKind.MERCHANT_PAYMENT, channel))
        # A few of the last hours' transfers are reversed at a clerk's request (0.5 %).
        for _ in range(int(n_events * REVERSAL_SHARE + rng.random())):
            if self._recent:
                out.append(Reverse(self._key("rev"), self._recent.pop(rng.randrange(len(self._recent))), Channel.COUNTER))
        self._recent = self._recent[-500:]
        return out

    def _record(self, requests: list[Request], results: list[Result], summary: MonthSummary) -> None:
        summary.requests += len(requests)
        summary.batches += 1
        for request, result in zip(requests, results, strict=True):
            if not result.ok:
                assert result.error is not None
                summary.refused[result.error.code] += 1
                continue
            if result.duplicate:
                continue
            for row in result.transfers:
                label = f"{row.kind.value} ({row.phase.value})" if row.phase.value not in ("single", "post") else row.kind.value
                summary.by_kind[label] += 1
                summary.fen_by_kind[label] += row.amount
            main = result.transfers[0]
            if isinstance(request, Transfer) and request.pending:
                self._holds.append(main.id)
            elif isinstance(request, Transfer) and request.kind in (TransferKind.AIRTIME_TOPUP, TransferKind.BILL_PAYMENT,
                                                                    TransferKind.MERCHANT_PAYMENT):
                self._recent.append(main.id)


class SimClock:
    """The simulated clock the ledger reads: microseconds since the epoch, set by the simulation."""

    def __init__(self, now_us: int = 0) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def set(self, now_us: int) -> None:
        self.now_us = now_us


def simulate_month(ledger: Ledger, clock: SimClock, *, customers: int, first_day: date, days: int = 31, seed: int = 1,
                   campaigns: Sequence[CampaignRule] = ()) -> MonthSummary:
    """Open the accounts, start ``campaigns``, and replay ``days`` of traffic from ``first_day`` (local dates).

    ``ledger`` must read ``clock``.
    """
    rng = random.Random(seed)  # noqa: S311 - simulation, not secrets
    people, house = setup_world(ledger, customers, rng)
    store = CampaignStore(ledger.engine, clock=clock)
    for rule in campaigns:
        store.create(rule)
    return MonthSimulation(ledger, clock.set, rng, people, house).run(first_day, days, MonthSummary(customers, days, first_day))
