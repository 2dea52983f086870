"""Corrections 2-4 and PutImage tag handling: what ECR refuses, and what a refused push leaves behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_media import DOCKER_MANIFEST_LIST, OCI_INDEX, manifest_digest, sha256_digest
from ecr_tag_localenv.ecr_seed import (
    copy_blobs,
    copy_image,
    ensure_repository,
    push_docker_image,
    push_index,
    push_oci_image,
    put_manifest,
    upload_blob,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

SRC, DST = "source", "target"


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _digests(client: ECRClient, repository: str) -> set[str]:
    return {i["imageDigest"] for i in client.list_images(repositoryName=repository)["imageIds"]}


def test_wrong_image_digest_is_refused_and_creates_nothing(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    image = push_docker_image(ecr_client, SRC, seed=1)
    other = image.manifest + "\n"
    with pytest.raises(ClientError) as exc:
        ecr_client.put_image(repositoryName=SRC, imageManifest=other, imageTag="moved", imageDigest=image.digest)
    assert _error(exc) == ("ImageDigestDoesNotMatchException", 400)
    assert _digests(ecr_client, SRC) == {image.digest}
    # The right digest is accepted.
    response = ecr_client.put_image(
        repositoryName=SRC, imageManifest=other, imageTag="moved", imageDigest=manifest_digest(other)
    )
    assert response["image"]["imageId"]["imageDigest"] == manifest_digest(other)


def test_put_image_into_missing_repository(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    image = push_docker_image(ecr_client, SRC, seed=1)
    with pytest.raises(ClientError) as exc:
        ecr_client.put_image(repositoryName="no-such-repo", imageManifest=image.manifest, imageTag="t")
    assert _error(exc) == ("RepositoryNotFoundException", 400)


def test_invalid_json_manifest_is_a_parameter_error(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    with pytest.raises(ClientError) as exc:
        ecr_client.put_image(repositoryName=SRC, imageManifest="{not json", imageTag="t")
    assert _error(exc) == ("InvalidParameterException", 400)


@pytest.mark.parametrize("leave_out", ["config", "first-layer", "last-layer"])
def test_missing_blob_in_target_repository_is_refused(ecr_client: ECRClient, leave_out: str) -> None:
    ensure_repository(ecr_client, SRC)
    ensure_repository(ecr_client, DST)
    image = push_oci_image(ecr_client, SRC, tag="v1", seed=3, layers=3)
    missing = {
        "config": image.config_digest,
        "first-layer": image.layer_digests[0],
        "last-layer": image.layer_digests[-1],
    }[leave_out]
    assert missing is not None
    copy_blobs(ecr_client, image, DST, skip={missing})

    # BatchCheckLayerAvailability agrees with what PutImage is about to refuse.
    check = ecr_client.batch_check_layer_availability(repositoryName=DST, layerDigests=list(image.blob_digests))
    assert [f["layerDigest"] for f in check["failures"]] == [missing]
    assert {f["failureCode"] for f in check["failures"]} == {"MissingLayerDigest"}
    assert {layer["layerDigest"] for layer in check["layers"]} == set(image.blob_digests) - {missing}

    with pytest.raises(ClientError) as exc:
        put_manifest(ecr_client, DST, image.manifest, "v1", image.media_type)
    assert _error(exc) == ("LayersNotFoundException", 400)
    assert missing in exc.value.response["Error"]["Message"]
    assert _digests(ecr_client, DST) == set()

    upload_blob(ecr_client, DST, image.blobs[missing])
    assert put_manifest(ecr_client, DST, image.manifest, "v1", image.media_type) == image.digest


def test_blobs_belong_to_one_repository(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    ensure_repository(ecr_client, DST)
    image = push_docker_image(ecr_client, SRC, seed=4)
    check = ecr_client.batch_check_layer_availability(repositoryName=DST, layerDigests=list(image.blob_digests))
    assert check["layers"] == []
    with pytest.raises(ClientError) as exc:
        put_manifest(ecr_client, DST, image.manifest, "v1")
    assert _error(exc)[0] == "LayersNotFoundException"


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_index_needs_every_child_image_in_the_repository(ecr_client: ECRClient, media_type: str) -> None:
    ensure_repository(ecr_client, SRC)
    ensure_repository(ecr_client, DST)
    index = push_index(ecr_client, SRC, tag="multi", seed=5, media_type=media_type)
    arm = index.children[1]
    assert arm.platform is not None
    assert arm.platform.architecture == "arm64"

    # All blobs there, but the arm64 child image was never pushed: blobs are not images.
    with pytest.raises(ClientError) as exc:
        copy_image(ecr_client, index, DST, tag="multi", skip_children={arm.digest})
    assert _error(exc) == ("ReferencedImagesNotFoundException", 400)
    assert arm.digest in exc.value.response["Error"]["Message"]
    assert _digests(ecr_client, DST) == {index.children[0].digest}

    put_manifest(ecr_client, DST, arm.manifest, None, arm.media_type)
    assert put_manifest(ecr_client, DST, index.manifest, "multi", media_type) == index.digest


def test_moving_a_tag_leaves_the_old_image_untagged(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    old = push_docker_image(ecr_client, SRC, tag="live", seed=6)
    new = push_docker_image(ecr_client, SRC, tag="live", seed=7)
    listed = ecr_client.list_images(repositoryName=SRC)["imageIds"]
    assert sorted((i["imageDigest"], i.get("imageTag")) for i in listed) == sorted(
        [(old.digest, None), (new.digest, "live")]
    )
    untagged = ecr_client.describe_images(repositoryName=SRC, imageIds=[{"imageDigest": old.digest}])
    assert "imageTags" not in untagged["imageDetails"][0]


def test_same_manifest_same_tag_is_image_already_exists(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    image = push_docker_image(ecr_client, SRC, tag="v1", seed=8)
    with pytest.raises(ClientError) as exc:
        put_manifest(ecr_client, SRC, image.manifest, "v1")
    assert _error(exc) == ("ImageAlreadyExistsException", 400)
    # A second tag on the same image is fine and keeps the first.
    put_manifest(ecr_client, SRC, image.manifest, "v2")
    detail = ecr_client.describe_images(repositoryName=SRC)["imageDetails"]
    assert [sorted(d["imageTags"]) for d in detail] == [["v1", "v2"]]


def test_immutable_repository_refuses_a_moved_tag_with_tag_already_exists(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC, immutable=True)
    first = push_docker_image(ecr_client, SRC, tag="release", seed=9)
    second = push_docker_image(ecr_client, SRC, seed=10)
    with pytest.raises(ClientError) as exc:
        put_manifest(ecr_client, SRC, second.manifest, "release")
    # Not ImageAlreadyExistsException (moto's answer), which a retagger treats as success.
    assert _error(exc) == ("ImageTagAlreadyExistsException", 400)
    tagged = ecr_client.describe_images(repositoryName=SRC, imageIds=[{"imageTag": "release"}])
    assert tagged["imageDetails"][0]["imageDigest"] == first.digest


def test_immutable_with_exclusion_uses_wildcards(ecr_client: ECRClient) -> None:
    ecr_client.create_repository(
        repositoryName=SRC,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
    )
    a = push_docker_image(ecr_client, SRC, tag="dev-1", seed=11)
    b = push_docker_image(ecr_client, SRC, tag="v1", seed=12)
    put_manifest(ecr_client, SRC, b.manifest, "dev-1")  # excluded: mutable
    with pytest.raises(ClientError) as exc:
        put_manifest(ecr_client, SRC, a.manifest, "v1")
    assert _error(exc)[0] == "ImageTagAlreadyExistsException"


def test_complete_layer_upload_checks_digest_and_refuses_duplicates(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, SRC)
    data = b"some blob bytes"

    def upload(declared: str) -> None:
        upload_id = ecr_client.initiate_layer_upload(repositoryName=SRC)["uploadId"]
        ecr_client.upload_layer_part(
            repositoryName=SRC, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data
        )
        ecr_client.complete_layer_upload(repositoryName=SRC, uploadId=upload_id, layerDigests=[declared])

    with pytest.raises(ClientError) as exc:
        upload(sha256_digest(b"other bytes"))
    assert _error(exc)[0] == "InvalidLayerException"
    upload(sha256_digest(data))
    with pytest.raises(ClientError) as exc:
        upload(sha256_digest(data))
    assert _error(exc)[0] == "LayerAlreadyExistsException"
