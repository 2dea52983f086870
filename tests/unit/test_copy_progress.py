"""A copy's progress while it runs: the throttle, the partial status patch it is rendered as, the core's
reports through the progress port, and the adapter that patches status from a reconcile's thread.

ECR behaviour relied on (service model ``ecr/2015-09-21``): UploadLayerPart's ``partFirstByte`` /
``partLastByte`` say which bytes of the upload a part holds, and an upload is a blob's bytes in order
from byte 0 (InitiateLayerUpload starts one; a part at byte 0 is the first of an upload)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest

from ecr_tag_operator import core, handlers, views
from ecr_tag_operator.apisession import KubeObjects, StatusProgress
from ecr_tag_operator.copy_progress import Tally
from ecr_tag_operator.core import Request
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.model import Condition, CopyReport
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.runtime import Runtime, runtime_of
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec
from ecr_tag_operator.status import copy_progress

from .fake_ecr import FakeEcr
from .test_copy import DEV, LOG, MIB, NOW, PROD, two_blob_image
from .test_handlers import body

BASE = CopyReport(blobs_total=3, blobs_skipped=1, bytes_total=100, bytes_skipped=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tally(interval: float = 5.0) -> tuple[Tally, list[CopyReport], Clock]:
    reports: list[CopyReport] = []
    clock = Clock()
    return Tally(BASE, reports.append, interval, clock), reports, clock


# The throttle


def test_reports_come_at_most_once_per_interval_and_none_for_a_copy_quicker_than_one() -> None:
    t, reports, clock = tally(interval=5)
    t.part("sha256:a", 0, 20)
    clock.now += 4.9
    t.part("sha256:a", 20, 40)
    assert reports == []  # under one interval since the copy began
    clock.now += 0.1
    t.part("sha256:a", 40, 60)
    clock.now += 4
    t.part("sha256:a", 60, 70)
    assert [r.bytes_copied for r in reports] == [60]
    clock.now += 1
    t.completed("sha256:a", 70, 4)
    assert [r.bytes_copied for r in reports] == [60, 70]
    last = reports[-1]
    assert (last.blobs_copied, last.parts, last.in_flight, last.finished) == (1, 4, None, False)
    assert (last.blobs_total, last.blobs_skipped, last.bytes_total, last.bytes_skipped) == (3, 1, 100, 10)


def test_bytes_in_flight_count_and_a_blob_started_anew_counts_from_its_first_part_again() -> None:
    t, _, _ = tally()
    t.part("sha256:a", 0, 20)
    t.part("sha256:a", 20, 40)
    t.part("sha256:b", 0, 25)
    snap = t.snapshot()
    assert (snap.bytes_copied, snap.parts, snap.in_flight) == (65, 3, "sha256:a")
    t.part("sha256:a", 0, 20)  # a failed part: the blob's upload starts again at byte 0
    assert (t.snapshot().bytes_copied, t.snapshot().parts) == (45, 2)
    t.abandoned("sha256:b")  # never completed: ECR drops the upload
    assert (t.snapshot().bytes_copied, t.snapshot().in_flight) == (20, "sha256:a")


def test_a_report_being_written_is_never_overtaken_nor_holds_other_blobs_up() -> None:
    """While one blob's thread writes a report, another blob's parts go on and report nothing."""
    writing, release = threading.Event(), threading.Event()
    reports: list[CopyReport] = []
    clock = Clock()

    def slow(report: CopyReport) -> None:
        reports.append(report)
        writing.set()
        assert release.wait(10), "the test never released the report"

    t = Tally(BASE, slow, 1, clock)
    clock.now += 2
    writer = threading.Thread(target=t.part, args=("sha256:a", 0, 10))
    writer.start()
    assert writing.wait(10)
    clock.now += 2
    t.part("sha256:b", 0, 30)  # returns at once: the report in progress is not waited for
    t.part("sha256:b", 30, 50)
    release.set()
    writer.join(10)
    assert [r.bytes_copied for r in reports] == [10]
    clock.now += 1
    t.part("sha256:b", 50, 60)
    assert [r.bytes_copied for r in reports] == [10, 70]


# The patch


def test_the_progress_patch_is_status_copy_and_the_conditions_only_with_stable_transition_times() -> None:
    earlier = "2026-05-01T00:00:00Z"
    previous = [
        {"type": "Ready", "status": "False", "reason": "Copying", "message": "m", "lastTransitionTime": earlier},
        {"type": "TagsInSync", "status": "True", "reason": "InSync", "message": "t", "lastTransitionTime": earlier},
    ]
    report = CopyReport(
        blobs_total=2,
        bytes_total=50 * MIB,
        bytes_copied=20 * MIB,
        parts=4,
        in_flight="sha256:" + "a" * 64,
        finished=False,
    )
    conditions = (
        Condition("Ready", "False", "Copying", "copying: 0 of 2 blobs"),
        Condition("LayersAvailable", "False", "Copying", "copying: 0 of 2 blobs"),
    )
    patch = copy_progress(report, conditions, previous, NOW, 3, message_limit=300)
    assert set(patch) == {"copy", "conditions"}
    assert patch["copy"]["bytes"] == {"total": 50 * MIB, "copied": 20 * MIB, "skipped": 0}
    assert patch["copy"]["finished"] is False
    assert patch["copy"]["inFlight"] == "sha256:" + "a" * 64
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert set(by_type) == {"Ready", "LayersAvailable", "TagsInSync"}  # the list whole: a merge patch replaces it
    assert by_type["Ready"]["lastTransitionTime"] == earlier  # still False: not a transition
    assert by_type["LayersAvailable"]["lastTransitionTime"] == "2026-06-01T00:00:00Z"
    assert by_type["Ready"]["observedGeneration"] == by_type["LayersAvailable"]["observedGeneration"] == 3
    assert by_type["TagsInSync"] == previous[1]


# The core, through the progress port


@dataclass
class Port:
    """A CopyProgress that records what the core sends; ``accept`` False: as if every patch were refused."""

    accept: bool = True
    patches: list[Mapping[str, Any]] = field(default_factory=list)
    moves: list[tuple[int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, patch: Mapping[str, Any]) -> bool:
        with self.lock:
            self.patches.append(patch)
        return self.accept

    def moved(self, blobs: int, size: int) -> None:
        with self.lock:
            self.moves.append((blobs, size))


def promote_with(port: Port, status: dict[str, Any]) -> core.Decision:
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}
    settings = Settings(region="us-east-1", copy_progress_interval=1e-6, copy_parallel_blobs=1)
    request = Request(parse_spec(raw), status, 2, "update", progress=port)
    ecr = FakeEcr()
    two_blob_image(ecr, size=12 * MIB)  # 5 + 5 + 2 MiB parts, and a 24-byte config
    return core.reconcile(request, ecr, settings, NOW, LOG)


IN_SYNC_BEFORE = {
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "InSync", "message": "old", "lastTransitionTime": "x"},
    ]
}


def test_a_copy_reports_growing_bytes_as_ready_false_copying_and_the_metrics_are_not_counted_twice() -> None:
    port = Port()
    decision = promote_with(port, IN_SYNC_BEFORE)
    total = 12 * MIB + 24
    copied = [p["copy"]["bytes"]["copied"] for p in port.patches]
    assert copied == sorted(copied), copied  # a blob's completion may report its last part's bytes again
    assert copied[0] > 0
    assert copied[-1] == total
    # One blob at a time: the config (24 bytes) and the 12 MiB blob's parts, in either order.
    assert {5 * MIB, 10 * MIB} <= set(copied) or {5 * MIB + 24, 10 * MIB + 24} <= set(copied), copied
    for patch in port.patches:
        assert set(patch) == {"copy", "conditions"}
        assert patch["copy"]["finished"] is False
        ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "Copying", 2)
        # The transition happened once, at the first report; later reports keep its time.
        assert ready["lastTransitionTime"] == "2026-06-01T00:00:00Z"
    final = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert final["status"] == "True"
    # What the metrics were given while copying, plus the reconcile's tally, is the copy once.
    assert sum(b for b, _ in port.moves) + decision.tally.copied_blobs == 2
    assert sum(s for _, s in port.moves) + decision.tally.copied_bytes == total
    assert all(b >= 0 and s >= 0 for b, s in port.moves)


def test_patches_that_were_not_written_leave_the_final_status_to_the_status_read() -> None:
    port = Port(accept=False)
    decision = promote_with(port, IN_SYNC_BEFORE)
    assert port.patches, "no progress was reported"
    # Nothing was written, so the status read is the previous one each time: Ready was True there.
    assert all(
        next(c for c in p["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == "2026-06-01T00:00:00Z"
        for p in port.patches
    )
    assert next(c for c in decision.status["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == "x"


# The adapter: patches from a reconcile's thread, on the event loop


class Store(KubeObjects):
    """KubeObjects' patch answered here: the resourceVersion grows by one per patch; None once told to."""

    def __init__(self) -> None:  # no session: nothing here reaches an API server
        self.calls: list[tuple[str, str, dict[str, Any], str, bool]] = []
        self.version = 7
        self.refuse = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def patch_status_version(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> str | None:
        on_loop = asyncio.get_running_loop() is self.loop
        self.calls.append((namespace, name, dict(status), resource_version, on_loop))
        if self.refuse or resource_version != str(self.version):
            return None
        self.version += 1
        return str(self.version)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(10)
    running.close()


def test_the_adapter_patches_on_the_loop_chains_resource_versions_and_stops_after_a_conflict(
    loop: asyncio.AbstractEventLoop,
) -> None:
    store = Store()
    store.loop = loop
    moved: list[tuple[int, int]] = []
    meta = {"namespace": "team-a", "name": "web", "resourceVersion": "7"}
    progress = StatusProgress(store, loop, meta, timeout=10, moved=lambda b, s: moved.append((b, s)))
    assert progress.status({"copy": {"parts": 1}})
    assert progress.status({"copy": {"parts": 2}, "conditions": []})
    assert [(c[3], c[4]) for c in store.calls] == [("7", True), ("8", True)]
    assert progress.resource_version == "9"
    assert progress.written == {"copy": {"parts": 2}, "conditions": []}
    store.refuse = True
    assert not progress.status({"copy": {"parts": 3}})
    assert not progress.status({"copy": {"parts": 4}})  # stopped: not even sent
    assert len(store.calls) == 3
    assert progress.written == {"copy": {"parts": 2}, "conditions": []}
    progress.moved(1, 10)
    assert moved == [(1, 10)]


def test_the_adapter_never_waits_for_the_loop_from_the_loop_itself(loop: asyncio.AbstractEventLoop) -> None:
    store = Store()
    progress = StatusProgress(store, loop, {"namespace": "n", "name": "x", "resourceVersion": "7"}, 10, lambda *_: None)

    async def on_loop() -> bool:
        return progress.status({"copy": {}})

    assert asyncio.run_coroutine_threadsafe(on_loop(), loop).result(10) is False
    assert store.calls == []


def test_the_interval_is_five_seconds_unless_set_and_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().copy_progress_interval == 5.0
    monkeypatch.setenv("ECR_TAG_OPERATOR_COPY_PROGRESS_INTERVAL", "0.5")
    assert Settings().copy_progress_interval == 0.5
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(copy_progress_interval=0)


# The kopf adapters, wired to the progress store made at start-up


EVERYTHING = {"namespaces": ["team-a"], "registries": [{"write": [{"repositories": ["**"]}]}]}
COPYING_SPEC = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}


