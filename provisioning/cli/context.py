"""The typed context of one ``simwallet`` run, shared by every command group.

The database engine is opened lazily, the first time a command asks for it,
and disposed when the root click context closes (``ctx.call_on_close``), so
``--help`` and the ``db`` commands never open it for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from simwallet.gateway.ledger.ledger import Ledger
    from simwallet.gateway.promotions.store import CampaignStore


@dataclass(frozen=True)
class AppContext:
    """What every command needs: where the database is and how to print. Built once per run."""

    db_url: str
    json: bool
    verbosity: int  # -1 with -q, 0 by default, 1 per -v
    close_later: Callable[[Callable[[], Any]], Any] = field(repr=False, compare=False)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    @property
    def safe_db_url(self) -> str:
        """The URL with its password hidden: the only form that is ever printed."""
        import sqlalchemy as sa

        return sa.make_url(self.db_url).render_as_string(hide_password=True)

    @cached_property
    def engine(self) -> Engine:
        """The engine, schema at head (a fresh SQLite file is migrated on the spot); disposed at exit."""
        return self._open_engine(plan_per_execution=False)

    @cached_property
    def serving_engine(self) -> Engine:
        """The engine of a serving gateway: as :attr:`engine`, with a PostgreSQL plan per execution (``make_engine``)."""
        return self._open_engine(plan_per_execution=True)

    def _open_engine(self, *, plan_per_execution: bool) -> Engine:
        from simwallet.gateway.store.engine import open_engine

        engine = open_engine(self.db_url, plan_per_execution=plan_per_execution)
        self.close_later(engine.dispose)
        return engine

    def ledger(self) -> Ledger:
        from simwallet.gateway.ledger.ledger import Ledger

        return Ledger(self.engine)

    def campaigns(self) -> CampaignStore:
        from simwallet.gateway.promotions.store import CampaignStore

        return CampaignStore(self.engine)

    def note(self, message: str) -> None:
        """A remark for the person at the terminal (stderr), silenced by ``-q``."""
        if not self.quiet:
            click.echo(message, err=True)


pass_app = click.make_pass_decorator(AppContext)
