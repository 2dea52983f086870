"""Item 8: DescribeImages, ListImages and BatchGetImage still agree after everything else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ecr_tag_localenv.ecr_media import (
    ALL_MODERN_MANIFEST_TYPES,
    DOCKER_MANIFEST_V2,
    OCI_INDEX,
    OCI_MANIFEST,
)
from ecr_tag_localenv.ecr_seed import (
    ensure_repository,
    push_docker_image,
    push_oci_image,
    push_oci_index,
    put_manifest,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "mixed"


def test_describe_list_and_get_agree(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    docker = push_docker_image(ecr_client, REPO, tag="docker", seed=1)
    oci = push_oci_image(ecr_client, REPO, tag="oci", seed=2)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=3)
    put_manifest(ecr_client, REPO, docker.manifest, "also-docker")
    moved_from = push_oci_image(ecr_client, REPO, tag="moving", seed=4)
    put_manifest(ecr_client, REPO, oci.manifest, "moving")

    details = {d["imageDigest"]: d for d in ecr_client.describe_images(repositoryName=REPO)["imageDetails"]}
    expected = {
        docker.digest: (["also-docker", "docker"], DOCKER_MANIFEST_V2),
        oci.digest: (["moving", "oci"], OCI_MANIFEST),
        index.digest: (["multi"], OCI_INDEX),
        index.children[0].digest: ([], OCI_MANIFEST),
        index.children[1].digest: ([], OCI_MANIFEST),
        moved_from.digest: ([], OCI_MANIFEST),
    }
    assert {k: (sorted(d.get("imageTags", [])), d["imageManifestMediaType"]) for k, d in details.items()} == expected

    untagged = ecr_client.list_images(repositoryName=REPO, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert {i["imageDigest"] for i in untagged} == {c.digest for c in index.children} | {moved_from.digest}

    by_tag = ecr_client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "moving"}])["imageDetails"]
    assert [d["imageDigest"] for d in by_tag] == [oci.digest]

    got = ecr_client.batch_get_image(
        repositoryName=REPO,
        imageIds=[{"imageTag": t} for t in ("docker", "oci", "multi", "moving")],
        acceptedMediaTypes=list(ALL_MODERN_MANIFEST_TYPES),
    )
    assert got["failures"] == []
    assert [(i["imageId"]["imageTag"], i["imageId"]["imageDigest"], i["imageManifest"]) for i in got["images"]] == [
        ("docker", docker.digest, docker.manifest),
        ("oci", oci.digest, oci.manifest),
        ("multi", index.digest, index.manifest),
        ("moving", oci.digest, oci.manifest),
    ]


def test_describe_a_missing_image_raises(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    push_docker_image(ecr_client, REPO, tag="here", seed=5)
    with pytest.raises(ecr_client.exceptions.ImageNotFoundException):
        ecr_client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "not-here"}])
