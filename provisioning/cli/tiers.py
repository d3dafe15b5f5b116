"""``simwallet ledger tier``: product tiers and their limits (``gateway/ledger/limits.py``).

A tier caps what a customer wallet may spend per transaction, per local day
and per local month (Asia/Shanghai), and the balance it may hold. ``tier set``
changes only the limits it is given; ``none`` removes a limit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from simwallet.gateway.ledger.limits import Tier
from simwallet.provisioning.cli import render
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.params import LIMIT, NO_LIMIT


@click.group()
def tier() -> None:
    """Product tiers: the limits of customer wallets."""


def _tier_doc(t: Tier) -> dict[str, Any]:
    return {"name": t.name, "description": t.description, **render.money("per_txn_max", t.per_txn_max),
            **render.money("per_day_max", t.per_day_max), **render.money("per_month_max", t.per_month_max),
            **render.money("balance_max", t.balance_max)}


def _show(app: AppContext, tiers: list[Tier]) -> None:
    if app.json:
        render.emit_json({"tiers": [_tier_doc(t) for t in tiers]})
        return
    render.table(("name", "per txn", "per day", "per month", "balance max", "description"), [
        (t.name, render.amount_text(t.per_txn_max), render.amount_text(t.per_day_max), render.amount_text(t.per_month_max),
         render.amount_text(t.balance_max), t.description) for t in tiers],
        right=("per txn", "per day", "per month", "balance max"))


@tier.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """Every product tier with its limits ("-": no limit)."""
    _show(app, app.ledger().tiers())


@tier.command("set")
@click.argument("name")
@click.option("--per-txn", type=LIMIT, help="Most one transfer may take out of the wallet.")
@click.option("--per-day", type=LIMIT, help="Most that may leave the wallet per local day.")
@click.option("--per-month", type=LIMIT, help="Most that may leave the wallet per local month.")
@click.option("--balance-max", type=LIMIT, help="Most the wallet may hold, holds included.")
@click.option("--description", help="What the tier is for.")
@pass_app
def set_(app: AppContext, name: str, per_txn: int | str | None, per_day: int | str | None, per_month: int | str | None,
         balance_max: int | str | None, description: str | None) -> None:
    """Create tier NAME or change the limits given (AMOUNT such as 5000.00, or none)."""
    book = app.ledger()
    current = next((t for t in book.tiers() if t.name == name), Tier(name))
    changes: dict[str, Any] = {}
    limits = {"per_txn_max": per_txn, "per_day_max": per_day, "per_month_max": per_month, "balance_max": balance_max}
    for tier_field, value in limits.items():
        if value is not None:
            changes[tier_field] = None if value == NO_LIMIT else value
    if description is not None:
        changes["description"] = description
    updated = replace(current, **changes)
    book.set_tier(updated)
    _show(app, [updated])
