"""Prometheus metrics. Names follow Prometheus conventions; every label value is bounded."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from .core import Tally

RECONCILES = Counter(
    "ecr_tag_operator_reconciles_total",
    "Reconciles of EcrImageTag resources, by trigger and result.",
    ["trigger", "result"],
)
ECR_CALLS = Counter(
    "ecr_tag_operator_ecr_calls_total",
    "ECR API calls, by operation and error code ('' when the call succeeded).",
    ["operation", "code"],
)
ECR_LATENCY = Histogram(
    "ecr_tag_operator_ecr_call_duration_seconds",
    "Latency of ECR API calls, botocore's retries included.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TAGS = Gauge(
    "ecr_tag_operator_tags",
    "Tags managed by the operator, by state (in_sync, drifted, failed), as of each resource's last reconcile.",
    ["state"],
)
DRIFT_CORRECTIONS = Counter(
    "ecr_tag_operator_drift_corrections_total",
    "Tags that had moved away from their image and were put back.",
)
TAG_WRITES = Counter(
    "ecr_tag_operator_tag_writes_total",
    "ECR writes of tags, by operation (PutImage, BatchDeleteImage) and outcome.",
    ["operation", "outcome"],
)
COPIED_BYTES = Counter(
    "ecr_tag_operator_copied_bytes_total",
    "Bytes of blobs copied into target repositories (GetDownloadUrlForLayer to UploadLayerPart).",
)
ECR_CLIENTS = Gauge("ecr_tag_operator_ecr_clients", "AWS clients kept (one per region, role and role session).")
DEFERRED = Gauge(
    "ecr_tag_operator_deferred_changes",
    "Spec changes the drift scheduler took over for want of a namespace slot, not yet stored as done.",
)
COPIED_BLOBS = Counter(
    "ecr_tag_operator_copied_blobs_total",
    "Blobs copied into target repositories (CompleteLayerUpload).",
)

for _state in ("in_sync", "drifted", "failed"):
    TAGS.labels(_state)


def serve(port: int, host: str) -> None:
    """Expose /metrics on a thread of its own (prometheus-client's server)."""
    start_http_server(port, addr=host)


def record_tally(tally: Tally) -> None:
    """What one reconcile wrote."""
    for operation, outcome in tally.tag_writes:
        TAG_WRITES.labels(operation, outcome).inc()
    if tally.drift_corrections:
        DRIFT_CORRECTIONS.inc(tally.drift_corrections)
    record_copy(tally.copied_blobs, tally.copied_bytes)


def record_copy(blobs: int, size: int) -> None:
    """Blobs and bytes copied: at the end of a reconcile, and while a long copy runs."""
    if blobs:
        COPIED_BLOBS.inc(blobs)
    if size:
        COPIED_BYTES.inc(size)


_tag_states: dict[str, dict[str, int]] = {}
_tag_lock = threading.Lock()


def observe_tags(uid: str, states: Iterable[Any]) -> None:
    """Record one resource's tag states (objects with in_sync and reason) and refresh the gauge."""
    counts = {"in_sync": 0, "drifted": 0, "failed": 0}
    for state in states:
        if state.in_sync:
            counts["in_sync"] += 1
        elif state.reason in ("Drifted", "NotInSync", "SourceNotResolved"):
            counts["drifted"] += 1
        else:
            counts["failed"] += 1
    with _tag_lock:
        _tag_states[uid] = counts
        _refresh()


def forget_tags(uid: str) -> None:
    with _tag_lock:
        _tag_states.pop(uid, None)
        _refresh()


def keep_only(uids: set[str]) -> None:
    """Forget the tag states of resources that are gone."""
    with _tag_lock:
        for uid in [u for u in _tag_states if u not in uids]:
            del _tag_states[uid]
        _refresh()


def _refresh() -> None:
    for state in ("in_sync", "drifted", "failed"):
        TAGS.labels(state).set(sum(c[state] for c in _tag_states.values()))
