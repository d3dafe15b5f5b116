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

The statements of steps 1-4 and 6 are :class:`~.batch_sql.BatchSql`'s.
SQLite serialises writers with ``BEGIN IMMEDIATE`` instead of row locks.
A unique-key race (two batches inserting the same idempotency key at once),
a PostgreSQL deadlock or serialization failure, or a busy SQLite file rolls
the transaction back and runs it again, a bounded number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.batch_sql import BatchSql, IdPool, accounts_named, sums_of
from simwallet.gateway.ledger.limits import Tier
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
    Request,
    Result,
)
from simwallet.gateway.ledger.posting import References, Workspace
from simwallet.gateway.ledger.rows import (
    HistoryLine,
    Sums,
    account_clause,
    account_in,
    recompute_sums,
    row_to_account,
    row_to_transfer,
)
from simwallet.gateway.store.schema import accounts, holds, product_tiers, transfers
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
        self._sql = BatchSql(engine.dialect)

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
            row = conn.execute(self._sql.lock(sa.select(accounts).where(account_clause(ref)))).first()
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
        sql, refs = self._sql, References()
        # 1. Transfers referred to, the bonuses they caused and their grants.
        referred = sql.load_referred(conn, requests, expire_ids, refs)
        account_ids, account_refs = accounts_named(requests, refs)
        # 2. Campaigns this batch may touch, and the accounts they may reward.
        active = sql.active_campaigns(conn, self._clock(), requests, refs)
        if active:
            sql.reward_accounts(conn, active, account_ids, account_refs, refs)
            account_ids.update(refs.owner_accounts.values())
            account_ids.update(source_id for _, source_id in active.values())
        # 3. Lock accounts in id order, then campaigns and usage rows.
        rows = sql.lock_accounts(conn, account_ids, account_refs)
        states = sql.lock_campaigns(conn, active, rows) if active else {}
        # 4. Idempotency keys, resolutions and reversals, read under the locks.
        sql.load_existing(conn, [r.idempotency_key for r in requests], refs)
        sql.load_resolutions(conn, referred, refs)
        # 5. Apply, drawing transfer ids and reading the clock while the locks are held: along
        # each account, ids and times then increase together (as far as the clock does).
        now = self._clock()
        original = {i: sums_of(r) for i, r in rows.items()}
        pool = IdPool(lambda n, last: sql.draw_ids(conn, n, last), len(requests) * (1 + len(states)) + len(expire_ids))
        space = Workspace(rows, {row.ref: row.id for row in rows.values()}, self._tiers(conn), states, refs, now, pool.next)
        results: list[Result] = []
        for item in items:
            results.extend(space.apply(item))
        for pending_id in expire_ids:
            if pending_id in refs.transfers and pending_id not in refs.resolved:
                results.append(space.expire(pending_id))
        # 6. Write.
        sql.write(conn, space, original)
        return results

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



def _chunks(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


