"""``ledger verify``: recompute the ledger from its transfer rows and check every invariant.

Checks, each reported with the first few violations it found:

* ``sums``: every account's cached debits/credits (pending and posted) equal
  the sums recomputed from the transfers;
* ``double_entry``: per currency, total debits equal total credits, and every
  transfer's accounts are in the transfer's currency;
* ``balances``: no account breaks its balance flag (no forbidden negative);
* ``idempotency``: each idempotency key maps to exactly one transfer;
* ``two_phase``: every post/void/expiry resolves a pending transfer with the
  same accounts and amount, and the open holds are exactly the unresolved
  pending transfers;
* ``reversals``: every reversal mirrors the transfer it corrects;
* ``campaigns``: each campaign's counters equal its events, and no customer
  has more grants than the campaign cap allows, nor the campaign more than its budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.gateway.ledger.model import AccountFlags, Phase
from simwallet.gateway.ledger.rows import Sums, recompute_sums
from simwallet.gateway.money import format_amount
from simwallet.gateway.promotions.rules import CampaignRule
from simwallet.gateway.store.schema import accounts, campaign_events, campaign_usage, campaigns, holds, transfers

# Violations listed per check; the count is always exact.
VIOLATIONS_SHOWN_MAX = 20


@dataclass
class Check:
    name: str
    description: str
    violations: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.violations == 0

    def fail(self, message: str) -> None:
        self.violations += 1
        if len(self.examples) < VIOLATIONS_SHOWN_MAX:
            self.examples.append(message)


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[Check, ...]
    accounts: int
    transfers: int

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def verify_ledger(engine: Engine) -> VerifyReport:
    """Run every check in one read transaction (a consistent snapshot on PostgreSQL)."""
    with engine.connect().execution_options(simwallet_readonly=True, isolation_level="REPEATABLE READ"
                                            if engine.dialect.name == "postgresql" else "AUTOCOMMIT") as conn, conn.begin():
        checks = (
            _sums(conn), _double_entry(conn), _balances(conn), _idempotency(conn), _two_phase(conn),
            _reversals(conn), _campaigns(conn),
        )
        n_accounts = conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one()
        n_transfers = conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()
    return VerifyReport(checks, n_accounts, n_transfers)


def _sums(conn: sa.Connection) -> Check:
    check = Check("sums", "cached account sums equal the sums recomputed from transfers")
    recomputed = recompute_sums(conn)
    for row in conn.execute(sa.select(accounts).order_by(accounts.c.id)):
        cached = Sums(row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted)
        fresh = recomputed.get(row.id, Sums())
        if cached != fresh:
            check.fail(f"account {row.ref}: cached {cached} but transfers give {fresh}")
    return check


def _double_entry(conn: sa.Connection) -> Check:
    check = Check("double_entry", "debits equal credits per currency; transfers stay in one currency")
    # Summed in Python: the ledger-wide totals may pass 2**63 - 1 although every
    # account's own sums fit, and SQLite's SUM() raises on integer overflow.
    totals: dict[str, list[int]] = {}
    for row in conn.execute(sa.select(accounts.c.currency, accounts.c.debits_posted, accounts.c.credits_posted,
                                      accounts.c.debits_pending, accounts.c.credits_pending)):
        total = totals.setdefault(row.currency, [0, 0, 0, 0])
        for n, value in enumerate(row[1:]):
            total[n] += value
    for currency, (dpo, cpo, dp, cp) in sorted(totals.items()):
        if dpo != cpo or dp != cp:
            check.fail(f"{currency}: posted debits {format_amount(dpo)} vs credits {format_amount(cpo)},"
                       f" pending {format_amount(dp)} vs {format_amount(cp)}")
    debit, credit = accounts.alias("d"), accounts.alias("c")
    mixed = sa.select(transfers.c.id).join(debit, debit.c.id == transfers.c.debit_account_id).join(
        credit, credit.c.id == transfers.c.credit_account_id).where(
        sa.or_(debit.c.currency != transfers.c.currency, credit.c.currency != transfers.c.currency))
    for (tid,) in conn.execute(mixed):
        check.fail(f"transfer {tid} crosses currencies")
    return check


def _balances(conn: sa.Connection) -> Check:
    check = Check("balances", "no account goes below zero where its flags forbid it")
    for row in conn.execute(sa.select(accounts)):
        if row.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and row.debits_pending + row.debits_posted > row.credits_posted:
            check.fail(f"account {row.ref}: debits {format_amount(row.debits_pending + row.debits_posted)}"
                       f" exceed credits {format_amount(row.credits_posted)}")
        if row.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and row.credits_pending + row.credits_posted > row.debits_posted:
            check.fail(f"account {row.ref}: credits exceed debits")
    return check


def _idempotency(conn: sa.Connection) -> Check:
    check = Check("idempotency", "each idempotency key maps to exactly one transfer")
    dupes = sa.select(transfers.c.idempotency_key, sa.func.count()).group_by(transfers.c.idempotency_key).having(sa.func.count() > 1)
    for key, n in conn.execute(dupes):
        check.fail(f"key {key!r} has {n} transfers")
    return check


def _two_phase(conn: sa.Connection) -> Check:
    check = Check("two_phase", "resolutions match their holds; open holds are the unresolved pending transfers")
    pending = transfers.alias("p")
    resolutions = sa.select(transfers.c.id, transfers.c.phase, pending.c.phase.label("pphase"), pending.c.amount.label("pamount"),
                            pending.c.debit_account_id.label("pd"), pending.c.credit_account_id.label("pc"),
                            transfers.c.amount, transfers.c.debit_account_id, transfers.c.credit_account_id).join(
        pending, pending.c.id == transfers.c.pending_id, isouter=True).where(transfers.c.pending_id.is_not(None))
    for r in conn.execute(resolutions):
        if r.pphase != Phase.PENDING.value or (r.pamount, r.pd, r.pc) != (r.amount, r.debit_account_id, r.credit_account_id) \
                or r.phase not in (Phase.POST.value, Phase.VOID.value, Phase.EXPIRE.value):
            check.fail(f"transfer {r.id} ({r.phase}) does not match the hold it resolves")
    resolved = sa.select(transfers.c.pending_id).where(transfers.c.pending_id.is_not(None))
    open_pending = set(conn.execute(sa.select(transfers.c.id).where(
        transfers.c.phase == Phase.PENDING.value, transfers.c.id.not_in(resolved))).scalars())
    open_holds = set(conn.execute(sa.select(holds.c.transfer_id)).scalars())
    for tid in sorted(open_pending - open_holds):
        check.fail(f"pending transfer {tid} is unresolved but has no hold row")
    for tid in sorted(open_holds - open_pending):
        check.fail(f"hold row {tid} is not an unresolved pending transfer")
    return check


def _reversals(conn: sa.Connection) -> Check:
    check = Check("reversals", "every reversal mirrors the transfer it corrects")
    original = transfers.alias("o")
    query = sa.select(transfers.c.id, original.c.id.label("oid"), original.c.amount.label("oamount"), transfers.c.amount,
                      original.c.debit_account_id.label("od"), original.c.credit_account_id.label("oc"),
                      transfers.c.debit_account_id, transfers.c.credit_account_id).join(
        original, original.c.id == transfers.c.reverses_id, isouter=True).where(transfers.c.reverses_id.is_not(None))
    for r in conn.execute(query):
        if r.oid is None or r.amount != r.oamount or (r.debit_account_id, r.credit_account_id) != (r.oc, r.od):
            check.fail(f"reversal {r.id} does not mirror transfer {r.oid}")
    return check


def _campaigns(conn: sa.Connection) -> Check:
    check = Check("campaigns", "campaign counters equal their events; caps and budgets hold")
    for c in conn.execute(sa.select(campaigns)):
        rule = CampaignRule.from_json(c.rule_json)
        counts: dict[str, int] = {}
        fen: dict[str, int] = {}
        for outcome, n, total in conn.execute(
                sa.select(campaign_events.c.outcome, sa.func.count(), sa.func.sum(campaign_events.c.amount))
                .where(campaign_events.c.campaign_id == c.id).group_by(campaign_events.c.outcome)):
            counts[outcome], fen[outcome] = n, int(total or 0)
        net_count = counts.get("granted", 0) - counts.get("revoked", 0)
        net_fen = (fen.get("granted") or 0) - (fen.get("revoked") or 0)
        if (c.granted_count, c.granted_fen) != (net_count, net_fen):
            check.fail(f"campaign {c.id}: counters {c.granted_count}/{format_amount(c.granted_fen)}"
                       f" but events give {net_count}/{format_amount(net_fen)}")
        if rule.caps.budget_fen is not None and c.granted_fen > rule.caps.budget_fen:
            check.fail(f"campaign {c.id}: granted {format_amount(c.granted_fen)} over budget {format_amount(rule.caps.budget_fen)}")
        if rule.caps.per_campaign is not None:
            over = sa.select(campaign_usage.c.owner, campaign_usage.c.total_count).where(
                campaign_usage.c.campaign_id == c.id, campaign_usage.c.total_count > rule.caps.per_campaign)
            for owner, total in conn.execute(over):
                check.fail(f"campaign {c.id}: {owner} has {total} grants, cap {rule.caps.per_campaign}")
        granted_ids = sa.select(campaign_events.c.bonus_id).where(
            campaign_events.c.campaign_id == c.id, campaign_events.c.outcome == "granted")
        reversed_ids = sa.select(transfers.c.reverses_id).where(transfers.c.reverses_id.is_not(None))
        bonus_sum = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(transfers.c.amount), 0)).where(
            transfers.c.id.in_(granted_ids), transfers.c.id.not_in(reversed_ids))).scalar_one()
        if bonus_sum != c.granted_fen:
            check.fail(f"campaign {c.id}: unreversed bonus transfers sum to {format_amount(bonus_sum)},"
                       f" counters say {format_amount(c.granted_fen)}")
    return check
