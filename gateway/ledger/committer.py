"""Group commit: many concurrent requesters, one database transaction per batch.

The gateway has a window of outstanding SMPP messages; each of them becomes a
ledger request. Instead of one transaction per request, :class:`GroupCommitter`
collects whatever requests are waiting when the previous batch committed and
posts them together with :meth:`Ledger.post_batch`. A requester's future is
resolved only after the commit that holds its request returned, so a result
in hand is a durable result.

This is a thread, not an event loop: ``post_batch`` spends its time in the
database driver, which releases the GIL. With ``workers=2`` two batches are in
flight on two connections: one is prepared in Python while the other waits for
PostgreSQL. They stay correct because each batch locks its accounts in id
order; batches that share accounts simply commit one after the other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from simwallet.gateway.errors import GatewayError
from simwallet.gateway.ledger.ledger import BATCH_LEN_MAX, Ledger
from simwallet.gateway.ledger.model import Linked, Request, Result

# Requests in one group commit: larger batches amortise the commit further but
# hold their locks longer; a few hundred is where the gain flattens out.
GROUP_BATCH_MAX = 1_000
# Requests waiting for a batch before submit() blocks the requester (back-pressure).
QUEUE_LEN_MAX = 100_000
# Batches in flight at once: more than a few only adds lock waits.
WORKERS_MAX = 8


@dataclass(frozen=True)
class CommitterStats:
    batches: int
    requests: int
    largest_batch: int

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class GroupCommitter:
    """Posts the requests of many threads in shared batches; use as a context manager."""

    def __init__(self, ledger: Ledger, *, batch_max: int = GROUP_BATCH_MAX, workers: int = 1) -> None:
        if not 0 < batch_max <= BATCH_LEN_MAX:
            raise ValueError(f"batch_max must be 1..{BATCH_LEN_MAX}")
        if not 0 < workers <= WORKERS_MAX:
            raise ValueError(f"workers must be 1..{WORKERS_MAX}")
        self._ledger = ledger
        self._batch_max = batch_max
        # Entries are groups of requests handed in together (submit_many); None stops a worker.
        self._queue: queue.Queue[list[tuple[Request | Linked, Future[list[Result]]]] | None] = queue.Queue(QUEUE_LEN_MAX)
        self._threads = [threading.Thread(target=self._run, name=f"ledger-group-commit-{n}", daemon=True)
                         for n in range(workers)]
        self._stats_lock = threading.Lock()
        self._batches = 0
        self._requests = 0
        self._largest = 0
        self._closed = False

    def __enter__(self) -> GroupCommitter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Post what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join()

    def submit(self, item: Request | Linked) -> Future[list[Result]]:
        """Queue a request (or linked chain); the future gives its results after the commit."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[Request | Linked]) -> list[Future[list[Result]]]:
        """Queue several requests at once (a session refilling its window); one future each.

        They may be posted in different batches; each future is resolved after
        the commit that holds its own request.
        """
        if self._closed:
            raise RuntimeError("committer is closed")
        if len(items) > self._batch_max:
            raise ValueError(f"at most {self._batch_max} requests at once")
        group: list[tuple[Request | Linked, Future[list[Result]]]] = [(item, Future()) for item in items]
        if group:
            self._queue.put(group)
        return [future for _, future in group]

    def post(self, item: Request | Linked) -> list[Result]:
        return self.submit(item).result()

    @property
    def stats(self) -> CommitterStats:
        return CommitterStats(self._batches, self._requests, self._largest)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = list(first)
            # Take whole groups while the batch has room; a group that would overflow it waits.
            while len(batch) < self._batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:  # one stop marker per worker: this one is ours
                    stopping = True
                    break
                if len(batch) + len(nxt) > self._batch_max:
                    self._post(batch)
                    batch = []
                batch.extend(nxt)
            self._post(batch)

    def _post(self, batch: Sequence[tuple[Request | Linked, Future[list[Result]]]]) -> None:
        try:
            results = self._ledger.post_batch([item for item, _ in batch])
        except GatewayError as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        with self._stats_lock:
            self._batches += 1
            self._requests += len(batch)
            self._largest = max(self._largest, len(batch))
        at = 0
        for item, future in batch:
            n = len(item.requests) if isinstance(item, Linked) else 1
            future.set_result(results[at:at + n])
            at += n
