"""The convergence benchmark's targets: read from the run's own bound, whatever quota it ran at."""

from __future__ import annotations

from typing import Any

from benchmarks.fairness import b_images, b_resources
from benchmarks.report import targets


def size(n: int, seconds: float, bound: float, reads: float, rss: float) -> dict[str, Any]:
    return {
        "n": n,
        "operator": {"ok": True, "seconds_server": seconds, "bound_seconds": bound},
        "drift": {"read_calls_per_resource": reads},
        "rss": {"peak_hwm_mb": rss},
    }


def test_targets_use_the_bound_of_the_quota_the_run_had() -> None:
    got = {(t["target"], t["n"]): t for t in targets([size(5000, 260.0, 250.0, 0.031, 150.0)])}
    time = got[("convergence time <= 1.05 x N / quota (s)", 5000)]
    assert time["limit"] == 262.5  # 5,000 at 20/s, not at ECR's default 10/s
    assert time["met"]
    assert not got[("read calls per resource per drift cycle <= 0.03", 5000)]["met"]
    assert got[("operator RSS <= 200 MB", 5000)]["met"]
    slow = targets([size(1000, 106.0, 100.0, 0.025, 300.0)])
    assert [(t["target"], t["met"]) for t in slow if t["n"] == 1000][:2] == [
        ("convergence time <= 1.05 x N / quota (s)", False),
        ("read calls per resource per drift cycle <= 0.03", True),
    ]


def test_fairness_backlog_stays_under_ecr_tags_per_image() -> None:
    """ECR refuses a 1,001st tag on one image (LimitExceededException): the backlog spreads its tags
    over enough source images."""
    for objects, tags in ((500, 10), (50, 100), (5000, 1)):
        per_image: dict[tuple[str, str], int] = {}
        for res in b_resources(objects, tags):
            key = (res.repository, res.source_tag)
            per_image[key] = per_image.get(key, 0) + len(res.tags)
        assert max(per_image.values()) < 1000, (objects, tags, b_images(objects, tags))
        assert sum(per_image.values()) == objects * tags
