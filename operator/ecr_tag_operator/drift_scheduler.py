"""The drift scheduler: one task for every resource's drift checks, started by the startup handler.

Each tick it asks :func:`drift_schedule.pick` for groups of checks, reads each member's object
fresh from the API (the index keeps no status), runs the members of a group at the same moment on
threads of its own (their reads coalesce into one call per repository) and merge-patches each
status with the object's resourceVersion as a precondition, so a check never writes over a newer
status; it posts the decision's events through the Kubernetes Events API with its own session. The
check itself is the core's reconcile, called through the handlers' adapter; this module only
schedules and does the I/O.

A check that finds the status as it was writes nothing, not even lastSyncTime: the API conventions
advise against heartbeat writes, and at thousands of resources each write (and the watch event it
sends back to every watcher) costs more than the check. When it checked is remembered here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .core import Decision, Event
from .drift_schedule import Entry, Pick, pick
from .heap import Heap

log = logging.getLogger(__name__)

# Seconds of a freeze after which a tick does nothing else: half the loop-lag budget of 100 ms, so that
# no tick stalls the loop for a freeze and then a scan's own share (the first build: ~35 ms) as well.
LONG_FREEZE = 0.05


def changes(patch: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether a status patch says anything new besides the time of the check."""
    return any(key != "lastSyncTime" and status.get(key) != value for key, value in patch.items())


class ObjectStore(Protocol):
    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> bool: ...

    async def post_event(self, involved: Mapping[str, Any], event: Event) -> None: ...


Check = Callable[[dict[str, Any], str], Decision | None]
Urgent = Callable[[Entry], bool]
Scan = Callable[[Sequence[Entry]], Urgent]  # the tick's entries -> the test for urgent checks
Record = Callable[[str, str, Decision], None]  # (uid, trigger, decision): the metrics


@dataclass(frozen=True)
class Tuning:
    tick: float  # seconds between scans of the index
    jitter: float
    early: float
    rescue_after: float
    group_size: int  # checks released together (each holds a thread for the group's reads)
    parallel_groups: int
    retry_delay: float  # after a transient failure
    hold: float  # after a check, before the same resource is picked again (its status event may lag)


