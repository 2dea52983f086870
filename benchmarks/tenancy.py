"""Tenancy at scale, in one process (no cluster): what one tenant's numbers cost the others.

    .venv/bin/python -m benchmarks.tenancy [--sizes 1000,10000]

Prints a markdown table (progress on stderr). A benchmark, not a test: it asserts nothing.

1. The drift tick over N resources that all claim the same 100 tags of one repository (the case that
   was quadratic: 46.5 s of CPU per tick at 1,000): the operator's DriftScheduler and its urgency
   test (who must be checked now: a grant given or lifted, an owner changed), ticked over the
   operator's own index functions' output after each of a series of changes (none, a status, a new
   resource, the owner of every tag deleted, a grant lifted): CPU of each tick (and of its urgency
   scan), the p99 and max lag of a probe coroutine on the event loop while it runs, how many
   resources it asked about again and how many checks it picked (each of them dispatched, then found
   deleted: nothing is checked here), and the garbage collector's pauses meanwhile: once with the
   collector as Python leaves it, once with the heap frozen as the operator runs it
   (heap.Heap: frozen at the start, before the index exists, then at the first tick after its
   young generations are collected, and when a quarter more resources are indexed, after a full
   collection: a tick whose freeze took over drift_scheduler.LONG_FREEZE does nothing else); each
   run ends with one full collection, timed.
   The urgency's first build spans ticks (at most drift_urgency.ARRIVALS_PER_UPDATE claims
   integrated per tick, oldest first): each of those ticks is a row of its own.
2. Memory by region: RSS growth after 100 specs naming regions no policy grants (refused before any
   AWS client exists) against 100 granted regions (a client each, one botocore session shared).
4. Index memory: bytes per resource of the drift entry and tag claims indexes (tracemalloc) for
   10,000 resources of two tags, what README quotes.
3. Fairness: one namespace's single write while another namespace has a backlog of writes queued
   on one quota, with the operator's fair bucket and with a first-come bucket, at a scaled-down
   quota so the run takes seconds (the ratio is what carries over to ECR's 10/s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf

from benchmarks import procstat
from ecr_tag_operator import authz, drift_scheduler, handlers, views
from ecr_tag_operator.drift_schedule import Entry, pick
from ecr_tag_operator.drift_scheduler import DriftScheduler, Scan, Tuning, Urgent
from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.heap import Heap
from ecr_tag_operator.model import Registry
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.ratelimit import FairBucket, TokenBucket
from ecr_tag_operator.runtime import Runtime, runtime_of
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

TAGS = [f"t{i}" for i in range(100)]
NAMESPACES = 10
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mib() -> float:
    return (procstat.status_kib(os.getpid(), "VmRSS") or 0) / 1024


def resource(i: int, tags: list[str], lost: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One resource's meta, spec and status, as a watch event carries them (fresh strings each)."""
    status = {
        "observedGeneration": 1,
        "lastSyncTime": "2026-06-01T00:00:00Z",
        "conditions": [{"type": "Ready", "reason": "TagConflict" if lost else "InSync"}],
        "tags": [{"tag": t, "inSync": False, "reason": "TagConflict", "owner": "another namespace"} for t in tags]
        if lost
        else [{"tag": t, "inSync": True} for t in tags],
    }
    meta = {
        "name": f"r{i}",
        "namespace": f"team-{i % NAMESPACES}",
        "uid": f"6f1c2a0e-0000-4000-8000-{i:012d}",
        "generation": 1,
        "creationTimestamp": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
    }
    spec = {"repositoryName": "shared/web", "source": {"tag": f"b{i}"}, "tags": tags}
    return json.loads(json.dumps(meta)), json.loads(json.dumps(spec)), json.loads(json.dumps(status))


class Index:
    """kopf's in-memory index, as it keeps what an index function returns: per key, the value of each
    object (by kopf's (namespace, name, uid) key); an equal value keeps the old object."""

    def __init__(self) -> None:
        self.items: dict[Any, dict[Any, Any]] = {}
        self.reverse: dict[Any, set[Any]] = {}

    def replace(self, acckey: Any, found: dict[Any, Any]) -> None:
        for key, value in found.items():
            store = self.items.setdefault(key, {})
            if store.get(acckey) != value:
                store[acckey] = value
        for key in self.reverse.get(acckey, set()) - set(found):
            del self.items[key][acckey]
            if not self.items[key]:
                del self.items[key]
        if found:
            self.reverse.setdefault(acckey, set()).update(found)
        else:
            self.reverse.pop(acckey, None)

    def discard(self, acckey: Any) -> None:
        self.replace(acckey, {})

    def mapping(self) -> dict[Any, Any]:
        return {key: list(store.values()) for key, store in self.items.items()}


