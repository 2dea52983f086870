"""The kopf adapters as plain functions: a fake memo and patch, the in-memory ECR, kopf's events
recorded. They turn kopf's arguments into a request and apply the decision; nothing else."""

from __future__ import annotations

import functools
import gc
import json
import logging
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from ecr_tag_operator import drift_schedule, handlers, metrics, views
from ecr_tag_operator.drift_schedule import entry_of
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.model import Failure
from ecr_tag_operator.ownership import Holding
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.runtime import Runtime, runtime_of
from ecr_tag_operator.settings import Settings

from .builders import image_manifest
from .fake_ecr import FakeEcr

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LOG = logging.getLogger("test")
REPO = "team-a/web"


@pytest.fixture
def ecr() -> FakeEcr:
    fake = FakeEcr()
    fake.push(REPO, image_manifest(1, 2), "build-1")
    return fake


@pytest.fixture
def memo(ecr: FakeEcr) -> kopf.Memo:
    return kopf.Memo(runtime=Runtime(Settings(region="us-east-1"), ecr, clock=lambda: NOW))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    posted: list[tuple[str, str, str]] = []

    def event(obj: Any, *, type: str, reason: str, message: str = "") -> None:
        posted.append((type, reason, message))

    monkeypatch.setattr(kopf, "event", event)
    monkeypatch.setattr(
        kopf, "warn", lambda obj, *, reason, message="": event(obj, type="Warning", reason=reason, message=message)
    )
    return posted


def body(spec: dict[str, Any], status: dict[str, Any] | None = None, namespace: str = "team-a") -> kopf.Body:
    return kopf.Body(
        {  # type: ignore[arg-type]
            "apiVersion": "ecrtag.dev/v1alpha1",
            "kind": "EcrImageTag",
            "metadata": {
                "name": "web",
                "namespace": namespace,
                "uid": "u-1",
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "resourceVersion": "5",
            },
            "spec": spec,
            "status": status or {},
        }
    )


SPEC = {"repositoryName": REPO, "source": {"tag": "build-1"}, "tags": ["prod"]}
TEAM_A = {"namespaces": ["team-a"], "registries": [{"write": [{"repositories": ["team-a/**"]}]}]}
GRANTED: dict[str, Any] = {
    "policies": {"team-a": [PolicyEntry(parse_policy("team-a", TEAM_A), 1, "1")]},
    "namespace_labels": {"team-a": [{}]},
}


def view(memo: kopf.Memo, **indexes: Any) -> views.Grants:
    both = GRANTED | indexes
    return views.Grants(runtime_of(memo), both["policies"], both["namespace_labels"])


def call(memo: kopf.Memo, obj: kopf.Body, reason: str = "create", **indexes: Any) -> kopf.Patch:
    indexes = GRANTED | indexes
    patch = kopf.Patch()
    handlers.reconcile_spec(
        spec=obj.spec,
        status=obj.status,
        meta=obj.meta,
        body=obj,
        patch=patch,
        memo=memo,
        logger=LOG,
        reason=reason,
        **indexes,
    )
    return patch


def test_a_create_is_reconciled_and_its_decision_applied(
    memo: kopf.Memo, ecr: FakeEcr, events: list[tuple[str, str, str]]
) -> None:
    before = metrics.RECONCILES.labels("create", "true")._value.get()
    patch = call(memo, body(SPEC))
    ready = next(c for c in patch.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "InSync")
    assert ecr.repo(REPO).tags["prod"] == ecr.repo(REPO).tags["build-1"]
    assert [(t, r) for t, r, _ in events] == [("Normal", "TagMoved")]
    assert metrics.RECONCILES.labels("create", "true")._value.get() == before + 1


def test_the_scheduler_waits_for_kopf_to_handle_namespaces(memo: kopf.Memo) -> None:
    assert not runtime_of(memo).handling.is_set()
    handlers.indexes_ready(memo=memo)
    assert runtime_of(memo).handling.is_set()


def test_a_synced_resource_is_skipped_on_resume(memo: kopf.Memo, ecr: FakeEcr) -> None:
    patch = call(memo, body(SPEC, {"lastSyncTime": "2026-06-01T00:00:00Z", "observedGeneration": 1}), "resume")
    assert dict(patch) == {}
    assert ecr.calls == []