def wired(loop: asyncio.AbstractEventLoop) -> tuple[kopf.Memo, Store, dict[str, Any]]:
    ecr = FakeEcr()
    two_blob_image(ecr, size=12 * MIB)
    settings = Settings(region="us-east-1", copy_progress_interval=1e-6, copy_parallel_blobs=1)
    store = Store()
    store.loop, store.version = loop, 5
    memo = kopf.Memo(runtime=Runtime(settings, ecr, clock=lambda: NOW), loop=loop, progress_store=store)
    indexes: dict[str, Any] = {
        "policies": {"all": [PolicyEntry(parse_policy("all", EVERYTHING), 1, "1")]},
        "namespace_labels": {"team-a": [{}]},
    }
    return memo, store, indexes


def test_a_spec_change_s_copy_patches_progress_on_the_loop_from_kopf_s_handler_thread(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_, **__: None)  # kopf posts events only inside its handlers
    memo, store, indexes = wired(loop)
    obj = body(COPYING_SPEC)  # resourceVersion 5
    patch = kopf.Patch()
    handlers.reconcile_spec(
        spec=obj.spec, status=obj.status, meta=obj.meta, body=obj, patch=patch, memo=memo, logger=LOG,
        reason="create", **indexes,
    )  # fmt: skip
    assert len(store.calls) >= 3
    assert [c[3] for c in store.calls] == [str(v) for v in range(5, 5 + len(store.calls))]  # chained
    assert all(c[4] for c in store.calls), "a progress patch was not sent on the event loop"
    assert all(set(c[2]) == {"copy", "conditions"} for c in store.calls)
    assert patch.status["copy"]["finished"] is True  # kopf's own patch at the end says it is done


