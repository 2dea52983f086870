"""Keeps garbage collection short and frequent: the long-lived indexes frozen out of it, kopf's
garbage collected every second.

kopf's indexes (with their reverse sets: one key per tag per resource) and the drift urgency's
sorted claims are millions of references at 10,000 resources sharing 100 tags. A full collection
walks every one of them on whichever thread allocates, holding the GIL: about 0.5 s with the event
loop stopped (benchmarks/tenancy.py). Python starts one only once a quarter more objects have
survived since its last, so meanwhile the reference cycles kopf leaves behind (each event's body and
patches are cycles) pile up: 318 MB at 5,000 resources where 197 MB suffice
(benchmarks/convergence.py).

So every second the part of the heap that is not frozen is collected (its garbage freed at once),
and when that collection took longer than ``slow`` (25 ms) what survived it is frozen
(``gc.freeze``): later collections walk only what came since. No collection walks more than about
``slow`` worth of objects, wherever the indexes stand, and the cycles live about a second.

A frozen object is still freed when its last reference goes (an index entry of a deleted resource:
the indexes' objects form no cycles). What a freeze takes in flight is not: the bodies and patches of
the events kopf is handling at that moment are cycles a frozen heap never frees (about 170 bodies a
freeze while 1,000 resources were being created). Freezes follow growth, and churn repeats them, so
at most once an hour, and only if something was frozen since, the whole heap is unfrozen, collected
and frozen again: one full collection an hour at most.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Heap:
    def __init__(
        self,
        slow: float = 0.025,
        reclaim_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._slow = slow
        self._reclaim_after = reclaim_after
        self._clock = clock
        self._timer = timer
        self._reclaimed = clock()  # when the whole heap was last collected
        self._unreclaimed = False  # frozen since: what was in flight then may be garbage now
        self.freezes = 0
        self.reclaims = 0
        self.longest = 0.0  # the longest collection a look made (a figure for the benchmark)

    def look(self) -> bool:
        """Collect what is not frozen; freeze what survived if that took long, or collect the whole
        heap if it is time to. Return whether the heap was frozen."""
        whole = self._unreclaimed and self._clock() - self._reclaimed >= self._reclaim_after
        start = self._timer()
        if whole:
            gc.unfreeze()
        found = gc.collect()  # walks only what is not frozen: all of it after unfreeze()
        took = self._timer() - start
        self.longest = max(self.longest, took)
        if not whole and took <= self._slow:
            return False
        gc.freeze()
        if whole:
            self._reclaimed, self._unreclaimed = self._clock(), False
            self.reclaims += 1
        else:
            self._unreclaimed = True
        self.freezes += 1
        log.debug(
            "heap frozen%s after a collection of %.3f s (%d garbage objects)", " whole" if whole else "", took, found
        )
        return True

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.look()
