"""The heap frozen in steps as the indexes grow (heap.Heap): each step collects only what is not
frozen yet, frees the garbage among it and freezes the rest; at most once a period, if anything was
frozen since, the whole heap is collected."""

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


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.collect()
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_first_look_collects_and_freezes_whatever_is_there() -> None:
    heap = Heap()
    built = [[n] for n in range(50)]  # what an index holds
    gone = cycle()
    assert heap.grew(set())
    assert gone() is None  # collected, not frozen
    assert frozen(built)
    assert all(frozen(b) for b in built)
    assert heap.freezes == 1


def test_a_step_of_growth_freezes_what_came_since_and_frees_its_garbage() -> None:
    heap = Heap(step=0.5, least=2)
    live = {f"u{n}" for n in range(4)}
    heap.grew(live)
    live.add("u4")
    later = [[n] for n in range(10)]
    assert not heap.grew(live)  # 1 new of 4: less than a step
    assert not frozen(later)
    assert heap.freezes == 1
    live.add("u5")
    gone = cycle()
    assert heap.grew(live)  # 2 new of 4: a step
    assert gone() is None
    assert frozen(later)
    assert heap.freezes == 2
    assert not heap.grew(live | {"u6"})  # measured against the 6 frozen now


def test_churn_counts_new_resources_not_their_number() -> None:
    heap = Heap(step=0.5, least=1)
    heap.grew({"a", "b"})
    assert heap.grew({"c", "d"})  # as many gone as came: two new resources


def test_frozen_objects_are_still_freed_by_their_reference_count() -> None:
    """A deleted resource's index entry, frozen, goes when its last reference does."""
    heap = Heap()
    kept = [Plain()]
    entry = weakref.ref(kept[0])
    heap.grew(set())
    kept.clear()
    assert entry() is None


def test_a_frozen_cycle_that_became_garbage_is_freed_by_the_periodic_whole_collection() -> None:
    now = [0.0]
    heap = Heap(step=0.5, least=1, reclaim_after=3600, clock=lambda: now[0])
    looped = [Cycle()]  # in flight when frozen, garbage later
    later = weakref.ref(looped[0])
    heap.grew({"a"})
    looped[0].me = looped[0]
    looped.clear()
    now[0] = 3599
    assert not heap.grew({"a"})
    gc.collect()
    assert later() is not None  # frozen: out of reach of collections and of steps
    now[0] = 3600
    assert heap.grew({"a"})
    assert later() is None
    assert heap.reclaims == 1
    assert heap.freezes == 2
    now[0] = 7200
    assert not heap.grew({"a"})  # nothing frozen since the whole collection: nothing to reclaim
    assert heap.reclaims == 1


def test_it_looks_at_once_and_then_every_period() -> None:
    looks: list[int] = []
    heap = Heap(step=0.5, least=1)

    def live() -> set[str]:
        looks.append(len(looks))
        return {f"u{n}" for n in range(len(looks))}

    async def run() -> None:
        task = asyncio.create_task(heap.run(live, every=0.001))
        for _ in range(1000):  # bounded: the looks come within milliseconds
            if len(looks) >= 4:
                break
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert len(looks) >= 4
    assert heap.freezes >= 2  # the first look, then growth by a step
