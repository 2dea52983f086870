"""Each region has a registry of its own: a repository made in one region is not in another.

ECR user guide, "Amazon ECR private registry" (the registry URL is ``ACCOUNT.dkr.ecr.REGION.amazonaws.com``)
and "Private registry settings" ("configured separately for each Region"); ECR has "service endpoints in
each supported Region" (service model documentation); a repository's ARN and URI name its Region
(Repository.repositoryArn / repositoryUri). The region of a request is its SigV4 credential scope.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, DUMMY, assume_role, repository_policy
from ecr_tag_localenv.ecr_launcher import RunningEmulator

REPO = "team-a/web"


def _ecr(ecr: RunningEmulator, region: str) -> Any:
    return DUMMY.client("ecr", ecr.endpoint_url, region)


def test_repository_is_visible_in_its_own_region_only(ecr: RunningEmulator) -> None:
    ireland, virginia = _ecr(ecr, "eu-west-1"), _ecr(ecr, "us-east-1")
    image = ecr_seed.push(ireland, REPO, "v1", "docker", seed="region")
    repositories = ireland.describe_repositories()["repositories"]
    assert [r["repositoryArn"] for r in repositories] == [f"arn:aws:ecr:eu-west-1:{DEFAULT_ACCOUNT}:repository/{REPO}"]
    assert repositories[0]["repositoryUri"] == f"{DEFAULT_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{REPO}"
    assert virginia.describe_repositories()["repositories"] == []
    with pytest.raises(ClientError) as exc:
        virginia.batch_get_image(repositoryName=REPO, imageIds=[{"imageDigest": image.digest}])
    assert exc.value.response["Error"]["Code"] == "RepositoryNotFoundException"


def test_same_name_in_two_regions_holds_different_images(ecr: RunningEmulator) -> None:
    ireland, virginia = _ecr(ecr, "eu-west-1"), _ecr(ecr, "us-east-1")
    first = ecr_seed.push(ireland, REPO, "v1", "docker", seed="one")
    second = ecr_seed.push(virginia, REPO, "v1", "docker", seed="two")
    assert first.digest != second.digest
    assert ireland.list_images(repositoryName=REPO)["imageIds"] == [{"imageDigest": first.digest, "imageTag": "v1"}]
    assert virginia.list_images(repositoryName=REPO)["imageIds"] == [{"imageDigest": second.digest, "imageTag": "v1"}]
    # Blobs belong to the region's repository too.
    missing = virginia.batch_check_layer_availability(repositoryName=REPO, layerDigests=list(first.blob_digests))
    assert {f["failureCode"] for f in missing["failures"]} == {"MissingLayerDigest"}


def test_cross_account_policy_applies_in_its_region_only(ecr: RunningEmulator) -> None:
    """A repository policy is set on one region's repository; the same name elsewhere is another resource."""
    other = assume_role(ecr.endpoint_url, "333333333333")
    for region in ("eu-west-1", "us-east-1"):
        ecr_seed.push(_ecr(ecr, region), REPO, "v1", "docker", seed=region)
    _ecr(ecr, "eu-west-1").set_repository_policy(
        repositoryName=REPO, policyText=repository_policy("333333333333", actions=("ecr:BatchGetImage",))
    )
    kwargs: dict[str, Any] = {"repositoryName": REPO, "registryId": DEFAULT_ACCOUNT, "imageIds": [{"imageTag": "v1"}]}
    assert other.client("ecr", ecr.endpoint_url, "eu-west-1").batch_get_image(**kwargs)["images"]
    with pytest.raises(ClientError) as exc:
        other.client("ecr", ecr.endpoint_url, "us-east-1").batch_get_image(**kwargs)
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
