#!/usr/bin/env python3
"""Ledger throughput beside pgbench, measured in one run on one throwaway PostgreSQL cluster.

1. The reference: ``pgbench -b tpcb-like`` with C clients for T seconds (each
   of its transactions updates three balances and inserts a history row, one
   commit each).
2. simwallet: C client threads for T seconds, each keeping a window of W
   transfers outstanding (the gateway's SMPP window) and refilling it in one
   hand-over as results come back, on random pairs of
   customer wallets with a product tier (limits checked), idempotency keys on.
   A group committer posts whatever is waiting in one transaction. A transfer
   counts only once its own client holds its result after the commit, within
   the T seconds. ``ledger verify`` runs afterwards.
3. The same load on an embedded SQLite file.

Both PostgreSQL runs use the same cluster with durable settings (fsync and
synchronous_commit on). The ledger process is tuned as a server process
(``simwallet.gateway.runtime.tune_for_serving``: gc.freeze and higher
collector thresholds), as the gateway will be. Prints both figures, latencies, the concurrency and
batch sizes used, and ``ratio: X.XX`` (simwallet / pgbench).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from simwallet.gateway.ledger.committer import GroupCommitter
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Result, Transfer, TransferKind
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.runtime import tune_for_serving
from simwallet.gateway.store.engine import open_engine, upgrade
from simwallet.gateway.store.pgtemp import TempCluster

FUNDING_FEN = 10_000_000  # 100,000.00 CNY per customer: no transfer is refused for funds
TIER = "premium"  # limits are checked on every debit, and never reached by this load


@dataclass
class LoadResult:
    label: str
    transfers: int
    seconds: float
    latencies_s: list[float]
    mean_batch: float
    largest_batch: int
    refused: int

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds

    def line(self, clients: int, window: int, batch_max: int) -> str:
        lat = sorted(self.latencies_s)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return (f"simwallet ledger ({self.label}): clients={clients} window={window} (outstanding <= {clients * window}),"
                f" group commit batch <= {batch_max} (mean {self.mean_batch:.1f}, max {self.largest_batch}):"
                f" {self.rate:.1f} transfers/s over {self.seconds:.0f} s, latency p50 {p50:.1f} ms p99 {p99:.1f} ms,"
                f" refused {self.refused}")


def setup_accounts(ledger: Ledger, customers: int) -> list[int]:
    bank = ledger.open_account(AccountKind.BANK_SETTLEMENT, "bank:BENCH", ref="bench-bank")
    wallets = ledger.open_accounts([AccountSpec(AccountKind.CUSTOMER_WALLET, f"customer:B{i:07d}", tier=TIER)
                                    for i in range(customers)])
    ids = [w.id for w in wallets]
    for start in range(0, len(ids), 2000):
        ledger.post_batch([Transfer(f"fund-{i}", bank.id, i, FUNDING_FEN, TransferKind.DEPOSIT, Channel.BANK)
                           for i in ids[start:start + 2000]])
    return ids


def run_load(label: str, ledger: Ledger, ids: list[int], clients: int, window: int, seconds: float,
             batch_max: int, seed: int, workers: int = 1) -> LoadResult:
    """C client threads, each keeping ``window`` transfers outstanding and refilling it in one
    hand-over as results come back (a gateway session reads many PDUs per socket read)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    counts = [0] * clients
    refused = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    t_end = [0.0]

    def client(n: int, committer: GroupCommitter) -> None:
        rng = random.Random(seed * 1000 + n)  # load generation, not secrets
        inflight: deque[tuple[float, Future[list[Result]]]] = deque()
        k = 0

        def tally(sent: float, done: float, result: Result) -> None:
            if done > t_end[0]:
                return  # answered after the measured interval: not counted
            if result.ok:
                counts[n] += 1
                latencies[n].append(done - sent)
            else:
                refused[n] += 1

        start_gate.wait()
        while True:
            now = time.perf_counter()
            if now < t_end[0] and len(inflight) < window:
                fresh = []
                for _ in range(window - len(inflight)):
                    a, b = rng.sample(ids, 2)
                    fresh.append(Transfer(f"{label}-{n}-{k}", a, b, rng.randint(1, 500), TransferKind.P2P, Channel.SMS))
                    k += 1
                inflight.extend((now, f) for f in committer.submit_many(fresh))
            if not inflight:
                return
            sent, future = inflight.popleft()
            result = future.result()[0]
            done = time.perf_counter()
            tally(sent, done, result)
            # Collect every other result that is already in before refilling the window.
            while inflight and inflight[0][1].done():
                sent, future = inflight.popleft()
                tally(sent, done, future.result()[0])

    with GroupCommitter(ledger, batch_max=batch_max, workers=workers) as committer:
        threads = [threading.Thread(target=client, args=(n, committer)) for n in range(clients)]
        for thread in threads:
            thread.start()
        t_end[0] = time.perf_counter() + seconds
        start_gate.wait()
        for thread in threads:
            thread.join()
        stats = committer.stats
    return LoadResult(label, sum(counts), seconds, [x for lat in latencies for x in lat], stats.mean_batch,
                      stats.largest_batch, sum(refused))


