"""``simwallet ledger``: post transfers, resolve holds, reverse, and read balances, history, exports and checks.

Every posting command is idempotent (TigerBeetle's transfer model, see
``gateway/ledger/model.py``): it sends an idempotency key, generated (uuid4)
and printed on stderr *before* posting when the clerk gives none, so that a
run cut short can be repeated with ``--idempotency-key`` and never posts
twice. A repeat with the same key and the same request prints the original
transfer and exits 0; the same key with a different request is refused
(``idempotency_conflict``, exit 1).

The ``account`` and ``tier`` subgroups live in ``accounts.py`` and ``tiers.py``.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from simwallet.gateway.errors import RequestError
from simwallet.gateway.ledger.model import ID_MAX, Channel, PostedTransfer, PostPending, Reverse, Transfer, TransferKind, VoidPending
from simwallet.gateway.money import format_amount
from simwallet.provisioning.cli import errors, render
from simwallet.provisioning.cli.accounts import account
from simwallet.provisioning.cli.context import AppContext, pass_app
from simwallet.provisioning.cli.params import ACCOUNT, AMOUNT, CHANNELS, CLIENT_TRANSFER_KINDS, ID, INSTANT
from simwallet.provisioning.cli.tiers import tier

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from simwallet.gateway.ledger.model import Request, Result

# Rows fetched per round trip by `ledger export`: memory stays flat whatever the ledger's size.
EXPORT_CHUNK_ROWS = 1000
# Sweeps of `ledger expire` in one run (each expires up to the ledger's EXPIRE_BATCH_MAX holds).
EXPIRE_SWEEPS_MAX = 1000
# The clerk's channel: this command line is the service hall's tool.
DEFAULT_CHANNEL = Channel.COUNTER.value

EXPORT_COLUMNS = ("id", "ts", "idempotency_key", "debit_account", "credit_account", "amount", "currency", "kind",
                  "channel", "phase", "pending_id", "reverses_id", "cause_id", "memo")


@click.group()
def ledger() -> None:
    """The double-entry ledger: accounts, transfers, balances, checks."""


ledger.add_command(account)
ledger.add_command(tier)

_key_option = click.option("--idempotency-key", "key", metavar="KEY",
                           help="Makes a retry safe: the same key is never posted twice. Generated (uuid4) if not given.")
_channel_option = click.option("--channel", type=CHANNELS, default=DEFAULT_CHANNEL, show_default=True,
                               help="Channel the request came in on.")


# --- helpers ---------------------------------------------------------------------


def account_refs(engine: Engine, ids: Iterable[int]) -> dict[int, str]:
    """References of the accounts ``ids``, in one query (for display only)."""
    import sqlalchemy as sa

    from simwallet.gateway.store.schema import accounts

    wanted = sorted(set(ids))
    if not wanted:
        return {}
    with engine.connect().execution_options(simwallet_readonly=True) as conn:
        return {row.id: row.ref for row in conn.execute(sa.select(accounts.c.id, accounts.c.ref).where(accounts.c.id.in_(wanted)))}


def _refs_of(app: AppContext, transfers: Sequence[PostedTransfer]) -> dict[int, str]:
    return account_refs(app.engine, [i for t in transfers for i in (t.debit_account_id, t.credit_account_id)])


def _key(given: str | None) -> str:
    return given if given is not None else str(uuid.uuid4())


def _post(app: AppContext, request: Request, *, generated: bool) -> None:
    """Post one request and print what it wrote, the original on a duplicate, or the refusal."""
    key = request.idempotency_key
    if generated:
        app.note(f"idempotency key: {key} (to retry safely: --idempotency-key {key})")
    result: Result = app.ledger().post_batch([request])[0]
    if result.error is not None:
        raise errors.refused(result.error, json_output=app.json, idempotency_key=key)
    show_result(app, result)


def show_result(app: AppContext, result: Result) -> None:
    rows = list(result.transfers)
    refs = _refs_of(app, rows)
    status = "already_posted" if result.duplicate else "posted"
    if app.json:
        render.emit_json({"status": status, "duplicate": result.duplicate, "idempotency_key": result.idempotency_key,
                          "transfer": render.transfer_doc(rows[0], refs),
                          "caused": [render.transfer_doc(t, refs) for t in rows[1:]]})
        return
    if result.duplicate:
        click.echo(f"already posted with idempotency key {result.idempotency_key}: the original is shown, nothing new was written")
    else:
        click.echo(f"posted (idempotency key {result.idempotency_key})")
    render.table(render.TRANSFER_COLUMNS, render.transfer_rows(rows, refs), right=("id", "amount"))
    for t in rows[1:]:
        if t.kind == TransferKind.PROMOTION_BONUS:
            click.echo(f"bonus {format_amount(t.amount)} {t.currency} to {refs.get(t.credit_account_id)} (transfer {t.id})")


# --- posting ---------------------------------------------------------------------


@ledger.command()
@click.option("--from", "debit", type=ACCOUNT, required=True, help="Account debited (money leaves it).")
@click.option("--to", "credit", type=ACCOUNT, required=True, help="Account credited.")
@click.option("--amount", type=AMOUNT, required=True, help="Amount in CNY, such as 12.34.")
@click.option("--kind", type=CLIENT_TRANSFER_KINDS, required=True, help="What the transfer is for.")
@_channel_option
@_key_option
@click.option("--pending", is_flag=True, help="Post a hold (two-phase): resolve it with post-pending or void.")
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), metavar="SECONDS",
              help="With --pending: the hold expires after SECONDS.")
@click.option("--memo", default="", help="Free text (bill number, merchant reference), at most 64 characters.")
@pass_app
def transfer(app: AppContext, debit: int | str, credit: int | str, amount: int, kind: str, channel: str, key: str | None,
             pending: bool, timeout_s: int | None, memo: str) -> None:
    """Move AMOUNT from one account to another, once per idempotency key."""
    request = Transfer(_key(key), debit, credit, amount, TransferKind(kind), Channel(channel),
                       pending=pending, timeout_s=timeout_s or 0, memo=memo)
    _post(app, request, generated=key is None)


@ledger.command("post-pending")
@click.argument("pending_id", metavar="ID", type=ID)
@_channel_option
@_key_option
@pass_app
def post_pending(app: AppContext, pending_id: int, channel: str, key: str | None) -> None:
    """Complete the hold ID for its full amount."""
    _post(app, PostPending(_key(key), pending_id, Channel(channel)), generated=key is None)


@ledger.command()
@click.argument("pending_id", metavar="ID", type=ID)
@_channel_option
@_key_option
@pass_app
def void(app: AppContext, pending_id: int, channel: str, key: str | None) -> None:
    """Cancel the hold ID; its amount is released."""
    _post(app, VoidPending(_key(key), pending_id, Channel(channel)), generated=key is None)


@ledger.command()
@click.argument("transfer_id", metavar="ID", type=ID)
@click.option("--memo", default="", help="Why the transfer is reversed.")
@_channel_option
@_key_option
@pass_app
def reverse(app: AppContext, transfer_id: int, memo: str, channel: str, key: str | None) -> None:
    """Correct transfer ID with a transfer the other way (bonuses it earned are taken back with it)."""
    _post(app, Reverse(_key(key), transfer_id, Channel(channel), memo), generated=key is None)


@ledger.command()
@pass_app
def expire(app: AppContext) -> None:
    """Expire every hold whose timeout has passed."""
    from simwallet.gateway.ledger.ledger import EXPIRE_BATCH_MAX

    book = app.ledger()
    expired: list[PostedTransfer] = []
    failed: list[RequestError] = []
    for _ in range(EXPIRE_SWEEPS_MAX):
        results = book.expire_due()
        expired.extend(t for r in results if r.error is None for t in r.transfers)
        failed.extend(r.error for r in results if r.error is not None)
        if len(results) < EXPIRE_BATCH_MAX or all(r.error is not None for r in results):
            break
    refs = _refs_of(app, expired)
    if app.json:
        render.emit_json({"expired": [render.transfer_doc(t, refs) for t in expired],
                          "failed": [{"code": e.code, "field": e.field, "message": e.message} for e in failed]})
    else:
        click.echo(f"expired {len(expired)} hold(s)")
        if expired:
            render.table(render.TRANSFER_COLUMNS, render.transfer_rows(expired, refs), right=("id", "amount"))
        for e in failed:
            click.echo(f"could not expire: {e}", err=True)
    if failed:
        raise click.exceptions.Exit(errors.ExitCode.USER)


# --- reading ---------------------------------------------------------------------


@ledger.command()
@click.argument("ref", metavar="REF_OR_ID", type=ACCOUNT)
@click.option("--as-of-transfer", type=ID, metavar="ID",
              help="The balance just after transfer ID.")
@click.option("--as-of", type=INSTANT, metavar="TIME",
              help="The balance at TIME (ISO 8601; no offset means Shanghai time).")
@pass_app
def balance(app: AppContext, ref: int | str, as_of_transfer: int | None, as_of: int | None) -> None:
    """An account's balance, available amount and four running sums, now or as of a transfer or a time."""
    upto_id, upto_ts_us = as_of_transfer, as_of
    if upto_id is not None and upto_ts_us is not None:
        raise click.UsageError("give --as-of-transfer or --as-of, not both")
    book = app.ledger()
    current = book.account(ref)
    view = current
    when: dict[str, Any] | None = None
    if upto_id is not None or upto_ts_us is not None:
        sums = book.sums_as_of(current.id, transfer_id=upto_id, ts_us=upto_ts_us)
        view = replace(current, debits_pending=sums.debits_pending, debits_posted=sums.debits_posted,
                       credits_pending=sums.credits_pending, credits_posted=sums.credits_posted)
        when = {"transfer_id": upto_id, "time": None if upto_ts_us is None else render.iso_time(upto_ts_us),
                "time_us": upto_ts_us}
    if app.json:
        render.emit_json({"as_of": when, "account": render.account_doc(view)})
        return
    title = "now" if when is None else (f"after transfer {upto_id}" if upto_id is not None else f"at {when['time']}")
    render.fields([
        ("balance", render.amount_text(view.balance)), ("available", render.amount_text(view.available)),
        ("debits pending", render.amount_text(view.debits_pending)), ("debits posted", render.amount_text(view.debits_posted)),
        ("credits pending", render.amount_text(view.credits_pending)),
        ("credits posted", render.amount_text(view.credits_posted)),
    ], title=f"{view.ref} (id {view.id}, {view.kind.value}, {view.currency}) {title}")


