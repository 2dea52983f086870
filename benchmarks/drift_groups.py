"""How full the drift scheduler's groups are: BatchGetImage per drift check in the steady state, from
``drift_schedule.pick`` run tick by tick over simulated time (no cluster, no ECR; seconds to run).

    .venv/bin/python -m benchmarks.drift_groups [--sizes 1000,5000] [--early 0.1,0.3] [--interval 30]

Each group a tick releases is one BatchGetImage (its members' reads coalesce into one call); the
convergence benchmark's drift cycle counts those calls on the real operator, plus
BatchCheckLayerAvailability when a repository's cached AVAILABLE layers are older than the interval.
The resources are the convergence benchmark's (5 repositories, one tag each, 4 source images per
repository), their first sync spread over N / quota seconds as a converging operator leaves them;
each is checked at the tick its check is picked, as a check that finds nothing new is remembered.
Prints a markdown table: groups per check (the floor is 1 / group size = 0.02) and checks per
resource per interval, over the simulated minutes after a warm-up. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ecr_tag_operator.drift_schedule import Entry, entry_of, pick
from ecr_tag_operator.settings import Settings

REPOSITORIES = 5
IMAGES_PER_REPO = 4
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def entries(n: int, interval: float, spread: float) -> list[Entry]:
    out: list[Entry] = []
    for i in range(n):
        synced = T0 + timedelta(seconds=spread * i / n)
        meta = {
            "namespace": f"team-{i % REPOSITORIES}",
            "name": f"eit-{i:05d}",
            "uid": f"uid-{i:05d}",
            "generation": 1,
            "creationTimestamp": "2026-05-31T00:00:00Z",
        }
        spec = {
            "repositoryName": f"bench/app-{i % REPOSITORIES}",
            "source": {"tag": f"build-{(i // REPOSITORIES) % IMAGES_PER_REPO}"},
            "tags": [f"rel-{i:05d}"],
            "driftCheckInterval": f"{interval:.0f}s",
        }
        status = {
            "observedGeneration": 1,
            "lastSyncTime": synced.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conditions": [{"type": "Ready", "status": "True", "reason": "InSync"}],
        }
        entry = entry_of(meta, spec, status, "us-east-1", "111122223333")
        if entry is not None:
            out.append(entry)
    return out


def simulate(
    n: int, *, interval: float, early: float, settings: Settings, spread: float, warm_up: float, minutes: float
) -> dict[str, float]:
    """Groups per check and checks per resource per interval, after ``warm_up`` seconds."""
    pool = entries(n, interval, spread)
    checked: dict[str, datetime] = {}
    now = T0 + timedelta(seconds=spread)
    counting_from = now + timedelta(seconds=warm_up)
    end = counting_from + timedelta(minutes=minutes)
    groups = checks = 0
    while now < end:
        picked = pick(
            pool,
            now,
            jitter=settings.drift_jitter,
            early=early,
            rescue_after=settings.rescue_after,
            urgent=lambda _: False,
            waiting=lambda _: False,
            max_members=settings.drift_group_size,
            checked=checked,
        )
        for group in picked:
            for p in group:
                checked[p.entry.uid] = now
        if now >= counting_from:
            groups += len(picked)
            checks += sum(len(g) for g in picked)
        now += timedelta(seconds=settings.drift_tick)
    return {
        "groups_per_check": groups / checks if checks else 0.0,
        "checks_per_resource_per_interval": checks / n / (minutes * 60 / interval),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_groups", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000,5000")
    parser.add_argument("--early", default="0.1,0.2,0.3,0.5", help="drift_early fractions to compare")
    parser.add_argument("--interval", type=float, default=30.0, help="driftCheckInterval, seconds")
    parser.add_argument("--quota", type=float, default=10.0, help="first syncs spread over N / quota seconds")
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes counted")
    args = parser.parse_args(argv)
    settings = Settings()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fractions = [float(e) for e in args.early.split(",") if e]
    lines = [
        f"tick {settings.drift_tick:g} s, group size {settings.drift_group_size}, jitter {settings.drift_jitter:g}, "
        f"interval {args.interval:g} s; cells: BatchGetImage per check (checks per resource per interval)",
        "",
        "| N | " + " | ".join(f"early {e:g}" for e in fractions) + " |",
        "|---|" + "---|" * len(fractions),
    ]
    for n in sizes:
        cells = []
        for early in fractions:
            got = simulate(
                n,
                interval=args.interval,
                early=early,
                settings=settings,
                spread=n / args.quota,
                warm_up=6 * args.interval,
                minutes=args.minutes,
            )
            cells.append(f"{got['groups_per_check']:.4f} ({got['checks_per_resource_per_interval']:.2f})")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
