"""Item 7: BatchDeleteImage by tag removes only that tag; moto already matches ECR here (no correction)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image, put_manifest

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "deletes"


def _tags(client: ECRClient) -> dict[str, list[str]]:
    details = client.describe_images(repositoryName=REPO)["imageDetails"]
    return {d["imageDigest"]: sorted(d.get("imageTags", [])) for d in details}


def test_delete_by_tag_removes_only_that_tag_then_the_image_with_its_last_tag(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="a", seed=1)
    put_manifest(ecr_client, REPO, image.manifest, "b")
    other = push_docker_image(ecr_client, REPO, tag="c", seed=2)

    first = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "a"}])
    assert first["imageIds"] == [{"imageDigest": image.digest, "imageTag": "a"}]
    assert first["failures"] == []
    assert _tags(ecr_client) == {image.digest: ["b"], other.digest: ["c"]}

    last = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "b"}])
    assert last["imageIds"] == [{"imageDigest": image.digest, "imageTag": "b"}]
    assert _tags(ecr_client) == {other.digest: ["c"]}


def test_delete_by_digest_removes_the_image_and_every_tag(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="a", seed=3)
    put_manifest(ecr_client, REPO, image.manifest, "b")
    result = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": image.digest}])
    assert sorted(i["imageTag"] for i in result["imageIds"]) == ["a", "b"]
    assert _tags(ecr_client) == {}


def test_delete_of_a_missing_tag_is_a_failure_that_echoes_the_id(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="a", seed=4)
    result = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "gone"}])
    assert result["imageIds"] == []
    assert [(f["imageId"], f["failureCode"]) for f in result["failures"]] == [({"imageTag": "gone"}, "ImageNotFound")]
    assert _tags(ecr_client) == {image.digest: ["a"]}
