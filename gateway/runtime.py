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

import gc

# Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000
GC_OLDER_THRESHOLDS = (20, 100)


def tune_for_serving() -> None:
    """Freeze the objects alive now and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *GC_OLDER_THRESHOLDS)
