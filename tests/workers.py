"""Worker processes for the multi-process ledger tests, and the parent's handle on them.

Run as ``python tests/workers.py COMMAND …`` by ``test_concurrency.py``,
``test_crash.py`` and ``test_promotions.py``; those modules import this one
for :class:`Worker` and for the deterministic request sequence of the crash
test, which the parent re-creates to retry what the killed children sent.

Protocol: a worker imports everything, prints ``ready`` and waits for one
line on stdin (``go``, or the crash child's start index), so that the parent
can start several workers at the same instant and keep crash children warm.
Every worker posts with its own engine and :class:`Ledger`, with an injected
clock fixed at the instant the parent passes.

Commands:

* ``transfers``: a first batch of keys that every worker posts with a body
  of its own (``conflict-…``), then random batches of p2p transfers, both
  directions of a pair, linked chains (some doomed by a member that must
  fail), holds and their posts and voids, and keys that every worker posts
  with the same body (``shared-…``), between overlapping wallets. Every
  result is appended to a JSON-lines file after ``post_batch`` returned.
* ``crash``: posts :func:`crash_batch` from the start index on, in a loop,
  until killed. Prints ``send FIRST LAST`` before each ``post_batch`` and
  ``ack INDEX KEY ID`` per result after it returned, flushed per batch.
* ``topup``: one airtime top-up; prints its result as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

from simwallet.gateway.ledger.ledger import Ledger
from simwallet.gateway.ledger.model import Channel, Linked, PostPending, Request, Transfer, TransferKind, VoidPending
from simwallet.gateway.store.engine import open_engine

WORKERS_PY = Path(__file__).resolve()

# --- Accounts shared by the parent and its workers -------------------------------

BANK_REF = "bank-icbc"


def wallet_ref(n: int) -> str:
    return f"C{n:03d}/wallet"


def owner_of(n: int) -> str:
    return f"customer:C{n:03d}"


# --- The crash test's request sequence -----------------------------------------------

# Wallets the crash child moves money between.
CRASH_WALLETS = 8
# Each wallet's opening balance: far more than the sequence can take out of it
# (a child posts a few thousand requests of at most 9.99 per second, and gives
# up after CRASH_CHILD_GIVE_UP_S), so that no request is ever refused and a
# retry must be a pure replay.
CRASH_OPENING_FEN = 10**10
# A crash child that nobody kills stops by itself after this long: a broken
# test must not leave it running.
CRASH_CHILD_GIVE_UP_S = 30.0
# Longest batch of the crash child.
CRASH_BATCH_LEN_MAX = 8


def crash_key(index: int) -> str:
    return f"crash-{index:07d}"


def crash_request(index: int) -> Transfer:
    """Request number ``index``: a deposit every fifth, otherwise a p2p transfer between two wallets."""
    amount = 1 + (index * 7907) % 999
    a = index % CRASH_WALLETS
    if index % 5 == 0:
        return Transfer(crash_key(index), BANK_REF, wallet_ref(a), amount, TransferKind.DEPOSIT, Channel.BANK)
    b = (a + 1 + (index // CRASH_WALLETS) % (CRASH_WALLETS - 1)) % CRASH_WALLETS
    return Transfer(crash_key(index), wallet_ref(a), wallet_ref(b), amount, TransferKind.P2P, Channel.SMS)


def crash_batch(first: int) -> tuple[list[Transfer | Linked], int]:
    """The batch that starts at request ``first``, and the index of its last request.

    Batches of 1..8 requests; when a batch starting at a multiple of three has
    two or more, its first two form a linked chain.
    """
    last = first + random.Random(first).randrange(CRASH_BATCH_LEN_MAX)
    requests = [crash_request(i) for i in range(first, last + 1)]
    if first % 3 == 0 and len(requests) >= 2:
        return [Linked(tuple(requests[:2])), *requests[2:]], last
    return [*requests], last


# --- The parent's handle on a worker ---------------------------------------------------


@dataclass
class Worker:
    """A worker process started with ``python tests/workers.py``; stderr goes to a file."""

    proc: subprocess.Popen[str]
    stderr_path: Path

    @classmethod
    def start(cls, command: str, args: Sequence[str], stderr_path: Path) -> Worker:
        with stderr_path.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(WORKERS_PY), command, *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
            )
        return cls(proc, stderr_path)

    @property
    def stdout(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_ready(self) -> None:
        line = self.stdout.readline()
        if line != "ready\n":
            self.proc.wait(timeout=30)
            raise AssertionError(f"worker did not get ready (exit {self.proc.returncode}): {line!r}\n{self.stderr()}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float) -> str:
        """Wait for the worker to exit; return what it printed after ``ready``, failing unless it exited 0."""
        out, _ = self.proc.communicate(timeout=timeout_s)
        if self.proc.returncode != 0:
            raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.stderr()}")
        return out

    def stop(self) -> None:
        """Kill the process if it still runs, reap it and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


# --- Commands ------------------------------------------------------------------------


def _await_go() -> str:
    print("ready", flush=True)
    return sys.stdin.readline().strip()