def test_a_drift_check_s_final_patch_follows_its_progress_patches(loop: asyncio.AbstractEventLoop) -> None:
    memo, store, indexes = wired(loop)
    runtime = runtime_of(memo)
    raw = dict(body(COPYING_SPEC, {"observedGeneration": 1}))
    decision = handlers._drift_check(
        raw,
        "drift",
        runtime=runtime,
        settings=kopf.OperatorSettings(),
        tag_claims={},
        view=lambda: views.Grants(runtime, indexes["policies"], indexes["namespace_labels"]),
        progress=functools.partial(handlers._progress, memo, runtime=runtime),
    )
    assert decision is not None
    assert store.calls
    # The scheduler patches with the resourceVersion the last progress patch left, and compares the
    # decision with the status as those patches left it.
    assert raw["metadata"]["resourceVersion"] == str(store.version)
    assert raw["status"]["copy"] == store.calls[-1][2]["copy"]
    assert raw["status"]["observedGeneration"] == 1


def test_a_report_that_fails_never_fails_the_part_that_triggered_it() -> None:
    def broken(report: CopyReport) -> None:
        raise RuntimeError("the API server went away")

    clock = Clock()
    t = Tally(BASE, broken, 1, clock)
    clock.now += 2
    t.part("sha256:a", 0, 10)  # does not raise
    clock.now += 2
    t.completed("sha256:a", 10, 1)
    assert t.snapshot().blobs_copied == 1
