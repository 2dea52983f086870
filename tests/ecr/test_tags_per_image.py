"""An image holds at most 1,000 tags; PutImage of one more is LimitExceededException.

Where ECR says so:
- ECR Public's user guide, pushing an image: "You can apply up to 1000 tags per image" (the private
  registry's guide once said 100; ECR's own error, below, names 1000).
- botocore's ECR model: PutImage's errors include ``LimitExceededException`` ("The operation did not succeed
  because it would have exceeded a service limit for your account").
- ECR's message, as CloudTrail records it (gist gurchik/e75cb1aa1575b2a4439fe32477019745): "Adding tag
  'TAG_NAME' to an image in the repository with name 'REPOSITORY' in registry with id 'ACCOUNT_ID' exceeds
  the maximum allowed number of tags per image which is '1000'".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image, put_manifest

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "many-tags"


def test_the_1001st_tag_is_limit_exceeded_with_ecrs_message(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="t0", seed=1)
    other = push_docker_image(ecr_client, REPO, tag="elsewhere", seed=2)
    for i in range(1, 1000):
        ecr_client.put_image(repositoryName=REPO, imageManifest=image.manifest, imageTag=f"t{i}")
    registry = ecr_client.describe_repositories(repositoryNames=[REPO])["repositories"][0]["registryId"]

    for refused in ("t1000", "elsewhere"):  # a new tag, and a tag that would move here from another image
        with pytest.raises(ClientError) as exc:
            put_manifest(ecr_client, REPO, image.manifest, refused)
        error = exc.value.response["Error"]
        assert (error["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
            "LimitExceededException",
            400,
        )
        assert error["Message"] == (
            f"Adding tag '{refused}' to an image in the repository with name '{REPO}' in registry with id "
            f"'{registry}' exceeds the maximum allowed number of tags per image which is '1000'"
        )

    details = {
        d["imageDigest"]: d.get("imageTags", [])
        for d in ecr_client.describe_images(repositoryName=REPO)["imageDetails"]
    }
    assert len(details[image.digest]) == 1000
    assert "t1000" not in details[image.digest]
    assert details[other.digest] == ["elsewhere"]  # the refused move left the tag where it was

    # A tag the image already has is still ImageAlreadyExistsException, not the limit.
    with pytest.raises(ClientError) as exc:
        put_manifest(ecr_client, REPO, image.manifest, "t999")
    assert exc.value.response["Error"]["Code"] == "ImageAlreadyExistsException"
    # Freeing one tag makes room for one more.
    ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "t0"}])
    put_manifest(ecr_client, REPO, image.manifest, "t1000")