def test_an_invalid_spec_is_refused_without_ecr(
    memo: kopf.Memo, ecr: FakeEcr, events: list[tuple[str, str, str]]
) -> None:
    patch = call(memo, body({**SPEC, "tags": ["bad tag"]}))
    ready = next(c for c in patch.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ecr.calls == []
    assert [(t, r) for t, r, _ in events] == [("Warning", "InvalidSpec")]


def test_a_namespace_no_policy_grants_is_forbidden(
    memo: kopf.Memo, ecr: FakeEcr, events: list[tuple[str, str, str]]
) -> None:
    patch = call(memo, body(SPEC, namespace="team-b"), namespace_labels={"team-b": [{}]})
    ready = next(c for c in patch.status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("Forbidden", "no EcrTagPolicy grants namespace team-b anything")
    assert ecr.calls == []
    assert [(t, r) for t, r, _ in events] == [("Warning", "Forbidden")]


def test_a_transient_failure_asks_kopf_to_retry_after_the_delay(memo: kopf.Memo, ecr: FakeEcr) -> None:
    ecr.fail_calls["PutImage"] = Failure("PutImage", "ThrottlingException", "slow down")
    with pytest.raises(kopf.TemporaryError) as err:
        call(memo, body(SPEC))
    assert err.value.delay == runtime_of(memo).settings.transient_retry_delay


def test_the_drift_check_adapter_returns_the_decision_for_the_scheduler(memo: kopf.Memo, ecr: FakeEcr) -> None:
    obj = body(SPEC, {"observedGeneration": 1})
    decision = handlers._drift_check(
        dict(obj),
        "drift",
        runtime=runtime_of(memo),
        settings=kopf.OperatorSettings(),
        tag_claims={},
        view=lambda: view(memo),
    )
    assert decision is not None
    assert decision.result == "true"
    assert (
        handlers._drift_check(
            dict(body({"tags": []})),
            "drift",
            runtime=runtime_of(memo),
            settings=kopf.OperatorSettings(),
            tag_claims={},
            view=lambda: view(memo),
        )
        is None
    )


def test_an_owner_change_or_a_lifted_refusal_is_urgent(memo: kopf.Memo) -> None:
    runtime = runtime_of(memo)
    obj = body(SPEC, {"conditions": [{"type": "Ready", "reason": "Forbidden"}]})
    entry = entry_of(obj.meta, obj.spec, obj.status, "us-east-1", "")
    assert entry is not None

    def urgent(policies: Any, *entries: Any) -> list[bool]:
        test = views.Urgency(runtime, policies, GRANTED["namespace_labels"]).prepare()(entries)
        return [test(e) for e in entries]

    assert urgent(GRANTED["policies"], entry) == [True]  # a policy grants it now
    assert urgent({}, entry) == [False]  # still refused: nothing new
    owned = body(SPEC, {"tags": [{"tag": "prod", "owner": "team-b/x"}]})
    contested_entry = entry_of(owned.meta, owned.spec, owned.status, "us-east-1", "")
    assert contested_entry is not None
    assert urgent(GRANTED["policies"], contested_entry) == [True]  # the owner it named is gone
    assert urgent({}, contested_entry) == [True]  # its grant was lifted: Forbidden now


def _capped_memo(ecr: FakeEcr, per_namespace: int = 10_000, per_tag: int = 50) -> kopf.Memo:
    settings = Settings(region="us-east-1", max_claims_per_namespace=per_namespace, max_claims_per_tag=per_tag)
    return kopf.Memo(runtime=Runtime(settings, ecr, clock=lambda: NOW))


def test_a_resource_past_the_namespace_cap_is_refused_from_kopfs_index(
    ecr: FakeEcr, events: list[tuple[str, str, str]]
) -> None:
    memo = _capped_memo(ecr, per_namespace=3)
    # What the namespace_claims index holds: two older resources of team-a with three claims, and this one.
    obj = body(SPEC)
    this = handlers.namespace_claims(meta=obj.meta, spec=obj.spec, memo=memo)
    assert this == {"team-a": Holding("2026-01-01T00:00:00Z", "web", 1)}
    older = [Holding("2025-01-01T00:00:00Z", "a", 2), Holding("2025-06-01T00:00:00Z", "b", 1)]
    patch = call(memo, obj, namespace_claims={"team-a": [*older, this["team-a"]]})
    ready = next(c for c in patch.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TooManyClaims")
    assert "holds 3 tag claims in older EcrImageTags" in ready["message"]
    assert ecr.calls == []
    assert [(t, r) for t, r, _ in events] == [("Warning", "TooManyClaims")]
    # Without the older resources it fits, and is served.
    patch = call(memo, obj, namespace_claims={"team-a": [this["team-a"]]})
    assert next(c for c in patch.status["conditions"] if c["type"] == "Ready")["reason"] == "InSync"


def test_the_cap_per_tag_counts_only_granted_claims(ecr: FakeEcr, events: list[tuple[str, str, str]]) -> None:
    settings = Settings(region="us-east-1", max_claims_per_tag=1)
    memo = kopf.Memo(runtime=Runtime(settings, ecr, clock=lambda: NOW))
    obj = body(SPEC)
    rivals = [body(SPEC, namespace=ns) for ns in ("team-b", "team-a")]
    older: list[Any] = []
    for n, rival in enumerate(rivals):
        meta = {**rival.meta, "name": f"older-{n}", "creationTimestamp": "2025-01-01T00:00:00Z"}
        older += handlers.tag_claims(meta=meta, spec=rival.spec, memo=memo).items()
    squatter, granted = older
    # team-b is granted nothing: its older claim does not count.
    patch = call(memo, obj, tag_claims={squatter[0]: [squatter[1]]}, namespace_labels={"team-a": [{}], "team-b": [{}]})
    assert next(c for c in patch.status["conditions"] if c["type"] == "Ready")["reason"] == "InSync"
    patch = call(memo, obj, tag_claims={granted[0]: [granted[1]]})
    ready = next(c for c in patch.status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"].split(",")[0]) == (
        "TooManyClaims",
        "team-a/web:prod is claimed by 1 older EcrImageTags",
    )


def test_a_capped_resource_is_urgent_once_it_fits(ecr: FakeEcr) -> None:
    memo = _capped_memo(ecr, per_namespace=2)
    runtime = runtime_of(memo)
    obj = body(SPEC, {"conditions": [{"type": "Ready", "reason": "TooManyClaims"}]})
    entry = entry_of(obj.meta, obj.spec, obj.status, "us-east-1", "")
    assert entry is not None
    mine = Holding("2026-01-01T00:00:00Z", "web", 1)
    full = {"team-a": [Holding("2025-01-01T00:00:00Z", "a", 2), mine]}
    room = {"team-a": [Holding("2025-01-01T00:00:00Z", "a", 1), mine]}
    holdings = dict(full)
    test = views.Urgency(runtime, GRANTED["policies"], GRANTED["namespace_labels"], holdings)
    for _ in range(3):  # still past the cap: nothing to do, however many ticks pass
        assert not test.prepare()([entry])(entry)
    holdings.update(room)  # an older resource dropped a tag: its place is free
    assert test.prepare()([entry])(entry)


def test_a_resource_past_the_tag_cap_is_urgent_once_an_older_claim_goes(ecr: FakeEcr) -> None:
    """The cap per tag counts the claims the drift tick keeps (not a copy of kopf's claims index)."""
    runtime = runtime_of(_capped_memo(ecr, per_tag=1))
    older = body(SPEC, {"conditions": [{"type": "Ready", "reason": "InSync"}]})
    older["metadata"].update(name="old", uid="u-0", creationTimestamp="2025-01-01T00:00:00Z")
    capped = body({**SPEC, "source": {"tag": "other"}}, {"conditions": [{"type": "Ready", "reason": "TooManyClaims"}]})
    first = entry_of(older.meta, older.spec, older.status, "us-east-1", "")
    mine = entry_of(capped.meta, capped.spec, capped.status, "us-east-1", "")
    assert first is not None
    assert mine is not None
    test = views.Urgency(runtime, GRANTED["policies"], GRANTED["namespace_labels"])
    for _ in range(3):  # the older claim holds the one place: however many ticks pass
        assert not test.prepare()([first, mine])(mine)
    assert test.prepare()([mine])(mine)  # the older resource went


def test_deletion_removes_the_tags_still_at_our_image(
    memo: kopf.Memo, ecr: FakeEcr, events: list[tuple[str, str, str]]
) -> None:
    spec = {**SPEC, "deletionPolicy": "Delete"}
    patch = call(memo, body(spec))
    status = dict(patch.status)
    obj = body(spec, status)
    handlers.delete_tags(spec=obj.spec, status=obj.status, meta=obj.meta, body=obj, memo=memo, logger=LOG, **GRANTED)
    assert "prod" not in ecr.repo(REPO).tags
    assert ("Normal", "TagsDeleted", "deleted prod") in events


def test_deletion_in_observe_mode_deletes_nothing(
    memo: kopf.Memo, ecr: FakeEcr, events: list[tuple[str, str, str]]
) -> None:
    """Put by Enforce, then switched to Observe and deleted: Observe never writes to ECR."""
    spec = {**SPEC, "deletionPolicy": "Delete"}
    status = dict(call(memo, body(spec)).status)
    assert "prod" in ecr.repo(REPO).tags
    obj = body({**spec, "mode": "Observe"}, status)
    handlers.delete_tags(spec=obj.spec, status=obj.status, meta=obj.meta, body=obj, memo=memo, logger=LOG, **GRANTED)
    assert "prod" in ecr.repo(REPO).tags
    assert ("Warning", "TagsRetained", "no tag deleted: mode Observe writes nothing to ECR") in events
    assert not [e for e in events if e[1] == "TagsDeleted"]


def test_a_taken_over_change_is_left_deferred_by_its_check(memo: kopf.Memo, ecr: FakeEcr) -> None:
    """The scheduler undefers a change once its final status is stored (test_drift_scheduler): the
    check itself, transient or not, leaves it deferred."""
    runtime = runtime_of(memo)
    obj = body(SPEC, {})
    runtime.defer("u-1")
    ecr.fail_calls["PutImage"] = Failure("PutImage", "ThrottlingException", "slow down")
    check = functools.partial(
        handlers._drift_check, runtime=runtime, settings=kopf.OperatorSettings(), tag_claims={}, view=lambda: view(memo)
    )
    decision = check(dict(obj), "spec")
    assert decision is not None
    assert decision.transient
    assert runtime.deferred("u-1")
    del ecr.fail_calls["PutImage"]
    decision = check(dict(obj), "spec")
    assert decision is not None
    assert not decision.transient
    assert runtime.deferred("u-1")  # its status is not written yet


def test_resources_claiming_one_tag_share_its_key_tuple_and_plain_tuples_the_collector_stops_walking(
    memo: kopf.Memo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf keeps each resource's claim keys in a set of its own: one tuple per key for all resources
    (and claims of plain tuples) keep what a full collection walks small. The keys kept are bounded."""
    spec = {"repositoryName": "shared/web", "source": {"tag": "b"}, "tags": ["prod", "stable"]}

    def claimed(n: int) -> dict[Any, Any]:
        meta = {"name": f"r{n}", "namespace": "team-a", "uid": f"u{n}", "creationTimestamp": "2026-01-01T00:00:00Z"}
        return dict(handlers.tag_claims(meta=meta, spec=json.loads(json.dumps(spec)), memo=memo))

    first, second = claimed(1), claimed(2)
    assert first.keys() == second.keys()
    assert all(a is b for a, b in zip(first, second, strict=True))
    claim = next(iter(first.values()))
    gc.collect()
    gc.collect()  # a tuple holding a tuple may be untracked only at the collection after the inner one's
    assert not gc.is_tracked(claim)  # an exact tuple of strings and such tuples: collections stop walking it
    monkeypatch.setattr(drift_schedule._KEYS, "size", 3)
    for n in range(3, 10):
        claimed(n)
        assert len(drift_schedule._KEYS) <= 3
    assert claimed(10).keys() == first.keys()