class Cluster:
    """N resources claiming the same 100 tags of one repository, indexed by the operator's own index
    functions: as the statuses stand after the first reconciles, all but the oldest lost every tag."""

    def __init__(self, n: int) -> None:
        self.memo = kopf.Memo(runtime=Runtime(Settings(region="us-east-1"), ecr=None, own_account="111122223333"))  # type: ignore[arg-type]
        self.claims, self.entries = Index(), Index()
        for i in range(n):
            self.put(i, *resource(i, TAGS, lost=i > 0))
        policy = parse_policy("all", {"namespaceSelector": {}, "registries": [{"write": [{"repositories": ["**"]}]}]})
        self.policies: dict[str, list[PolicyEntry]] = {"all": [PolicyEntry(policy, 1, "1")]}
        self.labels: dict[str, list[dict[str, str]]] = {f"team-{k}": [{}] for k in range(NAMESPACES)}

    def put(self, i: int, meta: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]) -> None:
        acckey = (meta["namespace"], meta["name"], meta["uid"])
        self.claims.replace(acckey, handlers.tag_claims(meta=meta, spec=spec, memo=self.memo))
        self.entries.replace(acckey, handlers.drift_entries(meta=meta, spec=spec, status=status, memo=self.memo))

    def delete(self, i: int) -> None:
        meta, _, _ = resource(i, TAGS, lost=False)
        acckey = (meta["namespace"], meta["name"], meta["uid"])
        self.claims.discard(acckey)
        self.entries.discard(acckey)


class Nowhere:
    """The object store of a tick whose picks are not run here: every object reads as deleted."""

    def __init__(self) -> None:
        self.gets = 0  # checks picked

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        return None

    async def patch_status(self, *args: Any) -> bool:
        raise AssertionError("nothing is written")

    async def post_event(self, *args: Any) -> None:
        raise AssertionError("nothing is posted")


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return max(values or [0.0])
    return statistics.quantiles(values, n=100, method="inclusive")[98]


