"""What kopf needs to start over thousands of objects: its per-object worker limit not held while its
indexes are incomplete (kopf issue #1243: a worker indexes its object, then waits for every other
object to be indexed), and its readiness toggles waking the waiting workers only when the state
changes."""

from __future__ import annotations

import asyncio
import logging
import operator
import threading

import kopf
import pytest
from kopf._cogs.aiokits import aiotasks, aiotoggles  # kopf's scheduler of object workers, its readiness

from ecr_tag_operator import handlers
from ecr_tag_operator.kopf_startup import WorkerLimit, notify_readiness_on_change
from ecr_tag_operator.runtime import Runtime
from ecr_tag_operator.settings import Settings


def test_it_compares_as_no_limit_until_held_then_as_its_number() -> None:
    held = threading.Event()
    limit = WorkerLimit(3, held.is_set)
    assert isinstance(limit, int)
    # operator.lt(running, limit) is kopf's ``len(running) < limit``: int's own comparison comes second.
    assert operator.lt(5, limit)
    assert (limit > 5, limit >= 5, limit < 5, limit <= 5) == (True, True, False, False)
    held.set()
    assert [operator.lt(n, limit) for n in (2, 3, 5)] == [True, False, False]
    assert (limit > 2, limit > 3, limit >= 3, limit < 4, limit <= 3, limit < 3) == (
        True,
        False,
        True,
        True,
        True,
        False,
    )
    assert int(limit) == 3
    assert "held" in repr(limit)


def test_kopfs_scheduler_starts_every_worker_while_indexing_and_then_keeps_to_the_limit() -> None:
    """Workers that wait for the indexes, more of them than the limit: with a plain int kopf's
    scheduler starts only ``limit`` of them and none ever finishes (the deadlock); with the
    WorkerLimit all start, and once it holds, new workers wait for a slot."""

    async def run(limit: int, indexed: asyncio.Event, workers: int, wait: float) -> tuple[int, bool]:
        started = 0

        async def worker() -> None:
            nonlocal started
            started += 1
            if started == workers:
                indexed.set()  # the last object indexed: kopf's indexes are complete
            await indexed.wait()

        scheduler = aiotasks.Scheduler(limit=limit)
        try:
            for _ in range(workers):
                await scheduler.spawn(worker())
            try:
                await asyncio.wait_for(scheduler.wait(), timeout=wait)
                return started, True
            except TimeoutError:
                return started, False
        finally:
            await scheduler.close()

    async def plain() -> tuple[int, bool]:
        return await run(4, asyncio.Event(), 10, wait=1)  # stuck for good, if at all

    async def lifted() -> tuple[int, bool]:
        indexed = asyncio.Event()
        return await run(WorkerLimit(4, indexed.is_set), indexed, 10, wait=30)

    assert asyncio.run(plain()) == (4, False)  # what kopf does with the plain limit: stuck
    assert asyncio.run(lifted()) == (10, True)

    async def held() -> int:
        """After the indexes: at most the limit run at once."""
        indexed, release, four, refused = asyncio.Event(), asyncio.Event(), asyncio.Event(), asyncio.Event()
        indexed.set()
        running = peak = 0

        class Watched(WorkerLimit):
            def __gt__(self, other: object) -> bool:  # kopf's ``running < limit``
                room = super().__gt__(other)
                if not room:
                    refused.set()  # the spawner asked for another worker and was told to wait
                return room

        async def worker() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 4:
                four.set()
            await release.wait()
            running -= 1

        scheduler = aiotasks.Scheduler(limit=Watched(4, indexed.is_set))
        try:
            for _ in range(10):
                await scheduler.spawn(worker())
            await asyncio.wait_for(four.wait(), timeout=10)  # the spawner started what it may
            await asyncio.wait_for(refused.wait(), timeout=10)  # and then held the rest back
            assert running == 4
            release.set()
            await asyncio.wait_for(scheduler.wait(), timeout=2)
        finally:
            await scheduler.close()
        return peak

    assert asyncio.run(held()) == 4


def test_the_operator_hands_kopf_a_limit_held_from_when_its_indexes_are_complete() -> None:
    runtime = Runtime(Settings(region="us-east-1", object_worker_limit=32, metrics_port=0), ecr=None, own_account="1")  # type: ignore[arg-type]
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings, memo=kopf.Memo(runtime=runtime), logger=logging.getLogger("test"))  # type: ignore[arg-type]
    limit = settings.queueing.worker_limit
    assert isinstance(limit, WorkerLimit)
    assert int(limit) == 32
    assert operator.lt(1000, limit)
    runtime.handling.set()  # what handlers.indexes_ready does once kopf calls handlers
    assert (operator.lt(1000, limit), operator.lt(31, limit)) == (False, True)


