"""Database engines for the ledger: SQLite (embedded default) and PostgreSQL.

SQLite is set up for many writing processes: WAL journal, ``synchronous=FULL``
(a commit is on disk when it returns), a busy timeout, and write transactions
that start with ``BEGIN IMMEDIATE`` so that two writers never both read and
then fail to upgrade their lock. A connection opened with the execution option
``simwallet_readonly=True`` begins a deferred transaction instead, so that
reports do not queue behind writers.

PostgreSQL runs at READ COMMITTED; the ledger takes row locks in a fixed order
and retries on serialization failures and deadlocks (see ``ledger.py``).

Schema changes go through Alembic; :func:`upgrade` runs them to head and
:func:`open_engine` upgrades a fresh embedded database automatically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from platformdirs import user_data_dir
from sqlalchemy.engine import Engine

from simwallet.gateway.errors import StoreError
from simwallet.gateway.store.schema import CREATE_ACCOUNT_SUMS

# How long a SQLite writer waits for the lock before giving up: long enough for
# a large batch of another process to commit.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connections per process to PostgreSQL: the gateway's committer and a few readers.
PG_POOL_SIZE = 8

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def default_url() -> str:
    """``SIMWALLET_DB`` or a SQLite file in the user's data directory."""
    env = os.environ.get("SIMWALLET_DB")
    if env:
        return env
    path = Path(user_data_dir("simwallet", appauthor=False)) / "simwallet.sqlite3"
    return f"sqlite:///{path}"


def is_sqlite(url: str | sa.URL) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, plan_per_execution: bool = False, **kwargs: Any) -> Engine:
    """An engine set up for the ledger's concurrency model on either database.

    ``plan_per_execution`` (PostgreSQL): psycopg prepares a statement after a few
    uses, and PostgreSQL may then keep one generic plan per connection, chosen
    while a table was small (a sequential scan of an empty ``wallet_replies``)
    until the table is next analysed. A serving gateway, whose statements name at
    most a batch of keys, asks for a plan made for each execution's values
    instead (the parse is still saved). Bulk ledger batches of thousands of keys
    keep the generic plans: planning them each time costs more than it saves.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _setup_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs.setdefault("pool_size", PG_POOL_SIZE)
        kwargs.setdefault("pool_pre_ping", True)
        if plan_per_execution:
            kwargs.setdefault("connect_args", {"options": "-c plan_cache_mode=force_custom_plan"})
        engine = sa.create_engine(parsed, isolation_level="READ COMMITTED", **kwargs)
        _setup_postgresql(engine)
        return engine
    raise StoreError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://")


def _setup_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("simwallet_readonly"):
            conn.exec_driver_sql("BEGIN DEFERRED")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _setup_postgresql(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The ledger's per-connection scratch table for account updates (schema.CREATE_ACCOUNT_SUMS).
        with dbapi_connection.cursor() as cursor:
            cursor.execute(CREATE_ACCOUNT_SUMS)
        dbapi_connection.commit()


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise StoreError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on a URL or engine."""
    _migrate(target, command.upgrade, revision)


def downgrade(target: str | Engine, revision: str) -> None:
    """Run the Alembic migrations down to ``revision`` (``base`` removes everything); for developers and tests."""
    _migrate(target, command.downgrade, revision)


def _migrate(target: str | Engine, step: Callable[[Config, str], None], revision: str) -> None:
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as conn:
            step(_alembic_config(conn), revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"migration failed: {exc}") from exc
    finally:
        if isinstance(target, str):
            engine.dispose()


def open_engine(url: str, *, auto_upgrade_sqlite: bool = True, **kwargs: Any) -> Engine:
    """An engine whose schema is at head.

    A fresh embedded (SQLite) database is created and migrated on the spot; any
    other database that is behind raises :class:`StoreError` asking for
    ``simwallet db upgrade``, so that a production schema change is always a
    deliberate step.
    """
    engine = make_engine(url, **kwargs)
    try:
        current = current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {sa.make_url(url).render_as_string(hide_password=True)}: {exc}") from exc
    if current == head_revision():
        return engine
    if current is None and auto_upgrade_sqlite and is_sqlite(url):
        upgrade(engine)
        return engine
    engine.dispose()
    raise StoreError(
        f"database schema is at {current or 'nothing'}, this simwallet needs {head_revision()}: run `simwallet db upgrade`"
    )
