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
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from simwallet.applet.lifecycle import Service
from simwallet.applet.protocols.vpcd import VPCD_PORT, VPCD_SLOTS
from simwallet.provisioning.errors import ProvisioningError, ProvisioningStateError

# The variable libpcsclite reads for the socket path.
CSOCK_ENV: Final = "PCSCLITE_CSOCK_NAME"
PCSCD_BIN: Final = "pcscd"
# Debian's vpcd configuration; the private one copies its driver path.
DEBIAN_VPCD_CONF: Final = Path("/etc/reader.conf.d/vpcd")
# Where vsmartcard-vpcd installs the driver, if the configuration above is missing.
VPCD_DRIVER_DEFAULT: Final = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
# FRIENDLYNAME in Debian's /etc/reader.conf.d/vpcd; pcscd appends "<reader> <slot>" as two hex bytes.
VPCD_FRIENDLY_NAME: Final = "Virtual PCD"
# pcscd looks for USB driver bundles here (compiled in: usbdropdir).
USB_DROP_DIR: Final = Path("/usr/lib/pcsc/drivers")
# The system pcscd's pid file, compiled into Debian's pcscd.
SYSTEM_PID_FILE: Final = Path("/run/pcscd/pcscd.pid")
SYSTEM_SOCKET: Final = Path("/run/pcscd/pcscd.comm")

# pcscd is ready within tens of milliseconds; listing readers from a child adds a few hundred. CI is slower.
START_TIMEOUT_S: Final = 15.0
# How often readiness is polled while starting.
POLL_INTERVAL_S: Final = 0.02
# pcscd exits within milliseconds of SIGTERM; SIGKILL after this.
STOP_TIMEOUT_S: Final = 5.0
# One reader listing in a child Python (interpreter start + pyscard import).
LIST_READERS_TIMEOUT_S: Final = 10.0
# The pre-flight `unshare ... true` probe.
PROBE_TIMEOUT_S: Final = 5.0
# How much of pcscd's log an exception quotes.
LOG_TAIL_LINES: Final = 30
# Longest Unix socket path the kernel accepts (sun_path, including the NUL).
SOCKET_PATH_LEN_MAX: Final = 107
# free_port_pair() gives up after this many random tries.
PORT_PAIR_ATTEMPTS_MAX: Final = 50
# /proc/net/tcp state of a listening socket (include/net/tcp_states.h TCP_LISTEN).
_TCP_LISTEN: Final = "0A"

LogLevel = Literal["critical", "error", "info", "debug"]
Isolation = Literal["auto", "namespace", "none"]

# Runs inside the new mount namespace: cover the USB bundles, give pcscd its own /run, become pcscd.
_NAMESPACE_SCRIPT: Final = """set -e
run_dir=$1; empty_dir=$2; drop_dir=$3; shift 3
for bundle in "$drop_dir"/*.bundle; do
    if [ -d "$bundle" ]; then mount --bind "$empty_dir" "$bundle"; fi
done
mount --bind "$run_dir" /run
exec "$@"
"""

# Lists readers through libpcsclite in a child process (this process must not bind its socket path early).
_LIST_READERS_SCRIPT: Final = """import sys
from smartcard.scard import SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCardEstablishContext, SCardGetErrorMessage
from smartcard.scard import SCardListReaders, SCardReleaseContext
hresult, context = SCardEstablishContext(SCARD_SCOPE_USER)
if hresult != SCARD_S_SUCCESS:
    sys.exit(SCardGetErrorMessage(hresult))
hresult, readers = SCardListReaders(context, [])
SCardReleaseContext(context)
if hresult != SCARD_S_SUCCESS:
    sys.exit(SCardGetErrorMessage(hresult))
print("\\n".join(readers))
"""


class PcscdError(ProvisioningError, RuntimeError):
    """The private pcscd could not be started, reached or stopped (the environment's fault, not the caller's)."""


class PortInUseError(PcscdError):
    """A vpcd port is already taken; ``pids`` names the holders that could be identified."""

    def __init__(self, port: int, pids: tuple[int, ...], message: str) -> None:
        super().__init__(message)
        self.port = port
        self.pids = pids


@dataclass(frozen=True, slots=True)
class ListeningSocket:
    """A TCP socket in LISTEN state on a port, and the processes holding it (empty if not visible)."""

    inode: int
    pids: tuple[int, ...]


