"""The ledger's database driver: one batch of requests, one database transaction.

Theory of operation. :meth:`Ledger.post_batch` runs, inside one transaction:

1. load the transfers the requests refer to (holds to post or void, transfers
   to reverse, the bonuses they caused) — immutable rows, read without locks;
2. find the accounts that campaign rules may reward (immutable columns);
3. lock every account row involved with ``SELECT … ORDER BY id FOR UPDATE``:
   all batches take locks in the same global order, so they never deadlock on
   accounts; then the rows of the campaigns and their usage counters, also in
   a fixed order;
4. read, now that the locks are held, which idempotency keys exist and which
   holds and transfers were already resolved or reversed;
5. apply the requests in memory (:class:`~.posting.Workspace`);
6. draw transfer ids (still under the locks, so that ids increase along each
   account's history), insert the rows, update the account and campaign rows,
   and commit.

SQLite serialises writers with ``BEGIN IMMEDIATE`` instead of row locks.
A unique-key race (two batches inserting the same idempotency key at once),
a PostgreSQL deadlock or serialization failure, or a busy SQLite file rolls
the transaction back and runs it again, a bounded number of times.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.limits import Spent, Tier
from simwallet.gateway.ledger.model import (
    ACCOUNT_REF_LEN_MAX,
    DEFAULT_FLAGS,
    Account,
    AccountFlags,
    AccountKind,
    AccountStatus,
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
from simwallet.gateway.ledger.posting import AccountRow, CampaignState, Grant, References, Workspace
from simwallet.gateway.ledger.rows import (
    HistoryLine,
    Sums,
    account_clause,
    account_in,
    copy_rows,
    recompute_sums,
    row_to_account,
    row_to_transfer,
)
from simwallet.gateway.promotions.rules import CampaignRule, Usage
from simwallet.gateway.store.schema import accounts, campaign_events, campaign_usage, campaigns, holds, product_tiers, transfers
from simwallet.gateway.store.sql import one_of
from simwallet.gateway.store.tx import run_in_transaction

# Requests in one batch: bounds the locks one transaction holds and the size of
# its statements; the gateway's window of outstanding messages is far smaller.
BATCH_LEN_MAX = 10_000
# Attempts of one batch transaction before a conflict is reported as an error.
TX_ATTEMPTS_MAX = 12
# First back-off after a conflict; doubles per attempt, with jitter.
TX_BACKOFF_S = 0.002
# Holds expired per sweep transaction.
EXPIRE_BATCH_MAX = 1_000
# How far ahead of a batch's first clock reading a campaign counts as possibly in its window.
CAMPAIGN_LOOKAHEAD_US = 24 * 3600 * 1_000_000
# History rows per page.
HISTORY_LIMIT_MAX = 10_000

T = TypeVar("T")



def wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class AccountSpec:
    """What it takes to open an account."""

    kind: AccountKind
    owner: str
    ref: str | None = None
    currency: str = "CNY"
    flags: AccountFlags | None = None
    tier: str | None = None


def _bounded(items: Iterable[Request | Linked]) -> list[Request]:
    """The requests of a batch, linked members included; at most :data:`BATCH_LEN_MAX` of them."""
    requests: list[Request] = []
    for item in items:
        requests.extend(item.requests if isinstance(item, Linked) else (item,))
    if len(requests) > BATCH_LEN_MAX:
        raise RequestError(RejectCode.FIELD_INVALID, "batch", f"a batch holds at most {BATCH_LEN_MAX} requests")
    return requests



class Ledger:
    """Double-entry ledger over a SQLAlchemy engine (SQLite or PostgreSQL).

    ``clock`` returns microseconds since the epoch (UTC); ``rng`` jitters
    retries. Both are injected so that tests control time without patching.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], int] = wall_clock_us, rng: random.Random | None = None) -> None:
        self.engine = engine
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._pg = engine.dialect.name == "postgresql"
        self._rules: dict[str, tuple[str, CampaignRule]] = {}

    # -- transactions ----------------------------------------------------------

    def _in_tx(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a write transaction, again after a retryable conflict."""
        return run_in_transaction(
            self.engine, work, attempts_max=TX_ATTEMPTS_MAX, backoff_s=TX_BACKOFF_S, what="transaction", rng=self._rng
        )

    def _read(self) -> sa.Connection:
        return self.engine.connect().execution_options(simwallet_readonly=True)

    # -- accounts ----------------------------------------------------------------

    def open_account(self, kind: AccountKind | str, owner: str, *, ref: str | None = None, currency: str = "CNY",
                     flags: AccountFlags | None = None, tier: str | None = None) -> Account:
        return self.open_accounts([AccountSpec(AccountKind(kind), owner, ref, currency, flags, tier)])[0]

    def open_accounts(self, specs: Sequence[AccountSpec]) -> list[Account]:
        """Open many accounts in one transaction; refuses the lot if one is invalid or exists."""
        now = self._clock()
        rows = [self._account_row(spec, now) for spec in specs]
        refs = [row["ref"] for row in rows]
        if len(set(refs)) != len(refs):
            raise RequestError(RejectCode.ACCOUNT_EXISTS, "ref", "the same account reference is given twice")

        def work(conn: sa.Connection) -> list[Account]:
            tiers = self._tiers(conn)
            for row in rows:
                if row["tier"] is not None and row["tier"] not in tiers:
                    raise RequestError(RejectCode.FIELD_INVALID, "tier", f"no product tier {row['tier']!r}")
            taken = conn.execute(sa.select(accounts.c.ref).where(accounts.c.ref.in_(refs))).scalars().first()
            if taken is not None:
                raise RequestError(RejectCode.ACCOUNT_EXISTS, "ref", f"account {taken} exists")
            for chunk in _chunks(rows, 5000):
                conn.execute(accounts.insert(), chunk)
            found = conn.execute(sa.select(accounts).where(accounts.c.ref.in_(refs))).all()
            by_ref = {r.ref: row_to_account(r) for r in found}
            return [by_ref[ref] for ref in refs]

        return self._in_tx(work)

    @staticmethod
    def _account_row(spec: AccountSpec, now: int) -> dict[str, Any]:
        kind = AccountKind(spec.kind)
        if not spec.owner or len(spec.owner) > 64 or not spec.owner.isprintable():
            raise RequestError(RejectCode.FIELD_INVALID, "owner", "owner must be 1..64 printable characters")
        ref = spec.ref or f"{spec.owner}/{kind.value}"
        if not 0 < len(ref) <= ACCOUNT_REF_LEN_MAX or not ref.isprintable() or ref.isdigit():
            raise RequestError(RejectCode.FIELD_INVALID, "ref",
                f"reference must be 1..{ACCOUNT_REF_LEN_MAX} printable characters, not all digits")
        if spec.currency != "CNY":
            raise RequestError(RejectCode.CURRENCY_MISMATCH, "currency", f"unsupported currency {spec.currency!r}")
        flags = spec.flags if spec.flags is not None else DEFAULT_FLAGS.get(kind, AccountFlags.NONE)
        if flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS:
            raise RequestError(RejectCode.FIELD_INVALID, "flags", "an account cannot forbid both directions")
        if spec.tier is not None and kind != AccountKind.CUSTOMER_WALLET:
            raise RequestError(RejectCode.FIELD_INVALID, "tier", "only customer wallets have a product tier")
        return {"ref": ref, "kind": kind.value, "currency": spec.currency, "flags": int(flags),
                "status": AccountStatus.OPEN.value, "owner": spec.owner, "tier": spec.tier, "created_us": now}

    def account(self, ref: int | str) -> Account:
        with self._read() as conn:
            return account_in(conn, ref)

    def accounts(self, *, owner: str | None = None, kind: AccountKind | None = None, limit: int = 100,
                 after_id: int = 0) -> list[Account]:
        query = sa.select(accounts).where(accounts.c.id > after_id).order_by(accounts.c.id).limit(min(limit, HISTORY_LIMIT_MAX))
        if owner is not None:
            query = query.where(accounts.c.owner == owner)
        if kind is not None:
            query = query.where(accounts.c.kind == AccountKind(kind).value)
        with self._read() as conn:
            return [row_to_account(r) for r in conn.execute(query)]

    def set_status(self, ref: int | str, status: AccountStatus) -> Account:
        """Freeze, unfreeze or close an account. Closing needs a zero balance and no holds; it is final."""
        status = AccountStatus(status)

        def work(conn: sa.Connection) -> Account:
            row = conn.execute(self._lock(sa.select(accounts).where(account_clause(ref)))).first()
            if row is None:
                raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, "account", f"no account {ref!r}")
            if row.status == AccountStatus.CLOSED.value:
                raise RequestError(RejectCode.ACCOUNT_CLOSED, "status", f"account {row.ref} is closed for good")
            if status == AccountStatus.CLOSED and (
                    row.debits_posted != row.credits_posted or row.debits_pending or row.credits_pending):
                raise RequestError(RejectCode.FIELD_INVALID, "status", f"account {row.ref} still has a balance or holds")
            conn.execute(accounts.update().where(accounts.c.id == row.id).values(status=status.value))
            return row_to_account(conn.execute(sa.select(accounts).where(accounts.c.id == row.id)).one())

        return self._in_tx(work)

    # -- product tiers -----------------------------------------------------------

    def _tiers(self, conn: sa.Connection) -> dict[str, Tier]:
        return {r.name: Tier(r.name, r.per_txn_max, r.per_day_max, r.per_month_max, r.balance_max, r.description)
                for r in conn.execute(sa.select(product_tiers))}

    def tiers(self) -> list[Tier]:
        with self._read() as conn:
            return sorted(self._tiers(conn).values(), key=lambda t: t.name)

    def set_tier(self, tier: Tier) -> None:
        """Create or change a product tier's limits."""
        if not tier.name or len(tier.name) > 32:
            raise RequestError(RejectCode.FIELD_INVALID, "tier", "tier name must be 1..32 characters")
        if len(tier.description) > 128:
            raise RequestError(RejectCode.FIELD_INVALID, "description", "tier description must be at most 128 characters")
        for name in ("per_txn_max", "per_day_max", "per_month_max", "balance_max"):
            value = getattr(tier, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise RequestError(RejectCode.FIELD_INVALID, f"limit.{name}", "a limit is a positive amount or none")
        values = {"per_txn_max": tier.per_txn_max, "per_day_max": tier.per_day_max, "per_month_max": tier.per_month_max,
                  "balance_max": tier.balance_max, "description": tier.description}

        def work(conn: sa.Connection) -> None:
            if conn.execute(sa.select(product_tiers.c.name).where(product_tiers.c.name == tier.name)).first():
                conn.execute(product_tiers.update().where(product_tiers.c.name == tier.name).values(**values))
            else:
                conn.execute(product_tiers.insert().values(name=tier.name, **values))

        self._in_tx(work)

    # -- posting -----------------------------------------------------------------

    def post_one(self, request: Request) -> PostedTransfer:
        """Post one request and return its transfer, raising its :class:`RequestError` if refused."""
        return self.post_batch([request])[0].transfer

    def post_batch(self, items: Sequence[Request | Linked]) -> list[Result]:
        """Post many requests in one database transaction.

        Returns one :class:`Result` per request, linked members included, in
        order. A refused request is reported in its result and writes nothing;
        the others are committed. Safe to call again with the same requests:
        their idempotency keys make the second call return the first results.
        """
        requests = _bounded(items)
        return self._in_tx(lambda conn: self._post(conn, list(items), requests, [])) if requests else []

    def post_batch_in(self, conn: sa.Connection, items: Sequence[Request | Linked]) -> list[Result]:
        """:meth:`post_batch` inside the caller's write transaction on this ledger's engine.

        For a service whose own writes (replies, counters) must commit with the
        postings or not at all. The caller runs the transaction again after a
        retryable conflict (``store.tx.run_in_transaction``); the account locks are
        taken here, after whatever the caller locked before.
        """
        requests = _bounded(items)
        return self._post(conn, list(items), requests, []) if requests else []

    def expire_due(self, limit: int = EXPIRE_BATCH_MAX) -> list[Result]:
        """Expire holds whose timeout has passed; returns one result per hold expired."""

        def work(conn: sa.Connection) -> list[Result]:
            due = conn.execute(sa.select(holds.c.transfer_id).where(holds.c.expires_us <= self._clock())
                               .order_by(holds.c.expires_us, holds.c.transfer_id).limit(min(limit, EXPIRE_BATCH_MAX))).scalars().all()
            return self._post(conn, [], [], list(due)) if due else []

        return self._in_tx(work)

    def _post(self, conn: sa.Connection, items: list[Request | Linked], requests: list[Request],
              expire_ids: list[int]) -> list[Result]:
        refs = References()
        # 1. Transfers referred to, the bonuses they caused and their grants.
        referred = self._load_referred(conn, requests, expire_ids, refs)
        account_ids, account_refs = _accounts_named(requests, refs)
        # 2. Campaigns this batch may touch, and the accounts they may reward.
        active = self._active_campaigns(conn, self._clock(), requests, refs)
        if active:
            self._reward_accounts(conn, active, account_ids, account_refs, refs)
            account_ids.update(refs.owner_accounts.values())
            account_ids.update(source_id for _, source_id in active.values())
        # 3. Lock accounts in id order, then campaigns and usage rows.
        rows = self._lock_accounts(conn, account_ids, account_refs)
        states = self._lock_campaigns(conn, active, rows) if active else {}
        # 4. Idempotency keys, resolutions and reversals, read under the locks.
        self._load_existing(conn, [r.idempotency_key for r in requests], refs)
        self._load_resolutions(conn, referred, refs)
        # 5. Apply, drawing transfer ids and reading the clock while the locks are held: along
        # each account, ids and times then increase together (as far as the clock does).
        now = self._clock()
        original = {i: _sums_of(r) for i, r in rows.items()}
        pool = _IdPool(lambda n, last: self._draw_ids(conn, n, last), len(requests) * (1 + len(states)) + len(expire_ids))
        space = Workspace(rows, {row.ref: row.id for row in rows.values()}, self._tiers(conn), states, refs, now, pool.next)
        results: list[Result] = []
        for item in items:
            results.extend(space.apply(item))
        for pending_id in expire_ids:
            if pending_id in refs.transfers and pending_id not in refs.resolved:
                results.append(space.expire(pending_id))
        # 6. Write.
        self._write(conn, space, original)
        return results

    @staticmethod
    def _load_referred(conn: sa.Connection, requests: list[Request], expire_ids: list[int], refs: References) -> set[int]:
        referred = {r.pending_id for r in requests if isinstance(r, PostPending | VoidPending)}
        reversing = [r.transfer_id for r in requests if isinstance(r, Reverse)]
        referred |= set(reversing) | set(expire_ids)
        if referred:
            for row in conn.execute(sa.select(transfers).where(transfers.c.id.in_(referred))):
                refs.transfers[row.id] = row_to_transfer(row)
            # A posted hold's spending counted when the hold was placed: a reversal needs that time.
            holds_of_posts = {t.pending_id for t in refs.transfers.values() if t.phase == Phase.POST and t.pending_id}
            if holds_of_posts:
                for row in conn.execute(sa.select(transfers).where(transfers.c.id.in_(holds_of_posts))):
                    refs.transfers.setdefault(row.id, row_to_transfer(row))
        if reversing:
            for row in conn.execute(sa.select(transfers).where(transfers.c.cause_id.in_(reversing),
                                                               transfers.c.kind == TransferKind.PROMOTION_BONUS.value)):
                refs.caused.setdefault(row.cause_id, []).append(row_to_transfer(row))
            for ev in conn.execute(sa.select(campaign_events).where(campaign_events.c.transfer_id.in_(reversing),
                                                                   campaign_events.c.outcome == "granted")):
                refs.grants.setdefault(ev.transfer_id, []).append(Grant(ev.campaign_id, ev.bonus_id, ev.amount, ev.period_key))
        return referred

    @staticmethod
    def _load_resolutions(conn: sa.Connection, referred: set[int], refs: References) -> None:
        if not referred:
            return
        pending_ids = [i for i in referred if i in refs.transfers and refs.transfers[i].phase == Phase.PENDING]
        if pending_ids:
            for pid, phase in conn.execute(sa.select(transfers.c.pending_id, transfers.c.phase)
                                           .where(transfers.c.pending_id.in_(pending_ids))):
                refs.resolved[pid] = Phase(phase)
        rev_ids = list(referred) + [c.id for cs in refs.caused.values() for c in cs]
        refs.reversed = set(conn.execute(sa.select(transfers.c.reverses_id).where(transfers.c.reverses_id.in_(rev_ids))).scalars())

    def _lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if self._pg else query

    def _in(self, column: sa.Column[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
        return one_of(self.engine.dialect, column, values)

    def _lock_accounts(self, conn: sa.Connection, ids: set[int], refs: set[str]) -> dict[int, AccountRow]:
        if not ids and not refs:
            return {}
        clauses = []
        if ids:
            clauses.append(self._in(accounts.c.id, ids))
        if refs:
            clauses.append(self._in(accounts.c.ref, refs))
        c = accounts.c
        query = self._lock(sa.select(
            c.id, c.ref, c.kind, c.currency, c.flags, c.status, c.owner, c.tier, c.debits_pending, c.debits_posted,
            c.credits_pending, c.credits_posted, c.spent_day_key, c.spent_day, c.spent_month_key, c.spent_month,
        ).where(sa.or_(*clauses)).order_by(c.id))
        # The hot path of every batch: plain tuples, and enum members by dict lookup.
        return {r[0]: AccountRow(r[0], r[1], _KINDS[r[2]], r[3], r[4], _STATUSES[r[5]], r[6], r[7],
                                 r[8], r[9], r[10], r[11], Spent(r[12], r[13], r[14], r[15]))
                for r in conn.execute(query).all()}

    def _load_existing(self, conn: sa.Connection, keys: list[str], refs: References) -> None:
        if not keys:
            return
        found = {row.id: row for row in conn.execute(sa.select(transfers).where(self._in(transfers.c.idempotency_key, keys)))}
        if not found:
            return
        caused: dict[int, list[PostedTransfer]] = {}
        for row in conn.execute(sa.select(transfers).where(self._in(transfers.c.cause_id, found)).order_by(transfers.c.id)):
            caused.setdefault(row.cause_id, []).append(row_to_transfer(row))
        for row in found.values():
            refs.existing[row.idempotency_key] = (row.body_hash, [row_to_transfer(row), *caused.get(row.id, [])])

    def _draw_ids(self, conn: sa.Connection, n: int, last: int) -> list[int]:
        if self._pg:
            drawn = conn.execute(sa.text("SELECT nextval('transfer_id_seq') FROM generate_series(1, :n)"), {"n": n}).scalars()
            return sorted(drawn)
        top = max(last, conn.execute(sa.select(sa.func.coalesce(sa.func.max(transfers.c.id), 0))).scalar_one())
        return list(range(top + 1, top + 1 + n))

    def _write(self, conn: sa.Connection, space: Workspace, original: dict[int, Sums]) -> None:
        if space.new_rows:
            self._insert_transfers(conn, [{
                "id": t.id, "idempotency_key": t.idempotency_key, "body_hash": space.digest_of(t.id),
                "debit_account_id": t.debit_account_id, "credit_account_id": t.credit_account_id, "amount": t.amount,
                "currency": t.currency, "kind": t.kind.value, "channel": t.channel.value, "phase": t.phase.value,
                "ts_us": t.ts_us, "pending_id": t.pending_id, "reverses_id": t.reverses_id, "cause_id": t.cause_id,
                "expires_us": t.expires_us, "memo": t.memo,
            } for t in space.new_rows])
        if space.new_holds:
            conn.execute(holds.insert(), [{"transfer_id": i, "expires_us": e} for i, e in space.new_holds.items()])
        if space.closed_holds:
            conn.execute(holds.delete().where(holds.c.transfer_id.in_(space.closed_holds)))
        changed = [row for i, row in space.accounts.items() if _sums_of(row) != original[i]]
        if changed:
            self._update_accounts(conn, [{
                "id": r.id, "debits_pending": r.debits_pending, "debits_posted": r.debits_posted,
                "credits_pending": r.credits_pending, "credits_posted": r.credits_posted,
                "spent_day_key": r.spent.day_key, "spent_day": r.spent.day, "spent_month_key": r.spent.month_key,
                "spent_month": r.spent.month,
            } for r in changed])
        if space.events:
            conn.execute(campaign_events.insert(), [{
                "campaign_id": e.campaign_id, "owner": e.owner, "transfer_id": e.transfer_id,
                "outcome": e.outcome, "bonus_id": e.bonus_id, "amount": e.amount, "period_key": e.period_key,
                "ts_us": e.ts_us,
            } for e in space.events])
            touched = {e.campaign_id for e in space.events}
            for cid in touched:
                state = space.campaigns[cid]
                conn.execute(campaigns.update().where(campaigns.c.id == cid).values(
                    granted_count=state.granted_count, granted_fen=state.granted_fen))
            owners = {(e.campaign_id, e.owner) for e in space.events}
            conn.execute(campaign_usage.update().where(
                campaign_usage.c.campaign_id == sa.bindparam("b_cid"), campaign_usage.c.owner == sa.bindparam("b_owner"),
            ).values(total_count=sa.bindparam("b_total"), period_key=sa.bindparam("b_pk"), period_count=sa.bindparam("b_pc")), [
                {"b_cid": cid, "b_owner": owner, "b_total": u.total_count, "b_pk": u.period_key, "b_pc": u.period_count}
                for cid, owner in sorted(owners)
                for u in [space.campaigns[cid].usage.get(owner, Usage(0, None, 0))]
            ])

    def _insert_transfers(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not self._pg:
            conn.execute(transfers.insert(), rows)
            return
        # COPY inside the batch's transaction: the fastest bulk insert PostgreSQL has.
        copy_rows(conn, "transfers", rows)

    def _update_accounts(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        columns = [c for c in rows[0] if c != "id"]
        if not self._pg:
            conn.execute(accounts.update().where(accounts.c.id == sa.bindparam("b_id")).values(
                {c: sa.bindparam(f"b_{c}") for c in columns}), [{f"b_{k}": v for k, v in row.items()} for row in rows])
            return
        # COPY the new sums into a per-connection temporary table, then one UPDATE … FROM:
        # COPY's row writer is far cheaper than binding thousands of array elements.
        # (The engine creates account_sums on every new PostgreSQL connection: see store/engine.py.)
        copy_rows(conn, "account_sums", rows)
        sets = ", ".join(f"{c} = v.{c}" for c in columns)
        # Column names come from the fixed row layout, never from input.
        conn.exec_driver_sql(f"UPDATE accounts SET {sets} FROM account_sums AS v WHERE accounts.id = v.id")  # noqa: S608

    # -- campaigns inside a batch ------------------------------------------------

    def _active_campaigns(self, conn: sa.Connection, now: int, requests: list[Request],
                          refs: References) -> dict[str, tuple[CampaignRule, int]]:
        """Campaigns this batch may touch: active ones its postings might trigger, and those whose
        grants it reverses (even if stopped since). Maps id -> (rule, source account id)."""
        kinds = {r.kind for r in requests if isinstance(r, Transfer) and not r.pending}
        kinds |= {refs.transfers[r.pending_id].kind for r in requests
                  if isinstance(r, PostPending) and r.pending_id in refs.transfers}
        revoking = {g.campaign_id for gs in refs.grants.values() for g in gs}
        if not kinds and not revoking:
            return {}
        query = sa.select(campaigns.c.id, campaigns.c.rule_json, campaigns.c.source_account_id, campaigns.c.status)
        query = query.where(sa.or_(campaigns.c.status == "active", campaigns.c.id.in_(revoking)))
        out: dict[str, tuple[CampaignRule, int]] = {}
        for cid, rule_json, source_id, status in conn.execute(query):
            cached = self._rules.get(cid)
            if cached is None or cached[0] != rule_json:
                cached = (rule_json, CampaignRule.from_mapping(json.loads(rule_json)))
                self._rules[cid] = cached
            rule = cached[1]
            # The batch's time is read later, under the locks: take a campaign that starts
            # within a day too; the workspace checks each posting's own time.
            soon = rule.in_window(now) or rule.in_window(now + CAMPAIGN_LOOKAHEAD_US)
            triggered = status == "active" and rule.trigger.kind in kinds and soon
            if triggered or cid in revoking:
                out[cid] = (rule, source_id)
        return out

    def _reward_accounts(self, conn: sa.Connection, active: dict[str, tuple[CampaignRule, int]], account_ids: set[int],
                         account_refs: set[str], refs: References) -> None:
        clauses = []
        if account_ids:
            clauses.append(accounts.c.id.in_(account_ids))
        if account_refs:
            clauses.append(accounts.c.ref.in_(account_refs))
        if not clauses:
            return
        customer_kinds = (AccountKind.CUSTOMER_WALLET.value, AccountKind.CUSTOMER_AIRTIME.value, AccountKind.POINTS.value)
        owners = set(conn.execute(sa.select(accounts.c.owner).where(sa.or_(*clauses), accounts.c.kind.in_(customer_kinds))).scalars())
        target_kinds = {rule.reward.target_account_kind.value for rule, _ in active.values()}
        if not owners:
            return
        for row in conn.execute(sa.select(accounts.c.id, accounts.c.owner, accounts.c.kind, accounts.c.currency)
                                .where(accounts.c.owner.in_(owners), accounts.c.kind.in_(target_kinds))):
            refs.owner_accounts[(row.owner, row.kind, row.currency)] = row.id

    def _lock_campaigns(self, conn: sa.Connection, active: dict[str, tuple[CampaignRule, int]],
                        rows: dict[int, AccountRow]) -> dict[str, CampaignState]:
        customer_kinds = {AccountKind.CUSTOMER_WALLET, AccountKind.CUSTOMER_AIRTIME, AccountKind.POINTS}
        owners = sorted({row.owner for row in rows.values() if row.kind in customer_kinds})
        states: dict[str, CampaignState] = {}
        for row in conn.execute(self._lock(sa.select(campaigns).where(campaigns.c.id.in_(active)).order_by(campaigns.c.id))):
            rule, source_id = active[row.id]
            states[row.id] = CampaignState(rule, source_id, row.granted_count, row.granted_fen)
        if owners:
            pairs = [{"campaign_id": cid, "owner": owner, "total_count": 0, "period_count": 0}
                     for cid in sorted(states) for owner in owners]
            insert = (postgresql.insert if self._pg else sqlite.insert)(campaign_usage)
            conn.execute(insert.on_conflict_do_nothing(), pairs)
            query = self._lock(sa.select(campaign_usage).where(campaign_usage.c.campaign_id.in_(states),
                                                               campaign_usage.c.owner.in_(owners))
                               .order_by(campaign_usage.c.campaign_id, campaign_usage.c.owner))
            for u in conn.execute(query):
                states[u.campaign_id].usage[u.owner] = Usage(u.total_count, u.period_key, u.period_count)
        return states

    # -- reading -----------------------------------------------------------------

    def transfer(self, transfer_id: int) -> PostedTransfer:
        with self._read() as conn:
            row = conn.execute(sa.select(transfers).where(transfers.c.id == transfer_id)).first()
        if row is None:
            raise RequestError(RejectCode.TRANSFER_NOT_FOUND, "transfer_id", f"no transfer {transfer_id}")
        return row_to_transfer(row)

    def transfer_by_key(self, key: str) -> PostedTransfer | None:
        with self._read() as conn:
            row = conn.execute(sa.select(transfers).where(transfers.c.idempotency_key == key)).first()
        return row_to_transfer(row) if row is not None else None

    def sums_as_of(self, ref: int | str, *, transfer_id: int | None = None, ts_us: int | None = None) -> Sums:
        """An account's sums recomputed from its transfers up to and including a transfer id or a time."""
        account = self.account(ref)
        with self._read() as conn:
            return recompute_sums(conn, [account.id], upto_id=transfer_id, upto_ts_us=ts_us).get(account.id, Sums())

    def history(self, ref: int | str, *, limit: int = 50, before_id: int | None = None,
                conn: sa.Connection | None = None) -> list[HistoryLine]:
        """An account's transfers, newest first, with the posted balance after each (``conn``: in the caller's transaction)."""
        if conn is None:
            with self._read() as own:
                return self.history(ref, limit=limit, before_id=before_id, conn=own)
        account = account_in(conn, ref)
        side = sa.or_(transfers.c.debit_account_id == account.id, transfers.c.credit_account_id == account.id)
        query = sa.select(transfers).where(side).order_by(transfers.c.id.desc()).limit(min(limit, HISTORY_LIMIT_MAX))
        if before_id is not None:
            query = query.where(transfers.c.id < before_id)
        rows = [row_to_transfer(r) for r in conn.execute(query)]
        if not rows:
            return []
        sums = recompute_sums(conn, [account.id], upto_id=rows[0].id).get(account.id, Sums())
        sign = -1 if account.debit_normal else 1
        balance = sign * (sums.credits_posted - sums.debits_posted)
        out = []
        for t in rows:
            direction = "debit" if t.debit_account_id == account.id else "credit"
            out.append(HistoryLine(t, direction, balance))
            if t.phase in (Phase.SINGLE, Phase.POST):
                balance -= sign * (t.amount if direction == "credit" else -t.amount)
        return out


class _IdPool:
    """Transfer ids drawn from the database in blocks, handed out one at a time.

    ``draw(n, last)`` returns ``n`` increasing ids above ``last``, the last id
    this pool handed out (SQLite draws above ``max(id)``, which does not yet
    include the rows of the batch being applied).
    """

    def __init__(self, draw: Callable[[int, int], list[int]], expected: int) -> None:
        self._draw = draw
        self._block = max(expected, 1)
        self._ids: list[int] = []
        self._last = 0

    def next(self) -> int:
        if not self._ids:
            self._ids = self._draw(self._block, self._last)[::-1]
        self._last = self._ids.pop()
        return self._last


def _accounts_named(requests: list[Request], refs: References) -> tuple[set[int], set[str]]:
    """The account ids and references a batch names, directly or through the transfers it refers to."""
    ids: set[int] = set()
    names: set[str] = set()
    for r in requests:
        if isinstance(r, Transfer):
            for ref in (r.debit_account, r.credit_account):
                if isinstance(ref, int):
                    ids.add(ref)
                else:
                    names.add(ref)
    for t in (*refs.transfers.values(), *(c for cs in refs.caused.values() for c in cs)):
        ids.update((t.debit_account_id, t.credit_account_id))
    return ids, names


def _sums_of(row: AccountRow) -> Sums:
    return Sums(row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted)


_KINDS = {k.value: k for k in AccountKind}
_STATUSES = {s.value: s for s in AccountStatus}


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


