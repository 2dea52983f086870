"""The drift scheduler's I/O loop against an in-memory object store: members of a group run at the
same moment, writes carry the resourceVersion read, and failures hold a resource back."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ecr_tag_operator import views
from ecr_tag_operator.core import Decision, Event
from ecr_tag_operator.drift_schedule import Entry, entry_of
from ecr_tag_operator.drift_scheduler import LONG_FREEZE, DriftScheduler, Tuning
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.heap import Heap
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.runtime import Runtime
from ecr_tag_operator.settings import Settings

from .test_drift_schedule import NOW, ago, entry, never

TUNING = Tuning(tick=1, jitter=0, early=0, rescue_after=900, group_size=10, parallel_groups=2, retry_delay=20, hold=10)


class Store:
    def __init__(self, entries: list[Entry]) -> None:
        self.objects = {
            e.name: {
                "metadata": {"name": e.name, "uid": e.uid, "generation": 1, "resourceVersion": "7"},
                "status": {"observedGeneration": 1},
            }
            for e in entries
        }
        self.writes: list[tuple[str, dict[str, Any], str]] = []
        self.events: list[tuple[str, str]] = []
        self.conflict: set[str] = set()

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> bool:
        if name in self.conflict:
            return False
        self.writes.append((name, dict(status), resource_version))
        return True

    async def post_event(self, involved: Mapping[str, Any], event: Event) -> None:
        self.events.append((str(involved.get("name")), event.reason))


def scheduler(entries: list[Entry], store: Store, check: Any, clock: list[datetime]) -> DriftScheduler:
    return DriftScheduler(
        entries=lambda: entries,
        urgency=lambda: lambda _entries: never,
        keep_only=lambda _: None,
        check=check,
        record=lambda uid, trigger, decision: recorded.append((uid, trigger, decision.result)),
        store=store,
        tuning=TUNING,
        clock=lambda: clock[0],
        ready=lambda: True,
    )


recorded: list[tuple[str, str, str]] = []


def outcome(status: dict[str, Any], transient: bool = False, events: tuple[Event, ...] = ()) -> Decision:
    return Decision(status, "transient" if transient else "true", events, requeue_after=20 if transient else None)


def test_a_group_runs_its_checks_at_once_and_writes_with_the_version_it_read() -> None:
    entries = [entry(n, synced=61) for n in range(10)]
    store = Store(entries)
    barrier = threading.Barrier(10, timeout=10)  # breaks unless all ten checks run at the same time

    def check(body: dict[str, Any], trigger: str) -> Decision:
        barrier.wait()
        return outcome({"lastSyncTime": "now", "by": trigger}, transient=False)

    sched = scheduler(entries, store, check, [NOW])
    assert asyncio.run(sched.tick()) == 10
    assert sorted(w[0] for w in store.writes) == sorted(e.name for e in entries)
    assert {(w[1]["by"], w[2]) for w in store.writes} == {("drift", "7")}


def test_held_after_a_check_retried_after_a_conflict_and_skipped_when_gone() -> None:
    entries = [entry(1, synced=61), entry(2, synced=61), entry(3, synced=61)]
    store = Store(entries)
    store.conflict.add("r2")
    del store.objects["r3"]  # deleted since it was indexed
    calls: list[str] = []

    def check(body: dict[str, Any], trigger: str) -> Decision:
        calls.append(body["metadata"]["name"])
        return outcome({"lastSyncTime": "now", "observedGeneration": 2}, transient=body["metadata"]["name"] == "r1")

    clock = [NOW]
    sched = scheduler(entries, store, check, clock)
    asyncio.run(sched.tick())
    assert sorted(calls) == ["r1", "r2"]
    calls.clear()
    store.conflict.clear()
    clock[0] = NOW + timedelta(seconds=5)
    asyncio.run(sched.tick())
    assert calls == ["r2"]  # r1 failed transiently: held for the retry delay; r2's write conflicted
    calls.clear()
    clock[0] = NOW + timedelta(seconds=12)
    asyncio.run(sched.tick())
    assert calls == []  # r1 held until 20 s, r2 (written at 5 s) until 15 s
    clock[0] = NOW + timedelta(seconds=21)
    asyncio.run(sched.tick())
    # r1's retry delay has passed; r2 was written at 5 s, so its next check is an interval later.
    assert calls == ["r1"]


def test_a_taken_over_change_stays_the_schedulers_until_a_final_status_is_written() -> None:
    """A spec change handed over for want of a namespace slot, never reconciled (no lastSyncTime, so
    no check is ever due): picked while deferred, through a transient failure and a write refused on
    its precondition (kopf's own patch of the object landed between the read and the write)."""
    pending = entry(1, synced=None, observed=None, created=60)  # too young to be a lost creation
    store = Store([pending])
    store.objects["r1"]["status"] = {}
    deferred = {pending.uid}
    results = iter([True, False, False])  # transient, then final twice
    calls: list[str] = []

    def check(body: dict[str, Any], trigger: str) -> Decision:
        calls.append(trigger)
        return outcome({"observedGeneration": 1, "lastSyncTime": "now"}, transient=next(results))

    clock = [NOW]
    sched = DriftScheduler(
        entries=lambda: [pending],
        urgency=lambda: lambda _entries: never,
        deferred=lambda uid: uid in deferred,
        done=deferred.discard,
        keep_only=lambda _: None,
        check=check,
        record=lambda uid, trigger, decision: None,
        store=store,
        tuning=TUNING,
        clock=lambda: clock[0],
        ready=lambda: True,
    )
    asyncio.run(sched.tick())
    assert calls == ["spec"]
    assert deferred  # failed transiently: written, but not done
    clock[0] += timedelta(seconds=TUNING.retry_delay + 1)
    store.conflict.add("r1")
    asyncio.run(sched.tick())
    assert calls == ["spec", "spec"]
    assert deferred  # final, but its status was refused: still the scheduler's
    store.conflict.clear()
    asyncio.run(sched.tick())  # the refused write is checked again at the next tick
    assert calls == ["spec", "spec", "spec"]
    assert not deferred
    assert [w[1]["observedGeneration"] for w in store.writes] == [1, 1]
    clock[0] += timedelta(seconds=TUNING.hold + 1)
    asyncio.run(sched.tick())
    assert len(calls) == 3  # done: the spec handler's again, and nothing is due


def test_a_check_that_raises_holds_the_resource_and_the_rest_go_on() -> None:
    entries = [entry(1, synced=61), entry(2, synced=61)]
    store = Store(entries)

    def check(body: dict[str, Any], trigger: str) -> Decision:
        if body["metadata"]["name"] == "r1":
            raise RuntimeError("boom")
        return outcome({"lastSyncTime": "now", "observedGeneration": 2}, transient=False)

    sched = scheduler(entries, store, check, [datetime(2026, 6, 1, 12, 0, tzinfo=UTC)])
    assert asyncio.run(sched.tick()) == 2
    assert [w[0] for w in store.writes] == ["r2"]
    assert asyncio.run(sched.tick()) == 0


def test_a_check_that_finds_nothing_new_writes_nothing_and_is_next_due_an_interval_later() -> None:
    entries = [entry(1, synced=61), entry(2, synced=61)]
    store = Store(entries)
    calls: list[str] = []

    def check(body: dict[str, Any], trigger: str) -> Decision:
        calls.append(body["metadata"]["name"])
        changed = body["metadata"]["name"] == "r2"
        return outcome({"lastSyncTime": "now", "observedGeneration": 2 if changed else 1}, transient=False)

    clock = [NOW]
    sched = scheduler(entries, store, check, clock)
    asyncio.run(sched.tick())
    assert sorted(calls) == ["r1", "r2"]
    assert [w[0] for w in store.writes] == ["r2"]  # r1's status would only have had a new lastSyncTime
    calls.clear()
    clock[0] = NOW + timedelta(seconds=59)  # past the hold, within the interval (60 s) of the check
    asyncio.run(sched.tick())
    assert calls == []
    clock[0] = NOW + timedelta(seconds=61)
    asyncio.run(sched.tick())
    assert sorted(calls) == ["r1", "r2"]  # entries here keep their old lastSyncTime: due again


def test_a_checks_events_are_posted_and_its_figures_recorded() -> None:
    entries = [entry(1, synced=61)]
    store = Store(entries)
    moved = (Event("Normal", "DriftCorrected", "team/app:prod a -> b"),)
    recorded.clear()

    def check(body: dict[str, Any], trigger: str) -> Decision:
        return outcome({"lastSyncTime": "now", "observedGeneration": 2}, events=moved)

    asyncio.run(scheduler(entries, store, check, [NOW]).tick())
    assert store.events == [("r1", "DriftCorrected")]
    assert recorded == [(entries[0].uid, "drift", "true")]


def test_nothing_runs_before_kopf_handles_objects() -> None:
    entries = [entry(1, synced=61)]
    store = Store(entries)
    ran: list[str] = []
    asked = asyncio.Event()
    polls: list[int] = []
    sched = scheduler(entries, store, lambda body, trigger: ran.append(trigger), [NOW])

    def not_yet() -> bool:
        polls.append(1)
        if len(polls) >= 2:
            asked.set()  # two ticks have asked and been told kopf is not handling objects yet
        return False

    sched._ready = not_yet

    async def two_ticks() -> None:
        task = asyncio.create_task(sched.run())
        await asyncio.wait_for(asked.wait(), timeout=30)
        task.cancel()

    asyncio.run(two_ticks())
    assert ran == []
    assert store.writes == []


def test_urgency_kept_between_ticks_sees_each_change_at_the_next_tick() -> None:
    """The scheduler with the operator's urgency test: a deleted owner, a new older claim, a changed
    spec and a changed grant each make the resources they concern checked at the next tick, and a
    tick with no change asks about no resource again."""

    def made(n: int, source: str, owner: str | None, created: float = 3600, repo: str = "team/app") -> Entry:
        meta = {
            "namespace": "team",
            "name": f"r{n}",
            "uid": f"uid-{n}",
            "generation": 1,
            "creationTimestamp": ago(created),
        }
        spec = {"repositoryName": repo, "source": {"tag": source}, "tags": ["prod"]}
        tags = [{"tag": "prod", "owner": owner}] if owner else [{"tag": "prod"}]
        status = {"observedGeneration": 1, "lastSyncTime": ago(1), "tags": tags}
        found = entry_of(meta, spec, status, "us-east-1", "111122223333")
        assert found is not None
        return found

    everything = {"namespaces": ["team"], "registries": [{"write": [{"repositories": ["**"]}]}]}
    policies = {"p": [PolicyEntry(parse_policy("p", everything), 1, "1")]}
    runtime = Runtime(Settings(region="us-east-1"), ecr=None, own_account="111122223333")  # type: ignore[arg-type]
    urgency = views.Urgency(runtime, policies, {"team": [{}]})
    entries = [made(1, "a", None, created=3600), made(2, "b", "team/r1", created=1800)]
    store = Store(entries)
    checked: list[str] = []

    def check(body: dict[str, Any], trigger: str) -> Decision:
        checked.append(body["metadata"]["name"])
        return outcome({"lastSyncTime": "now"})

    clock = [NOW]
    sched = DriftScheduler(
        entries=lambda: entries,
        urgency=urgency.prepare,
        keep_only=lambda _: None,
        check=check,
        record=lambda *_: None,
        store=store,
        tuning=TUNING,
        clock=lambda: clock[0],
        ready=lambda: True,
    )

    def tick() -> list[str]:
        checked.clear()
        clock[0] += timedelta(seconds=TUNING.hold + 1)  # past the hold after the last check
        asyncio.run(sched.tick())
        return sorted(checked)

    assert tick() == []  # r2's status names r1, the owner: nothing is urgent
    assert tick() == []
    assert urgency.kept.asked == 0
    entries[:] = [made(0, "c", None, created=7200), *entries]  # an older claim with another source
    store.objects["r0"] = Store([entries[0]]).objects["r0"]
    assert tick() == ["r1"]  # r1 lost prod; r2 still has an owner (which one is not compared)
    entries[:] = [made(0, "c", None, created=7200), made(1, "a", "team/r0"), made(2, "b", "team/r0", created=1800)]
    assert tick() == []
    entries[0] = made(0, "a", None, created=7200)  # r0's spec now names r1's source: r1 has no older rival
    assert tick() == ["r1"]
    entries[1] = made(1, "a", None)
    assert tick() == []
    del entries[0]  # r0 deleted: r1 still owns prod, r2 still has an owner
    assert tick() == []
    del entries[0]  # r1 deleted: r2 has no rival left
    assert tick() == ["r2"]
    entries[:] = [made(2, "b", None, created=1800)]
    assert tick() == []
    policies["p"] = [PolicyEntry(parse_policy("p", {**everything, "namespaces": ["other"]}), 2, "2")]
    assert tick() == ["r2"]  # the grant was lifted: Forbidden now


class Cycle:
    me: Cycle | None = None


def test_the_heap_is_frozen_once_the_index_is_built_and_again_when_it_grew_a_quarter() -> None:
    """After the first tick what lives is out of full collections (gc.freeze), after a collection of
    the young generations that frees what is young garbage (old garbage is frozen with the rest);
    frozen again only when a quarter more resources are indexed, after a full collection that frees
    what was frozen and became garbage since."""
    entries = [entry(n, synced=1) for n in range(8)]
    heap = Heap()
    sched = DriftScheduler(
        entries=lambda: entries,
        urgency=lambda: lambda _entries: never,
        keep_only=lambda _: None,
        check=lambda body, trigger: None,
        record=lambda uid, trigger, decision: None,
        store=Store(entries),
        tuning=TUNING,
        clock=lambda: NOW,
        ready=lambda: True,
        heap=heap,
    )
    built: list[list[int]] = [[n] for n in range(100)]  # what an index holds
    old = [Cycle()]
    old[0].me = old[0]
    gc.collect(1)  # into the old generation
    stale = weakref.ref(old[0])
    old.clear()  # garbage there: only a full collection frees it
    gc.disable()  # no collection between its making and its end: it is young garbage at the tick
    try:
        garbage = Cycle()
        garbage.me = garbage  # a cycle only a collection frees
        cycle = weakref.ref(garbage)
        del garbage
    finally:
        gc.enable()
    kept = [Cycle()]  # alive when frozen, garbage later
    kept[0].me = kept[0]
    later = weakref.ref(kept[0])
    try:
        asyncio.run(sched.tick())
        assert heap.freezes == 1
        young = {id(o) for o in gc.get_objects()}  # the permanent generation is not listed
        assert id(built) not in young
        assert all(id(b) not in young for b in built)
        assert cycle() is None  # collected, not frozen
        assert stale() is not None  # frozen: the freeze after the indexes collects no old garbage
        assert gc.get_freeze_count() >= len(built)
        entries.append(entry(8, synced=1))
        asyncio.run(sched.tick())
        entries.append(entry(9, synced=1))
        asyncio.run(sched.tick())
        assert heap.freezes == 1  # 2 new of 8 frozen: a quarter, not more
        kept.clear()
        gc.collect()
        assert later() is not None  # frozen: out of reach of collections
        entries.append(entry(10, synced=1))
        asyncio.run(sched.tick())
        assert heap.freezes == 2
        assert later() is None  # unfrozen and collected before the heap is frozen again
        assert stale() is None
    finally:
        gc.unfreeze()


def test_what_the_process_holds_at_its_start_is_frozen_before_the_indexes_and_not_walked_again() -> None:
    """Heap.start freezes the start-up heap; the first freeze after the indexes are built walks only
    what came since (the start-up part stays frozen), and a refreeze walks the whole heap again."""
    heap = Heap()
    early = [Cycle()]  # held at the start, garbage later
    gone_early = weakref.ref(early[0])
    try:
        heap.start()
        assert frozen(early)
        early[0].me = early[0]
        early.clear()
        built = [[n] for n in range(20)]
        heap.settle({"u0", "u1", "u2", "u3"})
        assert frozen(built)
        assert gone_early() is not None  # frozen at the start: the first freeze does not unfreeze it
        heap.settle({"u0", "u1", "u2", "u3", "u4", "u5"})  # half as many again: a refreeze
        assert gone_early() is None  # the whole heap was collected
        assert heap.freezes == 3
    finally:
        gc.unfreeze()


def frozen(obj: object) -> bool:
    return all(o is not obj for o in gc.get_objects())  # the permanent generation is not listed


class TimedHeap(Heap):
    """A heap whose freezes take the seconds given, one per tick."""

    def __init__(self, seconds: list[float]) -> None:
        super().__init__()
        self.seconds = seconds

    def settle(self, live: set[str]) -> float:
        return self.seconds.pop(0)


def test_a_tick_whose_freeze_held_the_loop_long_checks_nothing_and_the_next_tick_does() -> None:
    """A long freeze (the first after a start, at 10,000 resources x 100 tags) ends its tick, so the
    event loop is not held for it and a scan both; the checks due run at the next tick."""
    entries = [entry(n, synced=61) for n in range(10)]
    store = Store(entries)
    heap = TimedHeap([LONG_FREEZE * 1.5, 0.0, LONG_FREEZE / 2])
    sched = DriftScheduler(
        entries=lambda: entries,
        urgency=lambda: lambda _entries: never,
        keep_only=lambda _: None,
        check=lambda body, trigger: outcome({"lastSyncTime": "now"}),
        record=lambda uid, trigger, decision: None,
        store=store,
        tuning=TUNING,
        clock=lambda: NOW,
        ready=lambda: True,
        heap=heap,
    )
    assert asyncio.run(sched.tick()) == 0
    assert store.writes == []
    assert asyncio.run(sched.tick()) == 10
    entries.extend(entry(n, synced=61) for n in range(10, 15))
    store.objects.update(Store(entries[10:]).objects)
    assert asyncio.run(sched.tick()) == 5  # a short freeze: the tick goes on


def test_groups_run_at_most_parallel_groups_at_once_and_every_one_runs() -> None:
    """Five groups of ten (one repository, group_size 10), two at a time (parallel_groups 2): no more
    than twenty objects are ever read at once, and all fifty are checked."""
    entries = [entry(n, synced=61) for n in range(50)]
    store = Store(entries)
    reading = peak = 0
    real_get = store.get
    both_in = asyncio.Event()  # two groups' reads have all begun: every read started by then is counted

    async def get(namespace: str, name: str) -> dict[str, Any] | None:
        nonlocal reading, peak
        reading += 1
        peak = max(peak, reading)
        if reading == 2 * TUNING.group_size:
            both_in.set()
        await asyncio.wait_for(both_in.wait(), timeout=10)
        reading -= 1
        return await real_get(namespace, name)

    store.get = get  # type: ignore[method-assign]
    checked: list[str] = []

    def check(body: dict[str, Any], trigger: str) -> Decision:
        checked.append(body["metadata"]["name"])
        return outcome({"lastSyncTime": "now"})

    assert asyncio.run(scheduler(entries, store, check, [NOW]).tick()) == 50
    assert sorted(checked) == sorted(e.name for e in entries)
    assert peak == 2 * TUNING.group_size
