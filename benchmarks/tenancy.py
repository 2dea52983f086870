"""Tenancy at scale, in one process (no cluster): what one tenant's numbers cost the others.

    .venv/bin/python -m benchmarks.tenancy [--sizes 1000,10000]

Prints a markdown table (progress on stderr). A benchmark, not a test: it asserts nothing.

1. The drift tick's urgency scan (who must be checked now: a grant given or lifted, an owner
   changed) over N resources that all claim the same 100 tags of one repository (the case that was
   quadratic: 46.5 s of CPU per tick at 1,000): CPU seconds of one scan, and the p99 lag of a probe
   coroutine on the event loop while the scan runs as the scheduler runs it (on a thread).
2. Memory by region: RSS growth after 100 specs naming regions no policy grants (refused before any
   AWS client exists) against 100 granted regions (a client each, one botocore session shared).
3. Fairness: one namespace's single write while another namespace has a backlog of writes queued
   on one quota, with the operator's fair bucket and with a first-come bucket, at a scaled-down
   quota so the run takes seconds (the ratio is what carries over to ECR's 10/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from benchmarks import procstat
from ecr_tag_operator import authz, handlers, views
from ecr_tag_operator.drift_schedule import pick
from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.model import Registry
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.ratelimit import FairBucket, TokenBucket
from ecr_tag_operator.runtime import Runtime
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

TAGS = [f"t{i}" for i in range(100)]
NAMESPACES = 10
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mib() -> float:
    return (procstat.status_kib(os.getpid(), "VmRSS") or 0) / 1024


def indexes(
    n: int, runtime: Runtime
) -> tuple[dict[Any, list[Any]], dict[Any, list[Any]], dict[str, Any], dict[str, Any]]:
    """kopf's indexes as the handlers build them, for N resources claiming the same 100 tags."""
    claims: dict[Any, list[Any]] = {}
    entries: dict[Any, list[Any]] = {}
    # As the statuses stand after the first reconciles: all but the oldest resource lost every tag.
    lost = [{"tag": t, "inSync": False, "reason": "TagConflict", "owner": "another namespace"} for t in TAGS]
    for i in range(n):
        status = {
            "observedGeneration": 1,
            "lastSyncTime": "2026-06-01T00:00:00Z",
            "conditions": [{"type": "Ready", "reason": "TagConflict" if i else "InSync"}],
            "tags": lost if i else [],
        }
        ns = f"team-{i % NAMESPACES}"
        meta = {
            "name": f"r{i}",
            "namespace": ns,
            "uid": f"u{i}",
            "generation": 1,
            "creationTimestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        }
        spec = {"repositoryName": "shared/web", "source": {"tag": f"b{i}"}, "tags": TAGS}
        for key, claim in handlers.claims(meta, spec, "us-east-1", runtime.own_account).items():
            claims.setdefault(key, []).append(claim)
        entry = handlers.entry_of(meta, spec, status, "us-east-1", runtime.own_account)
        assert entry is not None
        entries.setdefault(entry.group, []).append(entry)
    policy = parse_policy("all", {"namespaceSelector": {}, "registries": [{"write": [{"repositories": ["**"]}]}]})
    policies = {"all": [PolicyEntry(policy, 1, "1")]}
    labels = {f"team-{k}": [{}] for k in range(NAMESPACES)}
    return claims, entries, policies, labels


async def lag_while(work: Any) -> list[float]:
    """Run ``work`` on a thread (as the scheduler runs its scan) and probe the event loop every 10 ms."""
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    prober = asyncio.create_task(probe())
    await asyncio.to_thread(work)
    done.set()
    await prober
    return lags


def tick_figures(n: int) -> dict[str, float]:
    runtime = Runtime(Settings(region="us-east-1"), ecr=None, own_account="111122223333")  # type: ignore[arg-type]
    claims, entries, policies, labels = indexes(n, runtime)
    flat = [e for group in entries.values() for e in group]
    cpu0 = time.process_time()
    urgent = views.urgency(runtime, claims, policies, labels)
    cpu_copy = time.process_time() - cpu0
    result: list[Any] = []

    def scan() -> None:
        result.append(
            pick(
                flat,
                NOW,
                jitter=0.1,
                early=0.1,
                rescue_after=900,
                urgent=urgent,
                waiting=lambda _: False,
                max_members=50,
            )
        )

    cpu1 = time.process_time()
    lags = asyncio.run(lag_while(scan))
    cpu_scan = time.process_time() - cpu1
    return {
        "n": n,
        "claims": sum(len(v) for v in claims.values()),
        "copy_cpu_s": cpu_copy,
        "scan_cpu_s": cpu_scan,
        "lag_p99_ms": 1000
        * (statistics.quantiles(lags, n=100, method="inclusive")[98] if len(lags) >= 2 else max(lags or [0.0])),
        "lag_max_ms": 1000 * max(lags or [0.0]),
        "picked": sum(len(g) for g in result[0]),
    }


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
        say(f"urgency scan at N={n}")
        t = tick_figures(n)
        rows += [
            f"| N={n}: claims in the index | {t['claims']:.0f} |",
            f"| N={n}: copying the indexes on the loop, CPU (ms) | {1000 * t['copy_cpu_s']:.1f} |",
            f"| N={n}: urgency scan on a thread, CPU (ms) | {1000 * t['scan_cpu_s']:.1f} |",
            f"| N={n}: event-loop lag p99 / max during the scan (ms) | {t['lag_p99_ms']:.1f} / {t['lag_max_ms']:.1f} |",
            f"| N={n}: checks picked (due or urgent) | {t['picked']:.0f} |",
        ]
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
