"""A private pcscd with the vpcd virtual readers, for tests, the demo and ``simwallet card emulate``.

Spec: pcsc-lite 1.9.9 as shipped in Debian 12 (``pcscd(8)``, ``reader.conf(5)``)
and vsmartcard's vpcd driver (``vsmartcard-vpcd`` 3.3, ``ifd-vpcd.c``).

Theory of operation
-------------------
*Where the socket goes.* libpcsclite (the client library pyscard links) looks
for pcscd at ``$PCSCLITE_CSOCK_NAME``, else ``/run/pcscd/pcscd.comm``. pcscd
1.9.9 itself does not read that variable: its socket and pid file paths are
compiled in (``/run/pcscd/pcscd.comm``, ``/run/pcscd/pcscd.pid``; the string
``PCSCLITE_CSOCK_NAME`` does not even occur in ``/usr/sbin/pcscd``). So a
second pcscd cannot simply be pointed elsewhere. :class:`PrivatePcscd` runs it
in a private mount namespace (``unshare --mount``; as non-root also
``--user --map-root-user``) in which a private directory is bind-mounted over
``/run``: pcscd creates ``<run_dir>/pcscd/pcscd.comm`` and its pid file there,
and never touches the real ``/run/pcscd`` of a system pcscd. Clients are sent
to that socket with ``PCSCLITE_CSOCK_NAME`` (:attr:`PrivatePcscd.env`,
:meth:`PrivatePcscd.activate`).

*No USB.* In the same namespace every driver bundle under
``/usr/lib/pcsc/drivers/*.bundle`` is covered by an empty directory, so the
private pcscd logs "Disabling USB support" and never claims a real reader
that the system pcscd or a technician's tools are using.

*Readers.* pcscd gets a private ``reader.conf.d`` (``--config``) holding one
vpcd entry with Debian's values (``/etc/reader.conf.d/vpcd``) and a chosen
base port: readers ``Virtual PCD 00 00`` and ``Virtual PCD 00 01`` whose cards
connect to ``base_port`` and ``base_port + 1``. vpcd binds those ports on all
interfaces (``INADDR_ANY`` in vpcd.c ``opensock``; not configurable), and two
vpcd instances cannot share a port: if one is taken, :meth:`PrivatePcscd.start`
fails naming the process that holds it — typically a system pcscd, which loads
vpcd from ``/etc/reader.conf.d`` on 35963/35964.

*In this process.* libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process,
under ``pthread_once``, the first time any PC/SC call needs the socket (the
first ``SCardEstablishContext``) — not when the library is loaded, so
importing :mod:`smartcard` early is harmless. From then on the process stays
bound to that path. Call :meth:`PrivatePcscd.activate` before this process's
first PC/SC call; a test session that starts pcscd more than once should pass
the same ``run_dir`` each time so the socket path does not change. For the
same reason the readiness check lists the readers from a child process.

*Life cycle.* ``pcscd --foreground`` is a child process; its output (``--info``
by default, never ``--apdu``: PINs and keys travel in APDUs) goes to a log
file. :meth:`PrivatePcscd.stop` sends SIGTERM to its PID, then SIGKILL after
:data:`STOP_TIMEOUT_S`, and removes the private directory; it is also
registered with :mod:`atexit`. ``setpriv --pdeathsig`` makes pcscd exit if this
process is killed outright — note that the kernel fires it when the *thread*
that started pcscd ends, so start it from a long-lived thread (the main one)
or pass ``die_with_parent=False``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from simwallet.applet.lifecycle import Service
from simwallet.applet.protocols.vpcd import VPCD_PORT, VPCD_SLOTS
from simwallet.provisioning.errors import ProvisioningStateError
from simwallet.provisioning.pcscd_host import (
    CSOCK_ENV,
    DEBIAN_VPCD_CONF,
    LOG_TAIL_LINES,
    NAMESPACE_SCRIPT,
    PCSCD_BIN,
    POLL_INTERVAL_S,
    SOCKET_PATH_LEN_MAX,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    SYSTEM_PID_FILE,
    SYSTEM_SOCKET,
    USB_DROP_DIR,
    Isolation,
    LogLevel,
    PcscdError,
    PortInUseError,
    free_port_pair,
    list_readers,
    listening_sockets,
    namespace_command,
    namespaces_available,
    process_description,
    vpcd_driver_path,
    vpcd_reader_conf,
    vpcd_reader_names,
)


class PrivatePcscd(Service):
    """A pcscd child process with the vpcd readers, reachable only through its own socket.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with PrivatePcscd() as pcscd:
            pcscd.activate()  # before this process's first PC/SC call
            VpcdLink(card, port=pcscd.ports[0]).start()

    ``base_port`` is vpcd's first port (35963 like Debian's configuration;
    :func:`free_port_pair` for tests that run beside a system pcscd or in
    parallel). ``run_dir`` is the directory mounted over pcscd's ``/run``; the
    socket is ``run_dir/pcscd/pcscd.comm`` (default: inside a fresh temporary
    directory). ``isolation`` ``"auto"`` uses the namespace when the machine
    allows it and otherwise ``"none"``: pcscd on the real
    ``/run/pcscd/pcscd.comm`` (root only, refused while a system pcscd runs,
    and without the USB cover).
    """

    def __init__(
        self,
        *,
        base_port: int = VPCD_PORT,
        run_dir: Path | None = None,
        base_dir: Path | None = None,
        log_path: Path | None = None,
        log_level: LogLevel = "info",
        isolation: Isolation = "auto",
        die_with_parent: bool = True,
        start_timeout_s: float = START_TIMEOUT_S,
        slots: int = VPCD_SLOTS,
    ) -> None:
        if not 1 <= base_port <= 0xFFFF - (slots - 1):
            raise ValueError(f"base_port must leave room for {slots} ports below 65536, got {base_port}")
        self._base_port = base_port
        self._slots = slots
        self._run_dir_arg = run_dir
        self._base_dir = base_dir
        self._log_path_arg = log_path
        self._log_level: LogLevel = log_level
        self._isolation: Isolation = isolation
        self._die_with_parent = die_with_parent
        self._start_timeout_s = start_timeout_s
        self._as_root = os.geteuid() == 0
        self._dir: Path | None = None
        self._run_dir: Path | None = None
        self._log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_path: Path | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start pcscd; return once its socket answers and both vpcd readers are listed."""
        self._claim_start()
        try:
            self._check_ports_free()
            isolated = self._choose_isolation()
            self._prepare_dirs(isolated)
            self._spawn(isolated)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop pcscd by its PID and remove the private directory. Safe to call again."""
        process, self._process = self._process, None
        try:
            if process is not None:
                _terminate(process)
        finally:
            directory, self._dir = self._dir, None
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            if self._run_dir is not None and self._run_dir_arg is not None:
                # A caller-supplied run_dir stays for the next instance; pcscd's leftovers do not.
                shutil.rmtree(self._run_dir / "pcscd", ignore_errors=True)
            self._unregister_stop_at_exit()

    # -- how clients reach it ----------------------------------------------------------

    @property
    def pid(self) -> int:
        """pcscd's process id."""
        if self._process is None:
            raise ProvisioningStateError("pcscd is not running")
        return self._process.pid

    @property
    def socket_path(self) -> Path:
        """pcscd's Unix socket: the value of ``PCSCLITE_CSOCK_NAME`` for its clients."""
        if self._socket_path is None or self._process is None:
            raise ProvisioningStateError("pcscd is not running")
        return self._socket_path

    @property
    def client_env(self) -> dict[str, str]:
        """The variables a PC/SC client needs to reach this pcscd."""
        return {CSOCK_ENV: str(self.socket_path)}

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus :attr:`client_env`: pass it to a client child process."""
        return {**os.environ, **self.client_env}

    def activate(self) -> None:
        """Point this process's libpcsclite at this pcscd.

        Effective only before the process's first PC/SC call: libpcsclite
        reads the variable once and keeps it (see the module docstring).
        """
        os.environ[CSOCK_ENV] = str(self.socket_path)

    @property
    def base_port(self) -> int:
        return self._base_port

    @property
    def ports(self) -> tuple[int, ...]:
        """vpcd's ports, one per reader, in the order of :attr:`reader_names`."""
        return tuple(self._base_port + slot for slot in range(self._slots))

    @property
    def reader_names(self) -> tuple[str, ...]:
        """``("Virtual PCD 00 00", "Virtual PCD 00 01")``."""
        return vpcd_reader_names(self._slots)

    @property
    def log_path(self) -> Path:
        """pcscd's log (inside the private directory unless ``log_path`` was given)."""
        if self._log_path is None:
            raise ProvisioningStateError("pcscd was not started")
        return self._log_path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of pcscd's log, for error messages."""
        if self._log_path is None:
            return ""
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    # -- starting ----------------------------------------------------------------------

    def _check_ports_free(self) -> None:
        for port in self.ports:
            holders = listening_sockets(port)
            if not holders:
                continue
            pids = tuple(sorted({pid for holder in holders for pid in holder.pids}))
            who = ", ".join(process_description(pid) for pid in pids) or "a process this user cannot see"
            raise PortInUseError(
                port,
                pids,
                f"vpcd port {port} is already taken by {who}. A system pcscd loads vpcd from "
                f"{DEBIAN_VPCD_CONF} on ports {VPCD_PORT} and {VPCD_PORT + 1}: stop it (e.g. `kill {pids[0] if pids else '<pid>'}`, "
                "or `systemctl stop pcscd.socket pcscd.service`) or give PrivatePcscd another base_port",
            )

    def _choose_isolation(self) -> bool:
        if self._isolation == "namespace":
            return True
        if self._isolation == "none":
            return False
        return namespaces_available(self._as_root)

    def _prepare_dirs(self, isolated: bool) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="simwallet-pcscd-", dir=self._base_dir))
        config_dir = self._dir / "reader.conf.d"
        config_dir.mkdir()
        (config_dir / "vpcd").write_text(vpcd_reader_conf(self._base_port, vpcd_driver_path()))
        (self._dir / "empty").mkdir()
        self._log_path = self._log_path_arg or self._dir / "pcscd.log"
        if isolated:
            self._run_dir = self._run_dir_arg or self._dir / "run"
            self._run_dir.mkdir(parents=True, exist_ok=True)
            stale = self._run_dir / "pcscd" / "pcscd.comm"
            if stale.exists() and _socket_answers(stale):
                raise PcscdError(f"{stale} belongs to a running pcscd; give each PrivatePcscd its own run_dir")
            socket_path = self._run_dir / "pcscd" / "pcscd.comm"
        else:
            self._run_dir = None
            self._check_no_system_pcscd()
            socket_path = SYSTEM_SOCKET
        if len(os.fsencode(socket_path)) > SOCKET_PATH_LEN_MAX:
            raise PcscdError(f"{socket_path} is too long for a Unix socket path; choose a shorter base_dir or run_dir")
        self._socket_path = socket_path

    def _check_no_system_pcscd(self) -> None:
        try:
            pid = int(SYSTEM_PID_FILE.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and Path(f"/proc/{pid}").exists():
            raise PcscdError(
                f"a pcscd is already running ({process_description(pid)}) and this machine does not allow a "
                "private mount namespace (isolation='none'): stop that pcscd first"
            )
        if SYSTEM_SOCKET.exists() and _socket_answers(SYSTEM_SOCKET):
            raise PcscdError(f"something already answers on {SYSTEM_SOCKET}; stop the system pcscd first")

    def _spawn(self, isolated: bool) -> None:
        assert self._dir is not None and self._log_path is not None
        level_flag = f"--{self._log_level}"
        pcscd = shutil.which(PCSCD_BIN) or f"/usr/sbin/{PCSCD_BIN}"
        command = [pcscd, "--foreground", level_flag, "--config", str(self._dir / "reader.conf.d")]
        if isolated:
            assert self._run_dir is not None
            script_args = [str(self._run_dir), str(self._dir / "empty"), str(USB_DROP_DIR)]
            command = [*namespace_command(self._as_root), "/bin/sh", "-c", NAMESPACE_SCRIPT, "sh", *script_args, *command]
        if self._die_with_parent:
            setpriv = shutil.which("setpriv")
            if setpriv is not None:
                command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        with self._log_path.open("ab") as log:
            try:
                # Every wrapper execs the next (no fork), so the child's PID is pcscd's.
                self._process = subprocess.Popen(  # noqa: S603 -- fixed binaries, arguments built here
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop pcscd in order
                )
            except OSError as exc:
                raise PcscdError(f"cannot start {pcscd}: {exc}") from exc

    def _wait_ready(self) -> None:
        assert self._process is not None and self._socket_path is not None
        deadline = time.monotonic() + self._start_timeout_s
        waiting_for = "pcscd's socket"
        while True:
            if self._process.poll() is not None:
                raise PcscdError(
                    f"pcscd exited with status {self._process.returncode} while starting\n--- tail of its log ---\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PcscdError(
                    f"pcscd did not become ready within {self._start_timeout_s} s (waiting for {waiting_for})\n"
                    f"--- tail of its log ---\n{self.log_tail()}"
                )
            if not _socket_answers(self._socket_path):
                waiting_for = "pcscd's socket"
            elif not self._vpcd_listening():
                waiting_for = f"vpcd listening on ports {', '.join(map(str, self.ports))}"
            else:
                break
            time.sleep(POLL_INTERVAL_S)
        readers = list_readers(self.env, timeout_s=max(deadline - time.monotonic(), 1.0))
        missing = [name for name in self.reader_names if name not in readers]
        if missing:
            raise PcscdError(f"pcscd is up but does not list {missing} (it lists {list(readers)})\n{self.log_tail()}")

    def _vpcd_listening(self) -> bool:
        assert self._process is not None
        for port in self.ports:
            holders = listening_sockets(port)
            if not holders:
                return False
            strangers = {pid for holder in holders for pid in holder.pids} - {self._process.pid}
            if strangers:
                who = ", ".join(process_description(pid) for pid in sorted(strangers))
                raise PortInUseError(port, tuple(sorted(strangers)), f"vpcd port {port} was taken by {who} while pcscd started")
        return True


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise PcscdError(f"pcscd (pid {process.pid}) did not exit after SIGKILL") from exc


# Re-exported: callers import these from here.
__all__ = [
    "CSOCK_ENV",
    "PcscdError",
    "PortInUseError",
    "PrivatePcscd",
    "free_port_pair",
]
