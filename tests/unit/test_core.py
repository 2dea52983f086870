"""The core as data: a request and an in-memory ECR in, a decision out. The status tells the truth on
every path: README's invariants are checked as properties over many generated situations."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ecr_tag_operator import core
from ecr_tag_operator.batching import SharedReads
from ecr_tag_operator.core import Decision, Request
from ecr_tag_operator.model import Failure, Permission
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

from .builders import image_manifest, index_manifest
from .fake_ecr import FakeEcr

LOG = logging.getLogger("test")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SETTINGS = Settings(region="us-east-1", transient_retry_delay=20)
REPO = "team-a/web"


def raw(**overrides: Any) -> dict[str, Any]:
    return {"repositoryName": REPO, "source": {"tag": "build-1"}, "tags": ["staging", "prod"]} | overrides


def run(ecr: Any, status: dict[str, Any], trigger: str = "create", **overrides: Any) -> tuple[Decision, dict[str, Any]]:
    decision = core.reconcile(Request(parse_spec(raw(**overrides)), status, 1, trigger), ecr, SETTINGS, NOW, LOG)
    merged = {k: v for k, v in {**status, **decision.status}.items() if v is not None}
    return decision, merged


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_deleted_source_image_is_not_put_back_from_the_cache() -> None:
    """Issue: manifests read by digest were cached forever, so a drift check re-created a tag with an
    image someone had deleted from ECR for security reasons."""
    ecr = FakeEcr()
    digest = ecr.push(REPO, image_manifest(1, 2, 3), "build-1")
    shared = SharedReads(ecr)
    _, status = run(shared, {}, source={"digest": digest})
    assert conditions(status)["Ready"] == ("True", "InSync")
    ecr.delete_image(REPO, digest)
    puts_before = ecr.calls.count("PutImage")
    _, status = run(shared, status, trigger="drift", source={"digest": digest})
    assert conditions(status)["Ready"] == ("False", "ImageNotFound")
    assert ecr.calls.count("PutImage") == puts_before
    assert digest not in ecr.repo(REPO).tags.values()
    assert "image" not in status  # the image it no longer finds is not shown as the source


def test_a_failed_delete_call_keeps_what_was_put() -> None:
    """Issue: PutImage succeeded, then BatchDeleteImage failed as a call, and the puts were dropped."""
    ecr = FakeEcr()
    one = ecr.push(REPO, image_manifest(1, 2), "build-1")
    ecr.push(REPO, image_manifest(4, 5), "build-2")
    _, status = run(ecr, {}, tags=["staging", "old"], deletionPolicy="Delete")
    ecr.fail_calls["BatchDeleteImage"] = Failure("BatchDeleteImage", "AccessDeniedException", "not allowed")
    decision, status = run(ecr, status, source={"tag": "build-2"}, tags=["staging"], deletionPolicy="Delete")
    tags = {t["tag"]: t for t in status["tags"]}
    assert tags["staging"]["inSync"] is True
    assert tags["staging"]["digest"] != one
    assert [e.reason for e in decision.events] == ["TagMoved"]
    assert [(f["operation"], f["code"], f.get("tag")) for f in status["failures"]] == [
        ("BatchDeleteImage", "AccessDeniedException", "old")
    ]


def test_a_refusal_after_sync_leaves_no_condition_true_and_no_stale_failure() -> None:
    ecr = FakeEcr()
    ecr.push(REPO, image_manifest(1, 2), "build-1")
    ecr.refuse_puts["prod"] = Failure("PutImage", "ImageTagAlreadyExistsException", "immutable", tag="prod")
    _, status = run(ecr, {})
    assert status["failures"]
    calls_before = len(ecr.calls)
    request = Request(parse_spec(raw()), status, 2, "update", Permission(refused="namespace x may not"))
    decision = core.reconcile(request, ecr, SETTINGS, NOW, LOG)
    merged = {k: v for k, v in {**status, **decision.status}.items() if v is not None}
    assert {c["type"]: c["status"] for c in merged["conditions"]} == {
        "Ready": "False",
        "SourceResolved": "Unknown",
        "LayersAvailable": "Unknown",
        "TagsInSync": "Unknown",
    }
    assert {c["reason"] for c in merged["conditions"]} == {"Forbidden"}
    assert merged["failures"] == []
    assert not [t for t in merged["tags"] if t["inSync"]]
    assert "lastSyncTime" not in merged
    assert "image" not in merged
    assert decision.result == "forbidden"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "Forbidden")]
    assert len(ecr.calls) == calls_before  # the refusal made no ECR call at all


def test_a_claim_past_a_cap_is_refused_before_any_ecr_call_and_says_why() -> None:
    ecr = FakeEcr()
    ecr.push(REPO, image_manifest(1, 2), "build-1")
    _, status = run(ecr, {})
    calls_before = len(ecr.calls)
    why = "team-a/web:prod is claimed by 50 older EcrImageTags, the cap per tag: remove the tag from this one"
    request = Request(parse_spec(raw()), status, 2, "update", crowded=why)
    decision = core.reconcile(request, ecr, SETTINGS, NOW, LOG)
    merged = {k: v for k, v in {**status, **decision.status}.items() if v is not None}
    ready = next(c for c in merged["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "TooManyClaims", why)
    assert {c["reason"] for c in merged["conditions"]} == {"TooManyClaims"}
    assert [(t["tag"], t["inSync"], t["reason"]) for t in merged["tags"]] == [
        ("staging", False, "TooManyClaims"),
        ("prod", False, "TooManyClaims"),
    ]
    assert "lastSyncTime" not in merged  # nothing is vouched for: the drift scheduler leaves it to urgency
    assert decision.result == "forbidden"
    assert not decision.transient  # not retried by itself: it waits for an older claim to go
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "TooManyClaims")]
    assert len(ecr.calls) == calls_before
    # A namespace that is not granted is told that first: the grant decides before the caps.
    forbidden = Request(parse_spec(raw()), status, 2, "update", Permission(refused="no grant"), crowded=why)
    assert core.reconcile(forbidden, ecr, SETTINGS, NOW, LOG).status["conditions"][0]["reason"] == "Forbidden"


def test_the_warning_is_posted_once_when_a_resource_enters_a_failure() -> None:
    ecr = FakeEcr()
    ecr.push(REPO, image_manifest(1, 2), "other")
    first, status = run(ecr, {})
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "ImageNotFound")]
    again, _ = run(ecr, status, trigger="drift")
    assert again.events == ()


def test_drift_put_back_is_a_drift_correction_and_a_promotion_is_a_move() -> None:
    ecr = FakeEcr()
    one = ecr.push(REPO, image_manifest(1, 2), "build-1")
    two = ecr.push(REPO, image_manifest(3, 4), "build-2")
    _, status = run(ecr, {}, tags=["prod"])
    ecr.repo(REPO).tags["prod"] = two  # moved by hand
    corrected, status = run(ecr, status, trigger="drift", tags=["prod"])
    assert [(e.reason, e.message) for e in corrected.events] == [("DriftCorrected", f"{REPO}:prod {two} -> {one}")]
    assert corrected.tally.drift_corrections == 1
    promoted, _ = run(ecr, status, source={"tag": "build-2"}, tags=["prod"])
    assert [e.reason for e in promoted.events] == ["TagMoved"]
    assert promoted.tally.drift_corrections == 0
    assert promoted.tally.tag_writes == (("PutImage", "put"),)


def test_an_upstream_that_is_down_is_retried_soon_and_is_not_a_sync() -> None:
    ecr = FakeEcr()
    ecr.push(REPO, image_manifest(1, 2), "build-1")
    _, status = run(ecr, {})
    synced_at = status["lastSyncTime"]

    class Upstream(FakeEcr):
        def batch_get_image(self, *args: Any, **kwargs: Any) -> Any:
            got = super().batch_get_image(*args, **kwargs)
            failures = tuple(
                Failure("BatchGetImage", "UpstreamUnavailable", "upstream is down", image_id=f.image_id)
                for f in got.failures
            )
            return type(got)(got.images, failures)

    down = Upstream(repos=ecr.repos)
    down.repo(REPO).tags.pop("build-1")
    decision, status = run(down, status, trigger="drift")
    assert conditions(status)["Ready"] == ("False", "UpstreamUnavailable")
    assert decision.requeue_after == SETTINGS.transient_retry_delay
    assert decision.result == "transient"
    assert status["lastSyncTime"] == synced_at


def test_an_invalid_spec_is_refused_with_every_condition_and_the_listed_tags() -> None:
    previous = {"tags": [{"tag": "prod", "inSync": True, "digest": "sha256:" + "a" * 64}]}
    decision = core.parse({"repositoryName": "X", "tags": []}, previous, 3, NOW, SETTINGS)
    assert isinstance(decision, Decision)
    assert decision.result == "invalid"
    assert {c["type"]: c["status"] for c in decision.status["conditions"]}["Ready"] == "False"
    assert decision.status["tags"] == [{"tag": "prod", "inSync": False, "reason": "InvalidSpec"}]
    assert "spec.repositoryName" in decision.status["conditions"][0]["message"]


def test_a_resume_of_a_synced_generation_is_left_to_the_drift_scheduler() -> None:
    assert core.skip_on_resume({"lastSyncTime": "t", "observedGeneration": 2}, 2)
    assert not core.skip_on_resume({"lastSyncTime": "t", "observedGeneration": 1}, 2)
    assert not core.skip_on_resume({"observedGeneration": 2}, 2)


def test_drift_checks_wait_longer_for_company_than_spec_changes() -> None:
    spec = parse_spec(raw(driftCheckInterval="2m"))
    assert core.read_policy("drift", spec, SETTINGS).patience == SETTINGS.drift_read_patience
    assert core.read_policy("update", spec, SETTINGS).patience == SETTINGS.change_read_patience
    assert core.read_policy("update", spec, SETTINGS).layer_max_age == 120


# -- properties: whatever ECR holds and refuses, the status does not contradict itself ------------------

TAGS = ["staging", "prod", "qa"]


@st.composite
def situations(draw: st.DrawFn) -> tuple[FakeEcr, dict[str, Any], Permission, dict[str, str]]:
    ecr = FakeEcr()
    index = draw(st.booleans())
    child_a, child_b = image_manifest(1, 2), image_manifest(3, 4)
    manifest = index_manifest(child_a, child_b) if index else image_manifest(5, 6)
    if draw(st.booleans()):  # the source exists
        ecr.push(REPO, manifest, "build-1")
        if index:
            ecr.push(REPO, child_a)
            ecr.push(REPO, child_b)
    else:
        ecr.repo(REPO)
    repo = ecr.repo(REPO)
    for blob in draw(st.lists(st.sampled_from(sorted(repo.blobs) or ["none"]), max_size=2)):
        repo.blobs.discard(blob)  # a blob missing from the target
    other = ecr.push(REPO, image_manifest(7, 8), "build-2")
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=3, unique=True))
    for tag in tags:
        if draw(st.booleans()):
            repo.tags[tag] = other  # drifted
        if draw(st.integers(0, 4)) == 0:
            ecr.refuse_puts[tag] = Failure("PutImage", "ImageTagAlreadyExistsException", "immutable", tag=tag)
    for operation in draw(
        st.lists(st.sampled_from(["BatchGetImage", "PutImage", "BatchCheckLayerAvailability"]), max_size=1)
    ):
        code = draw(st.sampled_from(["ThrottlingException", "AccessDeniedException", "RepositoryNotFoundException"]))
        ecr.fail_calls[operation] = Failure(operation, code, "refused")
    permission = Permission(refused="namespace may not") if draw(st.integers(0, 5)) == 0 else Permission()
    contested = {t: "another namespace" for t in tags if draw(st.integers(0, 5)) == 0}
    spec = raw(tags=tags, mode=draw(st.sampled_from(["Enforce", "Observe"])))
    return ecr, spec, permission, contested


@settings(max_examples=300, deadline=None)
@given(situations())
def test_ready_sums_up_the_other_conditions_and_the_tags_on_every_path(
    situation: tuple[FakeEcr, dict[str, Any], Permission, dict[str, str]],
) -> None:
    ecr, spec_raw, permission, contested = situation
    request = Request(parse_spec(spec_raw), {}, 1, "create", permission, contested)
    decision = core.reconcile(request, ecr, SETTINGS, NOW, LOG)
    status = decision.status
    conds = {c["type"]: c for c in status["conditions"]}
    assert set(conds) == {"Ready", "SourceResolved", "LayersAvailable", "TagsInSync"}
    assert all(c["observedGeneration"] == 1 for c in conds.values())
    ready_true = conds["Ready"]["status"] == "True"
    others_true = all(conds[t]["status"] == "True" for t in ("SourceResolved", "LayersAvailable", "TagsInSync"))
    assert ready_true == others_true
    tags = status["tags"]
    assert [t["tag"] for t in tags] == list(request.spec.tags)
    if ready_true:
        assert all(t["inSync"] for t in tags)
        assert status["failures"] == []
        assert decision.requeue_after is None
        assert all(t["digest"] == status["image"]["digest"] for t in tags)
    else:
        assert conds["Ready"]["reason"] != "InSync"
        assert not all(t["inSync"] for t in tags) or conds["TagsInSync"]["status"] != "True"
    for tag in tags:
        assert tag["inSync"] == ("reason" not in tag)
        if tag["inSync"]:
            assert tag["digest"] == status["image"]["digest"]
    if permission.refused:
        assert ecr.calls == []
        assert status["lastSyncTime"] is None
    assert decision.transient == (decision.result == "transient")
    if status.get("image") is None:
        assert conds["SourceResolved"]["status"] != "True"


def test_lasttransitiontime_is_kept_while_a_condition_keeps_its_status() -> None:
    ecr = FakeEcr()
    ecr.push(REPO, image_manifest(1, 2), "build-1")
    _, status = run(ecr, {})
    later = core.reconcile(Request(parse_spec(raw()), status, 1, "drift"), ecr, SETTINGS, NOW + timedelta(hours=1), LOG)
    before = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
    after = {c["type"]: c["lastTransitionTime"] for c in later.status["conditions"]}
    assert before == after


def test_an_archived_source_is_reported_with_how_to_restore_it() -> None:
    ecr = FakeEcr()
    digest = ecr.push(REPO, image_manifest(1, 2), "build-1")
    ecr.delete_image(REPO, digest)  # ECR serves it no more: archived
    ecr.archived.add(digest)
    decision, status = run(ecr, {}, source={"digest": digest})
    assert conditions(status)["Ready"] == ("False", "ImageArchived")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Ready")
    assert "aws ecr update-image-storage-class" in message
    assert f"imageDigest={digest}" in message
    assert decision.requeue_after is None  # permanent until someone restores it
    assert "PutImage" not in ecr.calls
