"""Corrections 5 and 6: BatchGetImage failures and acceptedMediaTypes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from ecr_tag_localenv.ecr_media import (
    ALL_MODERN_MANIFEST_TYPES,
    DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V2,
    OCI_INDEX,
    OCI_MANIFEST,
)
from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image, push_oci_image, push_oci_index

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "reads"
NOWHERE = "sha256:" + "0" * 64


def _get(client: ECRClient, image_ids: list[dict[str, str]], accepted: list[str] | None = None) -> Any:
    kwargs: dict[str, Any] = {"repositoryName": REPO, "imageIds": image_ids}
    if accepted is not None:
        kwargs["acceptedMediaTypes"] = accepted
    return client.batch_get_image(**kwargs)


def test_tag_and_digest_that_disagree(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    a = push_docker_image(ecr_client, REPO, tag="a", seed=1)
    b = push_docker_image(ecr_client, REPO, tag="b", seed=2)
    asked = {"imageTag": "a", "imageDigest": b.digest}
    result = _get(ecr_client, [asked])
    assert result["images"] == []
    assert result["failures"] == [
        {
            "imageId": asked,
            "failureCode": "ImageTagDoesNotMatchDigest",
            "failureReason": result["failures"][0]["failureReason"],
        }
    ]
    # When they agree, the image comes back under that exact id.
    agreeing = _get(ecr_client, [{"imageTag": "a", "imageDigest": a.digest}])
    assert agreeing["failures"] == []
    assert [i["imageId"] for i in agreeing["images"]] == [{"imageTag": "a", "imageDigest": a.digest}]


def test_every_failure_echoes_the_image_id_as_asked(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    push_docker_image(ecr_client, REPO, tag="present", seed=3)
    asked = [
        {"imageDigest": NOWHERE},
        {"imageTag": "absent"},
        {"imageTag": "absent", "imageDigest": NOWHERE},
        {"imageDigest": "sha256:not-hex"},
    ]
    result = _get(ecr_client, asked)
    assert result["images"] == []
    assert [f["imageId"] for f in result["failures"]] == asked  # no invented imageTag "null"
    assert [f["failureCode"] for f in result["failures"]] == [
        "ImageNotFound",
        "ImageNotFound",
        "ImageNotFound",
        "InvalidImageDigest",
    ]


def test_by_tag_a_type_not_accepted_is_not_returned_as_if_it_matched(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    oci = push_oci_image(ecr_client, REPO, tag="oci", seed=4)
    result = _get(ecr_client, [{"imageTag": "oci"}], accepted=[DOCKER_MANIFEST_V2])
    assert result["images"] == []
    assert [(f["imageId"], f["failureCode"]) for f in result["failures"]] == [({"imageTag": "oci"}, "ImageNotFound")]
    assert OCI_MANIFEST in result["failures"][0]["failureReason"]
    # Accepting the stored type returns it unchanged.
    ok = _get(ecr_client, [{"imageTag": "oci"}], accepted=[OCI_MANIFEST])
    assert [(i["imageManifest"], i["imageManifestMediaType"]) for i in ok["images"]] == [(oci.manifest, OCI_MANIFEST)]


def test_by_digest_never_converts(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    oci = push_oci_image(ecr_client, REPO, tag="oci", seed=5)
    docker = push_docker_image(ecr_client, REPO, tag="docker", seed=6)
    result = _get(
        ecr_client,
        [{"imageDigest": oci.digest}, {"imageDigest": docker.digest}],
        accepted=[DOCKER_MANIFEST_V1],
    )
    assert result["failures"] == []
    assert [(i["imageManifest"], i["imageManifestMediaType"]) for i in result["images"]] == [
        (oci.manifest, OCI_MANIFEST),
        (docker.manifest, DOCKER_MANIFEST_V2),
    ]


def test_by_tag_schema2_is_converted_to_schema1_when_only_schema1_is_accepted(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="legacy", seed=7, layers=3)
    result = _get(ecr_client, [{"imageTag": "legacy"}], accepted=[DOCKER_MANIFEST_V1])
    assert result["failures"] == []
    (got,) = result["images"]
    assert got["imageManifestMediaType"] == DOCKER_MANIFEST_V1
    assert got["imageManifest"] != image.manifest
    converted = json.loads(got["imageManifest"])
    assert converted["schemaVersion"] == 1
    assert converted["tag"] == "legacy"
    assert converted["architecture"] == "amd64"  # from the uploaded image config
    assert [layer["blobSum"] for layer in converted["fsLayers"]] == list(reversed(image.layer_digests))
    assert len(converted["history"]) == 3
    # The id names the stored image, which the converted text does not hash to.
    assert got["imageId"] == {"imageTag": "legacy", "imageDigest": image.digest}


def test_index_by_tag(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=8)
    # Without acceptedMediaTypes the documented defaults (no index types) apply: a failure, not a swap.
    default = _get(ecr_client, [{"imageTag": "multi"}])
    assert default["images"] == []
    assert [f["failureCode"] for f in default["failures"]] == ["ImageNotFound"]
    everything = _get(ecr_client, [{"imageTag": "multi"}], accepted=list(ALL_MODERN_MANIFEST_TYPES))
    assert [(i["imageManifest"], i["imageManifestMediaType"]) for i in everything["images"]] == [
        (index.manifest, OCI_INDEX)
    ]
    children = _get(ecr_client, [{"imageDigest": c.digest} for c in index.children])
    assert [i["imageManifest"] for i in children["images"]] == [c.manifest for c in index.children]


def test_missing_repository(ecr_client: ECRClient) -> None:
    with pytest.raises(ecr_client.exceptions.RepositoryNotFoundException):
        ecr_client.batch_get_image(repositoryName="no-such-repo", imageIds=[{"imageTag": "x"}])
