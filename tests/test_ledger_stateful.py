"""A hypothesis state machine drives the ledger on SQLite and PostgreSQL and compares it with a plain model.

The model is written here from the documented rules, not from the ledger's
code: per account a balance, the holds out and in, a status, and for wallets
with a tier what they spent per local (UTC+8) day and month; the transfer
rows with their two-phase state; and the idempotency keys with the request
and the transfer ids they answered with. A refused request may have several
reasons at once (frozen *and* short of funds); the ledger must name one of
them, with its field, and write nothing.

After every step: ``verify_ledger`` passes; every account's balance,
available amount, incoming holds and status equal the model's; the number of
transfer rows and the set of open holds are the model's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy.engine import Engine

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.ledger.limits import Tier
from simwallet.gateway.ledger.model import (
    AccountKind,
    AccountStatus,
    Channel,
    Linked,
    Phase,
    PostedTransfer,
    PostPending,
    Request,
    Result,
    Reverse,
    Transfer,
    TransferKind,
    VoidPending,
)
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.schema import accounts, holds, transfers

SECOND_US = 1_000_000
DAY_S = 86_400
# 21:00 on 31 March in Beijing: a local day and a local month end within hours.
T0_US = int(datetime(2026, 3, 31, 13, tzinfo=UTC).timestamp()) * SECOND_US

# Limits in fen (per transaction, per day, per month, maximum balance), as the model knows them.
MACHINE_TIER = Tier("machine", per_txn_max=2_500, per_day_max=3_000, per_month_max=5_000, balance_max=15_000)
LIMITS: dict[str, tuple[int, int, int, int]] = {
    "machine": (2_500, 3_000, 5_000, 15_000),
    "basic": (100_000, 200_000, 500_000, 100_000),  # seeded by the migration
}
ACCOUNTS_MAX = 8
TIMEOUTS_S = [1, 30, 600, 3_600, DAY_S]
ADVANCES_S = [0, 1, 29, 61, 600, 3_600, 3 * 3_600, DAY_S]
# A transfer id no row has: far above any the sequence hands out in a test run.
MISSING_ID = 2**62
FIRST_ACCOUNTS = ["wallet/machine", "wallet/machine", "wallet", "merchant"]

Reason = tuple[RejectCode, str]


# --- The model ----------------------------------------------------------------------------


def local_day(ts_us: int) -> int:
    """Days since 1970-01-01 in Beijing time (UTC+8, no daylight saving)."""
    return (ts_us // SECOND_US + 8 * 3_600) // DAY_S


def local_month(ts_us: int) -> tuple[int, int]:
    d = date(1970, 1, 1) + timedelta(days=local_day(ts_us))
    return d.year, d.month


@dataclass
class MAccount:
    id: int
    tier: str | None
    no_overdraft: bool
    debit_normal: bool = False  # the bank: its balance is what it owes the operator, debits - credits
    status: str = "open"
    balance: int = 0  # credits - debits, posted
    held_out: int = 0  # pending debits
    held_in: int = 0  # pending credits
    spent_day: dict[int, int] = field(default_factory=dict)
    spent_month: dict[tuple[int, int], int] = field(default_factory=dict)


@dataclass
class MRow:
    id: int
    what: str  # single | pending | post | void | expire | reversal
    key: str
    debit: int
    credit: int
    amount: int
    kind: TransferKind
    ts_us: int
    counted_us: int = 0  # when its outflow was counted toward limits (a post's: its hold's time)
    expires_us: int | None = None
    state: str = "open"  # of a pending row: open | posted | voided | expired
    reversed: bool = False


@dataclass
class Plan:
    """What the model expects of one request."""

    reasons: set[Reason] = field(default_factory=set)  # refused for one of these
    duplicate_of: tuple[int, ...] | None = None
    shape: dict[str, object] = field(default_factory=dict)  # fields of the row to be written
    apply: Callable[[int], None] | None = None  # takes the new row's id


class Model:
    def __init__(self) -> None:
        self.accounts: dict[int, MAccount] = {}
        self.rows: dict[int, MRow] = {}
        self.keys: dict[str, tuple[Request, tuple[int, ...]]] = {}
        self.n_rows = 0

    # -- limits

    def _outflow_reasons(self, a: MAccount, amount: int, now: int) -> set[Reason]:
        if a.tier is None:
            return set()
        per_txn, per_day, per_month, _ = LIMITS[a.tier]
        out = set()
        if amount > per_txn:
            out.add((RejectCode.LIMIT_EXCEEDED, "limit.per_txn"))
        if a.spent_day.get(local_day(now), 0) + amount > per_day:
            out.add((RejectCode.LIMIT_EXCEEDED, "limit.per_day"))
        if a.spent_month.get(local_month(now), 0) + amount > per_month:
            out.add((RejectCode.LIMIT_EXCEEDED, "limit.per_month"))
        return out

    @staticmethod
    def _count(a: MAccount, amount: int, now: int) -> None:
        if a.tier is not None:
            a.spent_day[local_day(now)] = a.spent_day.get(local_day(now), 0) + amount
            a.spent_month[local_month(now)] = a.spent_month.get(local_month(now), 0) + amount

    @staticmethod
    def _give_back(a: MAccount, amount: int, counted_us: int, now: int) -> None:
        """A correction gives back to the day and month the outflow was counted in, if they are still current."""
        if a.tier is None:
            return
        if local_day(counted_us) == local_day(now):
            a.spent_day[local_day(now)] -= amount
        if local_month(counted_us) == local_month(now):
            a.spent_month[local_month(now)] -= amount

    # -- requests

    def plan(self, req: Request, now: int) -> Plan:
        prior = self.keys.get(req.idempotency_key)
        if prior is not None:
            if prior[0] == req:
                return Plan(duplicate_of=prior[1])
            return Plan({(RejectCode.IDEMPOTENCY_CONFLICT, "idempotency_key")})
        if isinstance(req, Transfer):
            return self._plan_transfer(req, now)
        if isinstance(req, PostPending | VoidPending):
            return self._plan_resolve(req, now)
        return self._plan_reverse(req, now)

    def _plan_transfer(self, req: Transfer, now: int) -> Plan:
        assert isinstance(req.debit_account, int) and isinstance(req.credit_account, int)
        d, c, amount = self.accounts[req.debit_account], self.accounts[req.credit_account], req.amount
        reasons: set[Reason] = set()
        for a, side in ((d, "debit_account"), (c, "credit_account")):
            if a.status != "open":
                reasons.add((RejectCode.ACCOUNT_CLOSED if a.status == "closed" else RejectCode.ACCOUNT_FROZEN, side))
        reasons |= self._outflow_reasons(d, amount, now)
        if c.tier is not None and c.balance + c.held_in + amount > LIMITS[c.tier][3]:
            reasons.add((RejectCode.LIMIT_EXCEEDED, "limit.balance"))
        if d.no_overdraft and d.balance - d.held_out < amount:
            reasons.add((RejectCode.EXCEEDS_CREDITS, "debit_account"))
        if reasons:
            return Plan(reasons)
        expires = now + req.timeout_s * SECOND_US if req.pending else None

        def apply(new_id: int) -> None:
            if req.pending:
                d.held_out += amount
                c.held_in += amount
            else:
                d.balance -= amount
                c.balance += amount
            self._count(d, amount, now)
            self._add(MRow(new_id, "pending" if req.pending else "single", req.idempotency_key, d.id, c.id, amount,
                           req.kind, now, counted_us=now, expires_us=expires))

        shape = {"phase": Phase.PENDING if req.pending else Phase.SINGLE, "debit_account_id": d.id, "credit_account_id": c.id,
                 "amount": amount, "kind": req.kind, "channel": req.channel, "expires_us": expires, "pending_id": None,
                 "reverses_id": None, "memo": req.memo}
        return Plan(shape=shape, apply=apply)

    def _plan_resolve(self, req: PostPending | VoidPending, now: int) -> Plan:
        hold = self.rows.get(req.pending_id)
        if hold is None:
            return Plan({(RejectCode.TRANSFER_NOT_FOUND, "pending_id")})
        if hold.what != "pending":
            return Plan({(RejectCode.NOT_PENDING, "pending_id")})
        done = {"posted": RejectCode.PENDING_ALREADY_POSTED, "voided": RejectCode.PENDING_ALREADY_VOIDED,
                "expired": RejectCode.PENDING_EXPIRED}.get(hold.state)
        if done is not None:
            return Plan({(done, "pending_id")})
        posting = isinstance(req, PostPending)
        d, c = self.accounts[hold.debit], self.accounts[hold.credit]
        reasons: set[Reason] = set()
        if posting:
            assert hold.expires_us is not None
            if hold.expires_us <= now:
                reasons.add((RejectCode.PENDING_EXPIRED, "pending_id"))
            for a, side in ((d, "debit_account"), (c, "credit_account")):
                if a.status == "frozen":
                    reasons.add((RejectCode.ACCOUNT_FROZEN, side))
        if reasons:
            return Plan(reasons)

        def apply(new_id: int) -> None:
            d.held_out -= hold.amount
            c.held_in -= hold.amount
            if posting:
                d.balance -= hold.amount
                c.balance += hold.amount
                hold.state = "posted"
            else:
                self._give_back(d, hold.amount, hold.ts_us, now)
                hold.state = "voided"
            self._add(MRow(new_id, "post" if posting else "void", req.idempotency_key, d.id, c.id, hold.amount, hold.kind, now,
                           counted_us=hold.ts_us))

        shape = {"phase": Phase.POST if posting else Phase.VOID, "debit_account_id": d.id, "credit_account_id": c.id,
                 "amount": hold.amount, "kind": hold.kind, "channel": req.channel, "pending_id": hold.id, "reverses_id": None,
                 "expires_us": None, "memo": ""}
        return Plan(shape=shape, apply=apply)

    def _plan_reverse(self, req: Reverse, now: int) -> Plan:
        original = self.rows.get(req.transfer_id)
        if original is None:
            return Plan({(RejectCode.TRANSFER_NOT_FOUND, "transfer_id")})
        if original.what not in ("single", "post"):
            return Plan({(RejectCode.NOT_REVERSIBLE, "transfer_id")})
        if original.reversed:
            return Plan({(RejectCode.ALREADY_REVERSED, "transfer_id")})
        # The money goes back: the original's credit account pays.
        d, c, amount = self.accounts[original.credit], self.accounts[original.debit], original.amount
        reasons: set[Reason] = set()
        for a, side in ((d, "debit_account"), (c, "credit_account")):
            if a.status == "closed":
                reasons.add((RejectCode.ACCOUNT_CLOSED, side))
        if d.no_overdraft and d.balance - d.held_out < amount:
            reasons.add((RejectCode.EXCEEDS_CREDITS, "debit_account"))
        if reasons:
            return Plan(reasons)

        def apply(new_id: int) -> None:
            d.balance -= amount
            c.balance += amount
            self._give_back(c, amount, original.counted_us, now)
            original.reversed = True
            self._add(MRow(new_id, "reversal", req.idempotency_key, d.id, c.id, amount, TransferKind.REVERSAL, now))

        shape = {"phase": Phase.SINGLE, "debit_account_id": d.id, "credit_account_id": c.id, "amount": amount,
                 "kind": TransferKind.REVERSAL, "channel": req.channel, "pending_id": None, "reverses_id": original.id,
                 "memo": req.memo, "expires_us": None}
        return Plan(shape=shape, apply=apply)

    def due(self, now: int) -> list[MRow]:
        rows = [r for r in self.rows.values() if r.what == "pending" and r.state == "open" and (r.expires_us or 0) <= now]
        return sorted(rows, key=lambda r: (r.expires_us, r.id))

    def expire(self, hold: MRow, new_id: int, now: int) -> None:
        d, c = self.accounts[hold.debit], self.accounts[hold.credit]
        d.held_out -= hold.amount
        c.held_in -= hold.amount
        self._give_back(d, hold.amount, hold.ts_us, now)
        hold.state = "expired"
        self._add(MRow(new_id, "expire", f"{hold.key}#expire", d.id, c.id, hold.amount, hold.kind, now))

    def _add(self, row: MRow) -> None:
        self.rows[row.id] = row
        self.n_rows += 1

    def open_holds(self) -> set[int]:
        return {r.id for r in self.rows.values() if r.what == "pending" and r.state == "open"}


# --- The machine --------------------------------------------------------------------------


class Clock:
    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def reset(engine: Engine) -> None:
    """Empty the ledger between examples (cheaper than a fresh database each time)."""
    with engine.begin() as conn:
        for table in (holds, transfers, accounts):
            conn.execute(table.delete())


def machine_for(engine: Engine) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            reset(engine)
            self.clock = Clock(T0_US)
            self.ledger = Ledger(engine, clock=self.clock)
            self.model = Model()
            self.submitted: list[Request] = []
            self.max_id = 0
            self.n_keys = 0
            bank = self.ledger.open_account(AccountKind.BANK_SETTLEMENT, "bank:ICBC")  # no flag: it funds the others
            self.bank = bank.id
            self.model.accounts[bank.id] = MAccount(bank.id, None, no_overdraft=False, debit_normal=True)

        # -- drawing requests

        def key(self) -> str:
            self.n_keys += 1
            return f"k{self.n_keys}"

        def others(self) -> list[int]:
            return sorted(set(self.model.accounts) - {self.bank})

        def draw_transfer(self, data: st.DataObject, *, over: bool | None = None) -> Transfer:
            ids = sorted(self.model.accounts)
            # Wallets with a tier pay twice as often: their limits are the interesting part.
            tiered = [i for i in ids if self.model.accounts[i].tier is not None]
            debit = data.draw(st.sampled_from(ids + tiered), label="debit")
            credit = data.draw(st.sampled_from([i for i in ids if i != debit]), label="credit")
            if over is None:
                over = data.draw(st.integers(0, 3), label="over") == 0
            if over:  # more than the payer has available now
                payer = self.model.accounts[debit]
                amount = max(1, payer.balance - payer.held_out) + data.draw(st.integers(1, 500), label="excess")
            else:
                amount = data.draw(st.integers(1, 4_000), label="amount")
            pending = data.draw(st.booleans(), label="pending")
            timeout = data.draw(st.sampled_from(TIMEOUTS_S), label="timeout") if pending else 0
            kind = TransferKind.DEPOSIT if debit == self.bank else data.draw(
                st.sampled_from([TransferKind.P2P, TransferKind.MERCHANT_PAYMENT, TransferKind.WITHDRAWAL]), label="kind")
            return Transfer(self.key(), debit, credit, amount, kind, channel=data.draw(st.sampled_from(Channel), label="channel"),
                            pending=pending, timeout_s=timeout, memo=data.draw(st.sampled_from(["", "bill 42"]), label="memo"))

        def draw_target(self, data: st.DataObject, best: Callable[[MRow], bool], fit: Callable[[MRow], bool]) -> int:
            """A transfer id: mostly the best kind, then one of the right kind, any row, or one that does not exist."""
            choice = data.draw(st.sampled_from(["best", "best", "best", "fit", "any", "missing"]), label="target")
            anything: Callable[[MRow], bool] = lambda r: True  # noqa: E731
            fallbacks = {"best": [best, fit, anything], "fit": [fit, anything], "any": [anything], "missing": []}[choice]
            for wanted in fallbacks:
                candidates = sorted(r.id for r in self.model.rows.values() if wanted(r))
                if candidates:
                    return data.draw(st.sampled_from(candidates), label="id")
            return MISSING_ID

        def draw_resolve(self, data: st.DataObject) -> PostPending | VoidPending:
            target = self.draw_target(data, lambda r: r.what == "pending" and r.state == "open", lambda r: r.what == "pending")
            make = data.draw(st.sampled_from([PostPending, VoidPending]), label="resolve")
            return make(self.key(), target, data.draw(st.sampled_from([Channel.BANK, Channel.SYSTEM]), label="channel"))

        def draw_reverse(self, data: st.DataObject) -> Reverse:
            target = self.draw_target(data, lambda r: r.what in ("single", "post") and not r.reversed,
                                      lambda r: r.what in ("single", "post"))
            return Reverse(self.key(), target, memo=data.draw(st.sampled_from(["", "wrong number"]), label="memo"))

        def draw_repeat(self, data: st.DataObject, avoid: AbstractSet[str]) -> Request | None:
            """An earlier request again, or another with its key; mostly one that was accepted."""
            accepted = [r for r, _ in self.model.keys.values() if r.idempotency_key not in avoid]
            earlier = [r for r in self.submitted if r.idempotency_key not in avoid]
            if accepted and data.draw(st.integers(0, 3), label="accepted?"):
                earlier = accepted
            if not earlier:
                return None
            old = data.draw(st.sampled_from(earlier), label="repeat")
            if data.draw(st.booleans(), label="same body"):
                return old
            if isinstance(old, Transfer):
                return replace(old, amount=old.amount + 1)
            if isinstance(old, Reverse):
                return replace(old, memo=old.memo + "!")
            return replace(old, channel=Channel.WEB)

        def draw_request(self, data: st.DataObject, avoid: AbstractSet[str] = frozenset()) -> Request:
            what = data.draw(st.sampled_from(["transfer", "transfer", "resolve", "reverse", "repeat"]), label="request")
            request: Request | None = None
            if what == "repeat":
                request = self.draw_repeat(data, avoid)
            elif what == "resolve":
                request = self.draw_resolve(data)
            elif what == "reverse":
                request = self.draw_reverse(data)
            if request is None:
                request = self.draw_transfer(data)
            self.submitted.append(request)
            return request

        def draw_failing(self, data: st.DataObject) -> Request:
            """A request bound to fail, whatever came before it in its chain."""
            how = data.draw(st.sampled_from(["funds", "resolved", "reversed", "missing"]), label="failing")
            spent = [r for r in self.model.rows.values() if r.what == "pending" and r.state != "open"]
            undone = [r for r in self.model.rows.values() if r.reversed]
            if how == "resolved" and spent:
                request: Request = PostPending(self.key(), data.draw(st.sampled_from(sorted(r.id for r in spent)), label="id"))
            elif how == "reversed" and undone:
                request = Reverse(self.key(), data.draw(st.sampled_from(sorted(r.id for r in undone)), label="id"))
            elif how == "missing":
                request = VoidPending(self.key(), MISSING_ID)
            else:
                payer = data.draw(st.sampled_from([i for i in self.others() if self.model.accounts[i].no_overdraft] or [None]),
                                  label="payer")
                if payer is None:
                    request = VoidPending(self.key(), MISSING_ID)
                else:
                    request = Transfer(self.key(), payer, self.bank, 10**9, TransferKind.WITHDRAWAL)
            self.submitted.append(request)
            return request

        # -- checking results against the model

        def check_one(self, req: Request, result: Result) -> None:
            plan = self.model.plan(req, self.clock.now_us)
            assert result.idempotency_key == req.idempotency_key
            if plan.duplicate_of is not None:
                assert result.ok and result.duplicate, result
                assert tuple(t.id for t in result.transfers) == plan.duplicate_of
                return
            if plan.reasons:
                assert result.error is not None, (req, result, plan.reasons)
                assert (result.error.reject_code, result.error.field) in plan.reasons, (req, str(result.error), plan.reasons)
                assert result.transfers == () and not result.duplicate
                return
            assert result.ok and not result.duplicate, (req, str(result.error))
            assert len(result.transfers) == 1, result
            row = result.transfer
            self.check_row(row, plan.shape, req.idempotency_key)
            assert plan.apply is not None
            plan.apply(row.id)
            self.model.keys[req.idempotency_key] = (req, (row.id,))

        def check_row(self, row: PostedTransfer, shape: dict[str, object], key: str) -> None:
            got = {name: getattr(row, name) for name in shape}
            assert got == shape, (row, shape)
            assert (row.idempotency_key, row.ts_us, row.currency, row.cause_id) == (key, self.clock.now_us, "CNY", None)
            assert row.id > self.max_id, f"transfer ids must increase: {row.id} after {self.max_id}"
            self.max_id = row.id

        def check_chain(self, chain: Linked, results: Sequence[Result]) -> None:
            trial = copy.deepcopy(self.model)
            failed: tuple[int, set[Reason]] | None = None
            for n, req in enumerate(chain.requests):
                plan = trial.plan(req, self.clock.now_us)
                if plan.reasons:
                    failed = (n, plan.reasons)
                    break
                if plan.apply is not None:
                    plan.apply(-1 - n)
                    trial.keys[req.idempotency_key] = (req, (-1 - n,))
            if failed is None:
                for req, result in zip(chain.requests, results, strict=True):
                    self.check_one(req, result)
                return
            for n, (req, result) in enumerate(zip(chain.requests, results, strict=True)):
                assert result.error is not None and result.transfers == (), (req, result)
                assert result.idempotency_key == req.idempotency_key
                if n == failed[0]:
                    assert (result.error.reject_code, result.error.field) in failed[1], (req, str(result.error), failed[1])
                else:
                    assert (result.error.reject_code, result.error.field) == (RejectCode.LINKED_EVENT_FAILED, "linked"), str(result.error)

        def post(self, items: list[Request | Linked]) -> None:
            results = self.ledger.post_batch(items)
            n = 0
            for item in items:
                if isinstance(item, Linked):
                    self.check_chain(item, results[n:n + len(item.requests)])
                    n += len(item.requests)
                else:
                    self.check_one(item, results[n])
                    n += 1
            assert n == len(results)

        def draw_chain(self, data: st.DataObject) -> Linked:
            members: list[Request] = []
            for _ in range(data.draw(st.integers(1, 3), label="chain length")):
                members.append(self.draw_request(data, avoid={m.idempotency_key for m in members}))
            if data.draw(st.booleans(), label="last fails"):
                members.append(self.draw_failing(data))
            return Linked(tuple(members))

        # -- rules

        @initialize(funds=st.lists(st.integers(5_000, 15_000), min_size=len(FIRST_ACCOUNTS), max_size=len(FIRST_ACCOUNTS)))
        def first_accounts(self, funds: list[int]) -> None:
            for kind, amount in zip(FIRST_ACCOUNTS, funds, strict=True):
                self.open_account(kind)
                self.deposit_to(max(self.model.accounts), amount)

        @precondition(lambda self: len(self.model.accounts) < ACCOUNTS_MAX)
        @rule(kind=st.sampled_from(["wallet", "wallet/machine", "wallet/basic", "merchant"]))
        def open_account(self, kind: str) -> None:
            n = len(self.model.accounts)
            tier = kind.partition("/")[2] or None
            account_kind = AccountKind.MERCHANT if kind == "merchant" else AccountKind.CUSTOMER_WALLET
            opened = self.ledger.open_account(account_kind, f"owner:{n}", tier=tier)
            assert (opened.kind, opened.tier, opened.balance) == (account_kind, tier, 0)
            self.model.accounts[opened.id] = MAccount(opened.id, tier, no_overdraft=True)

        @precondition(lambda self: len(self.model.accounts) > 1)
        @rule(data=st.data(), amount=st.integers(1, 10_000))
        def deposit(self, data: st.DataObject, amount: int) -> None:
            self.deposit_to(data.draw(st.sampled_from(self.others()), label="to"), amount)

        def deposit_to(self, account: int, amount: int) -> None:
            request = Transfer(self.key(), self.bank, account, amount, TransferKind.DEPOSIT, Channel.BANK)
            self.submitted.append(request)
            self.post([request])

        @precondition(lambda self: len(self.model.accounts) > 1)
        @rule(data=st.data())
        def transfer(self, data: st.DataObject) -> None:
            request = self.draw_transfer(data)
            self.submitted.append(request)
            self.post([request])

        @precondition(lambda self: len(self.model.rows) > 0)
        @rule(data=st.data())
        def resolve(self, data: st.DataObject) -> None:
            request = self.draw_resolve(data)
            self.submitted.append(request)
            self.post([request])

        @precondition(lambda self: len(self.model.rows) > 0)
        @rule(data=st.data())
        def reverse(self, data: st.DataObject) -> None:
            request = self.draw_reverse(data)
            self.submitted.append(request)
            self.post([request])

        @precondition(lambda self: len(self.submitted) > 0)
        @rule(data=st.data())
        def repeat(self, data: st.DataObject) -> None:
            request = self.draw_repeat(data, set())
            assert request is not None
            self.post([request])

        @precondition(lambda self: len(self.model.accounts) > 1)
        @rule(data=st.data())
        def linked(self, data: st.DataObject) -> None:
            self.post([self.draw_chain(data)])

        @precondition(lambda self: len(self.model.accounts) > 1)
        @rule(data=st.data(), size=st.integers(2, 6))
        def batch(self, data: st.DataObject, size: int) -> None:
            items: list[Request | Linked] = []
            for _ in range(size):
                if data.draw(st.integers(0, 3), label="linked?") == 0:
                    items.append(self.draw_chain(data))
                else:
                    items.append(self.draw_request(data))
            self.post(items)

        @rule(seconds=st.sampled_from(ADVANCES_S), sweep=st.booleans())
        def advance_and_expire(self, seconds: int, sweep: bool) -> None:
            """Time passes; the expiry sweep runs, or not yet (so that lapsed holds meet requests first)."""
            self.clock.now_us += seconds * SECOND_US
            if not sweep:
                return
            now = self.clock.now_us
            due = self.model.due(now)
            results = self.ledger.expire_due()
            assert [r.transfer.pending_id for r in results] == [h.id for h in due]
            for hold, result in zip(due, results, strict=True):
                assert not result.duplicate and len(result.transfers) == 1
                shape = {"phase": Phase.EXPIRE, "debit_account_id": hold.debit, "credit_account_id": hold.credit,
                         "amount": hold.amount, "kind": hold.kind, "channel": Channel.SYSTEM, "expires_us": None,
                         "pending_id": hold.id, "reverses_id": None, "memo": ""}
                self.check_row(result.transfer, shape, f"{hold.key}#expire")
                self.model.expire(hold, result.transfer.id, now)

        @precondition(lambda self: len(self.model.accounts) > 1)
        # Mostly reopening: a closed account stays closed, and frozen ones refuse most requests.
        @rule(data=st.data(), status=st.sampled_from([AccountStatus.OPEN] * 4 + [AccountStatus.FROZEN, AccountStatus.CLOSED]))
        def set_status(self, data: st.DataObject, status: AccountStatus) -> None:
            account = self.model.accounts[data.draw(st.sampled_from(self.others()), label="account")]
            expected: Reason | None = None
            if account.status == "closed":
                expected = (RejectCode.ACCOUNT_CLOSED, "status")
            elif status == AccountStatus.CLOSED and (account.balance or account.held_out or account.held_in):
                expected = (RejectCode.FIELD_INVALID, "status")
            try:
                got = self.ledger.set_status(account.id, status)
            except RequestError as exc:
                assert (exc.reject_code, exc.field) == expected, str(exc)
            else:
                assert expected is None and got.status == status
                account.status = status.value

        # -- invariants

        @invariant()
        def ledger_matches_the_model(self) -> None:
            report = verify_ledger(engine)
            assert report.ok, [(c.name, c.examples) for c in report.checks if not c.ok]
            got = {a.id: a for a in self.ledger.accounts(limit=ACCOUNTS_MAX + 1)}
            assert set(got) == set(self.model.accounts)
            for account_id, want in self.model.accounts.items():
                have = got[account_id]
                assert (have.credits_posted - have.debits_posted, have.debits_pending, have.credits_pending, have.status.value) == \
                    (want.balance, want.held_out, want.held_in, want.status), (have, want)
                if want.debit_normal:
                    assert (have.balance, have.available) == (-want.balance, -want.balance - want.held_in), (have, want)
                else:
                    assert (have.balance, have.available) == (want.balance, want.balance - want.held_out), (have, want)
            with engine.connect() as conn:
                n_rows = conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()
                open_holds = set(conn.execute(sa.select(holds.c.transfer_id)).scalars())
            assert (n_rows, report.transfers) == (self.model.n_rows, self.model.n_rows)
            assert open_holds == self.model.open_holds()

    return LedgerMachine


SETTINGS = {
    "sqlite": settings(max_examples=40, stateful_step_count=30, deadline=None),
    "postgresql": settings(max_examples=25, stateful_step_count=30, deadline=None),
}


def test_ledger_agrees_with_the_model(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        Ledger(engine).set_tier(MACHINE_TIER)
        run_state_machine_as_test(machine_for(engine), settings=SETTINGS[engine.dialect.name])
    finally:
        engine.dispose()


def test_model_calendar_is_beijing_time() -> None:
    # The model's own calendar, checked against two known local midnights.
    assert local_day(T0_US + 3 * 3_600 * SECOND_US - 1) + 1 == local_day(T0_US + 3 * 3_600 * SECOND_US)
    assert (local_month(T0_US), local_month(T0_US + 3 * 3_600 * SECOND_US)) == ((2026, 3), (2026, 4))


@pytest.mark.parametrize("fen", [1, 99, 100])
def test_model_plans_a_simple_payment(fen: int) -> None:
    # A smoke test of the model alone, so that a broken model is not mistaken for a broken ledger.
    model = Model()
    model.accounts = {1: MAccount(1, None, no_overdraft=False), 2: MAccount(2, "machine", no_overdraft=True)}
    plan = model.plan(Transfer("a", 1, 2, fen, TransferKind.DEPOSIT), T0_US)
    assert not plan.reasons and plan.apply is not None
    plan.apply(7)
    assert (model.accounts[1].balance, model.accounts[2].balance, model.n_rows) == (-fen, fen, 1)
    refused = model.plan(Transfer("b", 2, 1, fen + 1, TransferKind.WITHDRAWAL), T0_US)
    assert refused.reasons == {(RejectCode.EXCEEDS_CREDITS, "debit_account")}
