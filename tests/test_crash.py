"""A client SIGKILLed while it posts: acknowledged transfers survive, and retries are exact.

A child process (``tests/workers.py crash``) posts a deterministic sequence of
requests (:func:`workers.crash_batch`) from a start index on, announcing each
batch (``send FIRST LAST``) before ``post_batch`` and acknowledging each
request (``ack INDEX KEY ID``) only after it returned. The parent kills it
with SIGKILL at a random moment (seeded) after it began acknowledging, and
starts the next child at the request after the last one sent. Children are
started ahead of need and wait, imported, for their start index: a cold
start (imports) costs more than a whole run until the kill.

PostgreSQL is a separate server, so the kill is a client crash mid-batch;
SQLite lives in the killed process, so its WAL file (never checkpointed away
by a clean close) is what the next child recovers from.

After all kills: every acknowledged request is stored exactly once with the
acknowledged id; the batch in flight at each kill is all there or not there
at all; the ledger verifies; retrying every request ever sent creates nothing
for the acknowledged ones and at most one transfer for those in flight, after
which every wallet's balance is the opening balance plus the whole sequence;
and a second retry creates nothing.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa
from workers import (
    BANK_REF,
    CRASH_OPENING_FEN,
    CRASH_WALLETS,
    Worker,
    crash_key,
    crash_request,
    owner_of,
    wallet_ref,
)

from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Result, Transfer, TransferKind
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.promotions.rules import ts_us_from_datetime
from simwallet.gateway.store.engine import is_sqlite, open_engine
from simwallet.gateway.store.schema import transfers

pytestmark = pytest.mark.slow

KILLS = 24
SEED = 31337
# A kill comes this long after the child's first acknowledgement.
KILL_DELAY_S_MIN = 0.05
KILL_DELAY_S_MAX = 0.4
# Children started ahead, imported and waiting for their start index.
WARM_CHILDREN = 2
# How long a child may take from its start index to its first acknowledgement.
FIRST_ACK_TIMEOUT_S = 30
# Requests per retry batch.
RETRY_BATCH_LEN = 500
NOW_US = ts_us_from_datetime(datetime(2026, 4, 1, 1, 0, tzinfo=UTC))


@dataclass
class _Run:
    """What one child printed, read by a thread until the pipe closes."""

    sent: list[tuple[int, int]] = field(default_factory=list)
    acked: dict[int, tuple[str, int]] = field(default_factory=dict)  # index -> (key, id)
    refused: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    first_ack: threading.Event = field(default_factory=threading.Event)

    def read(self, worker: Worker) -> None:
        for line in worker.stdout:
            if not line.endswith("\n"):
                self.other.append(line)  # cut by the kill: neither a send nor an ack
                continue
            word, *rest = line.split(" ", 1)
            if word == "send":
                first, last = rest[0].split()
                self.sent.append((int(first), int(last)))
            elif word == "ack":
                index, key, tid = rest[0].split()
                self.acked[int(index)] = (key, int(tid))
                self.first_ack.set()
            elif word == "refused":
                self.refused.append(rest[0])
            else:
                self.other.append(line)


def test_kill_and_retry(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    ledger = Ledger(engine, clock=lambda: NOW_US)
    opened = ledger.open_accounts([
        AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC", BANK_REF),
        *(AccountSpec(AccountKind.CUSTOMER_WALLET, owner_of(n), wallet_ref(n)) for n in range(CRASH_WALLETS)),
    ])
    ids = {a.ref: a.id for a in opened}
    assert all(r.ok for r in ledger.post_batch([
        Transfer(f"open-{n}", BANK_REF, wallet_ref(n), CRASH_OPENING_FEN, TransferKind.DEPOSIT, Channel.BANK)
        for n in range(CRASH_WALLETS)
    ]))
    # No connection of ours stays open while the children run: on SQLite the WAL
    # file then belongs to the killed child alone.
    engine.dispose()
    wal = Path(f"{sa.make_url(db_url).database}-wal") if is_sqlite(db_url) else None

    rng = random.Random(SEED)
    acked: dict[int, tuple[str, int]] = {}
    in_flight: list[tuple[int, int]] = []  # the batch each killed child had sent but not acknowledged
    next_index = 0
    warm: deque[Worker] = deque()
    spawned = 0

    def spawn() -> None:
        nonlocal spawned
        warm.append(Worker.start("crash", ["--url", db_url, "--ts-us", str(NOW_US)], tmp_path / f"child{spawned}.stderr"))
        spawned += 1

    try:
        for _ in range(WARM_CHILDREN):
            spawn()
        for kill in range(KILLS):
            child = warm.popleft()
            spawn()
            child.wait_ready()
            run = _Run()
            reader = threading.Thread(target=run.read, args=(child,), daemon=True)
            reader.start()
            child.send(str(next_index))
            deadline = time.monotonic() + FIRST_ACK_TIMEOUT_S
            while not run.first_ack.wait(0.05):
                assert child.proc.poll() is None, f"child {kill} exited {child.proc.returncode}:\n{child.stderr()}"
                assert time.monotonic() < deadline, f"child {kill} acknowledged nothing in {FIRST_ACK_TIMEOUT_S} s"
            time.sleep(rng.uniform(KILL_DELAY_S_MIN, KILL_DELAY_S_MAX))
            child.proc.send_signal(signal.SIGKILL)
            assert child.proc.wait(timeout=30) == -signal.SIGKILL, f"child {kill} ended on its own:\n{child.stderr()}"
            reader.join(timeout=30)
            child.stop()
            assert not run.refused, run.refused
            assert not run.other, run.other
            assert child.stderr() == ""
            # The sequence has no gaps: each batch follows the previous one.
            assert run.sent[0][0] == next_index
            assert all(b[0] == a[1] + 1 for a, b in pairwise(run.sent))
            # Acknowledged: every batch but the last, and maybe the last.
            done = {i for first, last in run.sent[:-1] for i in range(first, last + 1)}
            assert done <= set(run.acked) <= done | set(range(run.sent[-1][0], run.sent[-1][1] + 1))
            if run.sent[-1][1] not in run.acked:
                in_flight.append(run.sent[-1])
            acked.update(run.acked)
            next_index = run.sent[-1][1] + 1
            if wal is not None:
                assert wal.exists() and wal.stat().st_size > 0, "the killed child's WAL file is gone"
    finally:
        for worker in warm:
            worker.stop()

    sent_count = next_index
    assert len(in_flight) >= KILLS // 4, f"only {len(in_flight)} of {KILLS} kills hit a batch in flight"

    engine = open_engine(db_url)
    ledger = Ledger(engine, clock=lambda: NOW_US)
    stored = _stored(engine)
    crash_keys = {key: tid for key, tid in stored.items() if key.startswith("crash-")}
    for index, (key, tid) in acked.items():
        assert key == crash_key(index)
        assert crash_keys.get(key) == tid, f"acknowledged {key} (id {tid}) is stored as {crash_keys.get(key)}"
    assert set(crash_keys) <= {crash_key(i) for i in range(sent_count)}, "a request that was never sent is stored"
    for first, last in in_flight:
        present = [crash_key(i) in crash_keys for i in range(first, last + 1)]
        assert len(set(present)) == 1, f"batch {first}..{last} was committed in part: {present}"
    report = verify_ledger(engine)
    assert report.ok, [(c.name, c.examples) for c in report.checks if not c.ok]

    # Retry everything ever sent, in other batches than the children used.
    before = len(stored)
    results = _retry(ledger, sent_count)
    assert all(r.ok and len(r.transfers) == 1 for r in results)
    for index, result in enumerate(results):
        if index in acked:
            assert result.duplicate and result.transfer.id == acked[index][1], index
        else:
            assert result.duplicate == (crash_key(index) in crash_keys), index
    created = [r for r in results if not r.duplicate]
    assert {r.idempotency_key for r in created} <= {crash_key(i) for first, last in in_flight for i in range(first, last + 1)}
    stored = _stored(engine)
    assert len(stored) == before + len(created)
    assert all(crash_key(i) in stored for i in range(sent_count))

    # Now every request of the sequence is in exactly once.
    expected = {ref: 0 for ref in ids}
    for i in range(sent_count):
        request = crash_request(i)
        expected[request.debit_account] -= request.amount
        expected[request.credit_account] += request.amount
    for n in range(CRASH_WALLETS):
        expected[wallet_ref(n)] += CRASH_OPENING_FEN
        expected[BANK_REF] -= CRASH_OPENING_FEN
    assert {a.ref: a.credits_posted - a.debits_posted for a in ledger.accounts()} == expected

    again = _retry(ledger, sent_count)
    assert all(r.duplicate for r in again)
    assert [r.transfer.id for r in again] == [r.transfer.id for r in results]
    assert _stored(engine) == stored
    report = verify_ledger(engine)
    assert report.ok, [(c.name, c.examples) for c in report.checks if not c.ok]
    engine.dispose()


def _retry(ledger: Ledger, count: int) -> list[Result]:
    """Post requests 0 .. count - 1 of the sequence again, re-created from their indices."""
    results: list[Result] = []
    for start in range(0, count, RETRY_BATCH_LEN):
        results += ledger.post_batch([crash_request(i) for i in range(start, min(start + RETRY_BATCH_LEN, count))])
    return results


def _stored(engine: sa.Engine) -> dict[str, int]:
    """Idempotency key -> transfer id of every stored transfer (checking each key is there once)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(transfers.c.idempotency_key, transfers.c.id)).all()
    counts = Counter(key for key, _ in rows)
    assert [key for key, n in counts.items() if n > 1] == []
    return dict(rows)
