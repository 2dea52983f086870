"""Fairness benchmark: apply -> Ready of one change in namespace A while namespace B has a backlog of
thousands of PutImage on the same quota, with the real operator process, control plane and emulator.

    .venv/bin/python -m benchmarks.fairness [--quota 50] [--b-objects 500 --b-tags 10] [--samples 10]
        [--modes fair,fifo] [--out benchmarks/results/fairness.json]

For each mode, in a fresh local environment (kube-apiserver + etcd, the ECR emulator with 20 ms added to
every ECR call and PutImage limited to ``--quota``/s, burst the same; the operator's client-side PutImage
rate set to the same quota): team-a's one resource is created and Ready first; then team-b applies
``--b-objects`` EcrImageTags of ``--b-tags`` tags each (one PutImage per tag: the backlog); once B's
PutImage requests pass ``--start-after``, team-a promotes its resource (its source tag flips between two
images, one PutImage each) ``--samples`` times, one after another and spread over most of the
backlog, each timed from the patch to Ready=True with observedGeneration = generation. The modes differ only in the operator's settings:

- ``fair``: the defaults (writes round-robin across namespaces, 16 reconciles per namespace in flight).
- ``fifo``: ``ECR_TAG_OPERATOR_FAIR_WRITES=false`` and ``NAMESPACE_IN_FLIGHT=512``: one write queue in
  arrival order and no per-namespace cap, as before fair sharing.
- ``fair-bucket-only``: round-robin writes, no per-namespace cap.

Prints a markdown table (progress on stderr) and writes JSON. A benchmark, not a test: it asserts
nothing. ECR's default quota is 10/s; the quota is scaled up so that 5,000 PutImage take ~100 s rather
than ~500 s: a backlog is measured in seconds of quota, and the ratio fifo / fair is what carries over.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.clients import plain_client
from ecr_tag_localenv.control_plane import ensure_binaries
from ecr_tag_localenv.ecr_control import FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess

from . import procstat, promtext
from .convergence import (
    LATENCY_MS,
    calls_in,
    cluster_and_emulator,
    latency_summary,
    log_summary,
    operator_version,
    percentile,
    say,
    thin,
)
from .kube import Api, Resource, state_of

A, B = "team-a", "team-b"
A_REPO = "fair/a"
B_REPOS = tuple(f"fair/b-{i}" for i in range(5))
DRIFT_INTERVAL = "5m"  # longer than a run: no drift check competes with the backlog
MODES: dict[str, dict[str, str]] = {
    "fair": {},
    "fifo": {"ECR_TAG_OPERATOR_FAIR_WRITES": "false", "ECR_TAG_OPERATOR_NAMESPACE_IN_FLIGHT": "512"},
    "fair-bucket-only": {"ECR_TAG_OPERATOR_NAMESPACE_IN_FLIGHT": "512"},
}
BUSY = 0.9  # a sample counts when applied before B's PutImage requests reached this share of its backlog
QUEUED = "reconciles in flight: queued"  # the operator's log line when a change waits for a slot


def b_images(objects: int, tags: int) -> int:
    """Source images per B repository: ECR allows 1,000 tags per image (LimitExceededException)."""
    return max(1, math.ceil(objects * tags / len(B_REPOS) / 900))


def b_resources(objects: int, tags: int) -> list[Resource]:
    images = b_images(objects, tags)
    return [
        Resource(
            namespace=B,
            name=f"b-{i:05d}",
            repository=B_REPOS[i % len(B_REPOS)],
            source_tag=f"build-{(i // len(B_REPOS)) % images}",
            tags=tuple(f"b{i:05d}-{j:03d}" for j in range(tags)),
            drift_check_interval=DRIFT_INTERVAL,
        )
        for i in range(objects)
    ]


A_RESOURCE = Resource(
    namespace=A, name="a-promo", repository=A_REPO, source_tag="build-0", tags=("prod",), drift_check_interval="5m"
)


def seed(ecr: RunningEmulator, b_images_per_repo: int) -> None:
    client = plain_client(
        "ecr",
        endpoint_url=ecr.endpoint_url,
        region=ecr.env["AWS_DEFAULT_REGION"],
        access_key_id=ecr.env["AWS_ACCESS_KEY_ID"],
        secret_access_key=ecr.env["AWS_SECRET_ACCESS_KEY"],
    )
    ecr.control.set_faults()  # no quota while seeding: not measured
    for repo in B_REPOS:
        for k in range(b_images_per_repo):
            ecr_seed.push(client, repo, f"build-{k}", "docker", seed=f"{repo}-{k}")
    for k in range(2):
        ecr_seed.push(client, A_REPO, f"build-{k}", "docker", seed=f"a-{k}")


def wait_ready(api: Api, res: Resource, deadline: float) -> float | None:
    """Poll one object every 50 ms until Ready for its generation; when it was, or None (deadline or
    a failure that does not clear by itself)."""
    while time.monotonic() < deadline:
        state = state_of(api.get(res.namespace, res.name))
        if state == "ready":
            return time.monotonic()
        if state == "failed":
            return None
        time.sleep(0.05)
    return None


def b_puts(ecr: RunningEmulator) -> int:
    """PutImage requests the emulator received for B's repositories (throttled ones included)."""
    return calls_in(ecr.control.calls(), B_REPOS).get("PutImage", 0)