def vpcd_reader_names(slots: int = VPCD_SLOTS, reader_index: int = 0) -> tuple[str, ...]:
    """The PC/SC names pcscd gives vpcd's slots: ``Virtual PCD 00 00``, ``Virtual PCD 00 01``."""
    return tuple(f"{VPCD_FRIENDLY_NAME} {reader_index:02X} {slot:02X}" for slot in range(slots))


def listening_sockets(port: int, proc: Path = Path("/proc")) -> list[ListeningSocket]:
    """TCP sockets listening on ``port`` (IPv4 and IPv6), with their owners' PIDs where visible."""
    inodes: list[int] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.append(int(fields[9]))
    if not inodes:
        return []
    owners: dict[int, list[int]] = {inode: [] for inode in inodes}
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's process
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and int(pid_dir.name) not in owners[inode]:
                owners[inode].append(int(pid_dir.name))
    return [ListeningSocket(inode, tuple(sorted(pids))) for inode, pids in owners.items()]


def process_description(pid: int, proc: Path = Path("/proc")) -> str:
    """``pid 123 (pcscd --foreground …)``, or just ``pid 123`` if its command line is not readable."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    command = " ".join(arg.decode(errors="replace") for arg in argv if arg)
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def free_port_pair(host: str = "0.0.0.0") -> int:  # noqa: S104 -- vpcd binds INADDR_ANY, so that is where to look
    """A port P such that P and P + 1 are both free right now (for a vpcd on a private base port)."""
    for _ in range(PORT_PAIR_ATTEMPTS_MAX):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            if port + 1 > 0xFFFF:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
                return port
    raise PcscdError(f"found no two consecutive free TCP ports in {PORT_PAIR_ATTEMPTS_MAX} tries")


def namespace_command(as_root: bool) -> list[str]:
    """The ``unshare`` prefix that gives pcscd a private mount namespace."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    command = [unshare, "--mount", "--propagation", "private"]
    if not as_root:
        # Mounting needs CAP_SYS_ADMIN: an unprivileged user gets it inside a user namespace of its own.
        command[1:1] = ["--user", "--map-root-user"]
    return command


def namespaces_available(as_root: bool | None = None) -> bool:
    """Whether this machine lets us create the private mount namespace (containers may forbid it)."""
    root = os.geteuid() == 0 if as_root is None else as_root
    try:
        result = subprocess.run(  # noqa: S603 -- fixed command
            [*namespace_command(root), "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def vpcd_driver_path(conf: Path = DEBIAN_VPCD_CONF) -> Path:
    """The vpcd driver named by Debian's reader.conf entry (LIBPATH), or the package's default path."""
    try:
        text = conf.read_text()
    except OSError:
        return VPCD_DRIVER_DEFAULT
    match = re.search(r"^\s*LIBPATH\s+(\S+)", text, re.MULTILINE)
    return Path(match.group(1)) if match else VPCD_DRIVER_DEFAULT


def vpcd_reader_conf(base_port: int, driver: Path) -> str:
    """A reader.conf(5) entry for vpcd on ``base_port`` (Debian's own uses 0x8C7B = 35963)."""
    # ifd-vpcd.c IFDHCreateChannelByName: "/dev/null:<port>" means "listen on <port>" (server mode).
    return (
        f'FRIENDLYNAME "{VPCD_FRIENDLY_NAME}"\n'
        f"DEVICENAME   /dev/null:0x{base_port:04X}\n"
        f"LIBPATH      {driver}\n"
        f"CHANNELID    0x{base_port:04X}\n"
    )


def list_readers(env: Mapping[str, str], timeout_s: float = LIST_READERS_TIMEOUT_S) -> tuple[str, ...]:
    """The readers pcscd reports to a client started with ``env`` (a child Python with pyscard)."""
    try:
        result = subprocess.run(  # noqa: S603 -- this interpreter, fixed script
            [sys.executable, "-c", _LIST_READERS_SCRIPT],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PcscdError(f"listing PC/SC readers failed: {exc}") from exc
    if result.returncode != 0:
        raise PcscdError(f"listing PC/SC readers failed: {(result.stderr or result.stdout).strip()}")
    return tuple(line for line in result.stdout.splitlines() if line)


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
            command = [*namespace_command(self._as_root), "/bin/sh", "-c", _NAMESPACE_SCRIPT, "sh", *script_args, *command]
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
