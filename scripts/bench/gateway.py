#!/usr/bin/env python3
"""The gateway's throughput, MO→MT latency and memory, with a no-op service and with the wallet, measured in one run.

Three processes share the machine's two cores as in production: the embedded
SMSC (``simwallet smsc run``, a fresh state directory for every run), the
gateway (``_gwload.py serve``: :class:`~simwallet.gateway.esme.app.Gateway`
with ``--binds`` transceiver binds, tuned with ``tune_for_serving``), and the
phones in this process (:class:`_gwload.PhoneLoad`: one bind carrying every
MSISDN). PostgreSQL, when used, is a fourth: a throwaway cluster
(:mod:`simwallet.gateway.store.pgtemp`) with durable settings (fsync and
synchronous_commit on).

Before any timing, ``--phones`` customers (default 2,000) are registered in
each database with a card, a wallet of 500.00 CNY (tier ``basic``) and a PIN
of their own. The load is *closed-loop with a window*: ``--window`` messages
(default 256) are outstanding at every moment, each from a different phone,
and each reply lets the longest-idle phone send its next message at once.
The mix: 35% ``BAL <pin>``, 35% ``TOPUP 1 <pin>``, 15% ``余额 <pin>``, 15%
``充值 1 <pin>`` (UCS2): half of all messages move money. Runs, with the same
load and seed:

(a) ``echo``: the gateway with a service that returns one fixed reply and
    touches no database: the pipe (phones, SMSC, SMPP, the SMS channel,
    rendering, submit_sm);
(b) ``full (sqlite)``: the wallet service (parse → PIN → ledger → stored
    reply) on a fresh SQLite file;
(c) ``full (postgresql)``: the same on the throwaway PostgreSQL.

Each run loads for ``--warmup`` seconds, then counts the replies that arrive
during ``--seconds``: MO/s is replies received per second of that interval,
and the latency of each is the phone's submit_sm sent → its reply received.
Then sending stops and every outstanding reply is awaited: ``replies R/S``
counts all of the run's messages; ``unexpected`` counts replies that are not
the success message their command asks for, or that came twice; ``refused``
counts submit_sm the SMSC refused. Each run also prints the CPU each process
used during the interval (100% = one core; ``other`` is the machine's busy
time no process of the run accounts for: kernel work and, on a virtual
machine, a busy host), what the gateway's service calls did (batches, their
size, the time inside each and how much of it the service's thread spent on
the CPU, the rest being database round trips and waits for the GIL, and how
much of the interval the one batcher spent inside them), which together name
the bottleneck, and the CPU of everything (processes and kernel) per reply:
the full service's figure less echo's is what parse → PIN → ledger → stored
reply costs the machine per message, PostgreSQL's own work included.

The three runs go round ``--rounds`` times (default 2), in turn, so that
interference from outside (a busy host) falls on all three alike; each
configuration's figure is its best round (interference only slows a run
down). ``ratio: X.XX`` is full (postgresql) MO/s / echo MO/s of those.

Memory: a fresh gateway with the full service on a fresh SQLite file
(``--memory-service echo``: the echo service) is pushed through 10,000 MO,
and its peak resident set (VmHWM of /proc/<pid>/status) is read; then through
100,000 MO in all, and read again. Bounded windows, caches and session tables
keep the second figure near the first.

``--quick`` is a smoke run (200 phones, one short round, 1,000/5,000 MO).
``--py-spy DIR`` records every process with py-spy during each measured
interval (collapsed stacks in DIR) and prints each one's top functions;
sampling slows the processes a little, so the figures of such a run are
not the benchmark's. Nothing asserts a timing: the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _gwload import (
    GATEWAY_ID,
    GATEWAY_PASSWORD,
    PHONES_ID,
    PHONES_PASSWORD,
    SHORT_CODE,
    Phone,
    PhoneLoad,
    RunResult,
    make_phones,
    setup_customers,
)

from simwallet.gateway.store.engine import open_engine, upgrade
from simwallet.gateway.store.pgtemp import TempCluster

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
DRAIN_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY_SPY = Path(sys.executable).with_name("py-spy")
SPY_RATE_HZ = 100
# What the gateway prints on SIGUSR2 (_gwload.TimedService.report).
SERVICE_LINE = re.compile(r"service: batches (\d+) requests (\d+) largest (\d+) busy_s ([\d.]+) cpu_s ([\d.]+) wall_s ([\d.]+)")
# py-spy frames that are a process waiting for work, not doing it.
# py-spy frames every busy sample of a process is inside: not worth naming.
ENTRY_FRAMES = ("<module>", "serve_main", "serve ")
IDLE_FRAMES = ("EpollSelector.select", "_worker (concurrent/futures/thread.py", "Condition.wait", "SimpleQueue.get")


# --- processes --------------------------------------------------------------------------------------------


def _wait_for_line(process: subprocess.Popen[str], pattern: str, what: str) -> re.Match[str]:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            return match
    process.kill()
    raise SystemExit(f"bench: {what} did not start (exit {process.wait()})")


def start_smsc(state_dir: Path) -> tuple[subprocess.Popen[str], int]:
    """``simwallet smsc run`` on a free port with the gateway's and the phones' accounts; (process, port)."""
    code = "from simwallet.provisioning.cli import main; main()"
    state_dir.mkdir(parents=True)
    process = subprocess.Popen(
        [sys.executable, "-c", code, "smsc", "run", "--port", "0", "--state-dir", str(state_dir),
         f"--account={GATEWAY_ID}:{GATEWAY_PASSWORD}:esme:{SHORT_CODE}", f"--account={PHONES_ID}:{PHONES_PASSWORD}:phones"],
        stdout=subprocess.PIPE, stderr=(state_dir / "smsc.log").open("w"), text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    match = _wait_for_line(process, r"smsc listening on 127\.0\.0\.1:(\d+)", "the SMSC")
    return process, int(match.group(1))


def start_gateway(port: int, service: str, db_url: str | None, binds: int) -> subprocess.Popen[str]:
    """The gateway process (``_gwload.py serve``), once every bind is up."""
    args = [sys.executable, str(HERE / "_gwload.py"), "serve", "--port", str(port), "--service", service, "--binds", str(binds)]
    if db_url:
        args += ["--db", db_url]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _wait_for_line(process, r"gateway bound", "the gateway")
    return process


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, wait (SIGKILL after STOP_TIMEOUT_S); what is left of its standard output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout is not None else ""


def _stat_fields(pid: int) -> list[str]:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the machine was busy so far, all cores (/proc/stat: user nice system idle iowait irq softirq steal)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / CLK_TCK


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a process in KiB: its peak and its current resident set."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0])
    return values["VmHWM"], values["VmRSS"]


def postgres_pids(cluster: TempCluster) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        try:
            master = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [master, *children(master)]

    return pids


# --- what the processes did during the interval -------------------------------------------------------------


@dataclass
class Probe:
    """Called as the measured interval starts and ends: CPU per process group, the gateway's service counters, py-spy."""

    groups: dict[str, Callable[[], list[int]]]
    seconds: float
    gateway_pid: int
    spy_dir: Path | None = None
    tag: str = ""
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    spies: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def _sample(self) -> dict[str, float]:
        sample = {name: sum(cpu_seconds(pid) for pid in pids()) for name, pids in self.groups.items()}
        sample["machine"] = machine_busy_seconds()
        return sample

    def __call__(self, phase: str) -> None:
        if phase == "start":
            self.before = self._sample()
            os.kill(self.gateway_pid, signal.SIGUSR1)  # the service counters start now
            if self.spy_dir is not None:
                for name in ("smsc", "gateway", "phones"):
                    out = self.spy_dir / f"{self.tag}-{name}.txt"
                    spy = subprocess.Popen(
                        [str(PY_SPY), "record", "--pid", str(self.groups[name]()[0]), "--duration", str(int(self.seconds)),
                         "--rate", str(SPY_RATE_HZ), "--format", "raw", "--function", "--threads", "--nonblocking", "--output", str(out)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    self.spies.append((name, spy, out))
        else:
            after = self._sample()
            os.kill(self.gateway_pid, signal.SIGUSR2)  # ... and are printed now
            used = {name: after[name] - self.before[name] for name in after}
            machine = used.pop("machine")
            used["other"] = max(0.0, machine - sum(used.values()))
            self.used = used

    def cpu_line(self) -> str:
        return ", ".join(f"{name} {used / self.seconds * 100:.0f}%" for name, used in self.used.items())

    def cpu_per_mo_us(self, replies: int) -> float:
        """Microseconds of CPU, every process of the run and the kernel's share together, per reply of the interval."""
        return sum(self.used.values()) / max(replies, 1) * 1e6

    def spy_lines(self, top: int = 7) -> list[str]:
        lines = []
        for name, spy, out in self.spies:
            spy.wait(STOP_TIMEOUT_S + self.seconds)
            lines.extend(summarize_spy(f"{self.tag} {name}", out, top))
        return lines


def summarize_spy(label: str, path: Path, top: int) -> list[str]:
    """Own time by function, and time inside each simwallet function (its callees included), as shares of busy samples."""
    own: collections.Counter[str] = collections.Counter()
    inside: collections.Counter[str] = collections.Counter()
    busy = 0
    if path.exists():
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")[1:]  # the first is the thread
            if not frames or frames[-1].startswith(IDLE_FRAMES):
                continue
            busy += int(count)
            own[frames[-1]] += int(count)
            for frame in dict.fromkeys(f for f in frames if ("gateway/" in f or "_gwload" in f) and not f.startswith(ENTRY_FRAMES)):
                inside[frame] += int(count)
    if not busy:
        return [f"  py-spy {label}: no samples"]
    seconds = busy / SPY_RATE_HZ

    def shares(counter: collections.Counter[str]) -> str:
        return ", ".join(f"{frame.split(' (')[0]} {n * 100 / busy:.0f}%" for frame, n in counter.most_common(top))

    return [
        f"  py-spy {label}: {seconds:.1f} s busy; own time: {shares(own)}",
        f"  py-spy {label}: inside (callees included): {shares(inside)}",
    ]


# --- runs ---------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    phones: list[Phone]
    window: int
    binds: int
    warmup_s: float
    seconds: float
    seed: int
    tmp: Path
    spy_dir: Path | None


@dataclass
class Config:
    label: str
    service: str
    db_url: str | None = None
    extra: dict[str, Callable[[], list[int]]] = field(default_factory=dict)


def result_line(label: str, result: RunResult) -> str:
    return (
        f"{label}: {result.rate:.1f} MO/s over {result.seconds:.1f} s, latency p50 {result.percentile_ms(0.5):.1f} ms"
        f" p99 {result.percentile_ms(0.99):.1f} ms, replies {result.answered_total}/{result.sent_total},"
        f" unexpected {result.unexpected}, refused {result.refused}"
    )


def run(config: Config, settings: Settings, round_no: int) -> RunResult:
    """One run (module docstring): a fresh SMSC and gateway, the load, and what each process did."""
    tag = re.sub(r"\W+", "-", config.label).strip("-") + f"-{round_no}"
    smsc, port = start_smsc(settings.tmp / f"smsc-{tag}")
    try:
        gateway = start_gateway(port, config.service, config.db_url, settings.binds)
    except BaseException:
        stop(smsc)
        raise
    me = os.getpid()
    groups: dict[str, Callable[[], list[int]]] = {"smsc": lambda: [smsc.pid], "gateway": lambda: [gateway.pid], "phones": lambda: [me]}
    probe = Probe({**groups, **config.extra}, settings.seconds, gateway.pid, settings.spy_dir, tag)

    async def load() -> RunResult:
        phones = PhoneLoad(port, settings.phones, window=settings.window, seed=settings.seed + round_no)
        await phones.start()
        try:
            return await phones.run_for(settings.warmup_s, settings.seconds, DRAIN_S, probe)
        finally:
            await phones.stop()

    try:
        result = asyncio.run(load())
    finally:
        service = SERVICE_LINE.search(stop(gateway))
        stop(smsc)
    print(result_line(f"round {round_no} {config.label}", result), flush=True)
    result.cpu_per_mo_us = probe.cpu_per_mo_us(result.replies)
    print(
        f"  cpu during the interval (100% = one core): {probe.cpu_line()}; {result.cpu_per_mo_us:.0f} µs of CPU per MO in all",
        flush=True,
    )
    if service:
        batches, requests, largest = (int(service.group(i)) for i in (1, 2, 3))
        busy, cpu, wall = (float(service.group(i)) for i in (4, 5, 6))
        print(
            f"  gateway service: {batches} batches of {requests / max(batches, 1):.1f} requests on average (largest {largest}),"
            f" {busy * 1000 / max(batches, 1):.1f} ms each ({cpu * 1000 / max(batches, 1):.1f} ms of them on the CPU);"
            f" the batcher was inside the service {busy / wall * 100:.0f}% of the time",
            flush=True,
        )
    for line in probe.spy_lines():
        print(line, flush=True)
    return result


def memory_check(settings: Settings, config: Config, marks: Sequence[int]) -> list[tuple[int, int, int, float]]:
    """(MO answered so far, VmHWM KiB, VmRSS KiB, seconds since the start) of one fresh gateway at each mark."""
    smsc, port = start_smsc(settings.tmp / "smsc-memory")
    try:
        gateway = start_gateway(port, config.service, config.db_url, settings.binds)
    except BaseException:
        stop(smsc)
        raise

    async def load() -> list[tuple[int, int, int, float]]:
        phones = PhoneLoad(port, settings.phones, window=settings.window, seed=settings.seed)
        await phones.start()
        started = time.monotonic()
        out = []
        try:
            for mark in marks:
                result = await phones.run_count(mark, DRAIN_S)
                out.append((result.answered_total, *memory_kib(gateway.pid), time.monotonic() - started))
        finally:
            await phones.stop()
        return out

    try:
        return asyncio.run(load())
    finally:
        stop(gateway)
        stop(smsc)


def fresh_sqlite(path: Path, phones: Sequence[Phone]) -> str:
    """A new SQLite file, migrated, with the customers in it; its URL."""
    url = f"sqlite:///{path}"
    open_engine(url).dispose()
    setup_customers(url, phones)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--phones", type=int, default=2000, help="customers with a card, funds and a PIN (default 2000)")
    parser.add_argument("--window", type=int, default=256, help="messages outstanding at once, closed loop (default 256)")
    parser.add_argument("--binds", type=int, default=4, help="the gateway's transceiver binds (default 4)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (default 5)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="times the three runs go round (default 2)")
    parser.add_argument("--runs", default="echo,sqlite,postgresql,memory", help="which runs (default: all four)")
    parser.add_argument("--memory-marks", default="10000,100000", help="MO counts at which the gateway's peak RSS is read")
    parser.add_argument("--memory-service", choices=("echo", "sqlite"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--py-spy", type=Path, help="record each process with py-spy into this directory")
    args = parser.parse_args()
    if args.quick:
        args.phones, args.window, args.warmup, args.seconds, args.rounds = 200, min(args.window, 64), 1.0, 3.0, 1
        if args.memory_marks == parser.get_default("memory_marks"):
            args.memory_marks = "1000,5000"
    marks = [int(m) for m in args.memory_marks.split(",")]
    runs = set(args.runs.split(","))
    if unknown := runs - {"echo", "sqlite", "postgresql", "memory"}:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    if args.py_spy is not None and not PY_SPY.exists():
        parser.error(f"no py-spy at {PY_SPY}")
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)

    phones = make_phones(args.phones, args.seed)
    print(
        f"gateway bench: {args.phones} phones, window {args.window} (closed loop), {args.binds} gateway binds,"
        f" warm-up {args.warmup:g} s, {args.seconds:g} s measured per run, {args.rounds} round(s)",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="simwallet-gwbench-")))
        settings = Settings(phones, args.window, args.binds, args.warmup, args.seconds, args.seed, tmp, args.py_spy)
        configs = []
        if "echo" in runs:
            configs.append(Config("echo", "echo"))
        if "sqlite" in runs:
            configs.append(Config("full (sqlite)", "wallet", fresh_sqlite(tmp / "wallet.sqlite3", phones)))
        if "postgresql" in runs:
            cluster = stack.enter_context(TempCluster())
            pg_url = cluster.create_database("simwallet")
            upgrade(pg_url)
            setup_customers(pg_url, phones)
            configs.append(Config("full (postgresql)", "wallet", pg_url, {"postgres": postgres_pids(cluster)}))
        best: dict[str, RunResult] = {}
        for round_no in range(1, args.rounds + 1):
            for config in configs:
                result = run(config, settings, round_no)
                if config.label not in best or result.rate > best[config.label].rate:
                    best[config.label] = result
        for label, result in best.items():
            print(result_line(label, result) + (f" (best of {args.rounds} rounds)" if args.rounds > 1 else ""), flush=True)
        if best:
            print("cpu per MO (those rounds, all processes): " + ", ".join(f"{k} {r.cpu_per_mo_us:.0f} µs" for k, r in best.items()))

        if "memory" in runs:
            if args.memory_service == "sqlite":
                config = Config("the full service on SQLite", "wallet", fresh_sqlite(tmp / "memory.sqlite3", phones))
            else:
                config = Config("the echo service", "echo")
            readings = memory_check(settings, config, marks)
            figures = "; ".join(f"{count:,} MO {hwm / 1024:.1f} MiB" for count, hwm, _, _ in readings)
            growth = (readings[-1][1] - readings[0][1]) / 1024
            print(f"gateway peak RSS: {figures}; difference {growth:+.1f} MiB (gateway with {config.label})")
            print(
                "  current RSS: " + ", ".join(f"{rss / 1024:.1f} MiB after {count:,} MO ({s:.0f} s)" for count, _, rss, s in readings),
                flush=True,
            )
    if "echo" in best and "full (postgresql)" in best:
        print(f"ratio: {best['full (postgresql)'].rate / best['echo'].rate:.2f}")


if __name__ == "__main__":
    main()
