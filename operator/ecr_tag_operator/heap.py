"""Keeps the long-lived indexes out of the cyclic garbage collector's full collections.

kopf's indexes (with their reverse sets: one key per tag per resource) and the urgency's sorted
claims are millions of references at 10,000 resources sharing 100 tags; a full collection walks
them all on whichever thread allocates, holding the GIL: 0.2 to 0.5 s with the event loop stopped
(benchmarks/tenancy.py). So what the process holds at its start (modules, clients: ~45 ms to
walk) is frozen (gc.freeze) before kopf indexes anything, and once the indexes are built (the
first tick after kopf handles objects) what came since is frozen too: later full collections walk
only what came after. Before that freeze only the young generations are collected: a full
collection there walks the indexes (~70 ms at 10,000 x 100 tags in benchmarks/tenancy.py, 190 ms
in an operator restarted over 1,000 resources of 100 tags) and, in two such restarts, found 0
and 2,912 objects to free of 230,000 and 290,000 (what kopf's listing leaves behind is young, or
alive). Garbage already old then stays until the next refreeze. When a quarter more resources
than were frozen have been indexed since, the whole heap is unfrozen, collected and frozen again,
so its tick does nothing else (drift_scheduler.LONG_FREEZE): about as often as Python would walk it
anyway for that many new objects, and never while the resources stay the same. What was frozen and has become cyclic
garbage meanwhile (kopf's bodies and patches of the events in flight at a freeze are cycles) is
freed at that collection.

Freezing more often was tried: each freeze keeps what is in flight at that moment, and freezing
every tenth of growth while 5,000 resources were created peaked at 233 MB instead of 197."""

from __future__ import annotations

import gc
import time


class Heap:
    """The heap's freezes: :meth:`start` before kopf indexes anything, :meth:`settle` at each drift tick."""

    def __init__(self, growth: float = 0.25) -> None:
        self._growth = growth
        self._frozen: set[str] | None = None  # the uids indexed at the last freeze
        self.freezes = 0

    def start(self) -> None:
        """Before kopf indexes anything: the first freeze with the indexes then walks only them."""
        gc.collect()
        gc.freeze()
        self.freezes += 1

    def settle(self, live: set[str]) -> float:
        """Freeze what lives now if the indexes were built or grew a quarter since the last freeze
        (``live``: the uids indexed); the seconds it took (0 when it did not)."""
        frozen = self._frozen
        if frozen is not None and len(live - frozen) <= self._growth * max(len(frozen), 1):
            return 0.0
        start = time.perf_counter()
        if frozen is None:
            gc.collect(1)  # the young generations: a full collection here walked the indexes for next to nothing
        else:
            gc.unfreeze()  # the whole heap, so that what was frozen in flight and is garbage now goes
            gc.collect()
        gc.freeze()
        self._frozen = set(live)
        self.freezes += 1
        return time.perf_counter() - start