def b_ready(api: Api) -> int:
    return sum(1 for o in api.list_all() if o["metadata"]["namespace"] == B and state_of(o) == "ready")


def run_mode(
    mode: str, bin_dir: Path, out_dir: Path, quota: float, b_objects: int, b_tags: int, samples: int, start_after: int
) -> dict[str, Any]:
    backlog = b_objects * b_tags
    operator_env = {
        "ECR_TAG_OPERATOR_PUT_IMAGE_RATE": str(quota),
        **MODES[mode],
    }
    result: dict[str, Any] = {"mode": mode, "operator_env": operator_env}
    with cluster_and_emulator(bin_dir, "ecr-tag-fairness-") as (ecr, cp, api):
        try:
            api.ensure_namespaces([A, B])
            seed(ecr, b_images(b_objects, b_tags))
            ecr.control.set_faults(
                default=FaultRule(latency_ms=LATENCY_MS),
                operations={"PutImage": FaultRule(quota_per_second=quota, burst=int(quota))},
            )
            log_path = out_dir / f"fairness-operator-{mode}.log"
            log_path.unlink(missing_ok=True)
            op = OperatorProcess(
                cp.kubeconfig_path, {**ecr.env, **operator_env}, args=["--log-format", "full"], log_path=log_path
            )
            result["operator_version"] = operator_version()
            op.start()
            assert op.process is not None
            sampler = procstat.RssSampler(op.process.pid).start()
            try:
                api.create(A_RESOURCE)
                if wait_ready(api, A_RESOURCE, time.monotonic() + 120) is None:
                    raise RuntimeError(f"{A}/{A_RESOURCE.name} never became Ready on an idle operator")
                result |= measure(api, ecr, op, quota, b_objects, b_tags, samples, start_after)
                result["rss_peak_mb"] = round((procstat.status_kib(op.process.pid, "VmHWM") or 0) / 1024, 1)
                result["machine_load_1min"] = sampler.load_summary()
            finally:
                sampler.stop()
                op.stop()
            text = op.log_text()
            result["operator_log"] = {"path": log_path.name, "queued_lines": text.count(QUEUED), **log_summary(text)}
        finally:
            api.close()
    result["backlog_put_images"] = backlog
    return result