@ledger.command()
@click.argument("ref", metavar="REF_OR_ID", type=ACCOUNT)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Lines to show.")
@click.option("--before-id", type=ID, metavar="ID", help="Only transfers older than ID (next page).")
@pass_app
def history(app: AppContext, ref: int | str, limit: int, before_id: int | None) -> None:
    """An account's transfers, newest first, with the posted balance after each."""
    book = app.ledger()
    acct = book.account(ref)
    lines = book.history(acct.id, limit=limit, before_id=before_id)
    refs = _refs_of(app, [line.transfer for line in lines])
    more = lines[-1].transfer.id if len(lines) == limit else None
    if app.json:
        render.emit_json({"account": {"id": acct.id, "ref": acct.ref}, "next_before_id": more, "lines": [
            {**render.transfer_doc(line.transfer, refs), "direction": line.direction,
             **render.money("balance_after", line.balance_after)} for line in lines]})
        return
    rows = []
    for line in lines:
        t = line.transfer
        other = t.credit_account_id if line.direction == "debit" else t.debit_account_id
        # A debit lowers a credit-normal account (a wallet) and raises a debit-normal one (an expense).
        sign = "-" if (line.direction == "debit") != acct.debit_normal else "+"
        rows.append([t.id, render.human_time(t.ts_us), t.kind.value, t.phase.value, line.direction, refs.get(other, other),
                     f"{sign}{format_amount(t.amount)}", render.amount_text(line.balance_after), t.memo])
    render.table(("id", "time (Shanghai)", "kind", "phase", "direction", "counterparty", "amount", "balance after", "memo"),
                 rows, title=f"{acct.ref} (id {acct.id})", right=("id", "amount", "balance after"))
    if more is not None:
        app.note(f"more: --before-id {more}")


