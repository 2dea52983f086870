"""Several accounts in one emulator: each sees its own registry; another account's repository only through
its repository policy.

ECR user guide, "Private repository policies" / "Repository policy examples" (allow another account to
pull: the policy names the account as principal and the ecr:BatchGetImage, ecr:BatchCheckLayerAvailability,
ecr:GetDownloadUrlForLayer actions); the service model's ``registryId`` on every repository operation ("The
Amazon Web Services account ID associated with the registry ... If you do not specify a registry, the
default registry is assumed."); IAM user guide, "Troubleshoot access denied error messages" for the
denial's wording (AccessDeniedException, "... because no resource-based policy allows the ACTION action").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import (
    DEFAULT_ACCOUNT,
    PULL_ACTIONS,
    PUSH_ACTIONS,
    AssumedRole,
    assume_role,
    repository_policy,
)
from ecr_tag_localenv.ecr_launcher import RunningEmulator

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

ACCOUNT_B = "222222222222"
REPO = "team-a/web"


def _error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return str(exc.value.response["Error"]["Code"]), str(exc.value.response["Error"]["Message"])


@pytest.fixture
def account_b(ecr: RunningEmulator) -> AssumedRole:
    return assume_role(ecr.endpoint_url, ACCOUNT_B)


@pytest.fixture
def ecr_b(ecr: RunningEmulator, account_b: AssumedRole) -> ECRClient:
    client: ECRClient = account_b.client("ecr", ecr.endpoint_url)
    return client


def test_assumed_role_credentials_belong_to_the_other_account(ecr: RunningEmulator, account_b: AssumedRole) -> None:
    """STS AssumeRole of a role in account B gives credentials of B (the way moto and AWS switch accounts)."""
    identity = account_b.client("sts", ecr.endpoint_url).get_caller_identity()
    assert identity["Account"] == ACCOUNT_B
    assert identity["Arn"] == account_b.arn
    assert account_b.role_arn == f"arn:aws:iam::{ACCOUNT_B}:role/ecr-tag-test"


def test_each_account_sees_its_own_registry(ecr_client: ECRClient, ecr_b: ECRClient) -> None:
    """A repository belongs to one registry; DescribeRepositories without registryId is the caller's own."""
    ecr_seed.ensure_repository(ecr_client, REPO)
    ecr_seed.ensure_repository(ecr_b, "team-b/api")
    assert [r["repositoryName"] for r in ecr_client.describe_repositories()["repositories"]] == [REPO]
    mine = ecr_b.describe_repositories()["repositories"]
    assert [(r["repositoryName"], r["registryId"]) for r in mine] == [("team-b/api", ACCOUNT_B)]
    assert mine[0]["repositoryArn"] == f"arn:aws:ecr:us-east-1:{ACCOUNT_B}:repository/team-b/api"
    code, _ = _error(ecr_b.describe_images, repositoryName=REPO)
    assert code == "RepositoryNotFoundException"


def test_cross_account_read_is_denied_without_a_repository_policy(ecr_client: ECRClient, ecr_b: ECRClient) -> None:
    image = ecr_seed.push(ecr_client, REPO, "v1", "docker", seed="deny")
    for call, kwargs in [
        (ecr_b.batch_get_image, {"imageIds": [{"imageTag": "v1"}]}),
        (ecr_b.batch_check_layer_availability, {"layerDigests": list(image.blob_digests)}),
        (ecr_b.describe_images, {}),
    ]:
        code, message = _error(call, repositoryName=REPO, registryId=DEFAULT_ACCOUNT, **kwargs)
        assert code == "AccessDeniedException"
        assert "because no resource-based policy allows the ecr:" in message
        assert f"arn:aws:ecr:us-east-1:{DEFAULT_ACCOUNT}:repository/{REPO}" in message
    # A repository that does not exist is denied too: another account learns nothing from the answer.
    code, _ = _error(ecr_b.describe_images, repositoryName="no/such", registryId=DEFAULT_ACCOUNT)
    assert code == "AccessDeniedException"
    code, _ = _error(ecr_b.describe_repositories, registryId=DEFAULT_ACCOUNT)
    assert code == "AccessDeniedException"