class Collections:
    """The garbage collector's pauses (gc.callbacks), full collections apart: the cause of the loop's
    lag spikes at 10,000 resources sharing 100 tags."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), time.perf_counter() - self._start))

    def __enter__(self) -> Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def take(self) -> tuple[int, float]:
        """Full collections since the last take, and the longest pause of any collection."""
        full = sum(1 for generation, _ in self.pauses if generation == 2)
        longest = max((seconds for _, seconds in self.pauses), default=0.0)
        self.pauses.clear()
        return full, longest


async def probed(work: Any) -> tuple[float, list[float]]:
    """CPU seconds of ``work`` (a coroutine function), and the lags of a probe of the event loop every
    10 ms meanwhile."""
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0)  # the probe is in its first sleep: a stall at the very start of ``work`` counts
    cpu = time.process_time()
    await work()
    cpu = time.process_time() - cpu
    done.set()
    await prober
    return cpu, lags


def tick_figures(n: int, heap: Heap | None) -> dict[str, Any]:
    """One drift scheduler as the operator runs it, over the cluster's indexes, ticked after each of
    a series of changes; CPU of each tick, the event loop's lag while it runs and the collector's
    pauses meanwhile. With ``heap`` (as the operator runs it) the heap is frozen at the start, before
    the indexes exist, and after the first tick; without, every full collection walks the indexes.
    Ends with one full collection, timed."""
    gc.collect()
    if heap is not None:
        heap.start()
    with Collections() as building:
        cluster = Cluster(n)
        build_full, build_pause = building.take()
    runtime = runtime_of(cluster.memo)
    urgency = views.Urgency(runtime, cluster.policies, cluster.labels)
    store = Nowhere()
    scanned: list[float | None] = [None]  # the last tick's urgency scan (None: the tick ran none)
    picked = [0.0]

    def prepare() -> Scan:
        """The operator's urgency, its scan's CPU (on the scheduler's thread) timed."""
        scan = urgency.prepare()

        def timed(entries: Sequence[Entry]) -> Urgent:
            start = time.thread_time()
            try:
                return scan(entries)
            finally:
                scanned[0] = time.thread_time() - start

        return timed

    scheduler = DriftScheduler(
        entries=lambda: (e for store in cluster.entries.items.values() for e in store.values()),
        urgency=prepare,
        keep_only=runtime.keep_only,
        check=lambda body, trigger: None,
        record=lambda uid, trigger, decision: None,
        store=store,
        tuning=Tuning(
            tick=5, jitter=0.1, early=0.1, rescue_after=900, group_size=50, parallel_groups=2, retry_delay=20, hold=10
        ),
        clock=lambda: NOW,
        ready=lambda: True,
        heap=heap,
    )
    newest = n
    lifted = PolicyEntry(
        parse_policy(
            "all",
            {
                "namespaces": [f"team-{k}" for k in range(1, NAMESPACES)],
                "registries": [{"write": [{"repositories": ["**"]}]}],
            },
        ),
        2,
        "2",
    )

    def replace_tenth() -> None:
        """A batch: as many resources deleted as created anew (another uid, the newest claims)."""
        for i in range(1, 1 + n // 10):
            cluster.delete(i)
            cluster.put(newest + i, *resource(newest + i, TAGS, lost=True))

    steps: list[tuple[str, Any]] = [
        ("first tick (every entry new)", lambda: None),
        ("steady state (nothing changed)", lambda: None),
        ("one status changed", lambda: cluster.put(n // 2, *resource(n // 2, TAGS, lost=False))),
        ("one resource created", lambda: cluster.put(newest, *resource(newest, TAGS, lost=True))),
        ("a tenth of the resources replaced", replace_tenth),
        ("the owner of every tag deleted", lambda: cluster.delete(0)),
        ("a namespace's grant lifted", lambda: cluster.policies.__setitem__("all", [lifted])),
        ("steady state again", lambda: None),
    ]
    rows = []

    def timed_pick(*args: Any, **kwargs: Any) -> Any:
        """drift_schedule.pick, timed (on the scheduler's thread, after the scan that gave its urgency)."""
        start = time.thread_time()
        try:
            return pick(*args, **kwargs)
        finally:
            picked[0] = time.thread_time() - start

    async def run() -> None:
        with Collections() as collections:

            async def tick(label: str, change: Any) -> None:
                collections.take()
                change()  # the collector's figures count what the change allocates as well
                store.gets = 0
                scanned[0], picked[0] = None, 0.0
                cpu, lags = await probed(scheduler.tick)
                lag = (p99(lags), max(lags or [0.0]))
                scan = scanned[0] or 0.0
                rows.append((label, cpu, scan, picked[0], *lag, urgency.kept.asked, store.gets, *collections.take()))

            for label, change in steps:
                await tick(label, change)
                more = 1
                # A tick that froze the heap ends there, and the first build spans ticks: each one shown.
                while (scanned[0] is None or urgency.kept.pending) and more < 100:
                    more += 1
                    why = "the last froze the heap" if scanned[0] is None else f"{urgency.kept.pending} entries to go"
                    await tick(f"{label}, tick {more} ({why})", lambda: None)

    real_pick = drift_scheduler.pick
    drift_scheduler.pick = timed_pick  # type: ignore[assignment]
    try:
        asyncio.run(run())
    finally:
        drift_scheduler.pick = real_pick
    start = time.perf_counter()
    gc.collect()
    full = time.perf_counter() - start
    figures = {
        "n": n,
        "claims": sum(len(v) for v in cluster.claims.items.values()),
        "rows": rows,
        "full_gc": full,
        "build_full_collections": build_full,
        "build_longest_pause": build_pause,
    }
    gc.unfreeze()  # what follows measures without this run's heap frozen
    return figures


def index_figures(n: int = 10_000) -> dict[str, float]:
    """Bytes kopf's two EcrImageTag indexes keep per resource (tracemalloc, after the bodies are gone)
    for N resources with two tags each, the README's case: what the index functions return, and
    kopf's slots for it (as :class:`Index` mimics them)."""
    memo = kopf.Memo(runtime=Runtime(Settings(region="us-east-1"), ecr=None, own_account="111122223333"))  # type: ignore[arg-type]
    figures = {}
    for name, index_of in (
        (
            "drift entry",
            lambda meta, spec, status: handlers.drift_entries(meta=meta, spec=spec, status=status, memo=memo),
        ),
        ("tag claims", lambda meta, spec, status: handlers.tag_claims(meta=meta, spec=spec, memo=memo)),
    ):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        index = Index()
        for i in range(n):
            meta, spec, status = resource(i, ["prod", f"rel-{i}"], lost=False)
            spec["source"] = {"tag": f"build-{i}"}
            index.replace((meta["namespace"], meta["name"], meta["uid"]), index_of(meta, spec, status))
            del meta, spec, status
        gc.collect()
        figures[name] = (tracemalloc.get_traced_memory()[0] - before) / n
        tracemalloc.stop()
        del index
    return figures


def region_figures() -> dict[str, float]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    runtime = Runtime(
        Settings(region="us-east-1"),
        ecr=Boto3Ecr(Settings(region="us-east-1", max_clients=256)),
        own_account="111122223333",
    )
    boto = runtime.ecr
    assert isinstance(boto, Boto3Ecr)
    policy = parse_policy(
        "one",
        {"namespaces": ["team-a"], "registries": [{"regions": ["us-east-1"], "write": [{"repositories": ["**"]}]}]},
    )
    view = views.Grants(runtime, {"one": [PolicyEntry(policy, 1, "1")]}, {"team-a": [{}]})
    before = rss_mib()
    refused = 0
    for k in range(100):
        spec = parse_spec(
            {"repositoryName": "team-a/web", "region": f"xx-made-up-{k + 1}", "source": {"tag": "b"}, "tags": ["t"]}
        )
        allowed = authz.permission(spec, "team-a", view.of("team-a"))
        refused += allowed.refused is not None
    ungranted = rss_mib() - before
    clients_after_ungranted = boto.client_count
    before = rss_mib()
    for k in range(100):
        boto._client(Registry(f"eu-made-up-{k + 1}", None))  # what 100 granted regions cost
    granted = rss_mib() - before
    return {
        "refused": refused,
        "ungranted_rss_mib": ungranted,
        "clients_after_ungranted": clients_after_ungranted,
        "granted_rss_mib": granted,
        "clients_after_granted": boto.client_count,
    }


def fairness_figures(rate: float = 200.0, backlog: int = 1000, workers: int = 64) -> dict[str, float]:
    """``workers`` threads of namespace B write a backlog (64: the operator's handler threads), then
    namespace A asks for one token."""

    def run(bucket: Any, fair: bool) -> float:
        stop = threading.Event()
        left = [backlog]
        lock = threading.Lock()

        def writer() -> None:
            while not stop.is_set():
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                bucket.acquire("team-b") if fair else bucket.acquire()

        with ThreadPoolExecutor(workers) as pool:
            for _ in range(workers):
                pool.submit(writer)
            deadline = time.monotonic() + 5
            while left[0] > backlog - workers and time.monotonic() < deadline:  # the backlog is queued
                time.sleep(0.01)  # a poll interval, not a wait for a condition's time
            start = time.monotonic()
            bucket.acquire("team-a") if fair else bucket.acquire()
            waited = time.monotonic() - start
            stop.set()
        return waited

    fair = run(FairBucket(rate, 1), True)
    fifo = run(TokenBucket(rate, 1), False)  # first come, first served: behind every waiting write
    return {"rate": rate, "backlog": backlog, "workers": workers, "fair_wait_s": fair, "fifo_wait_s": fifo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tenancy", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args(argv)
    rows = ["| figure | value |", "|---|---|"]
    for n in (int(s) for s in args.sizes.split(",")):
        for heap in (None, Heap()):
            how = "heap frozen" if heap else "plain gc"
            say(f"drift ticks at N={n}, {how}")
            t = tick_figures(n, heap)
            rows.append(f"| N={n}: claims in the index | {t['claims']:.0f} |")
            for label, cpu, scan, choose, lag99, lagmax, asked, picked, full, pause in t["rows"]:
                rows.append(
                    f"| N={n}, {how}: tick after {label}: CPU, of it the urgency scan, the pick (ms) / loop lag "
                    f"p99, max (ms) / resources asked again / checks picked / full collections, longest gc pause "
                    f"(ms) in the change and tick "
                    f"| {1000 * cpu:.1f}, {1000 * scan:.1f}, {1000 * choose:.1f} / {1000 * lag99:.1f}, "
                    f"{1000 * lagmax:.1f} / {asked} / {picked} / {full}, {1000 * pause:.1f} |"
                )
            rows.append(
                f"| N={n}, {how}: while the index was built: full collections, longest gc pause (ms) "
                f"| {t['build_full_collections']}, {1000 * t['build_longest_pause']:.1f} |"
            )
            rows.append(f"| N={n}, {how}: one full collection after the ticks (ms) | {1000 * t['full_gc']:.1f} |")
    say("index memory")
    for name, size in index_figures().items():
        rows.append(f"| 10,000 resources of two tags: {name} index, bytes per resource | {size:.0f} |")
    say("memory by region")
    r = region_figures()
    rows += [
        f"| 100 ungranted regions: refused / clients made | {r['refused']:.0f} / {r['clients_after_ungranted']:.0f} |",
        f"| 100 ungranted regions: RSS growth (MiB) | {r['ungranted_rss_mib']:.1f} |",
        f"| 100 granted regions: clients / RSS growth (MiB) | {r['clients_after_granted']:.0f} / {r['granted_rss_mib']:.1f} |",
    ]
    say("fairness")
    f = fairness_figures()
    rows += [
        f"| quota (writes/s, scaled down) / other namespace's backlog | {f['rate']:.0f} / {f['backlog']:.0f} |",
        f"| one write's wait behind the backlog: fair bucket (s) | {f['fair_wait_s']:.3f} |",
        f"| the same, first come first served (s) | {f['fifo_wait_s']:.3f} |",
        f"| the same scaled to ECR's 10/s: fair / first-come (s) | {f['fair_wait_s'] * f['rate'] / 10:.2f} / {f['fifo_wait_s'] * f['rate'] / 10:.2f} |",
    ]
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
