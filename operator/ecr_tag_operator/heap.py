"""Keeps the long-lived indexes out of the cyclic garbage collector's full collections.

kopf's indexes (with their reverse sets: one key per tag per resource) and the drift urgency's
sorted claims are millions of references at 10,000 resources sharing 100 tags. A full collection
walks every one of them on whichever thread allocates, holding the GIL: about 0.5 s with the event
loop stopped (benchmarks/tenancy.py), and Python starts one each time a quarter more objects have
survived since the last.

So the heap is frozen (``gc.freeze``) in steps while it grows: at the operator's start, before kopf
indexes anything, then, looking every second, whenever the indexes have grown by a step (10% more
resources, at least 200) since the last freeze. Each step first collects what is not frozen yet,
which is only what came since the last step (at a start, about a second of kopf's indexing; later
about a tenth of the resources): the garbage among it is freed, the rest frozen. No step walks the
whole heap, so none stops the loop for as long as a full collection; Python's own full collections
walk only what is not frozen either.

What a step freezes includes work in flight at that moment (reconciles, kopf's workers and the
bodies they hold), some of it in reference cycles that a frozen heap never frees: about 6,000
objects a step while 1,000 resources were created. So at most once an hour, and only if something
was frozen since, the whole heap is unfrozen, collected and frozen again: the one full collection,
as long as Python's own, an hour apart instead of at every quarter of growth.
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
        step: float = 0.1,
        least: int = 200,
        reclaim_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._step = step
        self._least = least
        self._reclaim_after = reclaim_after
        self._clock = clock
        self._frozen: set[str] | None = None  # uids indexed at the last freeze (None: not frozen yet)
        self._reclaimed = clock()  # when the whole heap was last collected
        self._unreclaimed = False  # frozen since: cycles in flight then may be garbage now
        self.freezes = 0
        self.reclaims = 0

    def grew(self, live: set[str]) -> bool:
        """Freeze the heap if it was never frozen, or if the resources indexed (``live``, by uid)
        have grown by a step since the last freeze; collect it whole if it is time to. Return
        whether it froze."""
        frozen, whole = self._frozen, False
        if frozen is not None and len(live - frozen) < max(self._least, self._step * len(frozen)):
            whole = self._unreclaimed and self._clock() - self._reclaimed >= self._reclaim_after
            if not whole:
                return False
        start = time.perf_counter()
        if whole:
            gc.unfreeze()
            self._reclaimed, self._unreclaimed = self._clock(), False
            self.reclaims += 1
        else:
            self._unreclaimed = True
        found = gc.collect()  # walks only what is not frozen: all of it after unfreeze()
        gc.freeze()
        self._frozen = set(live)
        self.freezes += 1
        log.debug(
            "heap frozen at %d resources%s: %d garbage objects freed, %.3f s",
            len(live),
            " after a whole collection" if whole else "",
            found,
            time.perf_counter() - start,
        )
        return True

    async def run(self, live: Callable[[], set[str]], every: float = 1.0) -> None:
        """Freeze at once, then look every ``every`` seconds: often enough that a step, while kopf
        indexes thousands of resources at a start, holds about what one second indexes."""
        while True:
            self.grew(live())
            await asyncio.sleep(every)