def test_repository_policy_lets_the_named_account_pull(
    ecr_client: ECRClient, ecr_b: ECRClient, account_b: AssumedRole
) -> None:
    image = ecr_seed.push(ecr_client, REPO, "v1", "oci", seed="pull")
    policy = repository_policy(ACCOUNT_B, actions=(*PULL_ACTIONS, "ecr:DescribeImages"))
    ecr_client.set_repository_policy(repositoryName=REPO, policyText=policy)
    assert json.loads(ecr_client.get_repository_policy(repositoryName=REPO)["policyText"]) == json.loads(policy)

    got = ecr_b.batch_get_image(repositoryName=REPO, registryId=DEFAULT_ACCOUNT, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == image.manifest
    assert got["images"][0]["registryId"] == DEFAULT_ACCOUNT
    layers = ecr_b.batch_check_layer_availability(
        repositoryName=REPO, registryId=DEFAULT_ACCOUNT, layerDigests=list(image.blob_digests)
    )["layers"]
    assert {layer["layerDigest"] for layer in layers if layer["layerAvailability"] == "AVAILABLE"} == set(
        image.blob_digests
    )
    details = ecr_b.describe_images(repositoryName=REPO, registryId=DEFAULT_ACCOUNT)["imageDetails"]
    assert [d["imageDigest"] for d in details] == [image.digest]
    # Reading is all it allows: a write, and an action the policy does not list, are still denied.
    code, message = _error(
        ecr_b.put_image, repositoryName=REPO, registryId=DEFAULT_ACCOUNT, imageManifest=image.manifest, imageTag="x"
    )
    assert code == "AccessDeniedException"
    assert message.startswith(f"User: {account_b.arn} is not authorized to perform: ecr:PutImage")
    code, _ = _error(ecr_b.list_images, repositoryName=REPO, registryId=DEFAULT_ACCOUNT)
    assert code == "AccessDeniedException"


def test_policy_naming_a_role_admits_that_role_only(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ecr_seed.push(ecr_client, REPO, "v1", "docker", seed="role")
    reader = assume_role(ecr.endpoint_url, ACCOUNT_B, role_name="reader")
    other = assume_role(ecr.endpoint_url, ACCOUNT_B, role_name="other")
    ecr_client.set_repository_policy(
        repositoryName=REPO, policyText=repository_policy(reader.role_arn, actions=("ecr:BatchGetImage",))
    )
    allowed: ECRClient = reader.client("ecr", ecr.endpoint_url)
    denied: ECRClient = other.client("ecr", ecr.endpoint_url)
    kwargs: dict[str, Any] = {"repositoryName": REPO, "registryId": DEFAULT_ACCOUNT, "imageIds": [{"imageTag": "v1"}]}
    assert allowed.batch_get_image(**kwargs)["images"]
    assert _error(denied.batch_get_image, **kwargs)[0] == "AccessDeniedException"


def test_explicit_deny_wins_over_allow_even_in_the_owning_account(ecr_client: ECRClient, ecr_b: ECRClient) -> None:
    """IAM policy evaluation logic: an explicit Deny in any applicable policy overrides every Allow."""
    ecr_seed.push(ecr_client, REPO, "v1", "docker", seed="denyall")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "ecr:BatchGet*"},
        ],
    }
    ecr_client.set_repository_policy(repositoryName=REPO, policyText=json.dumps(policy))
    kwargs: dict[str, Any] = {"repositoryName": REPO, "imageIds": [{"imageTag": "v1"}]}
    code, message = _error(ecr_b.batch_get_image, registryId=DEFAULT_ACCOUNT, **kwargs)
    assert (code, message.endswith("with an explicit deny in a resource-based policy")) == (
        "AccessDeniedException",
        True,
    )
    assert _error(ecr_client.batch_get_image, **kwargs)[0] == "AccessDeniedException"
    assert ecr_b.list_images(repositoryName=REPO, registryId=DEFAULT_ACCOUNT)["imageIds"]


def test_writes_go_into_the_registry_named_by_registry_id(ecr_client: ECRClient, ecr_b: ECRClient) -> None:
    """PutImage and the layer upload act on ``registryId``'s repository (moto writes into the caller's), and
    only where that repository's policy allows the other account to push."""
    ecr_seed.ensure_repository(ecr_b, REPO)  # the same name in B must stay untouched
    ecr_seed.ensure_repository(ecr_client, REPO)
    ecr_seed.ensure_repository(ecr_b, "src")
    source = ecr_seed.push_docker_image(ecr_b, "src", tag="v1", seed="write")
    kwargs: dict[str, Any] = {"repositoryName": REPO, "registryId": DEFAULT_ACCOUNT}
    assert _error(ecr_b.initiate_layer_upload, **kwargs)[0] == "AccessDeniedException"
    ecr_client.set_repository_policy(repositoryName=REPO, policyText=repository_policy(ACCOUNT_B, actions=PUSH_ACTIONS))

    for digest, data in source.blobs.items():
        upload_id = ecr_b.initiate_layer_upload(**kwargs)["uploadId"]
        part = ecr_b.upload_layer_part(
            **kwargs, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data
        )
        assert part["registryId"] == DEFAULT_ACCOUNT
        done = ecr_b.complete_layer_upload(**kwargs, uploadId=upload_id, layerDigests=[digest])
        assert (done["registryId"], done["layerDigest"]) == (DEFAULT_ACCOUNT, digest)
    put = ecr_b.put_image(**kwargs, imageManifest=source.manifest, imageTag="promoted")
    assert put["image"]["registryId"] == DEFAULT_ACCOUNT
    assert ecr_client.list_images(repositoryName=REPO)["imageIds"] == [
        {"imageDigest": source.digest, "imageTag": "promoted"}
    ]
    assert ecr_b.list_images(repositoryName=REPO)["imageIds"] == []
    assert ecr_b.batch_check_layer_availability(repositoryName=REPO, layerDigests=list(source.blob_digests))["failures"]
