"""The seeding helper pushes real images: blobs uploaded, digests that are the manifest's sha256."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_media import (
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V2,
    OCI_INDEX,
    OCI_MANIFEST,
    manifest_digest,
)
from ecr_tag_localenv.ecr_seed import (
    copy_image,
    ensure_repository,
    push_docker_image,
    push_docker_manifest_list,
    push_oci_image,
    push_oci_index,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient


def _available(client: ECRClient, repository: str, digests: tuple[str, ...]) -> set[str]:
    check = client.batch_check_layer_availability(repositoryName=repository, layerDigests=list(digests))
    return {layer["layerDigest"] for layer in check["layers"] if layer.get("layerAvailability") == "AVAILABLE"}


def test_single_images_are_real_and_deterministic(ecr_client: ECRClient) -> None:
    for repo in ("one", "two"):
        ensure_repository(ecr_client, repo)
    docker = push_docker_image(ecr_client, "one", tag="d", seed=1, layers=3)
    oci = push_oci_image(ecr_client, "one", tag="o", seed=1)
    assert (docker.media_type, oci.media_type) == (DOCKER_MANIFEST_V2, OCI_MANIFEST)
    for image in (docker, oci):
        assert image.digest == manifest_digest(image.manifest)
        assert _available(ecr_client, "one", image.blob_digests) == set(image.blob_digests)
        parsed = json.loads(image.manifest)
        assert parsed["config"]["digest"] == image.config_digest
        assert tuple(layer["digest"] for layer in parsed["layers"]) == image.layer_digests
    assert len(docker.layer_digests) == 3
    assert push_docker_image(ecr_client, "two", seed=1, layers=3).digest == docker.digest
    assert push_docker_image(ecr_client, "two", seed=2, layers=3).digest != docker.digest


@pytest.mark.parametrize(
    ("push", "media_type", "child_type"),
    [
        (push_oci_index, OCI_INDEX, OCI_MANIFEST),
        (push_docker_manifest_list, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2),
    ],
)
def test_index_has_two_real_platform_children(
    ecr_client: ECRClient, push: object, media_type: str, child_type: str
) -> None:
    ensure_repository(ecr_client, "multi")
    index = push(ecr_client, "multi", "latest", 3)  # type: ignore[operator]
    assert index.media_type == media_type
    assert index.blob_digests == ()
    platforms = [(c.platform.os, c.platform.architecture) for c in index.children]
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    entries = json.loads(index.manifest)["manifests"]
    assert [(e["digest"], e["mediaType"], e["platform"]["architecture"]) for e in entries] == [
        (c.digest, child_type, c.platform.architecture) for c in index.children
    ]
    details = ecr_client.describe_images(repositoryName="multi")["imageDetails"]
    assert {d["imageDigest"]: d.get("imageTags", []) for d in details} == {
        index.digest: ["latest"],
        index.children[0].digest: [],
        index.children[1].digest: [],
    }


def test_copy_image_to_another_repository(ecr_client: ECRClient) -> None:
    for repo in ("src", "dst"):
        ensure_repository(ecr_client, repo)
    index = push_oci_index(ecr_client, "src", tag="v1", seed=4)
    copied = copy_image(ecr_client, index, "dst", tag="promoted")
    assert copied.digest == index.digest
    got = ecr_client.batch_get_image(
        repositoryName="dst", imageIds=[{"imageTag": "promoted"}], acceptedMediaTypes=[OCI_INDEX]
    )["images"]
    assert [i["imageManifest"] for i in got] == [index.manifest]


def test_cli_prints_the_digest(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecr_tag_localenv.ecr_seed",
            "--endpoint-url",
            ecr.endpoint_url,
            "--repository",
            "demo/app",
            "--tag",
            "v1",
            "--kind",
            "index",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **ecr.env},
    )
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip()
    described = ecr_client.describe_images(repositoryName="demo/app", imageIds=[{"imageTag": "v1"}])
    assert [d["imageDigest"] for d in described["imageDetails"]] == [digest]
    assert described["imageDetails"][0]["imageManifestMediaType"] == OCI_INDEX
