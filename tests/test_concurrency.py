"""Several OS processes posting to overlapping accounts at once, on SQLite and PostgreSQL.

The ledger's concurrency model (``gateway/ledger/ledger.py``, module
docstring): SQLite serialises writers with ``BEGIN IMMEDIATE`` and a busy
timeout; PostgreSQL locks account rows in id order and retries deadlocks and
serialization failures. Four workers (``tests/workers.py transfers``) start at
the same instant and post random batches among ten shared wallets: p2p
transfers, both directions of a pair in one batch, linked chains (some made to
fail by one member), holds and their posts and voids. They also race on
idempotency keys: each first posts the same ten keys with bodies of its own
(between wallets no other worker's first batch locks, so that on PostgreSQL
the batches meet only at the unique index), and later thirty keys with the
same body as every other worker. Each worker writes every result to its own
file after ``post_batch`` returned.

The expected state is recomputed from those files alone, never from the
database: every account's four sums, which keys exist (each exactly once, with
the id, accounts, amount and phase the worker was told) and which do not.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from workers import BANK_REF, CONFLICT_KEYS, SHARED_KEYS, Worker, owner_of, wallet_ref

from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Transfer, TransferKind
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.promotions.rules import ts_us_from_datetime
from simwallet.gateway.store.engine import open_engine
from simwallet.gateway.store.schema import transfers

pytestmark = pytest.mark.slow

WORKERS = 4
REQUESTS_PER_WORKER = 300
WALLETS = 10
OPENING_FEN = 1_000_000  # 10,000.00 each: random amounts of up to 200.00 seldom run a wallet dry
NOW_US = ts_us_from_datetime(datetime(2026, 3, 10, 2, 0, tzinfo=UTC))
SEED = 20260310
# Whole run of one worker, startup included; a few seconds when healthy.
WORKER_TIMEOUT_S = 120
# Refusals a correct ledger may give: a wallet that random transfers emptied,
# and the other members of a chain that one member failed.
EXPECTED_REFUSALS = {"exceeds_credits", "linked_event_failed"}
# Workers one after another would give WORKERS - 1 switches between consecutive batches.
INTERLEAVING_SWITCHES_MIN = 20


def test_overlapping_writers(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    ledger = Ledger(engine, clock=lambda: NOW_US)
    opened = ledger.open_accounts([
        AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:ICBC", BANK_REF),
        *(AccountSpec(AccountKind.CUSTOMER_WALLET, owner_of(n), wallet_ref(n)) for n in range(WALLETS)),
    ])
    ids = {a.ref: a.id for a in opened}
    funding = ledger.post_batch([
        Transfer(f"open-{n}", BANK_REF, wallet_ref(n), OPENING_FEN, TransferKind.DEPOSIT, Channel.BANK) for n in range(WALLETS)
    ])
    assert all(r.ok for r in funding)

    workers: list[Worker] = []
    try:
        for w in range(WORKERS):
            workers.append(Worker.start("transfers", [
                "--url", db_url, "--ts-us", str(NOW_US), "--worker", str(w), "--seed", str(SEED + w),
                "--wallets", str(WALLETS), "--requests", str(REQUESTS_PER_WORKER), "--out", str(tmp_path / f"w{w}.jsonl"),
            ], tmp_path / f"w{w}.stderr"))
        for worker in workers:
            worker.wait_ready()
        for worker in workers:
            worker.send("go")
        for worker in workers:
            worker.finish(WORKER_TIMEOUT_S)  # raises unless it exited 0, quoting its traceback
    finally:
        for worker in workers:
            worker.stop()

    records = [json.loads(line) for w in range(WORKERS) for line in (tmp_path / f"w{w}.jsonl").read_text().splitlines()]
    assert len(records) >= WORKERS * REQUESTS_PER_WORKER
    _check_interleaved(records)
    _check_refusals(records)
    _check_chains(records)
    _check_contested(records)
    # The results that wrote something: each key's first acknowledgement (the others are duplicates).
    created = [r for r in records if r["ok"] and not r["duplicate"]]
    assert len({r["key"] for r in created}) == len(created)
    ops = Counter(r["op"] for r in created)
    assert min(ops["transfer"], ops["hold"], ops["post"], ops["void"]) > 0, ops

    report = verify_ledger(engine)
    assert report.ok, [(c.name, c.examples) for c in report.checks if not c.ok]

    # Every account's four sums, from the opening deposits and the workers' records only.
    expected = {ref: [0, 0, 0, 0] for ref in ids}  # debits_pending, debits_posted, credits_pending, credits_posted
    for n in range(WALLETS):
        expected[BANK_REF][1] += OPENING_FEN
        expected[wallet_ref(n)][3] += OPENING_FEN
    for r in created:
        debit, credit, amount = expected[r["debit"]], expected[r["credit"]], r["amount"]
        if r["op"] in ("hold", "post", "void"):
            sign = 1 if r["op"] == "hold" else -1
            debit[0] += sign * amount
            credit[2] += sign * amount
        if r["op"] in ("transfer", "post"):
            debit[1] += amount
            credit[3] += amount
    actual = {a.ref: [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted] for a in ledger.accounts()}
    assert actual == expected
    assert all(sums[0] == sums[2] == 0 for sums in actual.values()), "every worker resolved its holds"

    # Every acknowledged key exactly once, as acknowledged; nothing else.
    with engine.connect() as conn:
        rows = conn.execute(sa.select(transfers)).all()
    by_key = Counter(row.idempotency_key for row in rows)
    assert [k for k, n in by_key.items() if n > 1] == []
    stored = {row.idempotency_key: row for row in rows}
    hold_ids = {r["key"]: r["ids"][0] for r in created if r["op"] == "hold"}
    phases = {"transfer": "single", "hold": "pending", "post": "post", "void": "void"}
    for r in created:
        row = stored.get(r["key"])
        assert row is not None, f"acknowledged {r['key']} is missing"
        assert r["ids"] == [row.id]
        assert (row.debit_account_id, row.credit_account_id, row.amount, row.phase) == (
            ids[r["debit"]], ids[r["credit"]], r["amount"], phases[r["op"]]), r
        if r["op"] in ("post", "void"):
            assert row.pending_id == r["pending_id"] == hold_ids[r["hold_key"]]
    never = {r["key"] for r in records} - {r["key"] for r in created}
    assert never.isdisjoint(stored)
    assert len(rows) == len(funding) + len(created)
    engine.dispose()


def _check_interleaved(records: list[dict[str, Any]]) -> None:
    """The workers' batches really alternated (SQLite's lock is not fair: a run can degrade to one worker after another)."""
    batches = sorted({(r["acked_at"], r["worker"]) for r in records})
    switches = sum(a[1] != b[1] for a, b in pairwise(batches))
    assert switches >= INTERLEAVING_SWITCHES_MIN, f"the workers took turns only {switches} times in {len(batches)} batches"


def _check_refusals(records: list[dict[str, Any]]) -> None:
    """Only refusals a correct ledger may give, and duplicates only where keys are shared."""
    for r in records:
        if r["duplicate"]:
            assert r["contest"] == "shared", r
        if not r["ok"]:
            allowed = EXPECTED_REFUSALS | ({"idempotency_conflict"} if r["contest"] == "conflict" else set())
            assert r["code"] in allowed, r


def _check_contested(records: list[dict[str, Any]]) -> None:
    """Keys several workers posted at once: one write each, and every worker told the same."""
    shared: dict[str, list[dict[str, Any]]] = {}
    conflict: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["contest"] is not None:
            (shared if r["contest"] == "shared" else conflict).setdefault(r["key"], []).append(r)
    assert len(shared) == SHARED_KEYS and len(conflict) == CONFLICT_KEYS
    for key, posts in shared.items():
        assert sorted(r["worker"] for r in posts) == list(range(WORKERS))
        acked = [r for r in posts if r["ok"]]
        assert len([r for r in acked if not r["duplicate"]]) == (1 if acked else 0), (key, posts)
        assert len({tuple(r["ids"]) for r in acked}) <= 1, (key, posts)
    # The conflict keys are all in each worker's first batch, one transaction: one worker gets them all.
    winners = set()
    for key, posts in conflict.items():
        assert sorted(r["worker"] for r in posts) == list(range(WORKERS))
        acked = [r for r in posts if r["ok"]]
        assert len(acked) == 1 and not acked[0]["duplicate"], (key, posts)
        winners.add(acked[0]["worker"])
    assert len(winners) == 1, f"the conflict keys went to workers {winners}: a first batch was committed in part"


def _check_chains(records: list[dict[str, Any]]) -> None:
    """Linked chains are all-or-nothing; the doomed ones fail, naming the member at fault."""
    chains: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["group"] is not None:
            chains.setdefault(r["group"], []).append(r)
    assert any(m[0]["doomed"] for m in chains.values()) and any(not m[0]["doomed"] for m in chains.values())
    for group, members in chains.items():
        outcomes = {m["ok"] for m in members}
        assert len(outcomes) == 1, f"chain {group} was partly posted"
        if members[0]["doomed"]:
            assert outcomes == {False}
            assert Counter(m["code"] for m in members)["exceeds_credits"] == 1, group
