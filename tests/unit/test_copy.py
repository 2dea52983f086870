"""Copying into the target what it lacks (issue: promotion across repositories, accounts and regions),
against the in-memory ECR: the plan (pure), then whole reconciles through the core.

ECR's rules modelled (service model ``ecr/2015-09-21``; ECR's service quotas): LayerPartBlob at most
20 MiB, every part but the last at least 5 MiB ("Minimum layer part size"), at most 4,200 parts;
CompleteLayerUpload refuses bytes that do not hash to the digest (InvalidLayerException); pre-signed
URLs expire (S3 answers 403 AccessDenied "Request has expired")."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ecr_tag_operator import core, metrics
from ecr_tag_operator.copy_plan import MAX_PART_BYTES, MAX_PARTS, MIN_PART_BYTES, cosign_tags, part_size, plan_copy
from ecr_tag_operator.core import Decision, Request
from ecr_tag_operator.manifests import OCI_INDEX, OCI_MANIFEST, digest_of
from ecr_tag_operator.model import Failure, LayerInfo, Observation, Registry, Upload
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

from .builders import image_manifest, index_manifest, sha, source, spec
from .fake_ecr import FakeEcr

LOG = logging.getLogger("test")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SETTINGS = Settings(region="us-east-1", transient_retry_delay=20)
MIB = 1024 * 1024
DEV, PROD = "dev/web", "prod/web"
EMPTY = b"{}"  # OCI's empty descriptor's bytes


def blob(n: int, size: int) -> bytes:
    return random.Random(n).randbytes(size)  # noqa: S311 - test data, not secrets


def manifest_of(ecr: FakeEcr, repo: str, *blobs: bytes, extra: dict[str, Any] | None = None) -> str:
    """An OCI manifest whose config and layers are these blobs, pushed into ``repo`` as blobs."""
    descs = [{"mediaType": "application/octet-stream", "digest": ecr.push_blob(repo, b), "size": len(b)} for b in blobs]
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descs[0], "layers": descs[1:]}
    return json.dumps(doc | (extra or {}))


def promote(ecr: FakeEcr, status: dict[str, Any] | None = None, **overrides: Any) -> tuple[Decision, dict[str, Any]]:
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]} | overrides
    status = status or {}
    decision = core.reconcile(Request(parse_spec(raw), status, 1, "create"), ecr, SETTINGS, NOW, LOG)
    return decision, {k: v for k, v in {**status, **decision.status}.items() if v is not None}


def ready(status: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in status["conditions"] if c["type"] == "Ready")
    return cond["status"], cond["reason"]


def two_blob_image(ecr: FakeEcr, size: int = 12 * MIB) -> str:
    text = manifest_of(ecr, DEV, b'{"architecture":"amd64"}', blob(1, size))
    ecr.push(DEV, text, "build-1")
    ecr.repo(PROD)
    return text


# The plan (pure)


def test_plan_lists_only_blobs_the_target_lacks_and_none_for_same_repository_or_copy_never() -> None:
    text = image_manifest(1, 2, 3)
    obs = Observation(source(text), layers={sha(2): LayerInfo(sha(2), "AVAILABLE", 102)})
    cross = spec(source={"tag": "b", "repositoryName": "team-a/build"})
    the_plan = plan_copy(cross, obs)
    assert the_plan is not None
    assert [b.digest for b in the_plan.blobs] == [sha(1), sha(3)]
    assert [b.digest for b in the_plan.skipped] == [sha(2)]
    assert the_plan.bytes_total == 10 + 102 + 103
    assert plan_copy(spec(), obs) is None  # same repository: nothing to copy
    assert plan_copy(spec(source={"tag": "b", "repositoryName": "team-a/build"}, copy="Never"), obs) is None
    assert plan_copy(spec(source={"tag": "b", "repositoryName": "team-a/build"}, mode="Observe"), obs) is None


def test_plan_puts_an_index_s_missing_children_verbatim_and_caps_blob_size() -> None:
    one, two = image_manifest(1, 2), image_manifest(3, 4)
    idx = index_manifest(one, two)
    src = source(idx, one, two)
    src = replace(src, child_texts=((digest_of(one), one, OCI_MANIFEST), (digest_of(two), two, OCI_MANIFEST)))
    obs = Observation(src, children_present={digest_of(one): True, digest_of(two): False})
    the_plan = plan_copy(spec(source={"tag": "b", "repositoryName": "team-a/build"}), obs, max_blob_bytes=103)
    assert the_plan is not None
    assert [(c.digest, c.manifest) for c in the_plan.children] == [(digest_of(two), two)]
    assert [b.digest for b in the_plan.too_large] == [sha(4)]  # 104 bytes > 103


def test_part_sizes_stay_within_ecr_limits() -> None:
    assert part_size(10 * MIB, 100 * MIB) == MIN_PART_BYTES  # the minimum by default: 4x a part in memory
    assert part_size(10 * MIB, 100 * MIB, wanted=16 * MIB) == 10 * MIB  # never over ECR's partSize answer
    assert part_size(0, None, wanted=8 * MIB) == 8 * MIB
    assert part_size(0, None) == MIN_PART_BYTES
    assert part_size(1024, None) == MIN_PART_BYTES  # never under the 5 MiB minimum
    assert part_size(64 * MIB, None, wanted=64 * MIB) == MAX_PART_BYTES  # never over LayerPartBlob's 20 MiB
    huge = MAX_PARTS * 5 * MIB + 1
    grown = part_size(5 * MIB, huge)
    assert -(-huge // grown) <= MAX_PARTS
    assert grown <= MAX_PART_BYTES


def test_cosign_tags_follow_the_sha256_dash_scheme() -> None:
    assert cosign_tags("sha256:" + "a" * 64) == tuple(f"sha256-{'a' * 64}.{s}" for s in ("sig", "att", "sbom"))


# Whole reconciles


def test_cross_repository_promotion_copies_missing_blobs_in_valid_parts_then_tags() -> None:
    ecr = FakeEcr()
    text = two_blob_image(ecr)
    decision, status = promote(ecr)
    assert ready(status) == ("True", "InSync")
    assert ecr.repo(PROD).tags["v1"] == digest_of(text)
    big = next(c for c in ecr.completed if len(c[2]) > 1)
    assert big[2] == [5 * MIB, 5 * MIB, 2 * MIB]  # partSize 5 MiB; only the last part is smaller
    assert "BlobsCopied" in [e.reason for e in decision.events]
    assert decision.tally.copied_blobs == 2
    assert decision.tally.copied_bytes == 12 * MIB + 24
    assert status["failures"] == []  # the blobs BatchCheckLayerAvailability missed were copied
    copy = status["copy"]
    assert copy["blobs"] == {"total": 2, "copied": 2, "skipped": 0}
    assert copy["bytes"]["copied"] == 12 * MIB + 24
    assert copy["finished"] is True
    assert copy["lastError"] is None


def test_a_second_reconcile_transfers_nothing_and_available_blobs_are_never_downloaded() -> None:
    ecr = FakeEcr()
    text = two_blob_image(ecr)
    config = json.loads(text)["config"]["digest"]
    ecr.repo(PROD).blobs.add(config)  # already AVAILABLE in the target
    _, status = promote(ecr)
    assert ready(status) == ("True", "InSync")
    assert [c[1] for c in ecr.completed] == [json.loads(text)["layers"][0]["digest"]]
    assert status["copy"]["blobs"] == {"total": 2, "copied": 1, "skipped": 1}
    downloads, got = ecr.calls.count("Download"), ecr.downloaded_bytes
    decision, status = promote(ecr, status)
    assert ecr.calls.count("Download") == downloads
    assert ecr.downloaded_bytes == got
    assert status["copy"]["bytes"]["copied"] == 0
    assert decision.tally.copied_bytes == 0


def test_a_digest_mismatch_is_never_completed() -> None:
    ecr = FakeEcr()
    text = two_blob_image(ecr)
    layer = json.loads(text)["layers"][0]["digest"]
    ecr.corrupt.add(layer)
    decision, status = promote(ecr)
    assert layer not in ecr.complete_asked  # checked before CompleteLayerUpload, not by ECR
    assert layer not in ecr.repo(PROD).blobs
    assert all(c[1] != layer for c in ecr.completed)
    assert ready(status) == ("False", "InvalidLayer")
    assert status["copy"]["lastError"]["code"] == "InvalidLayerException"
    assert "v1" not in ecr.repo(PROD).tags
    assert decision.requeue_after is None  # permanent: the source's bytes are wrong


def test_an_expired_url_is_asked_for_again() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr, size=6 * MIB)
    ecr.download_faults = ["expire"]
    _, status = promote(ecr)
    assert ready(status) == ("True", "InSync")
    assert ecr.calls.count("GetDownloadUrlForLayer") == 3  # two blobs, one asked for again


def test_a_cut_download_resumes_from_the_last_part_uploaded() -> None:
    ecr = FakeEcr()
    text = two_blob_image(ecr, size=12 * MIB)
    layer = json.loads(text)["layers"][0]["digest"]
    settings = SETTINGS.model_copy(update={"copy_parallel_blobs": 1})
    ecr.download_faults = [100, 7 * MIB]  # the config download is fine (100 > its 24 bytes); the layer's cut
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}
    decision = core.reconcile(Request(parse_spec(raw), {}, 1, "create"), ecr, settings, NOW, LOG)
    assert ready(decision.status) == ("True", "InSync")
    assert layer in ecr.repo(PROD).blob_bytes
    assert hashlib.sha256(ecr.repo(PROD).blob_bytes[layer]).hexdigest() == layer.split(":")[1]
    # 7 MiB before the cut, then from byte 5 MiB (the first part's end) to the end: 2 MiB read twice.
    assert ecr.downloaded_bytes == 24 + 7 * MIB + 7 * MIB


def test_downloads_cut_every_time_leave_the_resource_copying_and_retried() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr, size=6 * MIB)
    ecr.download_faults = [1 * MIB] * 20
    decision, status = promote(ecr)
    assert ready(status) == ("False", "Copying")
    assert decision.requeue_after == SETTINGS.transient_retry_delay
    assert status["copy"]["lastError"]["code"] == "ProtocolError"
    assert status["copy"]["inFlight"] is not None
    assert "v1" not in ecr.repo(PROD).tags
    ecr.download_faults = []
    _, status = promote(ecr, status)
    assert ready(status) == ("True", "InSync")


def test_copy_never_reports_layers_not_found_as_before() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr)
    _, status = promote(ecr, copy="Never")
    assert ready(status) == ("False", "LayersNotFound")
    assert "Download" not in ecr.calls
    assert "copy" not in status


def test_an_index_s_children_are_put_by_digest_verbatim_before_the_tags() -> None:
    ecr = FakeEcr()
    amd = manifest_of(ecr, DEV, b'{"architecture":"amd64"}', blob(2, 1000))
    arm = manifest_of(ecr, DEV, b'{"architecture":"arm64"}', blob(3, 1000))
    idx = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest_of(m), "size": len(m)} for m in (amd, arm)],
        }
    )
    ecr.push(DEV, amd)
    ecr.push(DEV, arm)
    ecr.push(DEV, idx, "build-1")
    ecr.repo(PROD)
    _, status = promote(ecr)
    assert ready(status) == ("True", "InSync")
    prod = ecr.repo(PROD)
    assert prod.manifests[digest_of(amd)] == amd
    assert prod.manifests[digest_of(arm)] == arm
    assert prod.tags["v1"] == digest_of(idx)
    assert status["copy"]["childrenPut"] == 2


def test_referrers_and_cosign_tags_are_carried_unless_turned_off() -> None:
    ecr = FakeEcr()
    text = two_blob_image(ecr, size=1000)
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(text), "size": len(text)}
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ecr.push_blob(DEV, EMPTY), "size": 2}
    sbom = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": empty,
            "layers": [{"mediaType": "application/spdx+json", "digest": ecr.push_blob(DEV, b"sbom"), "size": 4}],
            "subject": subject,
        }
    )
    ecr.push(DEV, sbom)
    sig = manifest_of(ecr, DEV, EMPTY, b"signature")
    sig_tag = cosign_tags(digest_of(text))[0]
    ecr.push(DEV, sig, sig_tag)

    _, status = promote(ecr, referrers="None")
    assert digest_of(sbom) not in ecr.repo(PROD).manifests
    assert sig_tag not in ecr.repo(PROD).tags
    assert status["copy"]["referrers"] == []

    _, status = promote(ecr, status)
    prod = ecr.repo(PROD)
    assert prod.manifests[digest_of(sbom)] == sbom
    assert prod.tags[sig_tag] == digest_of(sig)
    carried = {(r["digest"], r.get("artifactType")) for r in status["copy"]["referrers"]}
    assert (digest_of(sbom), "application/spdx+json") in carried
    assert status["copy"]["tagsPut"] == [sig_tag]
    assert ready(status) == ("True", "InSync")
    assert [t["tag"] for t in status["tags"]] == ["v1"]  # a cosign tag is carried, not owned


def test_referrers_of_another_artifact_type_are_left_behind() -> None:
    ecr = FakeEcr()
    text = two_blob_image(ecr, size=1000)
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(text), "size": len(text)}
    att = manifest_of(
        ecr, DEV, EMPTY, b"att", extra={"artifactType": "application/vnd.in-toto+json", "subject": subject}
    )
    ecr.push(DEV, att)
    _, status = promote(ecr, referrers=["application/spdx+json"])
    assert digest_of(att) not in ecr.repo(PROD).manifests
    assert ready(status) == ("True", "InSync")


def test_a_blob_over_the_size_cap_is_not_copied() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr, size=2000)
    settings = SETTINGS.model_copy(update={"copy_max_blob_bytes": 1000})
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}
    decision = core.reconcile(Request(parse_spec(raw), {}, 1, "create"), ecr, settings, NOW, LOG)
    assert ready(decision.status) == ("False", "BlobTooLarge")
    assert "Download" not in ecr.calls


def test_a_spent_time_budget_stops_new_blobs_and_comes_back_at_once() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr, size=1000)
    settings = SETTINGS.model_copy(update={"copy_budget_seconds": 1e-9, "copy_parallel_blobs": 1})
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}
    first = core.reconcile(Request(parse_spec(raw), {}, 1, "create"), ecr, settings, NOW, LOG)
    assert ready(first.status) == ("False", "Copying")
    assert first.requeue_after == 1.0
    assert first.status["copy"]["blobs"]["copied"] == 1  # the first blob always starts
    assert first.status["copy"]["inFlight"] is not None
    second = core.reconcile(Request(parse_spec(raw), first.status, 1, "create"), ecr, settings, NOW, LOG)
    assert ready(second.status) == ("True", "InSync")
    assert second.status["copy"]["blobs"] == {"total": 2, "copied": 1, "skipped": 1}


def test_memory_is_one_part_buffer_whatever_the_blob_size() -> None:
    """A 64 MiB blob through the copier allocates a few part buffers at most (5 MiB parts here)."""
    ecr = FakeEcr(retain_uploads=False)
    two_blob_image(ecr, size=64 * MIB)
    settings = SETTINGS.model_copy(update={"copy_parallel_blobs": 1})
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}
    tracemalloc.start()
    try:
        decision = core.reconcile(Request(parse_spec(raw), {}, 1, "create"), ecr, settings, NOW, LOG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ready(decision.status) == ("True", "InSync")
    assert decision.status["copy"]["parts"] == 13 + 1  # 64 MiB in 5 MiB parts, and the config
    assert peak < 3 * 5 * MIB, f"peak {peak / MIB:.1f} MiB for a 64 MiB blob"


def test_the_tally_of_a_copy_reaches_the_copy_metrics() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr, size=3000)
    decision, _ = promote(ecr)
    before_bytes = metrics.COPIED_BYTES._value.get()
    before_blobs = metrics.COPIED_BLOBS._value.get()
    metrics.record_tally(decision.tally)
    assert metrics.COPIED_BYTES._value.get() - before_bytes == 3000 + 24
    assert metrics.COPIED_BLOBS._value.get() - before_blobs == 2


def test_a_source_that_refuses_download_urls_is_a_permanent_access_denied() -> None:
    ecr = FakeEcr()
    two_blob_image(ecr, size=1000)
    ecr.fail_calls["GetDownloadUrlForLayer"] = Failure(
        "GetDownloadUrlForLayer", "AccessDeniedException", "not authorized to perform ecr:GetDownloadUrlForLayer"
    )
    decision, status = promote(ecr)
    assert ready(status) == ("False", "AccessDenied")
    assert decision.requeue_after is None
    assert status["copy"]["lastError"]["operation"] == "GetDownloadUrlForLayer"
    assert "InitiateLayerUpload" not in ecr.calls
    assert "v1" not in ecr.repo(PROD).tags


class _CountingStreams(FakeEcr):
    """Counts blobs between GetDownloadUrlForLayer and CompleteLayerUpload; each one that starts waits
    (up to a deadline) for a second to be streaming too, so that unbounded streams would overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.most = 0
        self._cond = threading.Condition()

    def download_url(self, where: Registry, repository: str, digest: str) -> str:
        with self._cond:
            self.active += 1
            self.most = max(self.most, self.active)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.active >= 2, timeout=0.5)
        return super().download_url(where, repository, digest)

    def initiate_upload(self, where: Registry, repository: str) -> Upload:
        with self._cond:  # the fake numbers uploads by count: one at a time
            return super().initiate_upload(where, repository)

    def complete_upload(self, where: Registry, repository: str, upload_id: str, digest: str) -> str:
        try:
            return super().complete_upload(where, repository, upload_id, digest)
        finally:
            with self._cond:
                self.active -= 1


def test_blobs_streaming_at_once_are_bounded_in_the_whole_process() -> None:
    """copy_blobs_in_flight bounds the part buffers held, whatever copy_parallel_blobs allows."""
    ecr = _CountingStreams()
    text = manifest_of(ecr, DEV, *(blob(n, 1024 + n) for n in range(8)))
    ecr.push(DEV, text, "build-1")
    ecr.repo(PROD)
    settings = SETTINGS.model_copy(update={"copy_parallel_blobs": 8, "copy_blobs_in_flight": 2})
    raw = {"repositoryName": PROD, "source": {"tag": "build-1", "repositoryName": DEV}, "tags": ["v1"]}
    decision = core.reconcile(Request(parse_spec(raw), {}, 1, "create"), ecr, settings, NOW, LOG)
    assert ready(decision.status) == ("True", "InSync")
    assert decision.status["copy"]["blobs"]["copied"] == 8
    assert ecr.most == 2
