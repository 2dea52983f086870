"""Table tests of the pure planner: which tags are written, and what the conditions say."""

from __future__ import annotations

import pytest

from ecr_tag_operator.model import Failure, ImageId, LayerInfo, Outcomes, PutOutcome
from ecr_tag_operator.planner import assess, plan, plan_deletion
from ecr_tag_operator.reasons import reason_for

from .builders import available, image_manifest, index_manifest, observed, sha, source, spec

IMG = source(image_manifest(1, 2, 3))
OTHER = sha(99)


def conditions(a: object) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in a.conditions}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("tags", "mode", "want"),
    [
        ({"staging": None, "prod": None}, "Enforce", ("staging", "prod")),
        ({"staging": IMG.digest, "prod": OTHER}, "Enforce", ("prod",)),
        ({"staging": IMG.digest, "prod": IMG.digest}, "Enforce", ()),
        ({"staging": None, "prod": OTHER}, "Observe", ()),
    ],
)
def test_plan_puts_only_tags_that_differ(tags: dict[str, str | None], mode: str, want: tuple[str, ...]) -> None:
    assert plan(spec(mode=mode), observed(IMG, tags)).puts == want


def test_missing_layer_blocks_every_put_and_names_the_digest() -> None:
    layers = available(IMG)
    del layers[sha(3)]
    obs = observed(IMG, {"staging": None, "prod": None}, layers=layers)
    the_plan = plan(spec(), obs)
    assert the_plan.puts == ()
    assert the_plan.blocked is not None
    assert the_plan.blocked.reason == "LayersNotFound"
    assert sha(3) in the_plan.blocked.message
    got = assess(spec(), obs, the_plan, Outcomes())
    assert conditions(got)["LayersAvailable"] == ("False", "LayersNotFound")
    assert conditions(got)["Ready"] == ("False", "LayersNotFound")
    assert {t.reason for t in got.tags} == {"LayersNotFound"}


@pytest.mark.parametrize(("state", "reason"), [("UNAVAILABLE", "LayersUnavailable"), ("ARCHIVED", "LayersArchived")])
def test_unavailable_or_archived_layers_block(state: str, reason: str) -> None:
    layers = available(IMG)
    layers[sha(2)] = LayerInfo(sha(2), state, 102)
    the_plan = plan(spec(), observed(IMG, {"staging": None, "prod": None}, layers=layers))
    assert the_plan.blocked is not None
    assert the_plan.blocked.reason == reason


def test_index_child_missing_in_target_blocks_with_referenced_images_not_found() -> None:
    amd, arm = image_manifest(10, 11), image_manifest(20, 21)
    idx = source(index_manifest(amd, arm), amd, arm)
    obs = observed(
        idx,
        {"staging": None, "prod": None},
        children_present={idx.parsed.children[0].digest: True, idx.parsed.children[1].digest: False},
    )
    the_plan = plan(spec(), obs)
    assert the_plan.blocked is not None
    assert the_plan.blocked.reason == "ReferencedImagesNotFound"
    assert idx.parsed.children[1].digest in the_plan.blocked.message


def test_index_puts_the_index_digest_when_children_and_layers_present() -> None:
    amd, arm = image_manifest(10, 11), image_manifest(20, 21)
    idx = source(index_manifest(amd, arm), amd, arm)
    present = {c.digest: True for c in idx.parsed.children}
    obs = observed(idx, {"staging": None, "prod": None}, children_present=present)
    assert plan(spec(), obs).puts == ("staging", "prod")
    assert {b.digest for b, _ in idx.blobs()} == {sha(n) for n in (10, 11, 20, 21)}


def test_immutable_tag_failure_is_reported_for_that_tag_only() -> None:
    obs = observed(IMG, {"staging": None, "prod": OTHER})
    the_plan = plan(spec(), obs)
    refused = Failure("PutImage", "ImageTagAlreadyExistsException", "tag is immutable", tag="prod")
    outcomes = Outcomes(puts=(PutOutcome("staging", "put"), PutOutcome("prod", "failed", refused)))
    got = assess(spec(), obs, the_plan, outcomes)
    states = {t.tag: t for t in got.tags}
    assert states["staging"].in_sync
    assert states["staging"].digest == IMG.digest
    assert not states["prod"].in_sync
    assert states["prod"].reason == "ImageTagAlreadyExists"
    assert states["prod"].digest == OTHER
    assert conditions(got)["Ready"] == ("False", "ImageTagAlreadyExists")
    assert got.failures == (refused,)
    assert got.moved == (("staging", None, IMG.digest),)


