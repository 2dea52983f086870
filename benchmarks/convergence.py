"""Convergence benchmark: N EcrImageTags across 5 repositories, against ECR's PutImage quota.

    .venv/bin/python -m benchmarks.convergence [--sizes 100,1000,5000] [--out benchmarks/results/convergence.json]

For each N, in a fresh local environment (kube-apiserver + etcd, the ECR emulator with 20 ms added to
every ECR call and PutImage limited to 10/s, burst 10): a naive baseline retags N tags the AWS CLI way;
then the operator (default settings) converges N resources, one target tag each; then one drift cycle
is counted; then single-resource apply -> Ready latency is measured on the settled operator. Prints a
markdown table and writes JSON. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.clients import plain_client
from ecr_tag_localenv.control_plane import ControlPlane, KubeCluster, ensure_binaries, repo_root
from ecr_tag_localenv.ecr_control import CallCounts, EmulatorControl, FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator, start_emulator
from ecr_tag_localenv.operator_process import OperatorProcess

from . import baseline, procstat, promtext
from .kube import Api, Resource, ready_reason, state_of, status_written
from .report import markdown, targets

REPOSITORIES = 5
LATENCY_MS = 20.0
PUT_IMAGE_QUOTA = 10.0  # per second, burst 10: ECR's default
PUT_IMAGE_BURST = 10
DRIFT_INTERVAL = "30s"
DRIFT_INTERVAL_S = 30.0
DRIFT_TICK_S = 5.0  # the drift scheduler's tick (Settings.drift_tick)
STALL_AFTER_S = 600.0  # waiting gives up when no resource became Ready (or drift-checked) for this long
MOSTLY = 0.9  # the drift cycle and latency still run when this share converged (over the Ready ones)
READ_OPS = ("BatchGetImage", "BatchCheckLayerAvailability")
CRD = Path("crds") / "ecrimagetags.ecrtag.dev.yaml"
POLICY_CRD = Path("crds") / "ecrtagpolicies.ecrtag.dev.yaml"
# Nothing is allowed without a policy: the benchmark's namespaces get every repository of the
# emulator's account and region, as a single-tenant install's `allowAll` would.
ALLOW_ALL = (
    '{"apiVersion": "ecrtag.dev/v1alpha1", "kind": "EcrTagPolicy", "metadata": {"name": "benchmark"},'
    ' "spec": {"namespaceSelector": {}, "registries": [{"write": [{"repositories": ["**"]}]}]}}'
)


def say(text: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- fixtures ---------------------------------------------------------------------------------------


def namespaces() -> list[str]:
    return [f"team-{i}" for i in range(REPOSITORIES)]


def operator_repos() -> list[str]:
    return [f"bench/app-{i}" for i in range(REPOSITORIES)]


def baseline_repos() -> list[str]:
    return [f"baseline/app-{i}" for i in range(REPOSITORIES)]


def source_tag(i: int, images_per_repo: int) -> str:
    return f"build-{(i // REPOSITORIES) % images_per_repo}"


def resources(n: int, images_per_repo: int, prefix: str = "eit", tag_prefix: str = "rel") -> list[Resource]:
    repos, spaces = operator_repos(), namespaces()
    return [
        Resource(
            namespace=spaces[i % REPOSITORIES],
            name=f"{prefix}-{i:05d}",
            repository=repos[i % REPOSITORIES],
            source_tag=source_tag(i, images_per_repo),
            tags=(f"{tag_prefix}-{i:05d}",),
            drift_check_interval=DRIFT_INTERVAL,
        )
        for i in range(n)
    ]


def seed_images(ecr: RunningEmulator, images_per_repo: int) -> None:
    client = plain_client(
        "ecr",
        endpoint_url=ecr.endpoint_url,
        region=ecr.env["AWS_DEFAULT_REGION"],
        access_key_id=ecr.env["AWS_ACCESS_KEY_ID"],
        secret_access_key=ecr.env["AWS_SECRET_ACCESS_KEY"],
    )
    ecr.control.set_faults()  # no quota while seeding: not measured
    for index in range(REPOSITORIES):
        for repo in (operator_repos()[index], baseline_repos()[index]):
            for k in range(images_per_repo):
                ecr_seed.push(client, repo, f"build-{k}", "docker", seed=f"app-{index}-{k}")


def set_benchmark_faults(control: EmulatorControl, quota: float = PUT_IMAGE_QUOTA) -> None:
    burst = PUT_IMAGE_BURST if quota == PUT_IMAGE_QUOTA else max(1, int(quota))
    control.set_faults(
        default=FaultRule(latency_ms=LATENCY_MS),
        operations={"PutImage": FaultRule(quota_per_second=quota, burst=burst)},
    )


def calls_in(counts: CallCounts, repos: Sequence[str]) -> dict[str, int]:
    """Requests received for these repositories, by operation (throttled attempts included)."""
    out: dict[str, int] = {}
    for op, per_repo in counts.by_repository.items():
        total = sum(per_repo.get(r, 0) for r in repos)
        if total:
            out[op] = total
    return out


def per(counts: Mapping[str, float], n: int) -> dict[str, float]:
    return {op: round(v / n, 4) for op, v in sorted(counts.items())}


def reads(counts: Mapping[str, float]) -> float:
    return float(sum(counts.get(op, 0) for op in READ_OPS))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def thin(rows: list[Any], keep: int = 200) -> list[Any]:
    if len(rows) <= keep:
        return rows
    step = len(rows) / keep
    picked = [rows[int(i * step)] for i in range(keep)]
    return [*picked[:-1], rows[-1]]


# -- phases -----------------------------------------------------------------------------------------


def run_baseline(ecr: RunningEmulator, n: int, images_per_repo: int, quota: float) -> dict[str, Any]:
    client = baseline.cli_like_client(ecr.env)
    repos = baseline_repos()
    jobs = [baseline.Retag(repos[i % REPOSITORIES], source_tag(i, images_per_repo), f"rel-{i:05d}") for i in range(n)]
    bound = n / quota
    ecr.control.reset_calls()
    run = baseline.retag_all(client, jobs, deadline=time.monotonic() + 5 * bound + 300)
    counts = ecr.control.calls()
    first = calls_in(counts, repos)
    say(f"baseline: {n} tags in {run.seconds:.1f}s, {run.passes} pass(es), calls {first}, errors {run.errors}")
    ecr.control.reset_calls()
    drift_seconds = baseline.drift_check_all(client, jobs)
    drift_counts = ecr.control.calls()
    drift = calls_in(drift_counts, repos)
    return {
        "seconds": round(run.seconds, 2),
        "bound_seconds": bound,
        "over_bound": round(run.seconds / bound, 3),
        "passes": run.passes,
        "failed_first_pass": run.failed_first_pass,
        "failed_at_end": run.failed_at_end,
        "client_errors_after_retries": run.errors,
        "calls": first,
        "throttled": dict(counts.faulted),
        "calls_per_tag": per(first, n),
        "calls_per_tag_total": round(sum(first.values()) / n, 4),
        "drift": {
            "seconds": round(drift_seconds, 2),
            "calls": drift,
            "read_calls_per_resource": round(reads(drift) / n, 4),
        },
    }


def wait_all(
    api: Api,
    control: EmulatorControl,
    n: int,
    done: Callable[[dict[str, Any]], bool],
    deadline: float,
    every: float,
    started: float,
    what: str,
    poll_seconds: list[float],
    stall_after: float = STALL_AFTER_S,
) -> tuple[bool, list[dict[str, Any]], list[tuple[float, int, int, int, int]]]:
    """Poll the list every ``every`` s until ``done`` holds for n objects, the deadline passes, or nothing
    progressed for ``stall_after`` s; (ok, last items, timeline of (seconds, done, failed, PutImage
    requests received, PutImage requests throttled))."""
    timeline: list[tuple[float, int, int, int, int]] = []
    items: list[dict[str, Any]] = []
    last_report = 0.0
    last_good, last_change = -1, time.monotonic()
    while True:
        asked = time.monotonic()
        items = api.list_all()
        poll_seconds.append(time.monotonic() - asked)
        good = sum(1 for obj in items if done(obj))
        failed = sum(1 for obj in items if state_of(obj) == "failed")
        now = time.monotonic()
        counts = control.calls()
        timeline.append(
            (round(now - started, 2), good, failed, counts.of("PutImage"), counts.faulted.get("PutImage", 0))
        )
        if now - last_report >= 30:
            say(f"{what}: {good}/{n} after {now - started:.0f}s ({failed} failed)")
            last_report = now
        if len(items) >= n and good >= n:
            return True, items, timeline
        if len(items) >= n and good + failed >= n and failed:
            return False, items, timeline
        if good != last_good:
            last_good, last_change = good, now
        if now > deadline:
            return False, items, timeline
        if now - last_change > stall_after:
            say(f"{what}: no progress for {stall_after:.0f}s, giving up at {good}/{n}")
            return False, items, timeline
        time.sleep(every)


def converge(
    api: Api, ecr: RunningEmulator, op: OperatorProcess, n: int, images_per_repo: int, every: float, quota: float
) -> dict[str, Any]:
    objs = resources(n, images_per_repo)
    bound = n / quota
    m0 = promtext.parse(op.metrics())
    k0 = apiserver_requests(api.cluster)
    ecr.control.reset_calls()
    polls: list[float] = []
    wall0 = datetime.now(UTC)
    started = time.monotonic()
    api.apply_bulk(objs)
    created = time.monotonic() - started
    say(f"created {n} objects in {created:.1f}s")
    ok, items, timeline = wait_all(
        api,
        ecr.control,
        n,
        lambda o: state_of(o) == "ready",
        deadline=started + 3 * bound + 300,
        every=every,
        started=started,
        what="ready",
        poll_seconds=polls,
    )
    seconds = time.monotonic() - started
    counts = ecr.control.calls()
    m1 = promtext.parse(op.metrics())
    k1 = apiserver_requests(api.cluster)
    calls = calls_in(counts, operator_repos())
    written = [t for t in (status_written(o) for o in items) if t is not None]
    # Server-side: the last status write of all, against the start (both second resolution: +-1 s).
    server_seconds = (max(written) - wall0.replace(microsecond=0)).total_seconds() if written and ok else None
    not_ready: dict[str, int] = {}
    for obj in items:
        if state_of(obj) != "ready":
            finalizers = (obj.get("metadata") or {}).get("finalizers") or []
            key = f"Ready {ready_reason(obj)}, finalizers {finalizers or 'none'}, status {'set' if obj.get('status') else 'absent'}"
            not_ready[key] = not_ready.get(key, 0) + 1
    ready_names = sorted(
        f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in items if state_of(o) == "ready"
    )
    say(f"converged={ok} in {seconds:.1f}s (bound {bound:.0f}s); calls {calls}; throttled {counts.faulted}")
    return {
        "ok": ok,
        "create_seconds": round(created, 2),
        "seconds": round(seconds, 2),
        "seconds_server": server_seconds,
        "started_at": wall0.isoformat(),
        "bound_seconds": bound,
        "over_bound": round(seconds / bound, 3),
        "not_ready": not_ready,
        "ready": len(ready_names),
        "ready_names": ready_names,
        "list_seconds_max": round(max(polls), 2),
        "list_seconds_mean": round(sum(polls) / len(polls), 3),
        "detected_after_previous_poll_s": round(timeline[-2][0], 2) if len(timeline) > 1 else None,
        "calls": calls,
        "throttled": dict(counts.faulted),
        "calls_per_resource": per(calls, n),
        "calls_per_resource_total": round(sum(calls.values()) / n, 4),
        "reconciles": promtext.delta(
            promtext.by_label(m0, "ecr_tag_operator_reconciles_total", "trigger", "result"),
            promtext.by_label(m1, "ecr_tag_operator_reconciles_total", "trigger", "result"),
        ),
        "operator_ecr_latency": latency_summary(m0, m1),
        "operator_ecr_calls": promtext.delta(
            promtext.by_label(m0, "ecr_tag_operator_ecr_calls_total", "operation", "code"),
            promtext.by_label(m1, "ecr_tag_operator_ecr_calls_total", "operation", "code"),
        ),
        "apiserver_requests": promtext.delta(k0, k1),
        "timeline_s_ready_failed_put_throttled": thin(timeline),
    }


def _drift_reconciles(m0: promtext.Samples, m1: promtext.Samples) -> tuple[dict[str, float], float]:
    reconciles = promtext.delta(
        promtext.by_label(m0, "ecr_tag_operator_reconciles_total", "trigger", "result"),
        promtext.by_label(m1, "ecr_tag_operator_reconciles_total", "trigger", "result"),
    )
    return reconciles, sum(v for k, v in reconciles.items() if k.startswith("drift/"))


def drift_cycle(
    api: Api, ecr: RunningEmulator, op: OperatorProcess, names: Sequence[str], every: float
) -> dict[str, Any]:
    """Reset the counts; wait until the operator has made as many drift checks as there are resources in
    ``names`` (the Ready ones): one cycle. A check that finds nothing new writes no status, so the
    operator's own count of drift reconciles is the measure. Per-resource figures are over ``names``."""
    n = len(names)
    ecr.control.reset_calls()
    m0 = promtext.parse(op.metrics())
    k0 = apiserver_requests(api.cluster)
    started = time.monotonic()
    deadline = started + max(300.0, 4 * (DRIFT_INTERVAL_S * 1.1 + 2 * DRIFT_TICK_S))
    timeline: list[tuple[float, float, float]] = []
    last_report = 0.0
    while True:
        m1 = promtext.parse(op.metrics())
        _, checks = _drift_reconciles(m0, m1)
        now = time.monotonic()
        timeline.append((round(now - started, 2), checks, reads(calls_in(ecr.control.calls(), operator_repos()))))
        if now - last_report >= 30:
            say(f"drift-checked: {checks:.0f}/{n} after {now - started:.0f}s")
            last_report = now
        ok = checks >= n
        if ok or now > deadline:
            break
        time.sleep(every)
    seconds = time.monotonic() - started
    counts = ecr.control.calls()
    k1 = apiserver_requests(api.cluster)
    calls = calls_in(counts, operator_repos())
    reconciles, drift_reconciles = _drift_reconciles(m0, m1)
    say(f"drift cycle ok={ok} in {seconds:.1f}s: calls {calls}, drift reconciles {drift_reconciles:.0f}")
    return {
        "ok": ok,
        "seconds": round(seconds, 2),
        "resources": n,
        "calls": calls,
        "throttled": dict(counts.faulted),
        "put_image_calls": calls.get("PutImage", 0),
        "read_calls_per_resource": round(reads(calls) / n, 4),
        "calls_per_resource": per(calls, n),
        "drift_reconciles": drift_reconciles,
        "read_calls_per_drift_reconcile": round(reads(calls) / drift_reconciles, 4) if drift_reconciles else None,
        "reconciles": reconciles,
        "apiserver_requests": promtext.delta(k0, k1),
        "operator_ecr_latency": latency_summary(m0, m1),
        "operator_ecr_calls": promtext.delta(
            promtext.by_label(m0, "ecr_tag_operator_ecr_calls_total", "operation", "code"),
            promtext.by_label(m1, "ecr_tag_operator_ecr_calls_total", "operation", "code"),
        ),
        "timeline_s_checks_reads": thin(timeline),
    }


