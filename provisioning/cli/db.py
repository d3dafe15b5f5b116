"""``simwallet db``: the database schema (Alembic migrations in ``gateway/store/migrations``).

Every other command opens the database with ``open_engine``, which migrates a
fresh SQLite file on the spot but refuses a PostgreSQL database whose schema is
behind; ``db upgrade`` is the deliberate step that brings it to head.
"""

from __future__ import annotations

import click

from simwallet.provisioning.cli import render
from simwallet.provisioning.cli.context import AppContext, pass_app


@click.group()
def db() -> None:
    """Database schema: upgrade and inspect."""


def _current(url: str) -> str | None:
    from simwallet.gateway.store.engine import current_revision, make_engine

    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


@db.command()
@pass_app
def upgrade(app: AppContext) -> None:
    """Run the migrations up to head (safe to run again)."""
    from simwallet.gateway.store.engine import head_revision
    from simwallet.gateway.store.engine import upgrade as run_upgrade

    before = _current(app.db_url)
    run_upgrade(app.db_url)
    after = _current(app.db_url)
    if app.json:
        render.emit_json({"database": app.safe_db_url, "from": before, "to": after, "head": head_revision(),
                          "changed": before != after})
        return
    if before == after:
        click.echo(f"{app.safe_db_url}: already at {after}")
    else:
        click.echo(f"{app.safe_db_url}: upgraded from {before or 'an empty database'} to {after}")


@db.command()
@pass_app
def current(app: AppContext) -> None:
    """The schema revision of the database and the one this simwallet needs."""
    from simwallet.gateway.store.engine import head_revision

    now, head = _current(app.db_url), head_revision()
    if app.json:
        render.emit_json({"database": app.safe_db_url, "current": now, "head": head, "up_to_date": now == head})
        return
    render.fields([("database", app.safe_db_url), ("current", now or "empty (no schema)"), ("head", head)])
    if now != head:
        app.note("the database is behind: run `simwallet db upgrade`")
