"""Alembic environment: runs migrations on the connection handed in by ``store.engine.upgrade``."""

from __future__ import annotations

from alembic import context

from simwallet.gateway.store.engine import make_engine
from simwallet.gateway.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Run by the `alembic` command line with `-x url=...` (developers only).
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass -x url=DATABASE_URL")
    engine = make_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `simwallet db upgrade`")
run_migrations_online()
