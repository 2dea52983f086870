"""Status rendering: stable lastTransitionTime, capped lists, trimmed and redacted messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecr_tag_operator.model import Condition, Failure, Outcomes
from ecr_tag_operator.planner import assess, plan
from ecr_tag_operator.status import merge_conditions, render, trim

from .builders import image_manifest, observed, source, spec

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
