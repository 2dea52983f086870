"""Manifest parsing and the spec model."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from ecr_tag_operator.manifests import (
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V1,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestError,
    digest_of,
    parse_manifest,
)
from ecr_tag_operator.spec import SpecError, parse_duration, parse_spec

from .builders import image_manifest, index_manifest, sha


@pytest.mark.parametrize("text", ['{"a": 1}', '{"a": 1}\n', '{"a": 1}\r\n', '{ "a" :1 }'])
def test_digest_is_sha256_of_the_exact_bytes(text: str) -> None:
    assert digest_of(text) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_whitespace_variants_have_distinct_digests() -> None:
    assert len({digest_of(t) for t in ['{"a":1}', '{"a":1}\n', '{"a":1}\r\n']}) == 3


def test_image_manifest_blobs_are_config_then_layers() -> None:
    m = parse_manifest(image_manifest(1, 2, 3))
    assert [b.digest for b in m.blobs] == [sha(1), sha(2), sha(3)]
    assert not m.is_index


def test_oci_manifest_without_media_type_uses_declared_type() -> None:
    text = f'{{"schemaVersion":2,"config":{{"digest":"{sha(1)}","size":1}},"layers":[]}}'
    assert parse_manifest(text, OCI_MANIFEST).media_type == OCI_MANIFEST
    assert parse_manifest(text).media_type == OCI_MANIFEST


def test_index_children_carry_platforms() -> None:
    m = parse_manifest(index_manifest(image_manifest(1), image_manifest(2)))
    assert m.is_index
    assert m.media_type == OCI_INDEX
    assert [c.platform.architecture for c in m.children if c.platform] == ["amd64", "arm64"]
    assert m.blobs == ()


def test_docker_manifest_list_is_an_index() -> None:
    text = f'{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[]}}'
    assert parse_manifest(text).is_index


@pytest.mark.parametrize(
    "text", ["not json", "[1]", f'{{"schemaVersion":1,"mediaType":"{DOCKER_MANIFEST_V1}"}}', '{"layers":[{"x":1}]}']
)
def test_unpromotable_manifests_raise(text: str) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(text)


def base(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"repositoryName": "team-a/web", "source": {"digest": sha(7)}, "tags": ["prod"]}
    raw.update(overrides)
    return raw


def test_defaults() -> None:
    s = parse_spec(base())
    assert (s.mode, s.deletion_policy, s.drift_check_interval) == ("Enforce", "Retain", timedelta(minutes=5))
    assert s.same_repository
    assert s.source_repository == "team-a/web"


def test_cross_repository_source() -> None:
    s = parse_spec(base(source={"tag": "v1", "repositoryName": "team-a/build", "registryId": "123456789012"}))
    assert not s.same_repository
    assert s.source_location == ("123456789012", None, "team-a/build")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"repositoryName": "Team-A"}, "spec.repositoryName"),
        ({"source": {}}, "source needs a tag, a digest, or both"),
        ({"source": {"digest": "sha256:abc"}}, "spec.source.digest"),
        ({"tags": []}, "spec.tags"),
        ({"tags": ["a", "a"]}, "tags must be unique"),
        ({"tags": [".bad"]}, "not valid OCI tags"),
        ({"driftCheckInterval": "10s"}, "at least 30s"),
        ({"driftCheckInterval": "5 minutes"}, "not a duration"),
        ({"mode": "Sometimes"}, "spec.mode"),
        ({"registryId": "12345"}, "spec.registryId"),
        ({"source": {"tag": "prod"}, "tags": ["prod"]}, "must not also be listed"),
    ],
)
def test_invalid_specs_name_the_field(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment.replace(".", r"\.")):
        parse_spec(base(**overrides))


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("90s", 90)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
