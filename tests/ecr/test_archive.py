"""The archive storage class: UpdateImageStorageClass, imageStatus, and what an archived image can't do.

Where ECR says so:
- botocore's ECR model (boto3 1.44 has the operation): UpdateImageStorageClass(repositoryName, imageId,
  targetStorageClass STANDARD|ARCHIVE) answers imageStatus ACTIVE|ARCHIVED|ACTIVATING, errors include
  ImageNotFoundException and ImageStorageClassUpdateNotSupportedException; ListImagesFilter and
  DescribeImagesFilter have imageStatus (ImageStatusFilter: ACTIVE|ARCHIVED|ACTIVATING|ANY) -- "If not
  specified, only images with ACTIVE status are returned"; ImageDetail has imageStatus, lastArchivedAt,
  lastActivatedAt; LayerAvailability has ARCHIVED.
- ECR user guide, "Archiving an image": archived images cannot be pulled ("fail with a 404 error") but can
  be described and listed with status ARCHIVED; "Restoring an image": the restore takes up to 20 minutes,
  the image is ACTIVATING meanwhile and cannot be pulled until it completes; re-pushing an archived image
  restores it immediately; "Pushing an image": "If you push an image that is currently archived, that
  image will be automatically restored".
Where the docs are silent (the emulator's choices): BatchGetImage answers an archived or activating image
with ``ImageNotFound`` (what a 404 means) and a reason naming the status; a blob is ARCHIVED when only
archived (or activating) images of the repository use it; asking for the class an image already has is a
no-op; archiving an image while it is ACTIVATING is ImageStorageClassUpdateNotSupportedException.
The emulator restores after a short delay, set through /_emulator/lifecycle.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_control import ControlError
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_lifecycle import DEFAULT_RESTORE_SECONDS
from ecr_tag_localenv.ecr_media import ALL_MODERN_MANIFEST_TYPES
from ecr_tag_localenv.ecr_seed import (
    PushedImage,
    ensure_repository,
    push_docker_image,
    push_verbatim,
    put_manifest,
    upload_blob,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient
    from mypy_boto3_ecr.literals import ImageStatusFilterType, TargetStorageClassType
    from mypy_boto3_ecr.type_defs import ImageIdentifierTypeDef

REPO = "archive"


def _storage(client: ECRClient, image: PushedImage, target: TargetStorageClassType) -> str:
    response = client.update_image_storage_class(
        repositoryName=REPO, imageId={"imageDigest": image.digest}, targetStorageClass=target
    )
    assert response["imageId"]["imageDigest"] == image.digest
    return response["imageStatus"]


def _details(client: ECRClient, status: ImageStatusFilterType | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"filter": {"imageStatus": status}} if status else {}
    return {d["imageDigest"]: d for d in client.describe_images(repositoryName=REPO, **kwargs)["imageDetails"]}


def _listed(client: ECRClient, status: ImageStatusFilterType | None = None) -> set[tuple[str, str]]:
    kwargs: dict[str, Any] = {"filter": {"imageStatus": status}} if status else {}
    ids = client.list_images(repositoryName=REPO, **kwargs)["imageIds"]
    return {(i["imageDigest"], i.get("imageTag", "")) for i in ids}


def _pull(client: ECRClient, *image_ids: ImageIdentifierTypeDef) -> tuple[list[str], list[tuple[str, str]]]:
    got = client.batch_get_image(
        repositoryName=REPO, imageIds=list(image_ids), acceptedMediaTypes=list(ALL_MODERN_MANIFEST_TYPES)
    )
    return [i["imageId"]["imageDigest"] for i in got["images"]], [
        (f["failureCode"], f["failureReason"]) for f in got["failures"]
    ]


def _status_after(client: ECRClient, image: PushedImage, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll DescribeImages (any status) until ``image`` has ``wanted``; its ImageDetail."""
    deadline = time.monotonic() + timeout
    while True:
        detail: dict[str, Any] = _details(client, "ANY")[image.digest]
        if detail["imageStatus"] == wanted or time.monotonic() > deadline:
            return detail
        time.sleep(0.05)  # poll interval