def apply_latency(
    api: Api, op: OperatorProcess, samples: int, images_per_repo: int, per_sample: float = 300.0, budget: float = 600.0
) -> dict[str, Any]:
    """Create one resource at a time and poll it every 50 ms until Ready. An overloaded operator can take
    minutes: a sample gives up after ``per_sample`` seconds (counted as censored, its wait a lower
    bound), and no new sample starts once ``budget`` seconds have passed."""
    m0 = promtext.parse(op.metrics())
    phase_end = time.monotonic() + budget
    latencies: list[float] = []
    censored: list[float] = []
    failures: list[str] = []
    for res in resources(samples, images_per_repo, prefix="latency", tag_prefix="lat"):
        if time.monotonic() > phase_end:
            break
        started = time.monotonic()
        api.create(res)
        deadline = started + per_sample
        while True:
            obj = api.get(res.namespace, res.name)
            state = state_of(obj)
            if state == "ready":
                latencies.append(time.monotonic() - started)
                break
            if state == "failed":
                failures.append(f"{res.name}: {ready_reason(obj)}")
                break
            if time.monotonic() > deadline:
                censored.append(time.monotonic() - started)
                break
            time.sleep(0.05)
        time.sleep(0.2)
    measured = latencies + censored  # censored waits are lower bounds of their latency
    out: dict[str, Any] = {
        "samples": len(latencies),
        "censored": len(censored),
        "failures": failures,
        "operator_ecr_latency": latency_summary(m0, promtext.parse(op.metrics())),
    }
    if measured:
        out |= {
            "p50_s": round(percentile(measured, 0.5), 3),
            "p99_s": round(percentile(measured, 0.99), 3),
            "min_s": round(min(measured), 3),
            "max_s": round(max(measured), 3),
            "all_s": [round(x, 3) for x in latencies],
            "censored_s": [round(x, 3) for x in censored],
        }
    say(
        f"apply->Ready: {out.get('p50_s')}s p50, {out.get('p99_s')}s p99 over {len(latencies)} samples"
        f" ({len(censored)} gave up after {per_sample:.0f}s)"
    )
    return out


