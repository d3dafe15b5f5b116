"""``simwallet simulate``: replay simulated traffic through the ledger (the demo's main job).

``simulate month`` opens the accounts of a few thousand customers, banks,
billers and merchants, starts the campaigns it is given (by default the seed's
满百送30), replays a month of top-ups, bill payments, transfers, bank holds and
reversals through the ledger's batch API with a simulated clock, and prints
what it did. ``ledger verify`` and ``promo report`` then show the result.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import click

from simwallet.provisioning.cli import render
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.promo import read_rule

DEFAULT_CAMPAIGN = Path("cards/promotions/manbai-song30.yaml")


@click.group()
def simulate() -> None:
    """Replay simulated wallet traffic through the ledger."""


@simulate.command("month")
@click.option("--customers", type=click.IntRange(1, 200_000), default=3000, show_default=True)
@click.option("--first-day", type=click.DateTime(["%Y-%m-%d"]), default="2026-05-16", show_default=True,
              help="First local day (Asia/Shanghai); the default is the seed campaign's first day.")
@click.option("--days", type=click.IntRange(1, 92), default=31, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--campaign", "campaign_files", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help=f"Campaign YAML to start first (repeatable) [default: {DEFAULT_CAMPAIGN}].")
@click.option("--no-campaign", is_flag=True, help="Run without any campaign.")
@pass_app
def month(app: AppContext, customers: int, first_day: object, days: int, seed: int, campaign_files: tuple[Path, ...],
          no_campaign: bool) -> None:
    """Open accounts and replay a month of seed-like traffic; print a summary."""
    from simwallet.gateway.ledger.ledger import Ledger
    from simwallet.gateway.money import format_amount
    from simwallet.gateway.runtime import tune_for_serving
    from simwallet.gateway.simulate import SimClock, simulate_month

    files = () if no_campaign else (campaign_files or (DEFAULT_CAMPAIGN,))
    rules = [read_rule(path) for path in files]
    clock = SimClock()
    tune_for_serving()  # a long batch job: the same collector settings as a server
    start = time.perf_counter()
    day = first_day.date() if hasattr(first_day, "date") else date.fromisoformat(str(first_day))
    summary = simulate_month(Ledger(app.engine, clock=clock), clock, customers=customers, first_day=day, days=days,
                             seed=seed, campaigns=rules)
    elapsed = time.perf_counter() - start
    kinds = sorted(summary.by_kind)
    moved = sum(summary.fen_by_kind.values())
    if app.json:
        render.emit_json({
            "customers": summary.customers, "first_day": summary.first_day.isoformat(), "days": summary.days,
            "requests": summary.requests, "batches": summary.batches, "seconds": round(elapsed, 3),
            "transfers": {k: {"count": summary.by_kind[k], **render.money("amount", summary.fen_by_kind[k])} for k in kinds},
            **render.money("moved", moved), "refused": dict(summary.refused),
            "campaigns": [r.id for r in rules],
        })
        return
    render.fields([
        ("customers", summary.customers), ("period", f"{summary.first_day} + {summary.days} days (Asia/Shanghai)"),
        ("requests", f"{summary.requests} in {summary.batches} batches"),
        ("posted", f"{sum(summary.by_kind.values())} transfers, {format_amount(moved)} CNY moved"),
        ("time", f"{elapsed:.1f} s ({summary.requests / elapsed:.0f} requests/s)"),
        ("campaigns", ", ".join(r.id for r in rules) or "none"),
    ], title="Simulated month")
    render.table(("kind", "transfers", "amount (CNY)"),
                 [(k, summary.by_kind[k], format_amount(summary.fen_by_kind[k])) for k in kinds],
                 title="Transfers by kind", right=("transfers", "amount (CNY)"))
    if summary.refused:
        render.table(("refused because", "requests"), sorted(summary.refused.items()), title="Refused requests",
                     right=("requests",))
