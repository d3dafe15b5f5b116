"""Shared fixtures: fresh, migrated ledger databases on SQLite and PostgreSQL; a private pcscd.

Every test that takes ``db_url`` runs twice, once per engine (ids ``sqlite``
and ``postgresql``). Migrating for each test would dominate the run time, so
each engine is migrated once per session into a template, and each test gets
a copy: a file copy for SQLite, ``CREATE DATABASE … TEMPLATE`` for PostgreSQL.

PostgreSQL is a throwaway cluster from Debian's binaries
(:mod:`simwallet.gateway.store.pgtemp`), started only when a test needs it.
Missing binaries fail the run: CI must never skip PostgreSQL silently.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from ledger_book import T0_US, Book, Clock
from pcsc_helpers import check
from smartcard.scard import SCARD_SCOPE_USER, SCardEstablishContext, SCardReleaseContext  # type: ignore[import-untyped]

from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountFlags, AccountKind, Transfer, TransferKind
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.pgtemp import FAST_TEST_SETTINGS, TempCluster, TempClusterError
from simwallet.provisioning.pcscd import CSOCK_ENV, PrivatePcscd, free_port_pair

PG_TEMPLATE_DB = "simwallet_template"


def _upgrade(url: str) -> None:
    # Imported late: a run that touches no database needs no migrations.
    from simwallet.gateway.store.engine import upgrade

    upgrade(url)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TempCluster]:
    """A running throwaway PostgreSQL cluster (durability off, for speed)."""
    problem = ""
    try:
        cluster = TempCluster(settings=FAST_TEST_SETTINGS)
        cluster.start()
    except TempClusterError as exc:
        problem = str(exc)
    if problem:  # failed outside the except block, to keep the report to one message
        pytest.fail(f"cannot start the throwaway PostgreSQL cluster: {problem}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _pg_template(pg_cluster: TempCluster) -> str:
    """Name of a migrated, empty PostgreSQL database that per-test databases copy."""
    import psycopg

    url = pg_cluster.create_database(PG_TEMPLATE_DB)
    _upgrade(url)
    # CREATE DATABASE … TEMPLATE refuses a source with open sessions.
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (PG_TEMPLATE_DB,)).fetchone()
    if row is not None and row[0]:
        pytest.fail(f"upgrade() left {row[0]} connection(s) open to {PG_TEMPLATE_DB}; it must dispose its engine", pytrace=False)
    return PG_TEMPLATE_DB


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a migrated, empty SQLite file that per-test databases copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    _upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """SQLAlchemy URL of a fresh, migrated, empty SQLite database."""
    path = tmp_path / "ledger.sqlite3"
    # The backup API copies a consistent image even if the template is in WAL mode.
    with closing(sqlite3.connect(_sqlite_template)) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    return f"sqlite:///{path}"


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, migrated, empty PostgreSQL database (dropped afterwards)."""
    # Requested here rather than as parameters, so that a run without PostgreSQL
    # tests never starts a cluster.
    cluster: TempCluster = request.getfixturevalue("pg_cluster")
    template: str = request.getfixturevalue("_pg_template")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = cluster.create_database(name, template=template)
    try:
        yield url
    finally:
        cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of a fresh, migrated, empty database; the test runs once per engine."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def book(db_url: str) -> Iterator[Book]:
    engine = open_engine(db_url)
    clock = Clock(T0_US)
    ledger = Ledger(engine, clock=clock)
    bank, wallet, other, merchant = ledger.open_accounts([
        AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC"),
        AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:C1"),
        AccountSpec(AccountKind.CUSTOMER_WALLET, "customer:C2"),
        AccountSpec(AccountKind.MERCHANT, "merchant:M1"),
    ])
    assert bank.flags == AccountFlags.NONE
    ledger.post_one(Transfer("fund", bank.id, wallet.id, 10_000, TransferKind.DEPOSIT))
    try:
        yield Book(ledger, engine, clock, bank.id, wallet.id, other.id, merchant.id)
    finally:
        engine.dispose()


# --- PC/SC: a private pcscd per test module (see pcsc_helpers) ----------------------------


@pytest.fixture(scope="session")
def pcsc_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The /run of every private pcscd this session (one socket path per process, see pcsc_helpers)."""
    return tmp_path_factory.mktemp("pcscd-run")


@pytest.fixture(scope="module")
def pcscd(pcsc_run_dir: Path) -> Iterator[PrivatePcscd]:
    daemon = PrivatePcscd(base_port=free_port_pair(), run_dir=pcsc_run_dir)
    daemon.start()
    previous = os.environ.get(CSOCK_ENV)
    daemon.activate()
    pid = daemon.pid
    try:
        yield daemon
    finally:
        daemon.stop()
        # This process stays bound to the socket path; children started later must not inherit it.
        if previous is None:
            os.environ.pop(CSOCK_ENV, None)
        else:
            os.environ[CSOCK_ENV] = previous
    assert not Path(f"/proc/{pid}").exists(), f"pcscd (pid {pid}) survived stop()"


@pytest.fixture(scope="module")
def context(pcscd: PrivatePcscd) -> Iterator[int]:
    hresult, hcontext = SCardEstablishContext(SCARD_SCOPE_USER)
    check(hresult, "SCardEstablishContext")
    yield hcontext
    SCardReleaseContext(hcontext)