def measure(
    api: Api,
    ecr: RunningEmulator,
    op: OperatorProcess,
    quota: float,
    b_objects: int,
    b_tags: int,
    samples: int,
    start_after: int,
) -> dict[str, Any]:
    backlog = b_objects * b_tags
    bound = backlog / quota
    ecr.control.reset_calls()
    m0 = promtext.parse(op.metrics())
    started = time.monotonic()
    say(f"{B}: applying {b_objects} objects x {b_tags} tags ({backlog} PutImage, {bound:.0f} s of quota)")
    api.apply_bulk(b_resources(b_objects, b_tags))
    applied = time.monotonic() - started
    deadline = started + 3 * bound + 300
    while b_puts(ecr) < start_after and time.monotonic() < deadline:
        time.sleep(0.5)
    say(f"{B}: {b_puts(ecr)} PutImage after {time.monotonic() - started:.1f}s; {A} starts its changes")
    rows: list[dict[str, Any]] = []
    source = A_RESOURCE.source_tag
    gap = max(1.0, 0.6 * (backlog - b_puts(ecr)) / quota / max(1, samples))
    for k in range(samples):
        before = b_puts(ecr)
        if before >= backlog:
            say(f"{B}'s backlog is done: no more samples")
            break
        source = "build-1" if source == "build-0" else "build-0"
        t0 = time.monotonic()
        api.patch_spec(A, A_RESOURCE.name, {"source": {"tag": source}})
        at = wait_ready(api, A_RESOURCE, t0 + max(300.0, 2 * bound))
        row: dict[str, Any] = {
            "sample": k,
            "at_s": round(t0 - started, 2),
            "seconds": round(at - t0, 3) if at is not None else None,
            "b_puts_at_apply": before,
            "b_puts_at_ready": b_puts(ecr),
            "b_ready_at_ready": b_ready(api),
        }
        rows.append(row)
        say(f"{A} sample {k}: {row['seconds']}s (B: {row['b_puts_at_ready']}/{backlog} PutImage received)")
        time.sleep(gap)  # the samples spread over most of the backlog
    say(f"{B}: waiting for all {b_objects} Ready")
    timeline: list[tuple[float, int, int]] = []
    while True:
        done = b_ready(api)
        timeline.append((round(time.monotonic() - started, 1), done, b_puts(ecr)))
        if done >= b_objects or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    b_seconds = time.monotonic() - started
    counts = ecr.control.calls()
    m1 = promtext.parse(op.metrics())
    latencies = [r["seconds"] for r in rows if r["seconds"] is not None]
    under_backlog = [r["seconds"] for r in rows if r["seconds"] is not None and r["b_puts_at_ready"] < backlog]
    # The figures: samples applied while B still had a backlog (a sample applied as B finishes shows
    # an idle operator, not a fair one).
    busy = [r["seconds"] for r in rows if r["seconds"] is not None and r["b_puts_at_apply"] <= BUSY * backlog]
    out: dict[str, Any] = {
        "quota_per_s": quota,
        "b_apply_seconds": round(applied, 2),
        "b_all_ready": done >= b_objects,
        "b_seconds": round(b_seconds, 1),
        "b_bound_seconds": bound,
        "b_over_bound": round(b_seconds / bound, 3),
        "b_put_images_received": calls_in(counts, B_REPOS).get("PutImage", 0),
        "a_put_images_received": calls_in(counts, (A_REPO,)).get("PutImage", 0),
        "throttled": dict(counts.faulted),
        "samples": rows,
        "a_failed_samples": sum(1 for r in rows if r["seconds"] is None),
        "a_samples_ready_before_b_was_done": len(under_backlog),
        "a_samples_applied_under_backlog": len(busy),
        "b_timeline_s_ready_puts": thin(timeline, 100),
        "operator_ecr_latency": latency_summary(m0, m1),
        "reconciles": promtext.delta(
            promtext.by_label(m0, "ecr_tag_operator_reconciles_total", "trigger", "result"),
            promtext.by_label(m1, "ecr_tag_operator_reconciles_total", "trigger", "result"),
        ),
    }
    if busy:
        out |= {
            "a_p50_s": round(percentile(busy, 0.5), 3),
            "a_p90_s": round(percentile(busy, 0.9), 3),
            "a_max_s": round(max(busy), 3),
        }
    if latencies:
        out["a_p50_all_samples_s"] = round(percentile(latencies, 0.5), 3)
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: Mapping[str, Any]) -> str:
    modes: Sequence[Mapping[str, Any]] = report["modes"]
    rows: list[tuple[str, Any]] = [
        ("PutImage quota, emulator and operator (/s)", lambda m: _fmt(m.get("quota_per_s"), 0)),
        ("B backlog (PutImage)", lambda m: _fmt(m.get("backlog_put_images"))),
        ("A samples (applied with >= 10 % of B's backlog left)", lambda m: _a_samples(m)),
        ("**A apply -> Ready p50 (s)**, those samples", lambda m: _fmt(m.get("a_p50_s"), 3)),
        ("A apply -> Ready p90 (s), those samples", lambda m: _fmt(m.get("a_p90_s"), 3)),
        ("A apply -> Ready max (s), those samples", lambda m: _fmt(m.get("a_max_s"), 3)),
        ("A apply -> Ready p50, every sample (s)", lambda m: _fmt(m.get("a_p50_all_samples_s"), 3)),
        ("A samples failed or timed out", lambda m: _fmt(m.get("a_failed_samples"))),
        ("B PutImage received when A's samples started", lambda m: _first_b(m)),
        ("B PutImage received at A's last Ready", lambda m: _last_b(m)),
        ("B all Ready (s)", lambda m: _fmt(m.get("b_seconds"), 1) if m.get("b_all_ready") else "never"),
        ("B time / (backlog / quota)", lambda m: _fmt(m.get("b_over_bound"), 3)),
        ("PutImage throttled by the emulator", lambda m: _fmt((m.get("throttled") or {}).get("PutImage", 0))),
        (
            "changes queued for a namespace slot (log lines)",
            lambda m: _fmt((m.get("operator_log") or {}).get("queued_lines")),
        ),
        ("operator peak RSS (MB)", lambda m: _fmt(m.get("rss_peak_mb"), 1)),
        ("machine 1-min load, mean / max", lambda m: _load(m)),
    ]
    lines = ["| metric | " + " | ".join(str(m["mode"]) for m in modes) + " |", "|---|" + "---|" * len(modes)]
    lines += [f"| {label} | " + " | ".join(cell(m) for m in modes) + " |" for label, cell in rows]
    p50 = {m["mode"]: m.get("a_p50_s") for m in modes}
    if isinstance(p50.get("fair"), float) and isinstance(p50.get("fifo"), float) and p50["fair"]:
        lines += ["", f"A's p50, fifo / fair: {p50['fifo'] / p50['fair']:.1f}x"]
    fair = p50.get("fair")
    if fair is not None:
        lines += [f"target A p50 <= 2 s (fair): {'met' if fair <= 2.0 else 'missed'} ({fair:.3f} s)"]
    return "\n".join(lines)


