"""An operator started over N EcrImageTags that already exist: how long until it handles them, and its memory.

    .venv/bin/python -m benchmarks.restart [--n 5000] [--quota 50]

Prints a markdown table (progress on stderr). A benchmark, not a test: it asserts nothing.

N EcrImageTags (one tag each, as in benchmarks.convergence) are applied while no operator runs, then:

1. an operator starts over them, none reconciled yet (the operator was down while they were made):
   seconds until its first handler ran, until all are Ready (up to ``--wait``), peak RSS;
2. it stops and another starts over the same, now in sync (a rolling update): seconds until every
   resource's resume was handled, peak RSS.

kopf gives each existing object a worker that indexes it and waits until all are indexed, so both
runs hold N workers at once (kopf_startup.py: held from the start, the worker limit deadlocked such
a start). PutImage is limited to ``--quota`` per second in the emulator and the operator alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecr_tag_localenv.control_plane import ensure_binaries
from ecr_tag_localenv.operator_process import OperatorProcess

from . import procstat
from .convergence import cluster_and_emulator, namespaces, resources, say, seed_images, set_benchmark_faults
from .kube import Api, state_of

IMAGES_PER_REPO = 4
HANDLED = "Handler 'reconcile_spec' succeeded"


def run_over(api: Api, op: OperatorProcess, n: int, wait: float, until_handled: bool) -> dict[str, Any]:
    """Start ``op``; poll until every resource is Ready (and, with ``until_handled``, every one's
    handler ran) or ``wait`` seconds passed."""
    start = time.monotonic()
    op.start()
    assert op.process is not None
    sampler = procstat.RssSampler(op.process.pid).start()
    first: float | None = None
    ready = handled = 0
    try:
        while time.monotonic() - start < wait:
            handled = op.log_text().count(HANDLED)
            if handled and first is None:
                first = time.monotonic() - start
            ready = sum(state_of(o) == "ready" for o in api.list_all())
            if ready == n and (not until_handled or handled >= n):
                break
            time.sleep(2)  # a poll's period: what is measured is when the condition was first seen
        took = time.monotonic() - start
    finally:
        sampler.stop()
        cpu = procstat.cpu_seconds(op.process.pid)
        op.stop()
    return {
        "seconds_to_first_handler": None if first is None else round(first, 1),
        "seconds_to_end": round(took, 1),
        "ready": ready,
        "handled": handled,
        "operator_cpu_seconds": cpu,
        "peak_rss_mb": round(sampler.peak_kib / 1024, 1),
        "rss_mb_every_10s": [round(kib / 1024) for _, kib, _ in sampler.samples],
    }


def markdown(n: int, rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"| an operator started over {n:,} EcrImageTags | first handler (s) | end (s) | Ready / handled | CPU (s) | peak RSS (MB) |"
    ]
    lines.append("|---|---|---|---|---|---|")
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['seconds_to_first_handler']} | {r['seconds_to_end']} | {r['ready']} / {r['handled']} "
            f"| {r['operator_cpu_seconds']} | {r['peak_rss_mb']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.restart", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--quota", type=float, default=50.0, help="PutImage per second, emulator and operator")
    parser.add_argument("--wait", type=float, default=420.0, help="seconds each run waits at most")
    parser.add_argument("--logs", type=Path, default=Path("benchmarks/results"), help="the operators' logs go here")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    with cluster_and_emulator(ensure_binaries(), "ecr-tag-restart-") as (ecr, cp, api):
        try:
            api.ensure_namespaces(namespaces())
            seed_images(ecr, IMAGES_PER_REPO)
            set_benchmark_faults(ecr.control, args.quota)
            say(f"applying {args.n} EcrImageTags, no operator running")
            api.apply_bulk(resources(args.n, IMAGES_PER_REPO))
            env = {**ecr.env, "ECR_TAG_OPERATOR_PUT_IMAGE_RATE": str(args.quota)}
            for label, in_sync in (("none reconciled yet", False), ("all in sync (a rolling update)", True)):
                log = args.logs / f"restart-{args.n}-{'in-sync' if in_sync else 'new'}.log"
                log.unlink(missing_ok=True)
                op = OperatorProcess(cp.kubeconfig_path, env, args=["--log-format", "full"], log_path=log)
                say(f"operator started over {args.n}: {label}")
                rows[label] = run_over(api, op, args.n, args.wait, until_handled=in_sync)
                say(f"{label}: {rows[label]}")
        finally:
            api.close()
    print(markdown(args.n, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
