"""Campaigns in the database: create, list, show, stop, and the per-campaign report.

The rule itself is stored as its canonical JSON (``CampaignRule.to_json``);
the ledger reads it back inside each batch that may trigger it, and grants
rewards in the same transaction as the qualifying transfer (see
``ledger/posting.py``). The report is computed from ``campaign_events``, one
row per qualifying transfer (granted or refused by a named cap) and per
revocation of a reversed grant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.ledger import wall_clock_us
from simwallet.gateway.promotions.rules import CampaignRule, Outcome
from simwallet.gateway.store.schema import accounts, campaign_events, campaign_usage, campaigns

REVOKED = "revoked"


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    status: str
    rule: CampaignRule
    granted_count: int
    granted_fen: int


@dataclass(frozen=True)
class CampaignReport:
    """What a campaign did: the operator's view of one promotion."""

    id: str
    name: str
    status: str
    qualifying: int  # qualifying transfers seen
    granted: int  # bonuses granted (before revocations)
    revoked: int  # bonuses taken back with a reversed transfer
    refused: dict[str, int]  # refusals by the cap that refused them
    customers_rewarded: int
    granted_fen: int  # net of revocations
    budget_fen: int | None
    budget_left_fen: int | None


class CampaignStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], int] = wall_clock_us) -> None:
        self.engine = engine
        self._clock = clock

    def create(self, rule: CampaignRule) -> CampaignInfo:
        """Store a validated rule as an active campaign; its source account must exist."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(campaigns.c.id).where(campaigns.c.id == rule.id)).first():
                raise RequestError(RejectCode.CAMPAIGN_EXISTS, "id", f"campaign {rule.id} exists")
            source = conn.execute(sa.select(accounts.c.id, accounts.c.currency)
                                  .where(accounts.c.ref == rule.reward.source_account)).first()
            if source is None:
                raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, "reward.source_account",
                                   f"no account {rule.reward.source_account!r} to pay the rewards from")
            conn.execute(campaigns.insert().values(
                id=rule.id, name=rule.name, rule_json=rule.to_json(), source_account_id=source.id, status="active",
                created_us=self._clock(), granted_count=0, granted_fen=0,
            ))
        return self.show(rule.id)

    def set_status(self, campaign_id: str, status: str) -> CampaignInfo:
        if status not in ("active", "stopped"):
            raise RequestError(RejectCode.FIELD_INVALID, "status", "status is active or stopped")
        with self.engine.begin() as conn:
            done = conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(status=status))
            if done.rowcount == 0:
                raise RequestError(RejectCode.CAMPAIGN_NOT_FOUND, "id", f"no campaign {campaign_id}")
        return self.show(campaign_id)

    def all(self) -> list[CampaignInfo]:
        with self.engine.connect().execution_options(simwallet_readonly=True) as conn:
            return [_info(r) for r in conn.execute(sa.select(campaigns).order_by(campaigns.c.created_us, campaigns.c.id))]

    def show(self, campaign_id: str) -> CampaignInfo:
        with self.engine.connect().execution_options(simwallet_readonly=True) as conn:
            row = conn.execute(sa.select(campaigns).where(campaigns.c.id == campaign_id)).first()
        if row is None:
            raise RequestError(RejectCode.CAMPAIGN_NOT_FOUND, "id", f"no campaign {campaign_id}")
        return _info(row)

    def report(self, campaign_id: str | None = None) -> list[CampaignReport]:
        out = []
        # One snapshot: counters and events read together agree even while top-ups are posted.
        isolation = "REPEATABLE READ" if self.engine.dialect.name == "postgresql" else "AUTOCOMMIT"
        with self.engine.connect().execution_options(simwallet_readonly=True, isolation_level=isolation) as conn, conn.begin():
            query = sa.select(campaigns).order_by(campaigns.c.created_us, campaigns.c.id)
            if campaign_id is not None:
                query = query.where(campaigns.c.id == campaign_id)
            infos = [_info(r) for r in conn.execute(query)]
            if campaign_id is not None and not infos:
                raise RequestError(RejectCode.CAMPAIGN_NOT_FOUND, "id", f"no campaign {campaign_id}")
            for info in infos:
                counts: dict[str, int] = {
                    str(outcome): int(n) for outcome, n in conn.execute(
                        sa.select(campaign_events.c.outcome, sa.func.count())
                        .where(campaign_events.c.campaign_id == info.id).group_by(campaign_events.c.outcome))}
                # Customers holding at least one grant that was not taken back.
                rewarded = conn.execute(
                    sa.select(sa.func.count()).select_from(campaign_usage)
                    .where(campaign_usage.c.campaign_id == info.id, campaign_usage.c.total_count > 0)).scalar_one()
                refused = {o.value: counts.get(o.value, 0) for o in Outcome if o != Outcome.GRANTED}
                budget = info.rule.caps.budget_fen
                out.append(CampaignReport(
                    id=info.id, name=info.name, status=info.status,
                    qualifying=sum(v for k, v in counts.items() if k != REVOKED),
                    granted=counts.get(Outcome.GRANTED.value, 0), revoked=counts.get(REVOKED, 0),
                    refused=refused, customers_rewarded=int(rewarded), granted_fen=info.granted_fen,
                    budget_fen=budget, budget_left_fen=None if budget is None else budget - info.granted_fen,
                ))
        return out


def _info(row: sa.Row[Any]) -> CampaignInfo:
    return CampaignInfo(id=row.id, name=row.name, status=row.status, rule=CampaignRule.from_json(row.rule_json),
                        granted_count=row.granted_count, granted_fen=row.granted_fen)
