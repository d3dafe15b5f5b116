"""The group committer: many threads, shared batches, each result after its commit."""

from __future__ import annotations

import threading

import pytest

from simwallet.gateway.ledger.committer import GroupCommitter
from simwallet.gateway.ledger.ledger import AccountSpec, Ledger
from simwallet.gateway.ledger.model import AccountKind, Channel, Linked, Result, Transfer, TransferKind
from simwallet.gateway.ledger.verify import verify_ledger
from simwallet.gateway.store.engine import open_engine

THREADS = 8
PER_THREAD = 60


@pytest.mark.parametrize("workers", [1, 2])
def test_many_threads_share_batches(db_url: str, workers: int) -> None:
    engine = open_engine(db_url)
    ledger = Ledger(engine)
    bank, *wallets = ledger.open_accounts([AccountSpec(AccountKind.BANK_SETTLEMENT, "bank:T", "bank")]
                                          + [AccountSpec(AccountKind.CUSTOMER_WALLET, f"customer:{n}") for n in range(6)])
    ledger.post_batch([Transfer(f"fund-{w.id}", bank.id, w.id, 1_000_000, TransferKind.DEPOSIT) for w in wallets])
    results: dict[str, list[Result]] = {}
    lock = threading.Lock()

    def client(n: int, committer: GroupCommitter) -> None:
        futures = []
        for k in range(PER_THREAD):
            a, b = wallets[(n + k) % 6], wallets[(n + 2 * k + 1) % 6]
            if a.id == b.id:
                b = wallets[(n + 2 * k + 2) % 6]
            item: Transfer | Linked = Transfer(f"t-{n}-{k}", a.id, b.id, 1 + k, TransferKind.P2P, Channel.SMS)
            if k % 10 == 0:  # a linked pair whose second member always fails: neither is posted
                item = Linked((Transfer(f"l1-{n}-{k}", a.id, b.id, 1, TransferKind.P2P),
                               Transfer(f"l2-{n}-{k}", a.id, b.id, 10**12, TransferKind.P2P)))
            futures.append((f"{n}-{k}", committer.submit(item)))
        for name, future in futures:
            with lock:
                results[name] = future.result()

    with GroupCommitter(ledger, batch_max=50, workers=workers) as committer:
        threads = [threading.Thread(target=client, args=(n, committer)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = committer.stats
    assert len(results) == THREADS * PER_THREAD
    linked = [r for name, r in results.items() if int(name.split("-")[1]) % 10 == 0]
    single = [r for name, r in results.items() if int(name.split("-")[1]) % 10 != 0]
    assert all(len(r) == 2 and not r[0].ok and not r[1].ok for r in linked)
    assert all(len(r) == 1 and r[0].ok for r in single)
    assert stats.requests == THREADS * PER_THREAD and 1 < stats.mean_batch <= 50
    report = verify_ledger(engine)
    assert report.ok and report.transfers == 6 + len(single)
    posted = {r[0].transfer.idempotency_key: r[0].transfer.id for r in single}
    assert len(set(posted.values())) == len(posted)  # each request its own row
    engine.dispose()


def test_closed_committer_refuses_work(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    committer = GroupCommitter(Ledger(engine))
    with committer:
        pass
    with pytest.raises(RuntimeError):
        committer.submit(Transfer("k", 1, 2, 1, TransferKind.P2P))
    with pytest.raises(ValueError):
        GroupCommitter(Ledger(engine), workers=0)
    engine.dispose()
