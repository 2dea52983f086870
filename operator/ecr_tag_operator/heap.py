"""Keeps the long-lived indexes out of the cyclic garbage collector's full collections.

kopf's indexes (with their reverse sets: one key per tag per resource) and the drift urgency's
sorted claims are millions of references at 10,000 resources sharing 100 tags. A full collection
walks every one of them on whichever thread allocates, holding the GIL: about 0.5 s with the event
loop stopped (benchmarks/tenancy.py). Python starts one each time a quarter more objects have
survived since the last, so while the indexes grow each is longer than the one before.

So the heap is frozen (``gc.freeze``) as soon as one of Python's full collections took longer than
``slow`` (50 ms): what survived it is what lives, and later full collections walk only what came
since, until that too takes long and is frozen in turn. No full collection gets much longer than
``slow``: the one before was shorter, and Python starts the next after a quarter of growth.
Collections are watched through ``gc.callbacks``; the freeze itself waits for the next look (every
second, on the event loop), after a collection of the young generations only.

A frozen object is still freed when its last reference goes (an index entry of a deleted resource:
the indexes' objects form no cycles). What a freeze takes in flight is not: kopf's bodies and
patches of the events being handled are reference cycles, which a frozen heap never frees (about
170 bodies a freeze while 1,000 resources were being created). Freezes are rare (each follows a
quarter of growth), but churn repeats them, so at most once an hour, and only if something was
frozen since, the whole heap is unfrozen, collected and frozen again: one full collection an hour
at most, where Python alone would run one at every quarter of growth.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Heap:
    def __init__(
        self,
        slow: float = 0.05,
        reclaim_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._slow = slow
        self._reclaim_after = reclaim_after
        self._clock = clock
        self._timer = timer
        self._started: float | None = None  # when the full collection under way started
        self._due = False  # a full collection took longer than ``slow`` since the last freeze
        self._reclaimed = clock()  # when the whole heap was last collected
        self._unreclaimed = False  # frozen since: what was in flight then may be garbage now
        self.freezes = 0
        self.reclaims = 0

    def watch(self, phase: str, info: dict[str, Any]) -> None:
        """A gc callback (runs inside the collector, on whichever thread collects): time full ones."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = self._timer()
        elif self._started is not None:
            if self._timer() - self._started > self._slow:
                self._due = True
            self._started = None

    def look(self) -> bool:
        """Freeze if a full collection was slow since the last look, or collect the whole heap if it
        is time to; return whether the heap was frozen."""
        whole = not self._due and self._unreclaimed and self._clock() - self._reclaimed >= self._reclaim_after
        if not (self._due or whole):
            return False
        start = self._timer()
        if whole:
            gc.unfreeze()
            found = gc.collect()
            self._reclaimed, self._unreclaimed = self._clock(), False
            self.reclaims += 1
        else:
            found = gc.collect(1)  # the full collection that was slow has just walked the rest
            self._unreclaimed = True
        gc.freeze()
        # Python starts a full collection once a quarter of what its last one kept has survived since:
        # one over what is not frozen (nothing yet) counts from there, not from the heap just frozen,
        # which would leave garbage cycles piling up until a quarter of the whole heap.
        gc.collect()
        self._due = False
        self.freezes += 1
        log.debug(
            "heap frozen%s: %d garbage objects freed, %.3f s",
            " after a whole collection" if whole else "",
            found,
            self._timer() - start,
        )
        return True

    async def run(self, every: float = 1.0) -> None:
        gc.callbacks.append(self.watch)
        try:
            while True:
                await asyncio.sleep(every)
                self.look()
        finally:
            gc.callbacks.remove(self.watch)