def _ledger(url: str, ts_us: int, seed: int) -> Ledger:
    return Ledger(open_engine(url), clock=lambda: ts_us, rng=random.Random(seed))


@dataclass
class _Planned:
    """One request of a batch and what the worker knows about it before posting."""

    request: Request
    op: str  # transfer | hold | post | void
    debit: str
    credit: str
    amount: int
    group: str | None = None  # the linked chain it belongs to
    doomed: bool = False  # a member of a chain made to fail
    hold_key: str | None = None  # post/void: the hold it resolves
    contest: str | None = None  # shared | conflict: a key other workers post too


# Keys every ``transfers`` worker posts with the same body, each once, in its own order.
SHARED_KEYS = 30
# Keys every ``transfers`` worker posts with a body of its own, all in its first batch.
CONFLICT_KEYS = 10
# Longest pause of a ``transfers`` worker between two batches.
THINK_S_MAX = 0.01


def shared_key(j: int) -> str:
    return f"shared-{j:03d}"


def conflict_key(j: int) -> str:
    return f"conflict-{j:03d}"


class _Planner:
    """Random batches for the ``transfers`` command."""

    # Amount of the member that dooms a chain: more than any wallet holds.
    DOOMING_AMOUNT_FEN = 10**12

    def __init__(self, worker: int, wallets: int, rng: random.Random) -> None:
        self.worker = worker
        self.wallets = [wallet_ref(n) for n in range(wallets)]
        self.rng = rng
        self.seq = 0
        self.chains = 0
        # Holds acknowledged and not yet scheduled for a post or void: key -> (id, record).
        self.open_holds: dict[str, tuple[int, _Planned]] = {}
        self.shared = rng.sample(range(SHARED_KEYS), SHARED_KEYS)

    def key(self) -> str:
        self.seq += 1
        return f"w{self.worker}-{self.seq:05d}"

    def pair(self) -> tuple[str, str]:
        a, b = self.rng.sample(self.wallets, 2)
        return a, b

    def amount(self) -> int:
        return self.rng.randint(1, 20_000)

    def transfer(self, debit: str, credit: str, amount: int, *, key: str | None = None, **meta: Any) -> _Planned:
        request = Transfer(key or self.key(), debit, credit, amount, TransferKind.P2P, Channel.USSD)
        return _Planned(request, "transfer", debit, credit, amount, **meta)

    def resolve(self, hold_key: str) -> _Planned:
        hold_id, hold = self.open_holds.pop(hold_key)
        post = self.rng.random() < 0.5
        cls = PostPending if post else VoidPending
        return _Planned(cls(self.key(), hold_id, Channel.BANK), "post" if post else "void",
                        hold.debit, hold.credit, hold.amount, hold_key=hold_key)

    def conflicts(self) -> list[_Planned]:
        """The first batch: the conflict keys, in an order of this worker's, between two wallets no
        other worker's first batch touches. With no account lock in common, the workers' batches
        run at once on PostgreSQL and meet only at the unique index of the idempotency keys."""
        debit, credit = self.wallets[(2 * self.worker) % len(self.wallets)], self.wallets[(2 * self.worker + 1) % len(self.wallets)]
        order = self.rng.sample(range(CONFLICT_KEYS), CONFLICT_KEYS)
        return [self.transfer(debit, credit, 100 + self.worker, key=conflict_key(j), contest="conflict") for j in order]

    def shared_request(self, j: int) -> _Planned:
        """Shared key ``j``: the same request whichever worker posts it."""
        pick = random.Random(j)
        debit, credit = pick.sample(self.wallets, 2)
        return self.transfer(debit, credit, pick.randint(1, 20_000), key=shared_key(j), contest="shared")

    def batch(self, size: int) -> tuple[list[Request | Linked], list[_Planned]]:
        """Batch items and the planned requests in result order."""
        items: list[Request | Linked] = []
        planned: list[_Planned] = []
        while len(planned) < size:
            roll = self.rng.random()
            if roll < 0.10 and self.shared:
                p = self.shared_request(self.shared.pop())
                items.append(p.request)
                planned.append(p)
            elif roll < 0.45:
                p = self.transfer(*self.pair(), self.amount())
                items.append(p.request)
                planned.append(p)
            elif roll < 0.60:
                # Both directions of one pair in the same batch.
                a, b = self.pair()
                for debit, credit in ((a, b), (b, a)):
                    p = self.transfer(debit, credit, self.amount())
                    items.append(p.request)
                    planned.append(p)
            elif roll < 0.75:
                self.chains += 1
                group = f"w{self.worker}-chain{self.chains}"
                doomed = self.rng.random() < 0.3
                path = self.rng.sample(self.wallets, self.rng.randint(3, 4))
                members = [self.transfer(d, c, self.amount(), group=group, doomed=doomed) for d, c in pairwise(path)]
                if doomed:
                    d, c = self.pair()
                    members.insert(self.rng.randrange(len(members) + 1),
                                   self.transfer(d, c, self.DOOMING_AMOUNT_FEN, group=group, doomed=True))
                items.append(Linked(tuple(m.request for m in members)))
                planned.extend(members)
            elif roll < 0.88 or not self.open_holds:
                debit, credit = self.pair()
                amount = self.amount()
                request = Transfer(self.key(), debit, credit, amount, TransferKind.BANK_HOLD, Channel.BANK,
                                   pending=True, timeout_s=3600)
                items.append(request)
                planned.append(_Planned(request, "hold", debit, credit, amount))
            else:
                p = self.resolve(self.rng.choice(sorted(self.open_holds)))
                items.append(p.request)
                planned.append(p)
        return items, planned

    def rest(self) -> tuple[list[Request | Linked], list[_Planned]]:
        """The last batches: the shared keys not posted yet, and a post or void of every hold still open."""
        planned = [self.shared_request(self.shared.pop()) for _ in range(len(self.shared))]
        planned += [self.resolve(hold_key) for hold_key in sorted(self.open_holds)]
        return [p.request for p in planned], planned


