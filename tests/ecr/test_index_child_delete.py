"""BatchDeleteImage refuses to delete an image that an index in the same repository references.

Where ECR says so:
- botocore's ECR model (service-2.json): ImageFailureCode includes ``ImageReferencedByManifestList``;
  BatchDeleteImageResponse reports per-image ``failures`` (ImageFailure: imageId, failureCode,
  failureReason) beside the deleted ``imageIds``, so a refusal is a failure entry, not an exception.
- ECR API reference, BatchDeleteImage: "When you remove the last tag from an image, the image is deleted
  from your repository. You can completely delete an image (and all of its tags) by specifying the image's
  digest" -- both are what the refusal prevents for an index child.
- Public reports of ECR's answer, e.g. aws/containers-roadmap#1567 (the last tag of an image referenced by a
  manifest list cannot be deleted) and cleanup write-ups quoting ``failureCode:
  "ImageReferencedByManifestList"``, ``failureReason: "Requested image referenced by manifest list"`` for
  child manifests deleted by digest.
The references are per repository: an index elsewhere does not protect a copy of its child.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ecr_tag_localenv.ecr_media import ALL_MODERN_MANIFEST_TYPES
from ecr_tag_localenv.ecr_seed import ensure_repository, push_oci_index, push_verbatim, put_manifest

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO, OTHER = "multiarch", "elsewhere"


def _failures(result: Any) -> list[tuple[dict[str, str], str, str]]:
    return [(f["imageId"], f["failureCode"], f["failureReason"]) for f in result["failures"]]


def _digests(client: ECRClient, repository: str) -> set[str]:
    ids = client.list_images(repositoryName=repository)["imageIds"]
    return {i["imageDigest"] for i in ids}


def test_last_tag_of_an_index_child_is_refused_and_kept(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=1)
    child = index.children[0]
    put_manifest(ecr_client, REPO, child.manifest, "amd64")
    put_manifest(ecr_client, REPO, child.manifest, "amd64-latest")

    # Not the last tag: removed as usual.
    first = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "amd64-latest"}])
    assert first["imageIds"] == [{"imageDigest": child.digest, "imageTag": "amd64-latest"}]
    assert first["failures"] == []

    # The last tag: refused per image, and the call itself succeeds.
    last = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "amd64"}])
    assert last["imageIds"] == []
    assert _failures(last) == [
        ({"imageTag": "amd64"}, "ImageReferencedByManifestList", "Requested image referenced by manifest list")
    ]
    tagged = ecr_client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "amd64"}])["imageDetails"]
    assert [d["imageDigest"] for d in tagged] == [child.digest]
    # The index is whole: its child can still be read by digest.
    got = ecr_client.batch_get_image(
        repositoryName=REPO,
        imageIds=[{"imageDigest": c.digest} for c in index.children],
        acceptedMediaTypes=list(ALL_MODERN_MANIFEST_TYPES),
    )
    assert got["failures"] == []
    assert [i["imageManifest"] for i in got["images"]] == [c.manifest for c in index.children]


def test_an_index_child_is_not_deleted_by_digest(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=2)
    child = index.children[1]
    result = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": child.digest}])
    assert result["imageIds"] == []
    assert _failures(result) == [
        ({"imageDigest": child.digest}, "ImageReferencedByManifestList", "Requested image referenced by manifest list")
    ]
    assert _digests(ecr_client, REPO) == {index.digest, *(c.digest for c in index.children)}


def test_children_are_free_once_the_index_is_gone(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=3)
    first, second = index.children
    # Ids are handled in order: the child before its index is refused, after it is deleted.
    result = ecr_client.batch_delete_image(
        repositoryName=REPO,
        imageIds=[{"imageDigest": first.digest}, {"imageTag": "multi"}, {"imageDigest": second.digest}],
    )
    assert result["imageIds"] == [
        {"imageDigest": index.digest, "imageTag": "multi"},
        {"imageDigest": second.digest},
    ]
    assert [f[:2] for f in _failures(result)] == [({"imageDigest": first.digest}, "ImageReferencedByManifestList")]
    again = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": first.digest}])
    assert again["imageIds"] == [{"imageDigest": first.digest}]
    assert again["failures"] == []
    assert _digests(ecr_client, REPO) == set()


def test_an_index_in_another_repository_does_not_protect(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    ensure_repository(ecr_client, OTHER)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=4)
    child = index.children[0]
    copy = push_verbatim(ecr_client, OTHER, child.manifest, "solo", child.media_type, child.blobs)
    assert copy.digest == child.digest
    result = ecr_client.batch_delete_image(repositoryName=OTHER, imageIds=[{"imageTag": "solo"}])
    assert result["imageIds"] == [{"imageDigest": child.digest, "imageTag": "solo"}]
    assert result["failures"] == []
    assert _digests(ecr_client, OTHER) == set()
    assert child.digest in _digests(ecr_client, REPO)
