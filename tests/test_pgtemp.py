"""The throwaway PostgreSQL cluster starts, serves, copies templates and cleans up."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from simwallet.gateway.store.pgtemp import (
    FAST_TEST_SETTINGS,
    PG_BIN_ENV,
    PostgresNotFoundError,
    TempCluster,
    find_bin_dir,
)


def test_cluster_lifecycle() -> None:
    cluster = TempCluster(settings=FAST_TEST_SETTINGS)
    with cluster:
        data_dir = cluster.data_dir
        assert data_dir.is_dir()
        assert cluster.host == "127.0.0.1"
        assert (cluster.bin_dir / "pgbench").exists()

        url = cluster.create_database("source")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/source"
        with psycopg.connect(cluster.dsn("source")) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("show fsync").fetchone() == ("off",)
            assert conn.execute("show max_connections").fetchone() == ("200",)
            conn.execute("create table marker (n integer)")
            conn.execute("insert into marker values (42)")

        copy_url = cluster.create_database("copy of source", template="source")
        engine = sqlalchemy.create_engine(copy_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select n from marker")).scalar_one() == 42
        finally:
            engine.dispose()

        cluster.drop_database("copy of source")
        cluster.drop_database("copy of source")  # IF EXISTS: a second drop is harmless
        with psycopg.connect(cluster.dsn()) as conn:
            names = {row[0] for row in conn.execute("select datname from pg_database")}
        assert "source" in names
        assert "copy of source" not in names

    assert not data_dir.exists()
    assert not data_dir.parent.exists()
    cluster.stop()  # a second stop is harmless
    with pytest.raises(RuntimeError):
        _ = cluster.port


def test_default_settings_are_durable() -> None:
    with TempCluster() as cluster, psycopg.connect(cluster.dsn()) as conn:
        assert conn.execute("show fsync").fetchone() == ("on",)
        assert conn.execute("show synchronous_commit").fetchone() == ("on",)


def test_reserved_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        TempCluster(settings={"port": "5432"})


def test_missing_binaries_name_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFoundError, match="Debian package 'postgresql'"):
        find_bin_dir({}, pg_root=tmp_path)
    with pytest.raises(PostgresNotFoundError, match=PG_BIN_ENV):
        find_bin_dir({PG_BIN_ENV: os.fspath(tmp_path)})


def test_highest_major_wins(tmp_path: Path) -> None:
    for major in ("9", "15", "16"):
        bin_dir = tmp_path / major / "bin"
        bin_dir.mkdir(parents=True)
        if major != "16":  # an incomplete installation does not count
            for name in ("initdb", "pg_ctl", "postgres"):
                (bin_dir / name).touch(mode=0o755)
    assert find_bin_dir({}, pg_root=tmp_path) == tmp_path / "15" / "bin"
