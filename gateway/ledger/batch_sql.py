"""The statements of one ledger batch: what :class:`~simwallet.gateway.ledger.ledger.Ledger` reads, locks and writes in its transaction.

Spec: none beyond SQL; the orchestration (which step comes when, and why in
that order) is in :mod:`simwallet.gateway.ledger.ledger`'s docstring.

Theory of operation
-------------------
:class:`BatchSql` holds one engine's statements for the steps of a batch, on
the connection of the batch's transaction:

* reads of immutable rows without locks (:meth:`~BatchSql.load_referred`,
  the accounts campaigns may reward in :meth:`~BatchSql.reward_accounts`,
  the campaigns in :meth:`~BatchSql.active_campaigns`, whose parsed rules it
  keeps between batches, keyed by the stored JSON);
* the locks, always in the same global order: account rows by id
  (:meth:`~BatchSql.lock_accounts`), then campaign rows by id and their usage
  rows by (campaign, owner) (:meth:`~BatchSql.lock_campaigns`). PostgreSQL
  takes ``FOR UPDATE`` row locks; SQLite has serialised the writer with
  ``BEGIN IMMEDIATE`` already, so the same queries run without them;
* reads under the locks (:meth:`~BatchSql.load_existing`,
  :meth:`~BatchSql.load_resolutions`) and transfer ids drawn under them
  (:meth:`~BatchSql.draw_ids` through an :class:`IdPool`);
* the writes of a :class:`~simwallet.gateway.ledger.posting.Workspace`
  (:meth:`~BatchSql.write`): new transfers by ``COPY`` on PostgreSQL,
  account sums through a per-connection temporary table and one
  ``UPDATE … FROM``, holds, campaign events and counters.

``IN`` lists go through :func:`~simwallet.gateway.store.sql.one_of`, so a
statement has one text whatever the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from simwallet.gateway.ledger.limits import Spent
from simwallet.gateway.ledger.model import (
    AccountKind,
    AccountStatus,
    Phase,
    PostedTransfer,
    PostPending,
    Request,
    Reverse,
    Transfer,
    TransferKind,
    VoidPending,
)
from simwallet.gateway.ledger.posting import AccountRow, CampaignState, Grant, References, Workspace
from simwallet.gateway.ledger.rows import Sums, copy_rows, row_to_transfer
from simwallet.gateway.promotions.rules import CampaignRule, Usage
from simwallet.gateway.store.schema import accounts, campaign_events, campaign_usage, campaigns, holds, transfers
from simwallet.gateway.store.sql import one_of

# How far ahead of a batch's first clock reading a campaign counts as possibly in its window.
CAMPAIGN_LOOKAHEAD_US = 24 * 3600 * 1_000_000


class BatchSql:
    """The batch statements of one engine (PostgreSQL or SQLite, by ``dialect``)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self._dialect = dialect
        self._pg = dialect.name == "postgresql"
        self._rules: dict[str, tuple[str, CampaignRule]] = {}

    @staticmethod
    def load_referred(conn: sa.Connection, requests: list[Request], expire_ids: list[int], refs: References) -> set[int]:
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
    def load_resolutions(conn: sa.Connection, referred: set[int], refs: References) -> None:
        if not referred:
            return
        pending_ids = [i for i in referred if i in refs.transfers and refs.transfers[i].phase == Phase.PENDING]
        if pending_ids:
            for pid, phase in conn.execute(sa.select(transfers.c.pending_id, transfers.c.phase)
                                           .where(transfers.c.pending_id.in_(pending_ids))):
                refs.resolved[pid] = Phase(phase)
        rev_ids = list(referred) + [c.id for cs in refs.caused.values() for c in cs]
        refs.reversed = set(conn.execute(sa.select(transfers.c.reverses_id).where(transfers.c.reverses_id.in_(rev_ids))).scalars())

    def lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if self._pg else query

    def _in(self, column: sa.Column[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
        return one_of(self._dialect, column, values)

    def lock_accounts(self, conn: sa.Connection, ids: set[int], refs: set[str]) -> dict[int, AccountRow]:
        if not ids and not refs:
            return {}
        clauses = []
        if ids:
            clauses.append(self._in(accounts.c.id, ids))
        if refs:
            clauses.append(self._in(accounts.c.ref, refs))
        c = accounts.c
        query = self.lock(sa.select(
            c.id, c.ref, c.kind, c.currency, c.flags, c.status, c.owner, c.tier, c.debits_pending, c.debits_posted,
            c.credits_pending, c.credits_posted, c.spent_day_key, c.spent_day, c.spent_month_key, c.spent_month,
        ).where(sa.or_(*clauses)).order_by(c.id))
        # The hot path of every batch: plain tuples, and enum members by dict lookup.
        return {r[0]: AccountRow(r[0], r[1], _KINDS[r[2]], r[3], r[4], _STATUSES[r[5]], r[6], r[7],
                                 r[8], r[9], r[10], r[11], Spent(r[12], r[13], r[14], r[15]))
                for r in conn.execute(query).all()}

    def load_existing(self, conn: sa.Connection, keys: list[str], refs: References) -> None:
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

    def draw_ids(self, conn: sa.Connection, n: int, last: int) -> list[int]:
        if self._pg:
            drawn = conn.execute(sa.text("SELECT nextval('transfer_id_seq') FROM generate_series(1, :n)"), {"n": n}).scalars()
            return sorted(drawn)
        top = max(last, conn.execute(sa.select(sa.func.coalesce(sa.func.max(transfers.c.id), 0))).scalar_one())
        return list(range(top + 1, top + 1 + n))

    def write(self, conn: sa.Connection, space: Workspace, original: dict[int, Sums]) -> None:
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
        changed = [row for i, row in space.accounts.items() if sums_of(row) != original[i]]
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

    def active_campaigns(self, conn: sa.Connection, now: int, requests: list[Request],
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

    def reward_accounts(self, conn: sa.Connection, active: dict[str, tuple[CampaignRule, int]], account_ids: set[int],
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

    def lock_campaigns(self, conn: sa.Connection, active: dict[str, tuple[CampaignRule, int]],
                        rows: dict[int, AccountRow]) -> dict[str, CampaignState]:
        customer_kinds = {AccountKind.CUSTOMER_WALLET, AccountKind.CUSTOMER_AIRTIME, AccountKind.POINTS}
        owners = sorted({row.owner for row in rows.values() if row.kind in customer_kinds})
        states: dict[str, CampaignState] = {}
        for row in conn.execute(self.lock(sa.select(campaigns).where(campaigns.c.id.in_(active)).order_by(campaigns.c.id))):
            rule, source_id = active[row.id]
            states[row.id] = CampaignState(rule, source_id, row.granted_count, row.granted_fen)
        if owners:
            pairs = [{"campaign_id": cid, "owner": owner, "total_count": 0, "period_count": 0}
                     for cid in sorted(states) for owner in owners]
            insert = (postgresql.insert if self._pg else sqlite.insert)(campaign_usage)
            conn.execute(insert.on_conflict_do_nothing(), pairs)
            query = self.lock(sa.select(campaign_usage).where(campaign_usage.c.campaign_id.in_(states),
                                                               campaign_usage.c.owner.in_(owners))
                               .order_by(campaign_usage.c.campaign_id, campaign_usage.c.owner))
            for u in conn.execute(query):
                states[u.campaign_id].usage[u.owner] = Usage(u.total_count, u.period_key, u.period_count)
        return states


class IdPool:
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


def accounts_named(requests: list[Request], refs: References) -> tuple[set[int], set[str]]:
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


def sums_of(row: AccountRow) -> Sums:
    return Sums(row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted)


_KINDS = {k.value: k for k in AccountKind}
_STATUSES = {s.value: s for s in AccountStatus}
