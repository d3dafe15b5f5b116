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


def test_postgresql_plans_every_execution_and_looks_keys_up_by_index(pg_url: str) -> None:
    # psycopg prepares a statement after five uses; PostgreSQL may then keep one generic plan made
    # while wallet_replies was small (a sequential scan) as it grows. A serving engine asks for a plan per execution.
    from simwallet.gateway.store.schema import wallet_replies

    def rows(first: int, count: int) -> list[dict[str, object]]:
        return [
            {"request_key": f"k{n}", "channel": "sms", "msisdn": "8613800138000", "message_id": "balance",
             "lang": "en", "outcome": "ok", "params": "{}", "transfer_ids": "[]", "ts_us": n}
            for n in range(first, first + count)
        ]  # fmt: skip

    keys = "'{" + ",".join(f"x{n}" for n in range(75)) + "}'"
    bulk = open_engine(pg_url)  # the ledger's bulk batches keep PostgreSQL's choice
    with bulk.connect() as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one() == "auto"
    bulk.dispose()
    engine = open_engine(pg_url, plan_per_execution=True)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one() == "force_custom_plan"
            conn.execute(wallet_replies.insert(), rows(0, 50))
            conn.exec_driver_sql("ANALYZE wallet_replies")
            conn.exec_driver_sql("PREPARE by_keys(varchar[]) AS SELECT request_key FROM wallet_replies WHERE request_key = ANY($1)")
            for _ in range(8):  # past the plan cache's five custom plans, on a small table
                conn.exec_driver_sql(f"EXECUTE by_keys({keys})").all()
            conn.execute(wallet_replies.insert(), rows(50, 20_000))  # grows before any ANALYZE
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN EXECUTE by_keys('{k7,k70,k700}')").scalars())
            conn.rollback()
        assert "Index" in plan and "Seq Scan" not in plan
    finally:
        engine.dispose()


def test_insert_new_skips_existing_keys_in_one_statement(db_url: str) -> None:
    """insert_new stores every new row once, keeps the row an existing key has, takes NULLs, and is one statement."""
    from simwallet.gateway.store.schema import accounts
    from simwallet.gateway.store.sql import insert_new

    def row(ref: str, owner: str, tier: str | None = None) -> dict[str, object]:
        return {"ref": ref, "kind": "customer_airtime", "currency": "CNY", "flags": 0, "status": "open",
                "owner": owner, "tier": tier, "created_us": 1}  # fmt: skip

    engine = open_engine(db_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        with engine.begin() as conn:
            insert_new(conn, accounts, [row("a/1", "first"), row("a/2", "first")], key="ref")
            insert_new(conn, accounts, [], key="ref")  # nothing to do: no statement
            # a/2 exists: kept as it was; a/3 twice in one call: stored once.
            insert_new(conn, accounts, [row("a/2", "second"), row("a/3", "second"), row("a/3", "third")], key="ref")
            found = dict(conn.execute(sa.select(accounts.c.ref, accounts.c.owner).order_by(accounts.c.ref)).all())
            ids = dict(conn.execute(sa.select(accounts.c.ref, accounts.c.id)).all())
            tiers = set(conn.execute(sa.select(accounts.c.tier)).scalars())
        assert found == {"a/1": "first", "a/2": "first", "a/3": "second"}
        assert ids["a/3"] == ids["a/2"] + 1  # the existing a/2 spent no id
        assert tiers == {None}
        inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 2
        if engine.dialect.name == "postgresql":
            assert "unnest" in inserts[0] and inserts[0] == inserts[1]  # one text for every batch size
    finally:
        engine.dispose()