def _a_samples(m: Mapping[str, Any]) -> str:
    return f"{_fmt(m.get('a_samples_applied_under_backlog'))} of {len(m.get('samples') or [])}"


def _first_b(m: Mapping[str, Any]) -> str:
    rows = m.get("samples") or []
    return _fmt(rows[0]["b_puts_at_apply"]) if rows else "-"


def _last_b(m: Mapping[str, Any]) -> str:
    rows = m.get("samples") or []
    return _fmt(rows[-1]["b_puts_at_ready"]) if rows else "-"


def _load(m: Mapping[str, Any]) -> str:
    load = m.get("machine_load_1min")
    return f"{load['mean']:.1f} / {load['max']:.1f}" if isinstance(load, Mapping) else "-"


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: every process started here is stopped


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness", description=__doc__.splitlines()[0])
    parser.add_argument("--quota", type=float, default=50.0, help="PutImage per second, emulator and operator")
    parser.add_argument("--b-objects", type=int, default=500)
    parser.add_argument("--b-tags", type=int, default=10, help="tags per B object (one PutImage each)")
    parser.add_argument("--samples", type=int, default=10, help="A's changes, one after another")
    parser.add_argument("--start-after", type=int, default=500, help="B's PutImage requests before A starts")
    parser.add_argument("--modes", default="fair,fifo", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fairness.json"))
    parser.add_argument("--report", type=Path, help="re-print the table of a saved run, and run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return 0
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown modes {unknown}")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    bin_dir = ensure_binaries(progress=lambda line: say(f"build: {line}"))
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {
            "ecr_latency_ms": LATENCY_MS,
            "put_image_quota_per_s": args.quota,
            "b_objects": args.b_objects,
            "b_tags": args.b_tags,
            "samples": args.samples,
            "start_after_b_puts": args.start_after,
            "scaling": "ECR's default PutImage quota is 10/s; emulator and operator both use --quota",
        },
        "modes": [],
    }
    for mode in modes:
        say(f"mode {mode}: {MODES[mode] or 'default settings'}")
        load_before = procstat.load_average()
        result = run_mode(
            mode, bin_dir, out.parent, args.quota, args.b_objects, args.b_tags, args.samples, args.start_after
        )
        result["machine_load_before"] = load_before
        report["modes"].append(result)
        out.write_text(json.dumps(report, indent=2, default=str))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
