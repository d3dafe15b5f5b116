"""The demo's month simulation: deterministic per seed, and the ledger it leaves verifies."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.promotions.rules import CampaignRule
from simwallet.gateway.promotions.store import CampaignReport, CampaignStore
from simwallet.gateway.simulate import MonthSummary, SimClock, simulate_month
from simwallet.gateway.store.engine import open_engine

SEED_CAMPAIGN = Path(__file__).parent.parent / "cards" / "promotions" / "manbai-song30.yaml"


def _run(url: str, seed: int) -> tuple[MonthSummary, CampaignReport]:
    engine = open_engine(url)
    try:
        clock = SimClock()
        rule = CampaignRule.from_yaml(SEED_CAMPAIGN.read_text(encoding="utf-8"), SEED_CAMPAIGN.name)
        # A week before the month change and five days after it: the campaign's monthly cap resets in between.
        summary = simulate_month(Ledger(engine, clock=clock), clock, customers=100, first_day=date(2026, 5, 25), days=12,
                                 seed=seed, campaigns=[rule])
        report = verify_ledger(engine)
        assert report.ok, [(c.name, c.examples) for c in report.checks if not c.ok]
        (campaign,) = CampaignStore(engine).report()
        return summary, campaign
    finally:
        engine.dispose()


def test_month_verifies_and_grants_bonuses(db_url: str) -> None:
    summary, campaign = _run(db_url, seed=3)
    assert summary.by_kind["airtime_topup"] > 0 and summary.by_kind["promotion_bonus"] > 0
    assert summary.by_kind["deposit (pending)"] > 0
    assert campaign.granted == summary.by_kind["promotion_bonus"]
    assert campaign.refused["refused_period_cap"] > 0


def test_same_seed_same_month(tmp_path: Path) -> None:
    first, _ = _run(f"sqlite:///{tmp_path / 'a.sqlite3'}", seed=5)
    second, _ = _run(f"sqlite:///{tmp_path / 'b.sqlite3'}", seed=5)
    other, _ = _run(f"sqlite:///{tmp_path / 'c.sqlite3'}", seed=6)
    assert (first.by_kind, first.fen_by_kind, first.refused) == (second.by_kind, second.fen_by_kind, second.refused)
    assert first.fen_by_kind != other.fen_by_kind
