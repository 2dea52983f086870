"""Status rendering: stable lastTransitionTime, capped lists, trimmed and redacted messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecr_tag_operator.model import Condition, Failure, Observation, Outcomes
from ecr_tag_operator.planner import assess, plan
from ecr_tag_operator.status import merge_conditions, render, trim

from .builders import image_manifest, index_manifest, observed, source, spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_last_transition_time_kept_when_status_unchanged() -> None:
    first = merge_conditions([], [Condition("Ready", "True", "InSync", "ok")], T0, 1, 100)
    second = merge_conditions(first, [Condition("Ready", "True", "InSync", "still ok")], T1, 2, 100)
    assert second[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second[0]["message"] == "still ok"
    assert second[0]["observedGeneration"] == 2
    third = merge_conditions(second, [Condition("Ready", "False", "Drifted", "moved")], T1, 2, 100)
    assert third[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_conditions_not_mentioned_are_kept() -> None:
    first = merge_conditions(
        [], [Condition("Ready", "True", "InSync", "ok"), Condition("TagsInSync", "True", "InSync", "ok")], T0, 1, 100
    )
    after = merge_conditions(first, [Condition("Ready", "False", "Throttling", "slow down")], T1, 1, 100)
    assert [c["type"] for c in after] == ["Ready", "TagsInSync"]


def test_trim_redacts_credentials_and_caps_length() -> None:
    assert "AKIAABCDEFGHIJKLMNOP" not in trim("denied for AKIAABCDEFGHIJKLMNOP now", 100)
    assert len(trim("x" * 500, 50)) == 50


def test_render_caps_layers_and_failures_and_counts_all() -> None:
    img = source(image_manifest(1, *range(2, 40)))
    obs = observed(img, {"staging": None, "prod": None})
    the_plan = plan(spec(), obs)
    fails = tuple(Failure("PutImage", "ImageTagAlreadyExistsException", f"n{i}", tag="prod") for i in range(30))
    a = assess(spec(), obs, the_plan, Outcomes(delete_failures=fails))
    body = render(a, obs, {}, T0, 3, max_layers=10, max_failures=5, message_limit=80)
    assert len(body["layers"]) == 10
    assert body["layersTruncated"] is True
    assert body["layerSummary"]["total"] == 39
    assert body["layerSummary"]["available"] == 39
    assert len(body["failures"]) == 5
    assert body["failuresTruncated"] is True
    assert body["observedGeneration"] == 3
    assert body["image"]["digest"] == img.digest
    assert {t["tag"] for t in body["tags"]} == {"staging", "prod"}


def test_principals_and_account_ids_are_not_shown_to_tenants() -> None:
    said = (
        "User: arn:aws:sts::444455556666:assumed-role/ecr-tags-team-b/eit.team-b is not authorized to "
        "perform: ecr:PutImage on resource: arn:aws:ecr:eu-west-1:444455556666:repository/team-b/web"
    )
    shown = trim(said, 300)
    assert "444455556666" not in shown
    assert "ecr-tags-team-b" not in shown
    assert "ecr:PutImage" in shown
    assert "[principal]" in shown
    digest = "sha256:" + "1234567890ab" * 5 + "abcd"
    assert trim(f"points at {digest}", 300) == f"points at {digest}"  # digits inside a digest stay


def test_an_index_of_many_children_lists_a_capped_number_of_platforms() -> None:
    children = [image_manifest(n, n + 1000) for n in range(3)]
    src = source(index_manifest(*children), *children)
    obs = Observation(src, children_present={}, tag_digests={})
    body = render(
        assess(spec(), obs, plan(spec(), obs), Outcomes()),
        obs,
        {},
        datetime(2026, 6, 1, tzinfo=UTC),
        1,
        max_layers=2,
        max_failures=20,
        message_limit=300,
    )
    assert len(body["image"]["platforms"]) == 2
    assert body["image"]["platformCount"] == 3
    assert body["image"]["platformsTruncated"] is True