def log_summary(text: str) -> dict[str, int]:
    lines = text.splitlines()
    return {
        "lines": len(lines),
        "error_lines": sum(1 for line in lines if " ERROR " in line or "[ERROR" in line),
        "warning_lines": sum(1 for line in lines if "WARNING" in line),
        "tracebacks": sum(1 for line in lines if line.startswith("Traceback")),
        "throttling_mentions": sum(1 for line in lines if "Throttl" in line),
    }


def apiserver_requests(cp: KubeCluster) -> dict[str, float]:
    """kube-apiserver's request counter by "VERB resource[/subresource] [non-2xx code]" (all clients)."""
    samples = promtext.parse(cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout)
    out: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name != "apiserver_request_total":
            continue
        lab = dict(labels)
        key = f"{lab.get('verb', '')} {lab.get('resource', '')}" + (
            f"/{lab['subresource']}" if lab.get("subresource") else ""
        )
        if not lab.get("code", "200").startswith("2"):
            key += f" {lab['code']}"
        out[key] = out.get(key, 0.0) + value
    return out


def latency_summary(before: promtext.Samples, after: promtext.Samples) -> dict[str, dict[str, float]]:
    """Mean ECR call latency seen by the operator (botocore's retries and adaptive waits included), and
    the share of calls over 0.1 s / 1 s, by operation, between two readings."""
    name = "ecr_tag_operator_ecr_call_duration_seconds"
    out: dict[str, dict[str, float]] = {}
    count = promtext.delta(
        promtext.by_label(before, name + "_count", "operation"), promtext.by_label(after, name + "_count", "operation")
    )
    total = promtext.delta(
        promtext.by_label(before, name + "_sum", "operation"), promtext.by_label(after, name + "_sum", "operation")
    )
    buckets = promtext.delta(
        promtext.by_label(before, name + "_bucket", "operation", "le"),
        promtext.by_label(after, name + "_bucket", "operation", "le"),
    )
    for op, calls in count.items():
        if not calls:
            continue
        under_01 = buckets.get(f"{op}/0.1", 0.0)
        under_1 = buckets.get(f"{op}/1.0", 0.0)
        out[op] = {
            "calls": calls,
            "mean_s": round(total.get(op, 0.0) / calls, 4),
            "share_over_0.1s": round(1 - under_01 / calls, 4),
            "share_over_1s": round(1 - under_1 / calls, 4),
        }
    return out


