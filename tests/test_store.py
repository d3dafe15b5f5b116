"""The store: Alembic migrations create exactly the schema the code declares, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from simwallet.gateway.errors import StoreError
from simwallet.gateway.store.engine import current_revision, downgrade, head_revision, make_engine, open_engine, upgrade
from simwallet.gateway.store.pgtemp import TempCluster
from simwallet.gateway.store.schema import metadata


def _schema_diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_create_the_declared_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_round_trip(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _schema_diff(engine) == []
        with engine.connect() as conn:  # the default tiers are seeded again
            assert conn.execute(sa.text("SELECT count(*) FROM product_tiers")).scalar_one() == 3
    finally:
        engine.dispose()


def test_fresh_sqlite_file_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "fresh.sqlite3"
    engine = open_engine(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()


def test_postgresql_behind_head_is_refused_until_upgraded(pg_cluster: TempCluster) -> None:
    url = pg_cluster.create_database("behind_head")
    try:
        with pytest.raises(StoreError, match="simwallet db upgrade"):
            open_engine(url)
        upgrade(url)
        engine = open_engine(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()
    finally:
        pg_cluster.drop_database("behind_head")


def test_unsupported_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        make_engine("mysql://localhost/x")