def test_archive_hides_the_image_from_default_listings_and_refuses_pulls(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    old = push_docker_image(ecr_client, REPO, tag="old", seed=1)
    new = push_docker_image(ecr_client, REPO, tag="new", seed=2)
    before = datetime.now().astimezone()
    assert _storage(ecr_client, old, "ARCHIVE") == "ARCHIVED"

    assert set(_details(ecr_client)) == {new.digest}
    assert _listed(ecr_client) == {(new.digest, "new")}
    archived = _details(ecr_client, "ARCHIVED")
    assert set(archived) == {old.digest}
    assert archived[old.digest]["imageStatus"] == "ARCHIVED"
    assert archived[old.digest]["imageTags"] == ["old"]  # tags stay on an archived image
    assert archived[old.digest]["lastArchivedAt"] >= before.replace(microsecond=0)
    assert "lastActivatedAt" not in archived[old.digest]
    assert _listed(ecr_client, "ARCHIVED") == {(old.digest, "old")}
    assert _listed(ecr_client, "ANY") == {(old.digest, "old"), (new.digest, "new")}
    assert {d: x["imageStatus"] for d, x in _details(ecr_client, "ANY").items()} == {
        old.digest: "ARCHIVED",
        new.digest: "ACTIVE",
    }
    # Named by id, the default ACTIVE filter still applies; asking for ARCHIVED finds it.
    with pytest.raises(ecr_client.exceptions.ImageNotFoundException):
        ecr_client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "old"}])
    named = ecr_client.describe_images(
        repositoryName=REPO, imageIds=[{"imageTag": "old"}], filter={"imageStatus": "ARCHIVED"}
    )["imageDetails"]
    assert [(d["imageDigest"], d["imageStatus"]) for d in named] == [(old.digest, "ARCHIVED")]

    pulled, failures = _pull(ecr_client, {"imageTag": "old"}, {"imageDigest": old.digest}, {"imageTag": "new"})
    assert pulled == [new.digest]
    assert [code for code, _ in failures] == ["ImageNotFound", "ImageNotFound"]
    assert all("ARCHIVED" in reason for _, reason in failures)


def test_restore_goes_through_activating_for_as_long_as_the_delay_says(
    ecr: RunningEmulator, ecr_client: ECRClient
) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="v1", seed=3)
    _storage(ecr_client, image, "ARCHIVE")
    ecr.control.set_restore_seconds(3600)  # hold it in ACTIVATING
    assert _storage(ecr_client, image, "STANDARD") == "ACTIVATING"
    assert _storage(ecr_client, image, "STANDARD") == "ACTIVATING"  # asking again changes nothing

    assert set(_details(ecr_client, "ACTIVATING")) == {image.digest}
    assert _details(ecr_client) == {}
    assert _listed(ecr_client, "ACTIVATING") == {(image.digest, "v1")}
    _, failures = _pull(ecr_client, {"imageTag": "v1"})
    assert [code for code, _ in failures] == ["ImageNotFound"]
    assert "ACTIVATING" in failures[0][1]
    with pytest.raises(ClientError) as exc:
        _storage(ecr_client, image, "ARCHIVE")
    assert exc.value.response["Error"]["Code"] == "ImageStorageClassUpdateNotSupportedException"

    ecr.control.set_restore_seconds(0)  # let it finish
    detail = _status_after(ecr_client, image, "ACTIVE")
    assert detail["imageStatus"] == "ACTIVE"
    assert detail["lastActivatedAt"] >= detail["lastArchivedAt"]
    assert set(_details(ecr_client)) == {image.digest}
    assert _pull(ecr_client, {"imageTag": "v1"}) == ([image.digest], [])
    assert _storage(ecr_client, image, "STANDARD") == "ACTIVE"  # already standard: a no-op


def test_the_default_restore_delay_is_short(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    assert ecr.control.lifecycle() == {"restore_seconds": DEFAULT_RESTORE_SECONDS}
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="v1", seed=4)
    _storage(ecr_client, image, "ARCHIVE")
    started = time.monotonic()
    assert _storage(ecr_client, image, "STANDARD") == "ACTIVATING"
    assert _status_after(ecr_client, image, "ACTIVE", timeout=DEFAULT_RESTORE_SECONDS + 5)["imageStatus"] == "ACTIVE"
    assert time.monotonic() - started >= DEFAULT_RESTORE_SECONDS


