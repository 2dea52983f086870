"""The heap frozen when one of Python's full collections was slow (heap.Heap): what lives is then out
of later full collections; at most once a period, if anything was frozen since, the whole heap is
collected, freeing what was frozen in flight and became garbage."""

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


def frozen(obj: object) -> bool:
    return all(o is not obj for o in gc.get_objects())  # the permanent generation is not listed


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


def full_collection(heap: Heap, timer: Clock, seconds: float) -> None:
    """What the collector tells its callbacks about one full collection that took ``seconds``."""
    heap.watch("start", {"generation": 2})
    timer.now += seconds
    heap.watch("stop", {"generation": 2, "collected": 0, "uncollectable": 0})


def test_a_slow_full_collection_freezes_the_heap_at_the_next_look() -> None:
    timer = Clock()
    heap = Heap(slow=0.05, timer=timer)
    built = [[n] for n in range(50)]  # what an index holds
    heap.watch("start", {"generation": 1})
    timer.now += 1.0
    heap.watch("stop", {"generation": 1})  # a young collection, however long, is not a reason
    full_collection(heap, timer, 0.04)
    assert not heap.look()
    assert not frozen(built)
    full_collection(heap, timer, 0.06)
    young = Cycle()
    young.me = young
    gone = weakref.ref(young)
    del young
    assert heap.look()
    assert gone() is None  # young garbage collected first, not frozen
    assert frozen(built)
    assert all(frozen(b) for b in built)
    assert not heap.look()  # once per slow collection
    assert heap.freezes == 1


def test_frozen_objects_are_still_freed_by_their_reference_count() -> None:
    """A deleted resource's index entry, frozen, goes when its last reference does."""
    timer = Clock()
    heap = Heap(timer=timer)
    kept = [Plain()]
    entry = weakref.ref(kept[0])
    full_collection(heap, timer, 1.0)
    heap.look()
    kept.clear()
    assert entry() is None


def test_a_frozen_cycle_that_became_garbage_is_freed_by_the_periodic_whole_collection() -> None:
    clock, timer = Clock(), Clock()
    heap = Heap(reclaim_after=3600, clock=clock, timer=timer)
    looped = [Cycle()]  # in flight when frozen, garbage later
    later = weakref.ref(looped[0])
    full_collection(heap, timer, 1.0)
    heap.look()
    looped[0].me = looped[0]
    looped.clear()
    clock.now = 3599
    assert not heap.look()
    gc.collect()
    assert later() is not None  # frozen: out of reach of collections
    clock.now = 3600
    assert heap.look()
    assert later() is None
    assert heap.reclaims == 1
    clock.now = 7200
    assert not heap.look()  # nothing frozen since the whole collection: nothing to reclaim
    assert heap.reclaims == 1


def test_it_watches_the_collector_and_looks_every_period() -> None:
    """Through gc.callbacks: a real full collection, timed as slow, freezes the heap."""
    heap = Heap(slow=-1.0)  # every full collection counts as slow

    async def run() -> None:
        task = asyncio.create_task(heap.run(every=0.001))
        await asyncio.sleep(0)
        assert heap.watch in gc.callbacks
        gc.collect()
        for _ in range(1000):  # bounded: the next look comes within milliseconds
            if heap.freezes:
                break
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert heap.freezes >= 1
    assert heap.watch not in gc.callbacks
