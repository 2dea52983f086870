"""The heap collected every second and frozen when that took long (heap.Heap): garbage cycles go at
the next look, what lives then is out of later collections; at most once a period, if anything was
frozen since, the whole heap is collected, freeing what was frozen in flight and became garbage."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from ecr_tag_operator.heap import Heap


class Cycle:
    me: Cycle | None = None


class Plain:
    """An object that is in no reference cycle (as an index entry)."""


def cycle() -> weakref.ref[Cycle]:
    """A reference cycle that is garbage already: only a collection frees it."""
    garbage = Cycle()
    garbage.me = garbage
    return weakref.ref(garbage)


def frozen(obj: object) -> bool:
    return all(o is not obj for o in gc.get_objects())  # the permanent generation is not listed


class Timer:
    """A clock read before and after each collection: each look's collection takes ``took``."""

    def __init__(self) -> None:
        self.now, self.took, self._reads = 0.0, 0.0, 0

    def __call__(self) -> float:
        self._reads += 1
        if self._reads % 2 == 0:
            self.now += self.took
        return self.now


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.collect()
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_quick_collection_frees_the_garbage_and_freezes_nothing() -> None:
    timer = Timer()
    heap = Heap(slow=0.025, timer=timer)
    built = [[n] for n in range(50)]
    gone = cycle()
    timer.took = 0.02
    assert not heap.look()
    assert gone() is None
    assert not frozen(built)
    assert heap.freezes == 0


def test_a_slow_collection_freezes_what_survived_it() -> None:
    timer = Timer()
    heap = Heap(slow=0.025, timer=timer)
    built = [[n] for n in range(50)]  # what an index holds
    gone = cycle()
    timer.took = 0.03
    assert heap.look()
    assert gone() is None  # collected, not frozen
    assert frozen(built)
    assert all(frozen(b) for b in built)
    later = [[n] for n in range(10)]
    timer.took = 0.001  # only what came since is walked now
    assert not heap.look()
    assert not frozen(later)
    assert heap.freezes == 1
    assert heap.longest == pytest.approx(0.03)


def test_frozen_objects_are_still_freed_by_their_reference_count() -> None:
    """A deleted resource's index entry, frozen, goes when its last reference does."""
    timer = Timer()
    heap = Heap(timer=timer)
    kept = [Plain()]
    entry = weakref.ref(kept[0])
    timer.took = 1.0
    heap.look()
    kept.clear()
    assert entry() is None


def test_a_frozen_cycle_that_became_garbage_is_freed_by_the_periodic_whole_collection() -> None:
    clock, timer = Clock(), Timer()
    heap = Heap(reclaim_after=3600, clock=clock, timer=timer)
    looped = [Cycle()]  # in flight when frozen, garbage later
    later = weakref.ref(looped[0])
    timer.took = 1.0
    heap.look()
    looped[0].me = looped[0]
    looped.clear()
    timer.took = 0.0
    clock.now = 3599
    assert not heap.look()
    assert later() is not None  # frozen: out of reach of the looks' collections
    clock.now = 3600
    assert heap.look()
    assert later() is None
    assert heap.reclaims == 1
    clock.now = 7200
    assert not heap.look()  # nothing frozen since the whole collection: nothing to reclaim
    assert heap.reclaims == 1


def test_it_looks_every_period() -> None:
    looks: list[bool] = []

    class Counted(Heap):
        def look(self) -> bool:
            looks.append(True)
            return False

    async def run() -> None:
        task = asyncio.create_task(Counted().run(every=0.001))
        for _ in range(1000):  # bounded: the looks come within milliseconds
            if len(looks) >= 3:
                break
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert len(looks) >= 3
