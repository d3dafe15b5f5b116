"""``simwallet promo``: promotion campaigns (``cards/promotions/*.yaml``, ``gateway/promotions``).

A campaign file is validated by ``CampaignRule.from_yaml``, whose errors name
the file, the line and the field (``manbai.yaml:14: trigger.amount_min: …``);
``promo create`` stores it as an active campaign. The ledger grants its
rewards in the same transaction as each qualifying transfer, with the
transfer's own time: a campaign acts only inside its window.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.provisioning.cli import render
from simwallet.provisioning.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from simwallet.gateway.promotions.rules import CampaignRule
    from simwallet.gateway.promotions.store import CampaignInfo, CampaignReport

# The report's names for the caps that refuse a reward (keys of CampaignReport.refused).
REFUSAL_NAMES = {"refused_period_cap": "period_cap", "refused_campaign_cap": "campaign_cap", "refused_budget": "budget",
                 "refused_unpayable": "unpayable"}


@click.group()
def promo() -> None:
    """Promotion campaigns: create from YAML, list, show, start, stop, report."""


def read_rule(path: Path) -> CampaignRule:
    from simwallet.gateway.promotions.campaign_file import CAMPAIGN_FILE_BYTES_MAX
    from simwallet.gateway.promotions.rules import CampaignRule

    with path.open("rb") as stream:
        data = stream.read(CAMPAIGN_FILE_BYTES_MAX + 1)
    if len(data) > CAMPAIGN_FILE_BYTES_MAX:
        raise RequestError(RejectCode.CAMPAIGN_INVALID, None, f"{path}: larger than {CAMPAIGN_FILE_BYTES_MAX} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(RejectCode.CAMPAIGN_INVALID, None, f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return CampaignRule.from_yaml(text, source=str(path))


def _window(rule: CampaignRule) -> str:
    return f"{rule.start}..{rule.end} ({rule.timezone})"


def _info_doc(info: CampaignInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "status": info.status, "granted_count": info.granted_count,
            **render.money("granted", info.granted_fen), "rule": info.rule.to_mapping()}


def _show_info(app: AppContext, info: CampaignInfo, *, verb: str | None = None) -> None:
    import yaml

    if app.json:
        render.emit_json({"campaign": _info_doc(info)})
        return
    if verb:
        click.echo(f"{verb} campaign {info.id}")
    render.fields([("id", info.id), ("name", info.name), ("status", info.status), ("window", _window(info.rule)),
                   ("bonuses (net)", info.granted_count), ("granted", render.amount_text(info.granted_fen)),
                   ("budget", render.amount_text(info.rule.caps.budget_fen))])
    click.echo("rule:")
    click.echo(yaml.safe_dump(info.rule.to_mapping(), allow_unicode=True, sort_keys=False).rstrip())


@promo.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_app
def create(app: AppContext, file: Path) -> None:
    """Validate campaign FILE (YAML) and start it (its reward source account must exist)."""
    rule = read_rule(file)
    _show_info(app, app.campaigns().create(rule), verb="created")


@promo.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """Every campaign, oldest first."""
    infos = app.campaigns().all()
    if app.json:
        render.emit_json({"campaigns": [_info_doc(i) for i in infos]})
        return
    render.table(("id", "name", "status", "window", "trigger", "reward", "bonuses", "granted", "budget"), [
        (i.id, i.name, i.status, _window(i.rule), f"{i.rule.trigger.kind.value} >= {render.amount_text(i.rule.trigger.amount_min_fen)}",
         render.amount_text(i.rule.reward.amount_fen), i.granted_count, render.amount_text(i.granted_fen),
         render.amount_text(i.rule.caps.budget_fen)) for i in infos], right=("bonuses", "granted", "budget"))


@promo.command()
@click.argument("campaign_id", metavar="ID")
@pass_app
def show(app: AppContext, campaign_id: str) -> None:
    """One campaign: its rule (as YAML, or JSON with --json) and counters."""
    _show_info(app, app.campaigns().show(campaign_id))


@promo.command()
@click.argument("campaign_id", metavar="ID")
@pass_app
def stop(app: AppContext, campaign_id: str) -> None:
    """Stop granting rewards (reversals still take back rewards already granted)."""
    _show_info(app, app.campaigns().set_status(campaign_id, "stopped"), verb="stopped")


@promo.command()
@click.argument("campaign_id", metavar="ID")
@pass_app
def start(app: AppContext, campaign_id: str) -> None:
    """Start a stopped campaign again."""
    _show_info(app, app.campaigns().set_status(campaign_id, "active"), verb="started")


def _report_doc(r: CampaignReport) -> dict[str, Any]:
    return {
        "id": r.id, "name": r.name, "status": r.status, "qualifying": r.qualifying, "granted": r.granted,
        "revoked": r.revoked, "refused": {REFUSAL_NAMES.get(k, k): n for k, n in r.refused.items()},
        "customers_rewarded": r.customers_rewarded, **render.money("budget_used", r.granted_fen),
        **render.money("budget", r.budget_fen), **render.money("budget_left", r.budget_left_fen),
    }


@promo.command()
@click.argument("campaign_id", metavar="[ID]", required=False)
@pass_app
def report(app: AppContext, campaign_id: str | None) -> None:
    """What each campaign did: qualifying transfers, bonuses granted and revoked, refusals per cap, budget."""
    reports = app.campaigns().report(campaign_id)
    docs = [_report_doc(r) for r in reports]
    if app.json:
        render.emit_json({"campaigns": docs})
        return
    render.table(
        ("campaign", "status", "qualifying", "granted", "revoked", "refused (period cap)", "refused (campaign cap)", "refused (budget)",
         "refused (unpayable)", "customers", "budget used", "budget left"),
        [(d["id"], d["status"], d["qualifying"], d["granted"], d["revoked"], d["refused"].get("period_cap", 0),
          d["refused"].get("campaign_cap", 0), d["refused"].get("budget", 0), d["refused"].get("unpayable", 0), d["customers_rewarded"],
          render.amount_text(d["budget_used_fen"]), render.amount_text(d["budget_left_fen"])) for d in docs],
        right=("qualifying", "granted", "revoked", "refused (period cap)", "refused (campaign cap)", "refused (budget)",
               "refused (unpayable)", "customers",
               "budget used", "budget left"))
