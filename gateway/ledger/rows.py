"""The ledger's rows as values, and the reads that need no lock: sums recomputed, accounts by reference, COPY.

Shared by :mod:`.ledger` (the posting driver) and :mod:`.verify`; nothing here
writes except :func:`copy_rows`, which runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from simwallet.gateway.errors import RejectCode, RequestError
from simwallet.gateway.ledger.model import (
    Account,
    AccountFlags,
    AccountKind,
    AccountStatus,
    Channel,
    Phase,
    PostedTransfer,
    TransferKind,
)
from simwallet.gateway.store.schema import accounts, transfers


@dataclass(frozen=True)
class Sums:
    """An account's four running sums, as cached or as recomputed."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


@dataclass(frozen=True)
class HistoryLine:
    transfer: PostedTransfer
    direction: str  # "debit" or "credit" from the account's side
    balance_after: int  # posted balance after this transfer, in the account's natural direction


def row_to_transfer(row: Any) -> PostedTransfer:
    return PostedTransfer(
        id=row.id, idempotency_key=row.idempotency_key, debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id, amount=row.amount, currency=row.currency,
        kind=TransferKind(row.kind), channel=Channel(row.channel), phase=Phase(row.phase), ts_us=row.ts_us,
        pending_id=row.pending_id, reverses_id=row.reverses_id, cause_id=row.cause_id, expires_us=row.expires_us,
        memo=row.memo,
    )


def row_to_account(row: Any) -> Account:
    return Account(
        id=row.id, ref=row.ref, kind=AccountKind(row.kind), currency=row.currency, flags=AccountFlags(row.flags),
        status=AccountStatus(row.status), owner=row.owner, tier=row.tier, debits_pending=row.debits_pending,
        debits_posted=row.debits_posted, credits_pending=row.credits_pending, credits_posted=row.credits_posted,
    )


def recompute_sums(conn: sa.Connection, account_ids: Sequence[int] | None = None, *, upto_id: int | None = None,
                   upto_ts_us: int | None = None) -> dict[int, Sums]:
    """Every account's four sums recomputed from the transfer rows alone (for ``verify`` and as-of balances)."""
    posted = transfers.c.phase.in_((Phase.SINGLE.value, Phase.POST.value))
    pending_delta = sa.case(
        (transfers.c.phase == Phase.PENDING.value, transfers.c.amount),
        (transfers.c.phase.in_((Phase.POST.value, Phase.VOID.value, Phase.EXPIRE.value)), -transfers.c.amount),
        else_=0,
    )
    posted_amount = sa.case((posted, transfers.c.amount), else_=0)
    filters = []
    if upto_id is not None:
        filters.append(transfers.c.id <= upto_id)
    if upto_ts_us is not None:
        filters.append(transfers.c.ts_us <= upto_ts_us)
    out: dict[int, list[int]] = {}
    for side, offset in ((transfers.c.debit_account_id, 0), (transfers.c.credit_account_id, 2)):
        query = sa.select(side, sa.func.sum(pending_delta), sa.func.sum(posted_amount)).where(*filters).group_by(side)
        if account_ids is not None:
            query = query.where(side.in_(account_ids))
        for account_id, pending, posted_sum in conn.execute(query):
            sums = out.setdefault(account_id, [0, 0, 0, 0])
            sums[offset] = int(pending or 0)
            sums[offset + 1] = int(posted_sum or 0)
    return {i: Sums(*s) for i, s in out.items()}


def account_in(conn: sa.Connection, ref: int | str) -> Account:
    row = conn.execute(sa.select(accounts).where(account_clause(ref))).first()
    if row is None:
        raise RequestError(RejectCode.ACCOUNT_NOT_FOUND, "account", f"no account {ref!r}")
    return row_to_account(row)


def account_clause(ref: int | str) -> sa.ColumnElement[bool]:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return accounts.c.id == int(ref)
    return accounts.c.ref == ref


def copy_rows(conn: sa.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY rows (dicts with the same keys, in column order) into ``table`` in the connection's transaction."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(rows[0])}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row.values()))
    except Exception as exc:  # psycopg's own errors: translate so that _in_tx can retry
        raise translate_copy_error(exc) from exc


def translate_copy_error(exc: Exception) -> Exception:
    """Wrap a psycopg error raised by COPY the way SQLAlchemy wraps those of execute()."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith("23"):
        return sa.exc.IntegrityError("COPY transfers", None, exc)
    if sqlstate:
        return sa.exc.DBAPIError("COPY transfers", None, exc)
    return exc