def operator_version() -> dict[str, Any]:
    """The commit the operator runs from, and whether operator/ had uncommitted changes then (others
    may be editing it while a long run goes on)."""
    root = repo_root()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "operator"], cwd=root, capture_output=True, text=True, check=False
    )
    return {"commit": head.stdout.strip(), "operator_dirty": sorted(line[3:] for line in dirty.stdout.splitlines())}


@contextmanager
def cluster_and_emulator(bin_dir: Path, prefix: str) -> Iterator[tuple[RunningEmulator, ControlPlane, Api]]:
    """A local control plane with the CRDs and an allow-all EcrTagPolicy, and an ECR emulator that
    enforces ECR's quotas (its logs in a temporary directory named ``prefix``...)."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        start_emulator(extra_args=["--ecr-quotas"], log_dir=Path(tmp)) as ecr,
        ControlPlane(bin_dir) as cp,
    ):
        cp.install_crds(repo_root() / CRD)
        cp.install_crds(repo_root() / POLICY_CRD)
        cp.kubectl("apply", "-f", "-", input=ALLOW_ALL)
        yield ecr, cp, Api(cp)


def run_size(
    n: int,
    bin_dir: Path,
    out_dir: Path,
    images_per_repo: int,
    latency_samples: int,
    with_baseline: bool,
    operator_env: Mapping[str, str],
    out_stem: str,
    quota: float = PUT_IMAGE_QUOTA,
    drift_cycles: int = 3,
) -> dict[str, Any]:
    every = 1.0 if n <= 1000 else 2.0
    result: dict[str, Any] = {"n": n, "repositories": REPOSITORIES, "images_per_repo": images_per_repo}
    with cluster_and_emulator(bin_dir, "ecr-tag-benchmark-") as (ecr, cp, api):
        try:
            api.ensure_namespaces(namespaces())
            say(f"N={n}: seeding {REPOSITORIES * 2 * images_per_repo} images")
            seed_images(ecr, images_per_repo)
            set_benchmark_faults(ecr.control, quota)
            result["emulator_faults"] = ecr.control.faults().to_json()
            pids = {"emulator": ecr.process.pid, **cp.pids}
            result["machine_load_before"] = procstat.load_average()
            if with_baseline:
                say(f"N={n}: baseline")
                cpu0 = procstat.cpu_snapshot(pids)
                result["baseline"] = run_baseline(ecr, n, images_per_repo, quota)
                result["baseline"]["cpu_seconds"] = procstat.cpu_delta(cpu0, procstat.cpu_snapshot(pids))
                time.sleep(2)  # let the PutImage bucket refill
            log_path = out_dir / f"{out_stem}-operator-{n}.log"
            log_path.unlink(missing_ok=True)
            # Timestamps in the log (kopf's "full" format) for reading it afterwards; no setting changed.
            op = OperatorProcess(
                cp.kubeconfig_path, {**ecr.env, **operator_env}, args=["--log-format", "full"], log_path=log_path
            )
            result["operator_version"] = operator_version()
            op.start()
            assert op.process is not None
            pids["operator"] = op.process.pid
            sampler = procstat.RssSampler(op.process.pid).start()
            try:
                say(f"N={n}: operator converging")
                cpu0 = procstat.cpu_snapshot(pids)
                result["operator"] = converge(api, ecr, op, n, images_per_repo, every, quota)
                cpu1 = procstat.cpu_snapshot(pids)
                result["operator"]["cpu_seconds"] = procstat.cpu_delta(cpu0, cpu1)
                ready_names = result["operator"].pop("ready_names")
                if len(ready_names) >= MOSTLY * n:
                    say(f"N={n}: one drift cycle over the {len(ready_names)} Ready resources")
                    result["drift"] = drift_cycle(api, ecr, op, ready_names, every)
                    cpu2 = procstat.cpu_snapshot(pids)
                    result["drift"]["cpu_seconds"] = procstat.cpu_delta(cpu1, cpu2)
                    # One cycle depends on where the groups stand when it starts: the next show the spread.
                    result["drift_later"] = [
                        drift_cycle(api, ecr, op, ready_names, every) for _ in range(drift_cycles - 1)
                    ]
                    say(f"N={n}: apply -> Ready latency")
                    result["latency"] = apply_latency(api, op, latency_samples, images_per_repo)
                result["rss"] = {
                    "peak_hwm_mb": round((procstat.status_kib(op.process.pid, "VmHWM") or 0) / 1024, 1),
                    "peak_sampled_mb": round(sampler.peak_kib / 1024, 1),
                    "end_mb": round((procstat.status_kib(op.process.pid, "VmRSS") or 0) / 1024, 1),
                    "peak_open_sockets": sampler.peak_sockets,
                    "machine_load_1min": sampler.load_summary(),
                    "samples_s_kib_sockets": sampler.samples,
                }
                result["operator_metrics_end"] = {
                    "ecr_calls": promtext.by_label(
                        promtext.parse(op.metrics()), "ecr_tag_operator_ecr_calls_total", "operation", "code"
                    ),
                }
            finally:
                sampler.stop()
                op.stop()
            result["operator_log"] = {"path": log_path.name, **log_summary(op.log_text())}
        finally:
            api.close()
    return result


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: every process started here is stopped


def main(argv: Sequence[str] | None = None) -> int:
    # Run in the background, SIGINT may be ignored; SIGTERM then stops the benchmark cleanly.
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convergence", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated N (default 100,1000,5000)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/convergence.json"))
    parser.add_argument("--images-per-repo", type=int, default=4, help="source images pushed per repository")
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--drift-cycles",
        type=int,
        default=3,
        help="drift cycles measured one after another (the first is the target's)",
    )
    parser.add_argument(
        "--put-image-quota",
        type=float,
        default=PUT_IMAGE_QUOTA,
        help="PutImage per second (burst the same), the emulator's and the operator's; default ECR's 10",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="ECR_TAG_OPERATOR_X=VALUE",
        help="an operator setting for experiments (repeatable); the default run sets none",
    )
    args = parser.parse_args(argv)
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    quota: float = args.put_image_quota
    if quota != PUT_IMAGE_QUOTA:  # a scaled quota: the operator's client-side rate follows it
        operator_env.setdefault("ECR_TAG_OPERATOR_PUT_IMAGE_RATE", str(quota))
    if any(not key.startswith("ECR_TAG_OPERATOR_") for key in operator_env):
        parser.error("--operator-env takes ECR_TAG_OPERATOR_* settings only")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    bin_dir = ensure_binaries(progress=lambda line: say(f"build: {line}"))
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {
            "ecr_latency_ms": LATENCY_MS,
            "put_image_quota_per_s": quota,
            "put_image_burst": PUT_IMAGE_BURST if quota == PUT_IMAGE_QUOTA else max(1, int(quota)),
            "drift_check_interval": DRIFT_INTERVAL,
            "operator_env": operator_env or "defaults (only endpoint, dummy credentials and metrics port set)",
            "operator_args": ["--log-format", "full"],
            "baseline": "sequential batch-get-image + put-image per tag, botocore standard retries, 3 attempts",
        },
        "sizes": [],
    }
    for n in sizes:
        began = time.monotonic()
        result = run_size(
            n,
            bin_dir,
            out.parent,
            args.images_per_repo,
            args.latency_samples,
            not args.no_baseline,
            operator_env,
            out.stem,
            quota,
            max(1, args.drift_cycles),
        )
        result["wall_seconds"] = round(time.monotonic() - began, 1)
        report["sizes"].append(result)
        report["targets"] = targets(report["sizes"])
        out.write_text(json.dumps(report, indent=2, default=str))
        say(f"N={n} done in {result['wall_seconds']:.0f}s; results so far in {out}")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
