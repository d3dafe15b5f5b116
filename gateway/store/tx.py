"""Write transactions that are run again after a conflict the database asks the client to retry.

Spec: PostgreSQL's SQLSTATE class 40 (serialization failure 40001, deadlock
detected 40P01) and 55P03 (lock not available), after which the transaction
"should be retried"; SQLite's SQLITE_BUSY / SQLITE_LOCKED ("database is
locked") when another writer holds the file past the busy timeout; and a
unique-key race (two writers inserting the same key), which a retry resolves
by reading what the other one wrote.

:func:`run_in_transaction` is the one place the ledger and the card registry
go through; each passes its own bound on attempts and its own back-off, and
the error names what was being attempted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final, TypeVar

import sqlalchemy as sa

from simwallet.gateway.errors import StoreError

T = TypeVar("T")

# SQLSTATEs after which PostgreSQL asks the client to run the transaction again.
PG_RETRY_SQLSTATES: Final = frozenset({"40001", "40P01", "55P03"})
# Doubling of the back-off stops here (2**8 times the first pause).
BACKOFF_DOUBLINGS_MAX: Final = 8


def is_retryable(engine: sa.Engine, exc: sa.exc.DBAPIError) -> bool:
    """Whether the database asks for the transaction to be run again."""
    if engine.dialect.name == "postgresql":
        return getattr(exc.orig, "sqlstate", None) in PG_RETRY_SQLSTATES
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)


def run_in_transaction(
    engine: sa.Engine,
    work: Callable[[sa.Connection], T],
    *,
    attempts_max: int,
    backoff_s: float,
    what: str,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``work`` in a write transaction; again after a unique-key race or a retryable conflict.

    The pause after attempt n is ``backoff_s * 2**n`` (capped), times a jitter in [0.5, 1.5) when ``rng`` is
    given. After ``attempts_max`` attempts the last conflict becomes a :class:`StoreError` naming ``what``.
    """
    last: Exception | None = None
    for attempt in range(attempts_max):
        try:
            with engine.begin() as conn:
                return work(conn)
        except sa.exc.IntegrityError as exc:
            last = exc  # a concurrent writer inserted one of our keys first; the retry reads it
        except sa.exc.DBAPIError as exc:
            if not is_retryable(engine, exc):
                raise StoreError(f"database error: {exc.orig}") from exc
            last = exc
        jitter = 1.0 if rng is None else 0.5 + rng.random()
        sleep(backoff_s * (2 ** min(attempt, BACKOFF_DOUBLINGS_MAX)) * jitter)
    raise StoreError(f"{what} still conflicting after {attempts_max} attempts: {last}") from last