class DriftScheduler:
    def __init__(
        self,
        *,
        entries: Callable[[], Iterable[Entry]],
        urgency: Callable[[], Scan],
        deferred: Callable[[str], bool] = lambda _: False,
        done: Callable[[str], None] = lambda _: None,
        keep_only: Callable[[set[str]], None],
        check: Check,
        record: Record,
        store: ObjectStore,
        tuning: Tuning,
        clock: Callable[[], datetime],
        ready: Callable[[], bool],
        heap: Heap | None = None,
    ) -> None:
        self._entries = entries
        # Called on the event loop each tick (it copies what it needs of the grant indexes); the scan it
        # returns runs on a thread, where it keeps its answer up to date with the entries.
        self._urgency = urgency
        self._deferred = deferred  # by uid: spec changes handed over for want of a namespace slot
        # Called with the uid once a check's outcome is stored and final (its status written, or none
        # to write): a spec change handed over is the scheduler's until then. Its write can be refused
        # (kopf's own patch of the object lands between the read and the write), and a change whose
        # status was never written is nobody's: not due (no lastSyncTime) and not a lost creation
        # before rescue_after (15 minutes), as 2 of 5,000 were in benchmarks.restart.
        self._done = done
        self._keep_only = keep_only  # drops per-resource state of the resources no longer indexed
        self._check = check
        self._record = record
        self._store = store
        self._tuning = tuning
        self._clock = clock
        self._ready = ready  # False until kopf handles objects: its indexes may be incomplete before
        self._heap = heap  # frozen after ticks that found the indexes built or grown (None: never)
        self._held: dict[str, datetime] = {}
        self._checked: dict[str, datetime] = {}  # uid -> when this process last checked it
        self._pool = ThreadPoolExecutor(tuning.group_size * tuning.parallel_groups, thread_name_prefix="drift")

    async def run(self) -> None:
        t = self._tuning
        try:
            while True:
                await asyncio.sleep(t.tick)
                if not self._ready():
                    continue
                try:
                    await self.tick()
                except Exception:  # a bad tick must not end drift checking for good
                    log.exception("drift scheduler tick failed")
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def tick(self) -> int:
        """One scan: run every picked group; return how many checks ran."""
        t = self._tuning
        now = self._clock()
        self._held = {uid: until for uid, until in self._held.items() if until > now}
        entries = list(self._entries())
        live = {e.uid for e in entries}
        self._keep_only(live)
        self._checked = {uid: at for uid, at in self._checked.items() if uid in live}
        held, checked = set(self._held), dict(self._checked)
        scan = self._urgency()

        def work() -> list[list[Pick]]:
            return pick(
                entries,
                now,
                jitter=t.jitter,
                early=t.early,
                rescue_after=t.rescue_after,
                urgent=scan(entries),
                waiting=lambda e: e.uid in held,
                deferred=lambda e: self._deferred(e.uid),
                max_members=t.group_size,
                checked=checked,
            )

        # Before the scan: a full collection during it (its allocations start one) would walk the
        # indexes not frozen yet. A refreeze holds the event loop (~70 ms at 10,000 resources x 100 tags):
        # after a long one the tick ends, and the scan and its checks come one tick later.
        if self._heap is not None and self._heap.settle(live) > LONG_FREEZE:
            return 0
        # The scan is CPU work over every resource: on a thread, so the event loop (kopf's watches,
        # the liveness probe) is not held up by it.
        groups = await asyncio.to_thread(work)
        # parallel_groups runners take the groups in turn: a task per runner, not per group (a grant
        # lifted at 10,000 resources of 100 tags picks 1,001 groups of one).
        queue = iter(groups)

        async def runner() -> int:
            ran = 0
            for group in queue:  # shared: each group is taken by one runner
                ran += await self._run_group(group)
            return ran

        return sum(await asyncio.gather(*(runner() for _ in range(min(t.parallel_groups, len(groups))))))

    async def _run_group(self, group: list[Pick]) -> int:
        bodies = await asyncio.gather(*(self._fetch(p) for p in group), return_exceptions=True)
        loop = asyncio.get_running_loop()
        ready: list[tuple[Pick, dict[str, Any]]] = []
        for p, body in zip(group, bodies, strict=True):
            if isinstance(body, BaseException):
                log.warning("drift check of %s deferred: %s", p.entry.ref, body)
                self._hold(p.entry, self._tuning.retry_delay)
            elif body is not None:
                ready.append((p, body))
        if not ready:
            return 0
        # Released together, so that their reads of the repository share calls.
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._check, body, p.trigger) for p, body in ready),
            return_exceptions=True,
        )
        writes: list[Awaitable[None]] = []
        for (p, body), outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("drift check of %s failed: %r", p.entry.ref, outcome)
                self._hold(p.entry, self._tuning.retry_delay)
                continue
            self._hold(p.entry, self._tuning.retry_delay if outcome and outcome.transient else self._tuning.hold)
            if outcome is None:
                self._done(p.entry.uid)  # an invalid spec: nothing to check until it changes
                continue
            self._record(p.entry.uid, p.trigger, outcome)
            meta = body.get("metadata") or {}
            writes.extend(self._post(meta, event) for event in outcome.events)
            if changes(outcome.status, body.get("status") or {}):
                writes.append(self._write(p.entry, outcome, str(meta.get("resourceVersion"))))
            elif not outcome.transient:
                self._checked[p.entry.uid] = self._clock()
                self._done(p.entry.uid)
        if writes:
            await asyncio.gather(*writes)
        return len(ready)

    async def _fetch(self, p: Pick) -> dict[str, Any] | None:
        body = await self._store.get(p.entry.namespace, p.entry.name)
        if body is None:
            return None  # deleted since it was indexed
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        if meta.get("uid") != p.entry.uid or meta.get("deletionTimestamp"):
            return None
        if p.trigger == "drift" and meta.get("generation") != status.get("observedGeneration"):
            return None  # the spec changed since it was indexed: the spec handler's turn
        return body

    async def _post(self, meta: Mapping[str, Any], event: Event) -> None:
        try:
            await self._store.post_event(meta, event)
        except Exception as exc:  # an event is worth a log line, never a failed check
            log.warning("event %s on %s/%s not posted: %s", event.reason, meta.get("namespace"), meta.get("name"), exc)

    async def _write(self, entry: Entry, outcome: Decision, resource_version: str) -> None:
        try:
            if await self._store.patch_status(entry.namespace, entry.name, outcome.status, resource_version):
                if not outcome.transient:
                    self._checked[entry.uid] = self._clock()
                    self._done(entry.uid)
            else:
                log.info("drift check of %s not written: the object changed meanwhile", entry.ref)
                self._held.pop(entry.uid, None)  # checked again at the next tick
        except Exception as exc:  # the API is unreachable or refused: try again later
            log.warning("drift check of %s not written: %s", entry.ref, exc)
            self._hold(entry, self._tuning.retry_delay)

    def _hold(self, entry: Entry, seconds: float) -> None:
        self._held[entry.uid] = self._clock() + timedelta(seconds=seconds)
