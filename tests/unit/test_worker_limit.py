"""kopf's per-object worker limit, not held while kopf's indexes are incomplete (kopf issue #1243: a
worker indexes its object, then waits for every other object to be indexed)."""

from __future__ import annotations

import asyncio
import logging
import operator
import threading

import kopf
from kopf._cogs.aiokits import aiotasks  # the scheduler kopf's watcher spawns object workers through

from ecr_tag_operator import handlers
from ecr_tag_operator.runtime import Runtime
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.worker_limit import WorkerLimit


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
        indexed, release = asyncio.Event(), asyncio.Event()
        indexed.set()
        running = peak = 0

        async def worker() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

        scheduler = aiotasks.Scheduler(limit=WorkerLimit(4, indexed.is_set))
        try:
            for _ in range(10):
                await scheduler.spawn(worker())
            for _ in range(200):  # the spawner's turns, until it started what it may
                if running == 4:
                    break
                await asyncio.sleep(0.01)
            for _ in range(20):
                await asyncio.sleep(0)  # more turns: it would start the rest now if it did not hold
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
