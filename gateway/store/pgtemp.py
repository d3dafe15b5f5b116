"""A throwaway PostgreSQL cluster for the test suite and the benchmarks.

The design asks that tests never depend on a PostgreSQL server that happens to
be running (DESIGN.md, "Database"). :class:`TempCluster` therefore builds a
private cluster from the server binaries of Debian's ``postgresql`` package
(``/usr/lib/postgresql/<major>/bin``; the highest major wins, the environment
variable ``SIMWALLET_PG_BIN`` overrides): ``initdb`` into a fresh temporary
directory, then ``pg_ctl start`` on a free port of 127.0.0.1 with its Unix
socket inside that directory. ``stop()`` shuts the server down and removes the
directory; it is also registered with :mod:`atexit` so that a crashed test run
leaves no postmaster behind.

Theory of operation for root: ``initdb`` and ``postgres`` refuse to run as
root, and CI runs as root. When ``os.geteuid() == 0`` the cluster directory is
handed to the ``postgres`` system user (created by Debian's package) and the
server commands run through ``runuser -u postgres --``. Clients (this module,
psycopg, ``pgbench``) keep running as the calling user and authenticate as the
database user ``postgres`` with ``trust`` over TCP.

The defaults keep ``fsync`` on, because benchmarks measure durable commits;
tests trade durability for speed with :data:`FAST_TEST_SETTINGS`.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from simwallet.applet.lifecycle import Service
from simwallet.gateway.errors import StoreError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

# Environment variable naming a bin directory that holds initdb and pg_ctl.
PG_BIN_ENV = "SIMWALLET_PG_BIN"
# Where Debian's postgresql-<major> packages put the server binaries.
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# The system user Debian's postgresql package creates; the server runs as it when we are root.
PG_SYSTEM_USER = "postgres"
# The superuser created by initdb; trust authentication, so no password.
PG_SUPERUSER = "postgres"
HOST = "127.0.0.1"

# Durable defaults for a small (2-core) box; the test suite's many engines need
# more than the stock 100 connections.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "max_connections": "200",
}
# What the test suite passes: a crashed machine loses nothing a test needs.
FAST_TEST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
# Settings the cluster owns because its properties report them.
_RESERVED_SETTINGS = frozenset({"listen_addresses", "port", "unix_socket_directories"})
# A GUC name: letters, digits, underscores, and dots for extension settings.
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# initdb of an empty cluster takes about a second; allow for a slow CI disk.
INITDB_TIMEOUT_S = 120
# pg_ctl -w waits this long for the server to accept connections.
START_TIMEOUT_S = 60
# A fast shutdown of a test cluster is near-instant; an immediate one is the fallback.
STOP_TIMEOUT_S = 60
# How much of the server log an exception quotes.
LOG_TAIL_LINES = 40
# A random port may be taken between choosing it and binding it; try a few.
PORT_ATTEMPTS_MAX = 3
# Longest Unix socket path the kernel accepts (sun_path, including the NUL).
SOCKET_PATH_LEN_MAX = 107


class TempClusterError(StoreError):
    """The throwaway PostgreSQL cluster could not be created, started or stopped."""

    code = "temp_cluster_error"


class PostgresNotFoundError(TempClusterError):
    """No PostgreSQL server binaries were found (Debian package ``postgresql``)."""

    code = "postgres_not_found"


def find_bin_dir(environ: Mapping[str, str] | None = None, pg_root: Path = DEBIAN_PG_ROOT) -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``$SIMWALLET_PG_BIN`` wins; otherwise the highest major version under
    ``pg_root`` (``/usr/lib/postgresql``).
    """
    env = os.environ if environ is None else environ
    override = env.get(PG_BIN_ENV)
    if override:
        bin_dir = Path(override)
        if not _has_server_binaries(bin_dir):
            raise PostgresNotFoundError(
                f"{PG_BIN_ENV}={override} does not contain initdb, pg_ctl and postgres; "
                "point it at a PostgreSQL bin directory, or unset it and install the Debian package 'postgresql'"
            )
        return bin_dir
    candidates: list[tuple[int, Path]] = []
    if pg_root.is_dir():
        for child in pg_root.iterdir():
            if child.name.isdigit() and _has_server_binaries(child / "bin"):
                candidates.append((int(child.name), child / "bin"))
    if not candidates:
        raise PostgresNotFoundError(
            f"no PostgreSQL server binaries under {pg_root}/<major>/bin; "
            f"install the Debian package 'postgresql' (apt-get install postgresql) or set {PG_BIN_ENV}"
        )
    return max(candidates)[1]


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class TempCluster(Service):
    """A private PostgreSQL cluster in a temporary directory.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with TempCluster(settings=FAST_TEST_SETTINGS) as cluster:
            url = cluster.create_database("ledger")

    A cluster is started once; :meth:`stop` may be called any number of times.
    """

    def __init__(self, *, settings: Mapping[str, str] | None = None, base_dir: str | None = None) -> None:
        merged = dict(DEFAULT_SETTINGS)
        for name, value in (settings or {}).items():
            if not _SETTING_NAME.match(name):
                raise ValueError(f"not a PostgreSQL setting name: {name!r}")
            if name in _RESERVED_SETTINGS:
                raise ValueError(f"{name} is chosen by TempCluster and cannot be overridden")
            merged[name] = str(value)
        self._settings = merged
        self._base_dir = base_dir
        self._bin_dir = find_bin_dir()
        self._as_root = os.geteuid() == 0
        self._dir: Path | None = None
        self._port: int | None = None
        self._running = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Create the cluster and start its server; wait until it accepts connections."""
        self._claim_start()
        try:
            self._dir = Path(tempfile.mkdtemp(prefix="simwallet-pg-", dir=self._base_dir))
            self._prepare_dir(self._dir)
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server and delete the cluster directory. Safe to call again."""
        directory, self._dir = self._dir, None
        self._running = False
        try:
            # Also after a failed or interrupted start: postmaster.pid tells whether a server is up.
            if directory is not None:
                self._stop_server(directory)
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            self._unregister_stop_at_exit()

    # -- where and how to reach it -----------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None or not self._running:
            raise RuntimeError("the cluster is not running")
        return self._port

    @property
    def bin_dir(self) -> Path:
        """The PostgreSQL bin directory in use (``pgbench`` and ``psql`` live there too)."""
        return self._bin_dir

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (inside the temporary directory)."""
        if self._dir is None:
            raise RuntimeError("the cluster is not running")
        return self._dir / "data"

    @property
    def socket_dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the cluster is not running")
        return self._dir

    def url(self, dbname: str = "postgres") -> str:
        """The SQLAlchemy URL of ``dbname`` (driver psycopg 3)."""
        from sqlalchemy.engine import URL

        url = URL.create("postgresql+psycopg", username=PG_SUPERUSER, host=HOST, port=self.port, database=dbname)
        return url.render_as_string(hide_password=False)

    def dsn(self, dbname: str = "postgres") -> str:
        """The libpq connection string of ``dbname`` (for psycopg, psql, pgbench)."""
        return " ".join(f"{key}={_conninfo_quote(value)}" for key, value in self._conninfo(dbname).items())

    def _conninfo(self, dbname: str) -> dict[str, str]:
        return {"host": HOST, "port": str(self.port), "user": PG_SUPERUSER, "dbname": dbname}

    # -- databases -----------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally as a copy of ``template``); return its URL."""
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with self._admin_connection() as conn:
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing any session still connected to it."""
        from psycopg import sql

        with self._admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin_connection(self) -> psycopg.Connection[TupleRow]:
        import psycopg

        try:
            return psycopg.connect(self.dsn("postgres"), autocommit=True)
        except psycopg.OperationalError as exc:
            raise TempClusterError(f"cannot connect to the temporary cluster on port {self._port}: {exc}") from exc

    # -- the server commands -------------------------------------------------

    def _prepare_dir(self, directory: Path) -> None:
        # The server's socket file name is longest with a five-digit port.
        socket_path = directory / ".s.PGSQL.65535"
        if len(os.fsencode(socket_path)) >= SOCKET_PATH_LEN_MAX:
            raise TempClusterError(f"{directory} is too long for a Unix socket path; choose a shorter base_dir")
        if not self._as_root:
            return
        try:
            user = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise PostgresNotFoundError(
                f"running as root but there is no '{PG_SYSTEM_USER}' user; install the Debian package 'postgresql'"
            ) from None
        os.chown(directory, user.pw_uid, user.pw_gid)
        blocked = _first_untraversable_ancestor(directory, user.pw_uid, os.getgrouplist(user.pw_name, user.pw_gid))
        if blocked is not None:
            raise TempClusterError(
                f"the '{PG_SYSTEM_USER}' user cannot enter {blocked}; pass a base_dir it can reach (e.g. the default temp dir)"
            )

    def _initdb(self) -> None:
        assert self._dir is not None
        args = [
            str(self._bin_dir / "initdb"),
            "--pgdata", str(self._dir / "data"),
            "--auth", "trust",
            "--username", PG_SUPERUSER,
            "--encoding", "UTF8",
            "--locale", "C",
            # The cluster is thrown away with its directory: syncing its initial files buys nothing.
            "--no-sync",
        ]  # fmt: skip
        result = self._run(args, timeout_s=INITDB_TIMEOUT_S)
        if result.returncode != 0:
            raise TempClusterError(f"initdb failed (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}")

    def _start_server(self) -> None:
        assert self._dir is not None
        for attempt in range(1, PORT_ATTEMPTS_MAX + 1):
            port = free_port()
            options = {
                **self._settings,
                "listen_addresses": HOST,
                "port": str(port),
                "unix_socket_directories": str(self._dir),
            }
            # pg_ctl hands -o to /bin/sh, hence the shell quoting.
            server_options = " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in options.items())
            log_path = self._dir / "server.log"
            args = [
                str(self._bin_dir / "pg_ctl"), "start",
                "--wait", "--timeout", str(START_TIMEOUT_S),
                "--silent",
                "--pgdata", str(self._dir / "data"),
                "--log", str(log_path),
                "-o", server_options,
            ]  # fmt: skip
            result = self._run(args, timeout_s=START_TIMEOUT_S + 10)
            if result.returncode == 0:
                self._port = port
                self._running = True
                return
            log_tail = _tail(_read_text(log_path))
            # The server may still be coming up after a -w timeout; make sure it is gone.
            self._stop_server(self._dir)
            if "Address already in use" in log_tail and attempt < PORT_ATTEMPTS_MAX:
                continue
            raise TempClusterError(
                f"pg_ctl start failed (exit {result.returncode}): {(result.stdout + result.stderr).strip()}\n"
                f"--- tail of the server log ---\n{log_tail}"
            )

    def _stop_server(self, directory: Path) -> None:
        data_dir = directory / "data"
        if not (data_dir / "postmaster.pid").exists():
            return
        for mode in ("fast", "immediate"):
            args = [str(self._bin_dir / "pg_ctl"), "stop", "--pgdata", str(data_dir), "--mode", mode, "--wait", "--silent"]
            result = self._run(args, timeout_s=STOP_TIMEOUT_S + 10, cwd=directory)
            if result.returncode == 0 or not (data_dir / "postmaster.pid").exists():
                return
        raise TempClusterError(f"pg_ctl stop failed (exit {result.returncode}): {(result.stdout + result.stderr).strip()}")

    def _run(self, args: list[str], *, timeout_s: int, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            args = [runuser, "-u", PG_SYSTEM_USER, "--", *args]
        # The postgres user may not be able to enter the caller's working directory.
        workdir = cwd if cwd is not None else self._dir
        try:
            return subprocess.run(  # noqa: S603 -- fixed binaries, arguments built here
                args,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TempClusterError(f"{Path(args[0]).name} failed: {exc}") from exc


def _first_untraversable_ancestor(path: Path, uid: int, gids: list[int]) -> Path | None:
    """The first directory on the way to ``path`` that ``uid`` may not enter, if any."""
    for directory in reversed([path, *path.parents]):
        st = directory.stat()
        if st.st_uid == uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            return directory
    return None


def _conninfo_quote(value: str) -> str:
    # libpq conninfo: single-quote values with spaces or quotes, backslash-escaping ' and \.
    if value and not any(ch in value for ch in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
