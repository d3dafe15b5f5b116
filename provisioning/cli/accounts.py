"""``simwallet ledger account``: open, show, list, freeze, unfreeze and close ledger accounts.

Accounts are named by reference (``C000123/wallet``) or by id; a reference is
never all digits, so ``42`` always means the account with id 42. Opening
takes the balance flags from the account kind (customer money may not go
below zero; see ``DEFAULT_FLAGS`` in ``gateway/ledger/model.py``).
"""

from __future__ import annotations

import click

from simwallet.gateway.ledger.model import ID_MAX, Account, AccountKind, AccountStatus
from simwallet.provisioning.cli import render
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.params import ACCOUNT, ACCOUNT_KINDS

ACCOUNT_COLUMNS = ("id", "ref", "kind", "owner", "status", "tier", "balance", "available", "currency")


@click.group()
def account() -> None:
    """Ledger accounts."""


def show_account(app: AppContext, acct: Account, *, verb: str | None = None) -> None:
    if app.json:
        render.emit_json({"account": render.account_doc(acct)})
        return
    if verb:
        click.echo(f"{verb} account {acct.ref} (id {acct.id})")
    render.fields([
        ("id", acct.id), ("ref", acct.ref), ("kind", acct.kind.value), ("owner", acct.owner), ("currency", acct.currency),
        ("status", acct.status.value), ("tier", acct.tier), ("flags", ", ".join(render.flag_names(acct.flags)) or "none"),
        ("balance", render.amount_text(acct.balance)), ("available", render.amount_text(acct.available)),
        ("debits pending", render.amount_text(acct.debits_pending)), ("debits posted", render.amount_text(acct.debits_posted)),
        ("credits pending", render.amount_text(acct.credits_pending)),
        ("credits posted", render.amount_text(acct.credits_posted)),
    ])


@account.command("open")
@click.option("--kind", type=ACCOUNT_KINDS, required=True, help="What the account holds.")
@click.option("--owner", required=True, help="customer:C000123, merchant:M01, bank:ICBC, operator …")
@click.option("--ref", help="Reference (not all digits). Default: OWNER/KIND.")
@click.option("--tier", help="Product tier of a customer wallet (its limits; see `ledger tier list`).")
@click.option("--currency", default="CNY", show_default=True, help="ISO 4217 code.")
@pass_app
def open_(app: AppContext, kind: str, owner: str, ref: str | None, tier: str | None, currency: str) -> None:
    """Open an account."""
    acct = app.ledger().open_account(AccountKind(kind), owner, ref=ref, currency=currency.upper(), tier=tier)
    show_account(app, acct, verb="opened")


@account.command()
@click.argument("ref", metavar="REF_OR_ID", type=ACCOUNT)
@pass_app
def show(app: AppContext, ref: int | str) -> None:
    """One account with its balance and running sums."""
    show_account(app, app.ledger().account(ref))


@account.command("list")
@click.option("--owner", help="Only this owner's accounts.")
@click.option("--kind", type=ACCOUNT_KINDS, help="Only accounts of this kind.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Accounts per page.")
@click.option("--after-id", type=click.IntRange(0, ID_MAX), default=0, metavar="ID", help="Start after this id (next page).")
@pass_app
def list_(app: AppContext, owner: str | None, kind: str | None, limit: int, after_id: int) -> None:
    """Accounts in id order, a page at a time."""
    found = app.ledger().accounts(owner=owner, kind=AccountKind(kind) if kind else None, limit=limit, after_id=after_id)
    more = found[-1].id if len(found) == limit else None
    if app.json:
        render.emit_json({"accounts": [render.account_doc(a) for a in found], "next_after_id": more})
        return
    render.table(ACCOUNT_COLUMNS, [
        (a.id, a.ref, a.kind.value, a.owner, a.status.value, a.tier or "", render.amount_text(a.balance),
         render.amount_text(a.available), a.currency) for a in found], right=("id", "balance", "available"))
    if more is not None:
        app.note(f"more: --after-id {more}")


def _status_command(name: str, status: AccountStatus, verb: str, summary: str) -> None:
    @account.command(name, help=summary)
    @click.argument("ref", metavar="REF_OR_ID", type=ACCOUNT)
    @pass_app
    def command(app: AppContext, ref: int | str) -> None:
        show_account(app, app.ledger().set_status(ref, status), verb=verb)


_status_command("freeze", AccountStatus.FROZEN, "froze", "Freeze an account: no transfers in or out; reversals still go through.")
_status_command("unfreeze", AccountStatus.OPEN, "unfroze", "Reopen a frozen account.")
_status_command("close", AccountStatus.CLOSED, "closed", "Close an account for good (needs a zero balance and no holds).")
