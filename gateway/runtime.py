"""Settings of a long-running simwallet server process (gateway, campaign sender, benchmarks).

Not called by library code: a process that serves the ledger calls
:func:`tune_for_serving` once, after start-up. The ledger allocates many
short-lived objects per batch; with CPython's default thresholds the cyclic
collector runs every few hundred allocations and, every so often, walks every
object the process holds. Freezing what start-up created (``gc.freeze``, as
large Python services do) and collecting young objects less often removes
most of that work without giving up collection.
"""

from __future__ import annotations

import asyncio
import gc

# Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000
GC_OLDER_THRESHOLDS = (20, 100)
# With those thresholds a full collection waits for ~100M allocations; an SMPP gateway's cyclic garbage
# (SQLAlchemy's bind parameters of IN (...) lists) would pile up meanwhile, so it collects fully this often.
FULL_COLLECTION_S = 5.0


def tune_for_serving() -> None:
    """Freeze the objects alive now and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *GC_OLDER_THRESHOLDS)


async def collect_periodically(stop: asyncio.Event, interval_s: float = FULL_COLLECTION_S) -> None:
    """A full collection every ``interval_s`` until ``stop`` (an asyncio server's memory stays flat under load)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            gc.collect()