@ledger.command()
@pass_app
def verify(app: AppContext) -> None:
    """Recompute the ledger from its transfers and check every invariant (exit 4 if one fails)."""
    from simwallet.gateway.ledger.verify import verify_ledger

    report = verify_ledger(app.engine)
    if app.json:
        render.emit_json({"ok": report.ok, "accounts": report.accounts, "transfers": report.transfers, "checks": [
            {"name": c.name, "ok": c.ok, "violations": c.violations, "description": c.description, "examples": c.examples}
            for c in report.checks]})
    else:
        render.table(("check", "result", "violations", "what it checks"),
                     [(c.name, "ok" if c.ok else "FAIL", c.violations, c.description) for c in report.checks],
                     right=("violations",))
        for c in report.checks:
            for example in c.examples:
                click.echo(f"  {c.name}: {example}")
        summary = f"{report.accounts} accounts, {report.transfers} transfers: "
        failed = sum(not c.ok for c in report.checks)
        click.echo(summary + ("all checks passed" if report.ok else f"{failed} check(s) FAILED"))
    if not report.ok:
        raise click.exceptions.Exit(errors.ExitCode.INTEGRITY)


def _export_rows(engine: Engine, since_id: int) -> Iterator[Any]:
    """Transfers with their account references, streamed in id order."""
    import sqlalchemy as sa

    from simwallet.gateway.store.schema import accounts, transfers

    debit, credit = accounts.alias("d"), accounts.alias("c")
    t = transfers.c
    query = (sa.select(t.id, t.ts_us, t.idempotency_key, debit.c.ref.label("debit_ref"), credit.c.ref.label("credit_ref"),
                       t.amount, t.currency, t.kind, t.channel, t.phase, t.pending_id, t.reverses_id, t.cause_id, t.memo)
             .join(debit, debit.c.id == t.debit_account_id).join(credit, credit.c.id == t.credit_account_id)
             .where(t.id > since_id).order_by(t.id))
    # One statement: a consistent snapshot; yield_per streams it (a server-side cursor on PostgreSQL).
    with engine.connect().execution_options(simwallet_readonly=True) as conn:
        yield from conn.execute(query, execution_options={"yield_per": EXPORT_CHUNK_ROWS})


