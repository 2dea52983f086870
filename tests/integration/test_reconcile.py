"""One reconcile at a time against the ECR emulator process: real HTTP, real boto3, real planner."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mypy_boto3_ecr.client import ECRClient

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT
from ecr_tag_localenv.ecr_faults import FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_operator.core import Decision, Request, finalize, reconcile
from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES, DOCKER_MANIFEST_V2, digest_of
from ecr_tag_operator.model import Permission
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

LOG = logging.getLogger("test")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


class Harness:
    def __init__(self, server: RunningEmulator, client: ECRClient) -> None:
        self.server = server
        self.client = client
        self.settings = Settings(endpoint_url=server.endpoint_url, region="us-east-1", max_attempts=2)
        self.ecr = Boto3Ecr(self.settings)
        self.status: dict[str, Any] = {}

    def run(self, **raw: Any) -> Decision:
        result = reconcile(Request(parse_spec(raw), self.status, 1, "create"), self.ecr, self.settings, NOW, LOG)
        self.status = {**self.status, **result.status}
        return result

    def tag_digest(self, repository: str, tag: str) -> str | None:
        got = self.client.batch_get_image(
            repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
        )
        return got["images"][0]["imageId"]["imageDigest"] if got["images"] else None

    def puts(self, repository: str | None = None) -> int:
        return self.server.control.calls().of("PutImage", repository)


@pytest.fixture
def h(ecr: RunningEmulator, ecr_client: ECRClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for key, value in ecr.env.items():
        monkeypatch.setenv(key, value)
    return Harness(ecr, ecr_client)


def conditions(result: Decision) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result.status["conditions"]}


@pytest.mark.parametrize(
    "layout",
    [
        '{\n   "schemaVersion": 2,\n   "mediaType": "%s",\n   "config": %s,\n   "layers": %s\n}',
        '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":%s}',
        '{\r\n  "schemaVersion" :  2,\r\n  "mediaType": "%s",\r\n "config": %s,\r\n "layers": %s\r\n}\r\n',
        '\t{ "schemaVersion": 2, "mediaType": "%s", "config": %s, "layers": %s }\n\n',
    ],
    ids=["pretty", "no-trailing-newline", "crlf", "tabs-and-blank-lines"],
)
def test_retag_preserves_digest_of_unusual_manifests(h: Harness, layout: str) -> None:
    base = ecr_seed.push(h.client, "team/app", "base", "docker", seed="ws")
    doc = json.loads(base.manifest)
    text = layout % (DOCKER_MANIFEST_V2, json.dumps(doc["config"]), json.dumps(doc["layers"]))
    pushed = ecr_seed.push_verbatim(h.client, "team/app", text, tag="odd", media_type=DOCKER_MANIFEST_V2)
    assert pushed.digest == digest_of(text)
    result = h.run(repositoryName="team/app", source={"tag": "odd"}, tags=["a", "b"])
    assert conditions(result)["Ready"] == ("True", "InSync")
    assert h.tag_digest("team/app", "a") == digest_of(text)
    assert h.tag_digest("team/app", "b") == digest_of(text)
    assert result.status["image"]["digest"] == digest_of(text)


def test_guard_mismatch_reports_image_tag_does_not_match_digest(h: Harness) -> None:
    one = ecr_seed.push(h.client, "team/app", "build-1", "oci", seed=1)
    two = ecr_seed.push(h.client, "team/app", "build-2", "oci", seed=2)
    h.server.control.reset_calls()
    result = h.run(repositoryName="team/app", source={"tag": "build-1", "digest": two.digest}, tags=["prod"])
    assert conditions(result)["Ready"] == ("False", "ImageTagDoesNotMatchDigest")
    assert result.status["failures"][0]["code"] == "ImageTagDoesNotMatchDigest"
    assert result.status["failures"][0]["imageId"] == {"imageTag": "build-1", "imageDigest": two.digest}
    assert h.puts() == 0
    assert one.digest != two.digest


def test_missing_source_reports_image_not_found(h: Harness) -> None:
    ecr_seed.ensure_repository(h.client, "team/app")
    result = h.run(repositoryName="team/app", source={"tag": "nope"}, tags=["prod"])
    assert conditions(result)["Ready"] == ("False", "ImageNotFound")
    assert conditions(result)["SourceResolved"] == ("False", "ImageNotFound")
    assert not result.transient


def test_missing_repository_reports_repository_not_found(h: Harness) -> None:
    result = h.run(repositoryName="team/ghost", source={"tag": "v1"}, tags=["prod"])
    assert conditions(result)["Ready"] == ("False", "RepositoryNotFound")
    assert result.status["failures"][0]["code"] == "RepositoryNotFoundException"


def test_immutable_repository_fails_only_the_moved_tag(h: Harness) -> None:
    ecr_seed.ensure_repository(h.client, "team/frozen", immutable=True)
    old = ecr_seed.push(h.client, "team/frozen", "prod", "docker", seed="old")
    new = ecr_seed.push(h.client, "team/frozen", "build-2", "docker", seed="new")
    h.server.control.reset_calls()
    result = h.run(repositoryName="team/frozen", source={"tag": "build-2"}, tags=["prod", "staging"])
    tags = {t["tag"]: t for t in result.status["tags"]}
    assert tags["staging"] == {"tag": "staging", "inSync": True, "digest": new.digest}
    assert tags["prod"]["inSync"] is False
    assert tags["prod"]["reason"] == "ImageTagAlreadyExists"
    assert tags["prod"]["digest"] == old.digest
    assert conditions(result)["Ready"] == ("False", "ImageTagAlreadyExists")
    message = next(c["message"] for c in result.status["conditions"] if c["type"] == "TagsInSync")
    assert "tag mutability is IMMUTABLE" in message
    assert h.tag_digest("team/frozen", "prod") == old.digest
    # The repository's mutability was read (DescribeRepositories): the tag ECR would refuse is not put,
    # now or at the next check, until the spec or the repository changes.
    assert h.puts("team/frozen") == 1  # staging
    h.server.control.reset_calls()
    again = h.run(repositoryName="team/frozen", source={"tag": "build-2"}, tags=["prod", "staging"])
    assert h.puts("team/frozen") == 0
    assert conditions(again)["Ready"] == ("False", "ImageTagAlreadyExists")


def test_a_tag_excluded_from_immutability_is_moved(h: Harness) -> None:
    ecr_seed.ensure_repository(h.client, "team/frozen-x")
    h.client.put_image_tag_mutability(
        repositoryName="team/frozen-x",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}],
    )
    ecr_seed.push(h.client, "team/frozen-x", "latest", "docker", seed="old-x")
    ecr_seed.push(h.client, "team/frozen-x", "v1", "docker", seed="old-y")
    new = ecr_seed.push(h.client, "team/frozen-x", "build-2", "docker", seed="new-x")
    h.server.control.reset_calls()
    result = h.run(repositoryName="team/frozen-x", source={"tag": "build-2"}, tags=["latest", "v1"])
    tags = {t["tag"]: t for t in result.status["tags"]}
    assert tags["latest"] == {"tag": "latest", "inSync": True, "digest": new.digest}
    assert tags["v1"]["reason"] == "ImageTagAlreadyExists"
    assert h.puts("team/frozen-x") == 1


def test_cross_repository_missing_layer_blocks_every_put(h: Harness) -> None:
    src = ecr_seed.push(h.client, "team/build", "v7", "docker", seed="x")
    ecr_seed.ensure_repository(h.client, "team/release")
    missing = src.layer_digests[-1]
    ecr_seed.copy_blobs(h.client, src, "team/release", skip=[missing])
    h.server.control.reset_calls()
    result = h.run(
        repositoryName="team/release", source={"tag": "v7", "repositoryName": "team/build"}, tags=["prod"], copy="Never"
    )
    assert conditions(result)["LayersAvailable"] == ("False", "LayersNotFound")
    assert missing in next(c["message"] for c in result.status["conditions"] if c["type"] == "LayersAvailable")
    assert result.status["layerSummary"]["missing"] == 1
    assert [x["layerDigest"] for x in result.status["layers"] if "layerAvailability" not in x] == [missing]
    assert h.puts() == 0
    # Once the blob arrives, the next reconcile promotes.
    ecr_seed.copy_blobs(h.client, src, "team/release")
    again = h.run(
        repositoryName="team/release", source={"tag": "v7", "repositoryName": "team/build"}, tags=["prod"], copy="Never"
    )
    assert conditions(again)["Ready"] == ("True", "InSync")
    assert h.tag_digest("team/release", "prod") == src.digest


def test_oci_index_tags_point_at_the_index_and_children_layers_are_listed(h: Harness) -> None:
    idx = ecr_seed.push(h.client, "team/multi", "build-9", "index", seed="idx")
    result = h.run(repositoryName="team/multi", source={"tag": "build-9"}, tags=["prod", "latest"])
    assert conditions(result)["Ready"] == ("True", "InSync")
    assert h.tag_digest("team/multi", "prod") == idx.digest
    assert h.tag_digest("team/multi", "latest") == idx.digest
    image = result.status["image"]
    assert image["digest"] == idx.digest
    assert {(p["os"], p["architecture"], p["present"]) for p in image["platforms"]} == {
        ("linux", "amd64", True),
        ("linux", "arm64", True),
    }
    listed = {x["layerDigest"]: x for x in result.status["layers"]}
    for child in idx.children:
        for blob in child.blob_digests:
            assert listed[blob]["layerAvailability"] == "AVAILABLE"
            assert listed[blob]["manifestDigest"] == child.digest


def test_cross_repository_index_with_missing_child_is_blocked(h: Harness) -> None:
    idx = ecr_seed.push(h.client, "team/build", "multi", "index", seed="idx2")
    ecr_seed.ensure_repository(h.client, "team/release")
    ecr_seed.copy_blobs(h.client, idx, "team/release")
    ecr_seed.copy_image(h.client, idx.children[0], "team/release")
    h.server.control.reset_calls()
    result = h.run(
        repositoryName="team/release", source={"tag": "multi", "repositoryName": "team/build"}, tags=["p"], copy="Never"
    )
    assert conditions(result)["LayersAvailable"] == ("False", "ReferencedImagesNotFound")
    assert h.puts() == 0
    ecr_seed.copy_image(h.client, idx.children[1], "team/release")
    again = h.run(
        repositoryName="team/release", source={"tag": "multi", "repositoryName": "team/build"}, tags=["p"], copy="Never"
    )
    assert conditions(again)["Ready"] == ("True", "InSync")
    assert h.tag_digest("team/release", "p") == idx.digest


def test_observe_mode_never_writes_and_reports_drift(h: Harness) -> None:
    img = ecr_seed.push(h.client, "team/app", "build-1", "oci", seed=3)
    ecr_seed.push(h.client, "team/app", "prod", "oci", seed=4)
    h.server.control.reset_calls()
    result = h.run(repositoryName="team/app", source={"tag": "build-1"}, tags=["prod", "staging"], mode="Observe")
    assert h.puts() == 0
    assert h.server.control.calls().of("BatchDeleteImage") == 0
    assert conditions(result)["Ready"] == ("False", "Drifted")
    assert {t["tag"]: t["reason"] for t in result.status["tags"]} == {"prod": "Drifted", "staging": "Drifted"}
    assert result.status["image"]["digest"] == img.digest


def test_second_reconcile_of_unchanged_resource_makes_no_put(h: Harness) -> None:
    ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=5)
    h.server.control.reset_calls()
    spec = {"repositoryName": "team/app", "source": {"tag": "build-1"}, "tags": ["a", "b", "c"]}
    h.run(**spec)
    assert h.puts() == 3
    h.server.control.reset_calls()
    again = h.run(**spec)
    assert h.puts() == 0
    assert conditions(again)["Ready"] == ("True", "InSync")
    # Reads are batched: the source and all three tags in one BatchGetImage, one layer check.
    assert h.server.control.calls().of("BatchGetImage") == 1
    assert h.server.control.calls().of("BatchCheckLayerAvailability") == 1


def test_drift_is_corrected(h: Harness) -> None:
    img = ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=6)
    spec = {"repositoryName": "team/app", "source": {"tag": "build-1"}, "tags": ["prod"]}
    h.run(**spec)
    other = ecr_seed.push(h.client, "team/app", "prod", "docker", seed=7)  # someone moves the tag by hand
    assert h.tag_digest("team/app", "prod") == other.digest
    result = h.run(**spec)
    assert [(e.reason, e.message) for e in result.events] == [
        ("DriftCorrected", f"team/app:prod {other.digest} -> {img.digest}")
    ]
    assert result.tally.drift_corrections == 1
    assert h.tag_digest("team/app", "prod") == img.digest


def test_delete_policy_removes_only_tags_still_at_our_digest(h: Harness) -> None:
    img = ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=8)
    spec = {"repositoryName": "team/app", "source": {"tag": "build-1"}, "tags": ["a", "b"], "deletionPolicy": "Delete"}
    h.run(**spec)
    other = ecr_seed.push(h.client, "team/app", "b", "docker", seed=9)  # b moved away since
    done = finalize(parse_spec(spec), h.status, Permission(), {}, h.ecr, h.settings, LOG)
    assert [(e.type, e.reason) for e in done.events] == [("Normal", "TagsDeleted"), ("Warning", "TagsRetained")]
    assert done.events[0].message == "deleted a"
    assert done.events[1].message.startswith("kept b: points at")
    assert h.tag_digest("team/app", "a") is None
    assert h.tag_digest("team/app", "b") == other.digest
    assert h.tag_digest("team/app", "build-1") == img.digest  # the image itself survives


def test_tag_removed_from_spec_is_deleted_under_delete_policy(h: Harness) -> None:
    ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=10)
    spec: dict[str, Any] = {"repositoryName": "team/app", "source": {"tag": "build-1"}, "tags": ["a", "b"]}
    h.run(**spec, deletionPolicy="Delete")
    result = h.run(**{**spec, "tags": ["a"]}, deletionPolicy="Delete")
    assert [(e.reason, e.message) for e in result.events] == [("TagDeleted", "team/app:b released from spec.tags")]
    assert result.tally.tag_writes == (("BatchDeleteImage", "deleted"),)
    assert h.tag_digest("team/app", "b") is None
    assert [t["tag"] for t in result.status["tags"]] == ["a"]


def test_tag_removed_from_spec_is_kept_under_retain_policy(h: Harness) -> None:
    img = ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=11)
    spec: dict[str, Any] = {"repositoryName": "team/app", "source": {"tag": "build-1"}, "tags": ["a", "b"]}
    h.run(**spec)
    h.run(**{**spec, "tags": ["a"]})
    assert h.tag_digest("team/app", "b") == img.digest


def test_throttled_put_is_transient_and_converges(h: Harness) -> None:
    img = ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=12)
    h.server.control.set_faults(operations={"PutImage": FaultRule(throttle_rate=1.0)})
    result = h.run(repositoryName="team/app", source={"tag": "build-1"}, tags=["prod"])
    assert result.requeue_after == h.settings.transient_retry_delay
    assert result.result == "transient"
    assert "lastSyncTime" not in result.status
    assert [f["code"] for f in result.status["failures"]] == ["ThrottlingException"]
    assert conditions(result)["Ready"] == ("False", "Throttling")
    h.server.control.clear_faults()
    result = h.run(repositoryName="team/app", source={"tag": "build-1"}, tags=["prod"])
    assert not result.transient
    assert result.status["failures"] == []
    assert h.tag_digest("team/app", "prod") == img.digest


def test_conflicting_resources_never_fight_over_ten_drift_cycles(h: Harness) -> None:
    from ecr_tag_operator.ownership import claim_of, claims, contested

    one = ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=21)
    ecr_seed.push(h.client, "team/app", "build-2", "docker", seed=22)
    resources = {
        "a": ({"name": "a", "namespace": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"}, "build-1"),
        "b": ({"name": "b", "namespace": "n2", "creationTimestamp": "2026-01-02T00:00:00Z"}, "build-2"),
    }
    raw = {k: {"repositoryName": "team/app", "source": {"tag": t}, "tags": ["prod"]} for k, (_, t) in resources.items()}
    index: dict[Any, list[Any]] = {}
    for k, (meta, _) in resources.items():
        for key, claim in claims(meta, raw[k], "us-east-1", DEFAULT_ACCOUNT).items():
            index.setdefault(key, []).append(claim)
    statuses: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    h.server.control.reset_calls()
    for _cycle in range(10):
        for k, (meta, _) in resources.items():
            spec = parse_spec(raw[k])
            me = claim_of(meta, spec, "us-east-1", DEFAULT_ACCOUNT)
            owners = contested(spec, me, lambda key: index.get(key, []), "us-east-1", DEFAULT_ACCOUNT)
            request = Request(spec, statuses[k], 1, "drift", contested=owners)
            result = reconcile(request, h.ecr, h.settings, NOW, LOG)
            statuses[k] = {**statuses[k], **result.status}
    assert h.puts("team/app") == 1
    assert h.tag_digest("team/app", "prod") == one.digest
    ready_b = next(c for c in statuses["b"]["conditions"] if c["type"] == "Ready")
    assert (ready_b["status"], ready_b["reason"]) == ("False", "TagConflict")
    # Another namespace's owner is not named to this one (only that the tag is taken).
    assert "prod (owned by another namespace)" in ready_b["message"]
    assert "n1" not in ready_b["message"]
    assert next(c for c in statuses["a"]["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_retries_of_throttled_puts_are_paced_too(h: Harness) -> None:
    """With the emulator's quota equal to the client's, pacing every attempt keeps throttles rare;
    15 PutImages at 5/s take about 2 s (burst 5, then 10 at 5/s)."""
    ecr_seed.push(h.client, "team/app", "build-1", "docker", seed=30)
    h.server.control.set_faults(operations={"PutImage": FaultRule(quota_per_second=5, burst=5)})
    h.server.control.reset_calls()
    paced = Boto3Ecr(Settings(endpoint_url=h.server.endpoint_url, region="us-east-1", put_image_rate=5))
    spec = parse_spec(
        {"repositoryName": "team/app", "source": {"tag": "build-1"}, "tags": [f"t{i}" for i in range(15)]}
    )
    result = reconcile(Request(spec, {}, 1, "create"), paced, h.settings, NOW, LOG)
    assert not result.transient
    assert all(t["inSync"] for t in result.status["tags"])
    calls = h.server.control.calls()
    # The two token buckets run on separate clocks: on a loaded machine one attempt can land early.
    throttled = calls.faulted.get("PutImage", 0)
    assert throttled <= 2
    assert calls.of("PutImage") == 15 + throttled


def test_a_release_ecr_refuses_for_an_index_child_is_reported_and_kept(h: Harness) -> None:
    """Issue 14 case 5. ECR refuses to delete the last tag of a manifest an index in the repository
    references: BatchDeleteImage answers the per-image failure ImageReferencedByManifestList (service
    model, ImageFailureCode; BatchDeleteImage API reference). The tag stays and status says why."""
    index = ecr_seed.push(h.client, "team/multi", "build-1", "index", seed="idx")
    child = index.children[0]
    ecr_seed.push_verbatim(h.client, "team/multi", child.manifest, tag="amd64", media_type=child.media_type)
    first = h.run(repositoryName="team/multi", source={"digest": child.digest}, tags=["amd64"], deletionPolicy="Delete")
    assert conditions(first)["Ready"] == ("True", "InSync")
    # Promote the whole index under a new tag: amd64 is released, and it is the child's last tag.
    result = h.run(
        repositoryName="team/multi", source={"digest": index.digest}, tags=["multi"], deletionPolicy="Delete"
    )
    failures = [f for f in result.status["failures"] if f["operation"] == "BatchDeleteImage"]
    assert [(f["code"], f.get("tag")) for f in failures] == [("ImageReferencedByManifestList", "amd64")]
    assert h.tag_digest("team/multi", "amd64") == child.digest
    assert h.tag_digest("team/multi", "multi") == index.digest
    assert not [e for e in result.events if e.reason == "TagDeleted"]
    assert conditions(result)["Ready"] == ("True", "InSync")  # the wanted tag is in sync; the release is reported


def test_limit_exceeded_is_not_retried_and_reported_with_ecrs_words(h: Harness) -> None:
    """Issue 14 case 6. An image holds at most 1,000 tags; ECR answers LimitExceededException, which
    botocore's standard retry mode counts as throttling and retries; the operator does not retry it."""
    img = ecr_seed.push(h.client, "team/many", "build-1", "docker", seed="many")
    for n in range(999):  # build-1 plus 999 more: the image is full
        h.client.put_image(
            repositoryName="team/many",
            imageManifest=img.manifest,
            imageManifestMediaType=img.media_type,
            imageTag=f"t{n}",
        )
    h.server.control.reset_calls()
    result = h.run(repositoryName="team/many", source={"tag": "build-1"}, tags=["one-too-many"])
    assert conditions(result)["Ready"] == ("False", "LimitExceeded")
    assert h.puts("team/many") == 1  # one attempt: not retried
    failure = result.status["failures"][0]
    assert (failure["operation"], failure["code"], failure["tag"]) == (
        "PutImage",
        "LimitExceededException",
        "one-too-many",
    )
    assert not result.transient
