"""Output of the ``simwallet`` command: one JSON document for programs, rich tables for people.

Conventions shared by every command:

* Money is shown as ``12.34`` (:func:`simwallet.gateway.money.format_amount`),
  never through ``float``. In JSON each amount ``x`` appears twice: ``x_fen``,
  the integer number of fen, and ``x``, the ``"12.34"`` text.
* Times are shown in Asia/Shanghai, the wallet's local time; JSON gives ISO
  8601 with the ``+08:00`` offset beside the raw ``…_us`` microseconds (UTC epoch).
* Table cells are plain text: a memo that looks like rich markup is printed as typed.

Only this package prints; the library returns values.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from simwallet.gateway.ledger.limits import LOCAL_TZ
from simwallet.gateway.ledger.model import Account, AccountFlags, PostedTransfer
from simwallet.gateway.money import format_amount

if TYPE_CHECKING:
    from rich.console import Console

# Width of tables when stdout is not a terminal (a pipe, a file, a test):
# wide enough that no column of a transfer listing wraps.
PIPE_WIDTH_COLUMNS = 200

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- values -----------------------------------------------------------------------


def money(name: str, fen: int | None) -> dict[str, Any]:
    """``{"x_fen": 1234, "x": "12.34"}`` for the amount called ``x`` (both ``None`` when absent)."""
    return {f"{name}_fen": fen, name: None if fen is None else format_amount(fen)}


def amount_text(fen: int | None) -> str:
    return "-" if fen is None else format_amount(fen)


def local_datetime(ts_us: int) -> datetime:
    # Integer arithmetic: a float timestamp would round microseconds.
    return (_EPOCH + timedelta(microseconds=ts_us)).astimezone(LOCAL_TZ)


def iso_time(ts_us: int) -> str:
    """ISO 8601 in Asia/Shanghai with microseconds and offset: ``2026-11-14T10:03:04.123456+08:00``."""
    return local_datetime(ts_us).isoformat(timespec="microseconds")


def human_time(ts_us: int) -> str:
    """Local time to the second, for tables: ``2026-11-14 10:03:04``."""
    return local_datetime(ts_us).strftime("%Y-%m-%d %H:%M:%S")


# --- documents --------------------------------------------------------------------


def flag_names(flags: AccountFlags) -> list[str]:
    return [f.name.lower() for f in AccountFlags if f and f in flags and f.name]


def account_doc(account: Account) -> dict[str, Any]:
    return {
        "id": account.id, "ref": account.ref, "kind": account.kind.value, "owner": account.owner,
        "currency": account.currency, "status": account.status.value, "tier": account.tier,
        "flags": flag_names(account.flags),
        **money("balance", account.balance), **money("available", account.available),
        **money("debits_pending", account.debits_pending), **money("debits_posted", account.debits_posted),
        **money("credits_pending", account.credits_pending), **money("credits_posted", account.credits_posted),
    }


def transfer_doc(transfer: PostedTransfer, refs: Mapping[int, str]) -> dict[str, Any]:
    return {
        "id": transfer.id, "ts": iso_time(transfer.ts_us), "ts_us": transfer.ts_us,
        "idempotency_key": transfer.idempotency_key,
        "debit_account_id": transfer.debit_account_id, "debit_account": refs.get(transfer.debit_account_id),
        "credit_account_id": transfer.credit_account_id, "credit_account": refs.get(transfer.credit_account_id),
        **money("amount", transfer.amount), "currency": transfer.currency, "kind": transfer.kind.value,
        "channel": transfer.channel.value, "phase": transfer.phase.value, "pending_id": transfer.pending_id,
        "reverses_id": transfer.reverses_id, "cause_id": transfer.cause_id,
        "expires": None if transfer.expires_us is None else iso_time(transfer.expires_us), "expires_us": transfer.expires_us,
        "memo": transfer.memo,
    }


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout (UTF-8 text kept: campaign names are Chinese)."""
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


# --- tables -----------------------------------------------------------------------


def console() -> Console:
    """A console on the current stdout (created per call, so that test runners can swap stdout)."""
    from rich.console import Console

    stream = sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH_COLUMNS
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, emoji=False)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None,
          right: Iterable[str] = ()) -> None:
    """Print rows under ``columns``; columns named in ``right`` (amounts, ids) are right-aligned."""
    from rich.table import Table
    from rich.text import Text

    aligned = set(right)
    if title:
        click.echo(title)
    grid = Table()
    for name in columns:
        grid.add_column(name, justify="right" if name in aligned else "left", overflow="fold")
    for row in rows:
        grid.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console().print(grid)


def fields(pairs: Iterable[tuple[str, object]], *, title: str | None = None) -> None:
    """Print aligned ``name  value`` lines: the human form of one record."""
    items = [(name, "-" if value is None else str(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0)
    if title:
        click.echo(title)
    for name, value in items:
        click.echo(f"{name:<{width}}  {value}")


def transfer_rows(transfers: Iterable[PostedTransfer], refs: Mapping[int, str]) -> list[list[object]]:
    return [[t.id, human_time(t.ts_us), t.kind.value, t.phase.value, refs.get(t.debit_account_id, t.debit_account_id),
             refs.get(t.credit_account_id, t.credit_account_id), amount_text(t.amount), t.channel.value, t.memo]
            for t in transfers]


TRANSFER_COLUMNS = ("id", "time (Shanghai)", "kind", "phase", "from", "to", "amount", "channel", "memo")