async def start_like_kopf(toggles: aiotoggles.ToggleSet, objects: int) -> tuple[int, list[int]]:
    """kopf's start over ``objects`` objects: a readiness toggle made for each, then its worker, which
    indexes it, drops its toggle and waits for all. The set's evaluations of its state, and how many
    workers were still waiting when each finished."""
    evaluations = 0
    original = toggles.is_on

    def counted() -> bool:
        nonlocal evaluations
        evaluations += 1
        return original()

    toggles.is_on = counted  # type: ignore[method-assign]
    listing = await toggles.make_toggle(name="the listing")  # a resource kind's: dropped once listed
    waiting = 0
    waited: list[int] = []
    all_waiting = asyncio.Event()

    async def worker(toggle: aiotoggles.Toggle, indexed: asyncio.Event) -> None:
        nonlocal waiting
        await toggles.drop_toggle(toggle)
        waiting += 1
        if waiting == objects:
            all_waiting.set()
        indexed.set()  # it goes on into the wait below before the watcher runs again
        await toggles.wait_for(True)
        waiting -= 1
        waited.append(waiting)

    workers = []
    for n in range(objects):
        toggle = await toggles.make_toggle(name=f"object {n}")
        indexed = asyncio.Event()
        workers.append(asyncio.create_task(worker(toggle, indexed)))
        # The watcher yields between events and the workers index meanwhile: the next object's toggle
        # is made once this worker waits.
        await asyncio.wait_for(indexed.wait(), timeout=30)
    await asyncio.wait_for(all_waiting.wait(), timeout=30)
    assert not waited  # nobody passed while the listing's toggle was there
    await toggles.drop_toggle(listing)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    return evaluations, waited


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's ToggleSet as it was after the test."""
    for name in ("make_toggle", "drop_toggle", "drop_toggles"):
        monkeypatch.setattr(aiotoggles.ToggleSet, name, getattr(aiotoggles.ToggleSet, name))


def test_kopfs_readiness_wakes_every_waiting_worker_at_every_toggle(restored: None) -> None:
    """The cause of a restart's minutes of CPU: evaluations grow with the square of the objects."""
    evaluations, waited = asyncio.run(start_like_kopf(aiotoggles.ToggleSet(all), 400))
    assert len(waited) == 400
    assert evaluations > 400 * 400 / 2


def test_with_notifications_on_change_the_workers_wake_once_when_all_are_indexed(restored: None) -> None:
    notify_readiness_on_change()
    evaluations, waited = asyncio.run(start_like_kopf(aiotoggles.ToggleSet(all), 400))
    assert sorted(waited) == list(range(400))  # all went, once the last toggle was dropped
    assert evaluations < 10 * 400


def test_with_notifications_on_change_a_set_still_wakes_its_waiters_at_every_change(restored: None) -> None:
    """Pausing (kopf's ``any`` set) as well as readiness: made, dropped or turned, a toggle that
    changes the set's state wakes who waits for that state."""
    notify_readiness_on_change()

    async def run() -> list[str]:
        seen: list[str] = []
        paused = aiotoggles.ToggleSet(any)

        async def waiter(state: bool, label: str) -> asyncio.Task[None]:
            """A task waiting for ``state``, returned once it waits (the change must wake it)."""
            waits = asyncio.Event()

            async def until() -> None:
                waits.set()  # it goes on into the wait below before the test runs again
                await paused.wait_for(state)
                seen.append(label)

            task = asyncio.create_task(until())
            await asyncio.wait_for(waits.wait(), timeout=5)
            return task

        on = await waiter(True, "on")
        first = await paused.make_toggle(True)  # on: made on
        await asyncio.wait_for(on, timeout=5)
        off = await waiter(False, "off")
        await paused.drop_toggle(first)  # off: dropped
        await asyncio.wait_for(off, timeout=5)
        second = await paused.make_toggle(False)
        on = await waiter(True, "on again")
        await second.turn_to(True)  # on: a member turned
        await asyncio.wait_for(on, timeout=5)
        off = await waiter(False, "off again")
        await paused.drop_toggles([second])
        await asyncio.wait_for(off, timeout=5)
        return seen

    assert asyncio.run(run()) == ["on", "off", "on again", "off again"]
