"""The drift timer's pure decisions: when a drift check is due, when a lost creation is taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecr_tag_operator.handlers import drift_due, lost_creation
from ecr_tag_operator.spec import parse_spec

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SPEC = parse_spec({"repositoryName": "team/app", "source": {"tag": "b"}, "tags": ["t"], "driftCheckInterval": "60s"})


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_drift_due_after_the_interval_stretched_by_the_resources_own_jitter() -> None:
    assert not drift_due({"lastSyncTime": ago(59)}, SPEC, NOW, "uid-1", jitter=0.0)
    assert drift_due({"lastSyncTime": ago(60)}, SPEC, NOW, "uid-1", jitter=0.0)
    assert not drift_due({}, SPEC, NOW, "uid-1", jitter=0.0)
    # With jitter each resource waits its own fixed extra fraction, at most the jitter.
    waits = [
        next(s for s in range(60, 80) if drift_due({"lastSyncTime": ago(s)}, SPEC, NOW, f"u{n}", 0.1))
        for n in range(50)
    ]
    assert min(waits) >= 60
    assert max(waits) <= 66
    assert len(set(waits)) > 3


def test_lost_creation_only_when_never_reconciled_and_old() -> None:
    assert lost_creation({"creationTimestamp": ago(1000)}, {}, NOW, after=900)
    assert not lost_creation({"creationTimestamp": ago(800)}, {}, NOW, after=900)
    assert not lost_creation({"creationTimestamp": ago(1000)}, {"observedGeneration": 1}, NOW, after=900)
    assert not lost_creation({}, {}, NOW, after=900)