def run_pgbench(cluster: TempCluster, clients: int, seconds: int, scale: int) -> tuple[float, str]:
    pgbench = str(cluster.bin_dir / "pgbench")
    cluster.create_database("pgbench")
    conn = ["-h", cluster.host, "-p", str(cluster.port), "-U", "postgres"]
    subprocess.run([pgbench, *conn, "-i", "-q", "-s", str(scale), "pgbench"], check=True, capture_output=True)
    out = subprocess.run([pgbench, *conn, "-b", "tpcb-like", "-c", str(clients), "-j", str(min(clients, 2)),
                          "-T", str(seconds), "pgbench"], check=True, capture_output=True, text=True).stdout
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    if tps is None:
        raise SystemExit(f"cannot read pgbench output:\n{out}")
    return float(tps.group(1)), latency.group(1) if latency else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--window", type=int, default=64, help="outstanding transfers per client")
    parser.add_argument("--batch-max", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--sqlite-seconds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scale = max(args.clients, 10)

    with TempCluster() as cluster:
        tps, pg_latency = run_pgbench(cluster, args.clients, args.seconds, scale)
        print(f"pgbench tpcb-like (reference): clients={args.clients} threads={min(args.clients, 2)} scale={scale}"
              f" duration={args.seconds}s: {tps:.1f} tps, latency avg {pg_latency} ms", flush=True)
        url = cluster.create_database("simwallet")
        upgrade(url)
        engine = open_engine(url)
        ledger = Ledger(engine)
        ids = setup_accounts(ledger, args.customers)
        tune_for_serving()
        pg = run_load("pg", ledger, ids, args.clients, args.window, args.seconds, args.batch_max, args.seed)
        print(pg.line(args.clients, args.window, args.batch_max), flush=True)
        report = verify_ledger(engine)
        print(f"ledger verify (PostgreSQL): {'ok' if report.ok else 'FAILED'}, {report.transfers} transfers,"
              f" {report.accounts} accounts", flush=True)
        engine.dispose()

    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        ledger = Ledger(engine)
        ids = setup_accounts(ledger, args.customers)
        tune_for_serving()
        lite = run_load("sqlite", ledger, ids, args.clients, args.window, args.sqlite_seconds, args.batch_max, args.seed)
        print(lite.line(args.clients, args.window, args.batch_max), flush=True)
        report = verify_ledger(engine)
        print(f"ledger verify (SQLite): {'ok' if report.ok else 'FAILED'}, {report.transfers} transfers", flush=True)
        engine.dispose()

    print(f"ratio: {pg.rate / tps:.2f}")
    if not report.ok:
        sys.exit(4)


if __name__ == "__main__":
    main()
