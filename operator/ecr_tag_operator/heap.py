"""Keeps the long-lived indexes out of the cyclic garbage collector's full collections.

kopf's indexes (with their reverse sets: one key per tag per resource) and the drift urgency's
sorted claims are millions of references at 10,000 resources sharing 100 tags. A full collection
walks every one of them on whichever thread allocates, holding the GIL: about 0.5 s with the event
loop stopped (benchmarks/tenancy.py), and Python starts one each time a quarter more objects have
survived since the last.

So the heap is frozen (``gc.freeze``) in steps while it grows: at the operator's start, before kopf
indexes anything, then, looking every second, whenever the indexes have grown by a step (5% more
resources, at least 200) since the last freeze. Each step first collects what is not frozen yet,
which is only what came since the last step (at a start, about a second of kopf's indexing; later
about 5% of the resources): the garbage among it is freed, the rest frozen. No step walks the whole
heap, so none stops the loop for as long as a full collection; Python's own full collections walk
only what is not frozen either.

Nothing is unfrozen. A frozen object is still freed when its last reference goes (an index entry of
a deleted resource: the indexes' objects form no cycles); only a frozen object that later becomes
part of a reference cycle stays until the process ends, and freezing only what survived a
collection keeps those few.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Heap:
    def __init__(self, step: float = 0.05, least: int = 200) -> None:
        self._step = step
        self._least = least
        self._frozen: set[str] | None = None  # uids indexed at the last freeze (None: not frozen yet)
        self.freezes = 0

    def grew(self, live: set[str]) -> bool:
        """Freeze the heap if it was never frozen, or if the resources indexed (``live``, by uid)
        have grown by a step since the last freeze; return whether it froze."""
        frozen = self._frozen
        if frozen is not None and len(live - frozen) < max(self._least, self._step * len(frozen)):
            return False
        start = time.perf_counter()
        found = gc.collect()  # walks only what is not frozen
        gc.freeze()
        self._frozen = set(live)
        self.freezes += 1
        log.debug(
            "heap frozen at %d resources: %d garbage objects freed, %.3f s",
            len(live),
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
