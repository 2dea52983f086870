"""Malformed EcrImageTags are refused by the real API server, with the schema's or a CEL rule's message."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ecr_tag_localenv.control_plane import KubeCluster

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "0123456789abcdef" * 4
GOOD: dict[str, Any] = {"repositoryName": "team-a/web", "source": {"tag": "build-1"}, "tags": ["prod"]}
MATCH = "should match"


def with_(**changes: Any) -> dict[str, Any]:
    spec = {**GOOD, **changes}
    return {k: v for k, v in spec.items() if v is not None}


def with_source(**changes: Any) -> dict[str, Any]:
    return with_(source={k: v for k, v in {**GOOD["source"], **changes}.items() if v is not None})


# (id, spec, the field the message names, a fragment of the message)
CASES: list[tuple[str, dict[str, Any] | None, str, str]] = [
    ("repo-uppercase", with_(repositoryName="Team/App"), "spec.repositoryName", MATCH),
    ("repo-too-short", with_(repositoryName="a"), "spec.repositoryName", "at least 2 chars long"),
    ("repo-double-slash", with_(repositoryName="team//app"), "spec.repositoryName", MATCH),
    ("repo-leading-dash", with_(repositoryName="-team"), "spec.repositoryName", MATCH),
    ("repo-trailing-slash", with_(repositoryName="team/app/"), "spec.repositoryName", MATCH),
    ("repo-too-long", with_(repositoryName="a" * 257), "spec.repositoryName", "may not be more than 256 bytes"),
    ("repo-missing", with_(repositoryName=None), "spec.repositoryName", "Required value"),
    ("registry-short", with_(registryId="12345"), "spec.registryId", MATCH),
    ("registry-letters", with_(registryId="abcdefghijkl"), "spec.registryId", MATCH),
    ("region-uppercase", with_(region="US-EAST-1"), "spec.region", MATCH),
    ("source-empty", with_(source={}), "spec.source", "source needs a tag, a digest, or both"),
    ("source-missing", with_(source=None), "spec.source", "Required value"),
    ("digest-short", with_source(digest="sha256:abc"), "spec.source.digest", MATCH),
    ("digest-md5", with_source(digest="md5:" + "a" * 32), "spec.source.digest", MATCH),
    ("digest-uppercase", with_source(digest=DIGEST.upper().replace("SHA256", "sha256")), "spec.source.digest", MATCH),
    ("source-tag-dot", with_source(tag=".hidden"), "spec.source.tag", MATCH),
    ("source-tag-dash", with_source(tag="-x"), "spec.source.tag", MATCH),
    ("source-tag-too-long", with_source(tag="x" * 129), "spec.source.tag", MATCH),
    ("source-tag-space", with_source(tag="a b"), "spec.source.tag", MATCH),
    ("source-repo-uppercase", with_source(repositoryName="UPPER"), "spec.source.repositoryName", MATCH),
    ("source-registry-short", with_source(registryId="1"), "spec.source.registryId", MATCH),
    ("tags-missing", with_(tags=None), "spec.tags", "Required value"),
    ("tags-empty", with_(tags=[]), "spec.tags", "at least 1 items"),
    ("tags-duplicate", with_(tags=["a", "a"]), "spec.tags[1]", "Duplicate value"),
    ("tags-too-many", with_(tags=[f"t{i}" for i in range(101)]), "spec.tags", "at most 100 items"),
    ("tag-space", with_(tags=["bad tag"]), "spec.tags[0]", MATCH),
    ("tag-leading-dot", with_(tags=[".x"]), "spec.tags[0]", MATCH),
    ("tag-too-long", with_(tags=["x" * 129]), "spec.tags[0]", MATCH),
    ("tag-empty-string", with_(tags=["ok", ""]), "spec.tags[1]", MATCH),
    ("tags-not-a-list", with_(tags="prod"), "spec.tags", "must be of type array"),
    ("mode-unknown", with_(mode="Sometimes"), "spec.mode", "Unsupported value"),
    ("mode-lowercase", with_(mode="enforce"), "spec.mode", "Unsupported value"),
    ("policy-unknown", with_(deletionPolicy="Orphan"), "spec.deletionPolicy", "Unsupported value"),
    ("interval-too-short", with_(driftCheckInterval="10s"), "spec.driftCheckInterval", "must be at least 30s"),
    ("interval-29s", with_(driftCheckInterval="29s"), "spec.driftCheckInterval", "must be at least 30s"),
    ("interval-zero", with_(driftCheckInterval="0s"), "spec.driftCheckInterval", "must be at least 30s"),
    ("interval-words", with_(driftCheckInterval="5 minutes"), "spec.driftCheckInterval", MATCH),
    ("interval-days", with_(driftCheckInterval="1d"), "spec.driftCheckInterval", MATCH),
    ("source-tag-is-a-target", with_(tags=["build-1", "prod"]), "spec", "must not also be listed in tags"),
    ("spec-missing", None, "spec", "Required value"),
    ("copy-unknown", with_(copy="Always"), "spec.copy", "Unsupported value"),
    ("source-region-uppercase", with_source(region="EU-WEST-1"), "spec.source.region", MATCH),
    ("referrers-empty", with_(referrers=[]), "spec.referrers", "at least 1 items"),
    (
        "referrers-all-and-a-type",
        with_(referrers=["All", "application/spdx+json"]),
        "spec.referrers",
        "list of artifact",
    ),
    ("referrers-a-string", with_(referrers="All"), "spec.referrers", "must be of type array"),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_object_is_refused(
    control_plane: KubeCluster, k8s_namespace: str, spec: dict[str, Any] | None, field: str, fragment: str
) -> None:
    obj: dict[str, Any] = {
        "apiVersion": "ecrtag.dev/v1alpha1",
        "kind": "EcrImageTag",
        "metadata": {"name": "bad", "namespace": k8s_namespace},
    }
    if spec is not None:
        obj["spec"] = spec
    result = control_plane.kubectl("create", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert result.returncode != 0, f"accepted: {spec}"
    assert "is invalid" in result.stderr
    assert field in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert control_plane.kubectl("get", "eit", "-n", k8s_namespace, "-o", "name").stdout == ""


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_a_cross_region_copy_spec_is_accepted_with_source_tag_among_tags(
    control_plane: KubeCluster, k8s_namespace: str
) -> None:
    """Another region is another registry: the source tag may be one of the target's tags."""
    spec = with_(
        tags=["build-1"],
        region="eu-west-1",
        source={"tag": "build-1", "region": "us-east-1"},
        copy="IfMissing",
        referrers=["application/spdx+json"],
    )
    obj = {"apiVersion": "ecrtag.dev/v1alpha1", "kind": "EcrImageTag", "metadata": {"name": "ok"}, "spec": spec}
    control_plane.kubectl("create", "--dry-run=server", "-n", k8s_namespace, "-f", "-", input=yaml.safe_dump(obj))


def test_the_good_spec_is_accepted(control_plane: KubeCluster, k8s_namespace: str) -> None:
    obj = {"apiVersion": "ecrtag.dev/v1alpha1", "kind": "EcrImageTag", "metadata": {"name": "ok"}, "spec": GOOD}
    control_plane.kubectl("create", "--dry-run=server", "-n", k8s_namespace, "-f", "-", input=yaml.safe_dump(obj))
