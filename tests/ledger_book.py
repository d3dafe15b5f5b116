"""The ledger the behaviour and bad-input tests share: a fresh database with a funded wallet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.ledger.model import PostedTransfer, Transfer, TransferKind
from simwallet.gateway.store.schema import holds, transfers

P2P = TransferKind.P2P


def us(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> int:
    """Microseconds since the epoch of a UTC wall-clock time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1_000_000 + micro


# 10:00 in Beijing; local midnight is 16:00 UTC.
T0_US = us(2026, 3, 10, 2)
SECOND_US = 1_000_000


class Clock:
    """The ledger's injected clock: microseconds since the epoch, moved by the test."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: int) -> None:
        self.now_us += seconds * SECOND_US


@dataclass
class Book:
    ledger: Ledger
    engine: Engine
    clock: Clock
    bank: int  # bank settlement, no balance flag: it can fund the others
    wallet: int  # customer wallet, funded with 10,000 fen
    other: int  # customer wallet, empty
    merchant: int

    def pay(self, key: str, debit: int | str, credit: int | str, amount: int, **kw: Any) -> PostedTransfer:
        return self.ledger.post_one(Transfer(key, debit, credit, amount, kw.pop("kind", P2P), **kw))

    def hold(self, key: str, debit: int, credit: int, amount: int, timeout_s: int = 60) -> PostedTransfer:
        return self.pay(key, debit, credit, amount, pending=True, timeout_s=timeout_s)

    def balances(self, *ids: int) -> tuple[int, ...]:
        return tuple(self.ledger.account(i).balance for i in ids)

    def n_transfers(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()

    def open_holds(self) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(holds.c.transfer_id)).scalars())