@ledger.command()
@click.option("--output", "-o", default="-", show_default=True, metavar="FILE|-", help="Where to write the CSV.")
@click.option("--since-id", type=click.IntRange(0, ID_MAX), default=0, metavar="ID",
              help="Only transfers with an id above ID (the last id of a previous export).")
@pass_app
def export(app: AppContext, output: str, since_id: int) -> None:
    """Write the transfers as CSV (amounts as 12.34, times ISO 8601 in Shanghai time)."""
    count, first, last = 0, None, None
    # atomic: a file appears only complete, under its name, when the export succeeded.
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as stream:
        writer = csv.writer(stream)
        writer.writerow(EXPORT_COLUMNS)
        for row in _export_rows(app.engine, since_id):
            writer.writerow([row.id, render.iso_time(row.ts_us), row.idempotency_key, row.debit_ref, row.credit_ref,
                             format_amount(row.amount), row.currency, row.kind, row.channel, row.phase,
                             _blank(row.pending_id), _blank(row.reverses_id), _blank(row.cause_id), row.memo])
            count += 1
            first = row.id if first is None else first
            last = row.id
    summary = {"output": output, "rows": count, "first_id": first, "last_id": last}
    if app.json and output != "-":
        render.emit_json(summary)
    else:
        app.note(f"exported {count} transfer(s)" + (f", ids {first}..{last}" if count else "") +
                 ("" if output == "-" else f" to {output}"))


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)
