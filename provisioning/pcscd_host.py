"""What the host offers a private pcscd: free vpcd ports, who holds a port, mount namespaces, reader listings.

Spec: Linux ``/proc/net/tcp`` and ``/proc/<pid>/fd`` (who listens where),
``unshare(1)`` (a private mount namespace), ``reader.conf(5)`` (a vpcd entry),
and vsmartcard's ``ifd-vpcd.c`` (``/dev/null:<port>`` puts vpcd in server mode).
:mod:`simwallet.provisioning.pcscd` starts pcscd with these; its docstring has
the theory of operation.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from simwallet.applet.protocols.vpcd import VPCD_SLOTS
from simwallet.provisioning.errors import ProvisioningError

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
NAMESPACE_SCRIPT: Final = """set -e
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