def cmd_transfers(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    ledger = _ledger(args.url, args.ts_us, args.seed)
    planner = _Planner(args.worker, args.wallets, rng)
    think = random.Random(-args.seed)
    _await_go()
    first = planner.conflicts()
    posted = 0
    with Path(args.out).open("w") as out:
        while True:
            if first:
                items, planned = [p.request for p in first], first
                first = []
            elif posted < args.requests:
                items, planned = planner.batch(rng.randint(1, 20))
            else:
                items, planned = planner.rest()
                if not planned:
                    break
            results = ledger.post_batch(items)
            acked_at = time.time()  # lets the parent check that the workers really took turns
            assert [r.idempotency_key for r in results] == [p.request.idempotency_key for p in planned]
            for p, r in zip(planned, results, strict=True):
                record = {
                    "key": r.idempotency_key, "op": p.op, "debit": p.debit, "credit": p.credit, "amount": p.amount,
                    "group": p.group, "doomed": p.doomed, "hold_key": p.hold_key, "contest": p.contest,
                    "worker": args.worker, "ok": r.ok, "code": r.error.code if r.error is not None else None,
                    "duplicate": r.duplicate, "ids": [t.id for t in r.transfers],
                    "pending_id": r.transfers[0].pending_id if r.transfers else None, "acked_at": acked_at,
                }
                out.write(json.dumps(record) + "\n")
                if r.ok and p.op == "hold":
                    planner.open_holds[r.idempotency_key] = (r.transfers[0].id, p)
            out.flush()
            posted += len(planned)
            # A client's think time. Without it one SQLite writer takes the lock again
            # right after its commit, while the others sleep in the busy handler, and
            # the workers end up running one after another instead of interleaved.
            time.sleep(think.uniform(0, THINK_S_MAX))
    return 0


def cmd_crash(args: argparse.Namespace) -> int:
    line = _await_go()
    if not line:
        return 0  # a warm child that was never needed
    first = int(line)
    ledger = _ledger(args.url, args.ts_us, first)
    deadline = time.monotonic() + args.give_up_s
    while time.monotonic() < deadline:
        items, last = crash_batch(first)
        sys.stdout.write(f"send {first} {last}\n")
        sys.stdout.flush()
        results = ledger.post_batch(items)
        lines = []
        for index, result in zip(range(first, last + 1), results, strict=True):
            if not result.ok:
                lines.append(f"refused {index} {result.idempotency_key} {result.error}\n")
            else:
                lines.append(f"ack {index} {result.idempotency_key} {result.transfer.id}\n")
        # One write per batch (well under PIPE_BUF): a kill never splits a line.
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
        first = last + 1
    return 0


def cmd_topup(args: argparse.Namespace) -> int:
    ledger = _ledger(args.url, args.ts_us, 0)
    request = Transfer(args.key, args.wallet, args.airtime, args.amount, TransferKind.AIRTIME_TOPUP, Channel.SMS)
    _await_go()
    (result,) = ledger.post_batch([request])
    print(json.dumps({
        "key": result.idempotency_key, "ok": result.ok, "code": result.error.code if result.error else None,
        "transfers": [{"id": t.id, "kind": t.kind.value, "amount": t.amount, "cause_id": t.cause_id} for t in result.transfers],
    }), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workers.py")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("transfers")
    p.add_argument("--url", required=True)
    p.add_argument("--ts-us", type=int, required=True)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--wallets", type=int, required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_transfers)
    p = commands.add_parser("crash")
    p.add_argument("--url", required=True)
    p.add_argument("--ts-us", type=int, required=True)
    p.add_argument("--give-up-s", type=float, default=CRASH_CHILD_GIVE_UP_S)
    p.set_defaults(run=cmd_crash)
    p = commands.add_parser("topup")
    p.add_argument("--url", required=True)
    p.add_argument("--ts-us", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--wallet", required=True)
    p.add_argument("--airtime", required=True)
    p.add_argument("--amount", type=int, required=True)
    p.set_defaults(run=cmd_topup)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