def test_image_already_exists_counts_as_in_sync() -> None:
    obs = observed(IMG, {"staging": None, "prod": None})
    outcomes = Outcomes(puts=(PutOutcome("staging", "unchanged"), PutOutcome("prod", "put")))
    got = assess(spec(), obs, plan(spec(), obs), outcomes)
    assert all(t.in_sync for t in got.tags)
    assert conditions(got)["Ready"] == ("True", "InSync")
    assert got.moved == (("prod", None, IMG.digest),)


def test_observe_mode_reports_drift_and_is_not_ready() -> None:
    obs = observed(IMG, {"staging": IMG.digest, "prod": OTHER})
    got = assess(spec(mode="Observe"), obs, plan(spec(mode="Observe"), obs), Outcomes())
    assert conditions(got)["TagsInSync"] == ("False", "Drifted")
    assert conditions(got)["Ready"] == ("False", "Drifted")
    assert "prod" in got.ready.message
    assert "staging" not in got.ready.message.split(":", 1)[1]


@pytest.mark.parametrize("code", ["ImageNotFound", "ImageTagDoesNotMatchDigest", "KmsError"])
def test_source_failure_code_becomes_the_reason(code: str) -> None:
    fail = Failure("BatchGetImage", code, "as ECR said", image_id=ImageId("build-1"))
    obs = observed(None, {"staging": OTHER, "prod": None}, source_failure=fail)
    got = assess(spec(), obs, plan(spec(), obs), Outcomes())
    assert conditions(got)["SourceResolved"] == ("False", code)
    assert conditions(got)["Ready"] == ("False", code)
    assert got.failures[0] == fail
    assert plan(spec(), obs).puts == ()


def test_transient_interruption_is_the_ready_reason() -> None:
    obs = observed(IMG, {"staging": None, "prod": None})
    throttled = Failure("PutImage", "ThrottlingException", "Rate exceeded")
    got = assess(spec(), obs, plan(spec(), obs), Outcomes(puts=(PutOutcome("staging", "put"),), interrupted=throttled))
    assert conditions(got)["Ready"] == ("False", "Throttling")
    assert {t.tag: t.reason for t in got.tags}["prod"] == "Throttling"


def test_released_tags_deleted_only_under_delete_policy_and_only_if_ours() -> None:
    obs = observed(IMG, {"staging": IMG.digest, "prod": IMG.digest, "old": IMG.digest, "moved": OTHER})
    assert plan(spec(deletionPolicy="Delete"), obs, previous_tags=["staging", "old", "moved"]).deletes == ("old",)
    assert plan(spec(), obs, previous_tags=["staging", "old", "moved"]).deletes == ()


def test_contested_tags_are_never_written() -> None:
    obs = observed(IMG, {"staging": None, "prod": None})
    contested = {"prod": "other-ns/winner"}
    the_plan = plan(spec(), obs, contested=contested)
    assert the_plan.puts == ("staging",)
    got = assess(spec(), obs, the_plan, Outcomes(puts=(PutOutcome("staging", "put"),)), contested)
    assert {t.tag: t.reason for t in got.tags}["prod"] == "TagConflict"


def test_plan_deletion_keeps_moved_tags_and_skips_absent_ones() -> None:
    delete, kept = plan_deletion(["a", "b", "c"], {"a": IMG.digest, "b": OTHER, "c": None}, IMG.digest)
    assert delete == ("a",)
    assert [t for t, _ in kept] == ["b"]
    assert plan_deletion(["a"], {"a": IMG.digest}, None)[0] == ()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("ImageTagAlreadyExistsException", "ImageTagAlreadyExists"),
        ("LayersNotFoundException", "LayersNotFound"),
        ("ServerException", "ServerError"),
        ("ImageNotFound", "ImageNotFound"),
        ("ThrottlingException", "Throttling"),
    ],
)
def test_reason_for(code: str, reason: str) -> None:
    assert reason_for(code) == reason
