"""The benchmark's markdown table, ratios and targets (from the JSON report, so a saved run can be re-printed:
``python -m benchmarks.report benchmarks/results/convergence.json``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

OPS = ("BatchGetImage", "BatchCheckLayerAvailability", "PutImage")
SHORT = {"BatchGetImage": "BGI", "BatchCheckLayerAvailability": "BCLA", "PutImage": "Put"}


def _get(size: Mapping[str, Any], *path: str) -> Any:
    node: Any = size
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def converged_seconds(size: Mapping[str, Any]) -> float | None:
    """The operator's convergence time: the last status write as kube-apiserver stored it (+-1 s), or
    when polling saw every resource Ready if the former is missing."""
    if _get(size, "operator", "ok") is False:
        return None
    value = _get(size, "operator", "seconds_server")
    if value is None:
        value = _get(size, "operator", "seconds")
    return float(value) if isinstance(value, int | float) else None


def ratios(size: Mapping[str, Any]) -> dict[str, float | None]:
    """Operator divided by baseline."""
    return {
        "drift_reads_per_resource": _ratio(
            _get(size, "drift", "read_calls_per_resource"), _get(size, "baseline", "drift", "read_calls_per_resource")
        ),
        "first_reconcile_calls_per_resource": _ratio(
            _get(size, "operator", "calls_per_resource_total"), _get(size, "baseline", "calls_per_tag_total")
        ),
        "convergence_time": _ratio(converged_seconds(size), _get(size, "baseline", "seconds")),
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _per_op(counts: Mapping[str, float] | None) -> str:
    if not counts:
        return "-"
    parts = [f"{SHORT.get(op, op)} {counts[op]:.3f}" for op in OPS if op in counts]
    parts += [f"{op} {v:.3f}" for op, v in counts.items() if op not in OPS]
    return ", ".join(parts)


def _throttled(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{SHORT.get(k, k)} {v}" for k, v in (counts or {}).items()) or "0"


Row = tuple[str, Callable[[Mapping[str, Any]], str]]

ROWS: Sequence[Row] = (
    ("operator commit", lambda s: _version(s)),
    ("create N objects (s)", lambda s: _fmt(_get(s, "operator", "create_seconds"), 1)),
    ("operator: all Ready, last status write stored (s, +-1)", lambda s: _converged(s)),
    ("operator: all Ready seen by polling (s)", lambda s: _fmt(_get(s, "operator", "seconds"), 1)),
    ("slowest list while polling (s)", lambda s: _fmt(_get(s, "operator", "list_seconds_max"), 1)),
    ("bound N / PutImage quota (s)", lambda s: _fmt(_get(s, "operator", "bound_seconds"), 0)),
    ("operator time / bound", lambda s: _fmt(_over_bound(s), 3)),
    ("baseline: all tags moved (s)", lambda s: _fmt(_get(s, "baseline", "seconds"), 1)),
    ("baseline time / bound", lambda s: _fmt(_get(s, "baseline", "over_bound"), 3)),
    ("**ratio** convergence time, operator / baseline", lambda s: _fmt(ratios(s)["convergence_time"], 3)),
    ("first reconcile: operator calls/resource", lambda s: _per_op(_get(s, "operator", "calls_per_resource"))),
    (
        "first reconcile: operator total calls/resource",
        lambda s: _fmt(_get(s, "operator", "calls_per_resource_total"), 3),
    ),
    ("first reconcile: operator throttled (calls)", lambda s: _throttled(_get(s, "operator", "throttled"))),
    ("first reconcile: drift reconciles inside the window", lambda s: _fmt(_drift_in_first(s))),
    ("baseline calls/tag", lambda s: _per_op(_get(s, "baseline", "calls_per_tag"))),
    ("baseline total calls/tag", lambda s: _fmt(_get(s, "baseline", "calls_per_tag_total"), 3)),
    ("baseline throttled (calls)", lambda s: _throttled(_get(s, "baseline", "throttled"))),
    (
        "**ratio** first-reconcile calls/resource, operator / baseline",
        lambda s: _fmt(ratios(s)["first_reconcile_calls_per_resource"], 3),
    ),
    ("drift cycle: duration (s)", lambda s: _fmt(_get(s, "drift", "seconds"), 1)),
    ("drift cycle: operator calls/resource", lambda s: _per_op(_get(s, "drift", "calls_per_resource"))),
    ("drift cycle: operator read calls/resource", lambda s: _fmt(_get(s, "drift", "read_calls_per_resource"), 4)),
    ("drift cycle: drift reconciles (N = one each)", lambda s: _fmt(_get(s, "drift", "drift_reconciles"), 0)),
    ("drift cycle: PutImage calls", lambda s: _fmt(_get(s, "drift", "put_image_calls"))),
    ("later drift cycles: operator read calls/resource, each", lambda s: _later_reads(s)),
    ("baseline drift read calls/resource", lambda s: _fmt(_get(s, "baseline", "drift", "read_calls_per_resource"), 4)),
    ("**ratio** drift reads/resource, operator / baseline", lambda s: _fmt(ratios(s)["drift_reads_per_resource"], 4)),
    (
        "apply -> Ready samples (+ gave up: wait is a lower bound)",
        lambda s: f"{_fmt(_get(s, 'latency', 'samples'))} (+{_fmt(_get(s, 'latency', 'censored'))})",
    ),
    ("apply -> Ready p50 (s)", lambda s: _fmt(_get(s, "latency", "p50_s"), 3)),
    ("apply -> Ready p99 (s)", lambda s: _fmt(_get(s, "latency", "p99_s"), 3)),
    ("operator peak RSS, VmHWM (MB)", lambda s: _fmt(_get(s, "rss", "peak_hwm_mb"), 1)),
    ("operator peak open sockets", lambda s: _fmt(_get(s, "rss", "peak_open_sockets"))),
    ("machine 1-min load while the operator ran, mean / max", lambda s: _load(s)),
    ("operator CPU during convergence (s)", lambda s: _fmt(_get(s, "operator", "cpu_seconds", "operator"), 1)),
    ("emulator CPU during convergence (s)", lambda s: _fmt(_get(s, "operator", "cpu_seconds", "emulator"), 1)),
    (
        "kube-apiserver CPU during convergence (s)",
        lambda s: _fmt(_get(s, "operator", "cpu_seconds", "kube-apiserver"), 1),
    ),
)


def _converged(size: Mapping[str, Any]) -> str:
    if _get(size, "operator", "ok") is False:
        ready, n = _get(size, "operator", "ready"), size.get("n")
        return f"**never**: {ready}/{n} Ready, gave up after {_fmt(_get(size, 'operator', 'seconds'), 0)} s"
    return _fmt(converged_seconds(size), 1)


def _version(size: Mapping[str, Any]) -> str:
    version = _get(size, "operator_version")
    if not isinstance(version, Mapping):
        return "-"
    dirty = version.get("operator_dirty") or []
    return str(version.get("commit")) + (f" + {len(dirty)} uncommitted" if dirty else "")


def _load(size: Mapping[str, Any]) -> str:
    load = _get(size, "rss", "machine_load_1min")
    return f"{load['mean']:.1f} / {load['max']:.1f}" if isinstance(load, Mapping) else "-"


def _over_bound(size: Mapping[str, Any]) -> float | None:
    return _ratio(converged_seconds(size), _get(size, "operator", "bound_seconds"))


def _later_reads(size: Mapping[str, Any]) -> str:
    later = size.get("drift_later") or []
    return ", ".join(_fmt(c.get("read_calls_per_resource"), 4) for c in later) or "-"


def _drift_in_first(size: Mapping[str, Any]) -> float | None:
    rec = _get(size, "operator", "reconciles")
    if not isinstance(rec, Mapping):
        return None
    return float(sum(v for k, v in rec.items() if str(k).startswith("drift/")))


def targets(sizes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each target: what was measured, the limit, met or not, and the margin (limit - value; < 0 missed)."""
    out: list[dict[str, Any]] = []

    def add(name: str, n: int, value: Any, limit: float) -> None:
        met = isinstance(value, int | float) and value <= limit
        margin = round(limit - value, 4) if isinstance(value, int | float) else None
        out.append({"target": name, "n": n, "value": value, "limit": limit, "met": met, "margin": margin})

    for size in sizes:
        n = int(size["n"])
        bound = _get(size, "operator", "bound_seconds")
        if n in (1000, 5000) and isinstance(bound, int | float):
            add("convergence time <= 1.05 x N / quota (s)", n, converged_seconds(size), 1.05 * bound)
            add(
                "read calls per resource per drift cycle <= 0.03",
                n,
                _get(size, "drift", "read_calls_per_resource"),
                0.03,
            )
        if n == 5000:
            add("operator RSS <= 200 MB", n, _get(size, "rss", "peak_hwm_mb"), 200.0)
        add("apply -> Ready p50 <= 1 s", n, _get(size, "latency", "p50_s"), 1.0)
    return out


def markdown(report: Mapping[str, Any]) -> str:
    sizes: Sequence[Mapping[str, Any]] = report.get("sizes") or []
    head = "| metric | " + " | ".join(f"N = {s['n']:,}" for s in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)
    lines = [head, rule]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in sizes) + " |")
    lines += ["", "| target | N | value | limit | met | margin |", "|---|---|---|---|---|---|"]
    for t in report.get("targets") or targets(sizes):
        lines.append(
            f"| {t['target']} | {t['n']:,} | {_fmt(t['value'], 3)} | {_fmt(t['limit'], 3)} | "
            f"{_fmt(t['met'])} | {_fmt(t['margin'], 3)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else Path("benchmarks/results/convergence.json")
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