def test_layers_used_only_by_archived_images_are_archived(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    first = push_docker_image(ecr_client, REPO, tag="first", seed=5)
    # The same blobs under a second manifest (a trailing newline makes another image).
    twin = push_verbatim(ecr_client, REPO, first.manifest + "\n", "twin")
    other = push_docker_image(ecr_client, REPO, tag="other", seed=6)
    unused = upload_blob(ecr_client, REPO, b"uploaded, in no manifest")

    def availability() -> dict[str, str]:
        digests = [*first.blob_digests, *other.blob_digests, unused]
        layers = ecr_client.batch_check_layer_availability(repositoryName=REPO, layerDigests=digests)["layers"]
        return {layer["layerDigest"]: layer["layerAvailability"] for layer in layers}

    _storage(ecr_client, first, "ARCHIVE")
    assert set(availability().values()) == {"AVAILABLE"}  # the twin still uses them
    _storage(ecr_client, twin, "ARCHIVE")
    assert availability() == {
        **dict.fromkeys(first.blob_digests, "ARCHIVED"),
        **dict.fromkeys(other.blob_digests, "AVAILABLE"),
        unused: "AVAILABLE",
    }


def test_pushing_an_archived_image_restores_it_at_once(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ecr.control.set_restore_seconds(3600)  # a restore through UpdateImageStorageClass would not finish
    ensure_repository(ecr_client, REPO)
    same_tag = push_docker_image(ecr_client, REPO, tag="v1", seed=7)
    new_tag = push_docker_image(ecr_client, REPO, tag="v2", seed=8)
    activating = push_docker_image(ecr_client, REPO, tag="v3", seed=9)
    for image in (same_tag, new_tag, activating):
        _storage(ecr_client, image, "ARCHIVE")
    _storage(ecr_client, activating, "STANDARD")

    # Pushed again under the tag it has: no ImageAlreadyExistsException, it is restored.
    assert put_manifest(ecr_client, REPO, same_tag.manifest, "v1") == same_tag.digest
    assert put_manifest(ecr_client, REPO, new_tag.manifest, "v2-again") == new_tag.digest
    assert put_manifest(ecr_client, REPO, activating.manifest, "v3") == activating.digest
    details = _details(ecr_client)
    assert {d: x["imageStatus"] for d, x in details.items()} == dict.fromkeys(
        (same_tag.digest, new_tag.digest, activating.digest), "ACTIVE"
    )
    assert sorted(details[new_tag.digest]["imageTags"]) == ["v2", "v2-again"]
    assert "lastActivatedAt" in details[same_tag.digest]
    pulled, failures = _pull(ecr_client, {"imageTag": "v1"}, {"imageTag": "v2"}, {"imageTag": "v3"})
    assert (pulled, failures) == ([same_tag.digest, new_tag.digest, activating.digest], [])


def test_update_image_storage_class_refusals(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="v1", seed=10)
    with pytest.raises(ecr_client.exceptions.ImageNotFoundException):
        ecr_client.update_image_storage_class(
            repositoryName=REPO, imageId={"imageTag": "missing"}, targetStorageClass="ARCHIVE"
        )
    with pytest.raises(ecr_client.exceptions.RepositoryNotFoundException):
        ecr_client.update_image_storage_class(
            repositoryName="no-such-repo", imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE"
        )
    with pytest.raises(ecr_client.exceptions.InvalidParameterException):
        ecr_client.update_image_storage_class(
            repositoryName=REPO,
            imageId={"imageTag": "v1"},
            targetStorageClass="GLACIER",  # type: ignore[arg-type]
        )
    assert _storage(ecr_client, image, "ARCHIVE") == "ARCHIVED"
    assert _storage(ecr_client, image, "ARCHIVE") == "ARCHIVED"  # already archived: a no-op
    with pytest.raises(ecr_client.exceptions.InvalidParameterException):
        ecr_client.list_images(repositoryName=REPO, filter={"imageStatus": "FROZEN"})  # type: ignore[typeddict-item]


def test_restore_delay_control(ecr: RunningEmulator) -> None:
    assert ecr.control.set_restore_seconds(2.5) == {"restore_seconds": 2.5}
    assert ecr.control.lifecycle() == {"restore_seconds": 2.5}
    with pytest.raises(ControlError, match="non-negative"):
        ecr.control.set_restore_seconds(-1)
    ecr.control.reset_moto()
    assert ecr.control.lifecycle() == {"restore_seconds": DEFAULT_RESTORE_SECONDS}
