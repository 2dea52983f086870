"""Request limits ECR enforces on the server, answered InvalidParameterException in ECR's words.

Where ECR says so:
- botocore's ECR model: ImageIdentifierList (imageIds of BatchGetImage, BatchDeleteImage, DescribeImages)
  and BatchedOperationLayerDigestList (layerDigests of BatchCheckLayerAvailability) hold 1-100 members;
  ImageManifest is 1-4,194,304 characters; ImageTag 1-300 characters (the API reference for PutImage says
  the same).
- ECR's messages: "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length
  less than or equal to 100'" (BatchDeleteImage, awslabs/ecr-cleanup-lambda#11, fujiwara/ecrm#3) and
  "'Member must have length greater than or equal to 1'" (puemos/aws-lambda-ecr-cleaner#3); the same form is
  used for the other lengths, whose exact words ECR does not document.
- The tag pattern: the model has none, but ECR's server refuses other characters with "Invalid parameter
  at 'imageTag' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_.]+'" (quoted
  in carvel-dev/kbld's packaging docs).
botocore checks only minimum lengths on the client, so the requests go through a client with parameter
validation off: what is tested is the emulator's own check.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image, push_verbatim, upload_blob
from tests.ecr.unvalidated import unvalidated_ecr_client

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "limits"
MAX_MANIFEST = 4_194_304


def _refusal(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    error = exc.value.response["Error"]
    assert (error["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InvalidParameterException",
        400,
    )
    return str(error["Message"])


def _too_many(parameter: str) -> str:
    return (
        f"Invalid parameter at '{parameter}' failed to satisfy constraint: "
        "'Member must have length less than or equal to 100'"
    )


def _too_few(parameter: str) -> str:
    return (
        f"Invalid parameter at '{parameter}' failed to satisfy constraint: "
        "'Member must have length greater than or equal to 1'"
    )


@pytest.mark.parametrize("operation", ["batch_get_image", "batch_delete_image", "describe_images"])
def test_image_ids_hold_1_to_100(ecr: RunningEmulator, ecr_client: ECRClient, operation: str) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="v1", seed=1)
    raw = getattr(unvalidated_ecr_client(ecr), operation)
    hundred = [{"imageTag": "v1"}] + [{"imageTag": f"missing-{i}"} for i in range(99)]
    assert _refusal(raw, repositoryName=REPO, imageIds=[*hundred, {"imageTag": "one-more"}]) == _too_many("imageIds")
    assert _refusal(raw, repositoryName=REPO, imageIds=[]) == _too_few("imageIds")
    if operation != "describe_images":  # DescribeImages raises for a missing id; 100 ids are accepted above
        answer = raw(repositoryName=REPO, imageIds=hundred)
        assert len(answer["failures"]) == 99
    tags = {
        d["imageDigest"]: d.get("imageTags") for d in ecr_client.describe_images(repositoryName=REPO)["imageDetails"]
    }
    expected = {} if operation == "batch_delete_image" else {image.digest: ["v1"]}
    assert tags == expected  # the refused calls touched nothing; the accepted delete of 100 ids did


def test_layer_digests_hold_1_to_100(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    blob = upload_blob(ecr_client, REPO, b"one blob")
    raw = unvalidated_ecr_client(ecr).batch_check_layer_availability
    hundred = [blob] + [f"sha256:{i:064x}" for i in range(99)]
    assert _refusal(raw, repositoryName=REPO, layerDigests=[*hundred, blob]) == _too_many("layerDigests")
    assert _refusal(raw, repositoryName=REPO, layerDigests=[]) == _too_few("layerDigests")
    answer = raw(repositoryName=REPO, layerDigests=hundred)
    assert [layer["layerDigest"] for layer in answer["layers"]] == [blob]
    assert len(answer["failures"]) == 99


def test_manifest_up_to_4_mib(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, seed=2)
    raw = unvalidated_ecr_client(ecr).put_image

    def padded(total: int) -> str:
        # The same image, with an annotation that brings the manifest to exactly ``total`` characters.
        parsed = json.loads(image.manifest)
        parsed["annotations"] = {"pad": ""}
        short = json.dumps(parsed)
        parsed["annotations"]["pad"] = "x" * (total - len(short))
        text = json.dumps(parsed)
        assert len(text) == total
        return text

    at_limit = push_verbatim(ecr_client, REPO, padded(MAX_MANIFEST), "largest", blobs=image.blobs)
    assert len(at_limit.manifest) == MAX_MANIFEST
    message = _refusal(raw, repositoryName=REPO, imageManifest=padded(MAX_MANIFEST + 1), imageTag="too-large")
    assert message == (
        "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
        f"'Member must have length less than or equal to {MAX_MANIFEST}'"
    )
    assert _refusal(raw, repositoryName=REPO, imageManifest="", imageTag="empty") == _too_few("imageManifest")


@pytest.mark.parametrize(
    ("tag", "refused"),
    [
        ("a" * 300, None),
        ("v1.2.3_build-7", None),
        ("sha256-" + "0" * 64 + ".sig", None),
        ("a" * 301, "Member must have length less than or equal to 300"),
        ("", "Member must have length greater than or equal to 1"),
        ("v1+build", "regex"),
        ("has space", "regex"),
        ("team/app", "regex"),
        ("café", "regex"),
    ],
)
def test_tag_length_and_pattern(ecr: RunningEmulator, ecr_client: ECRClient, tag: str, refused: str | None) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, seed=3)
    raw = unvalidated_ecr_client(ecr).put_image
    if refused is None:
        raw(repositoryName=REPO, imageManifest=image.manifest, imageTag=tag)
        listed = ecr_client.list_images(repositoryName=REPO, filter={"tagStatus": "TAGGED"})["imageIds"]
        assert [i["imageTag"] for i in listed] == [tag]
        return
    message = _refusal(raw, repositoryName=REPO, imageManifest=image.manifest, imageTag=tag)
    if refused == "regex":
        assert message == (
            "Invalid parameter at 'imageTag' failed to satisfy constraint: "
            "'must satisfy regular expression '[a-zA-Z0-9-_.]+'"
        )
    else:
        assert message == f"Invalid parameter at 'imageTag' failed to satisfy constraint: '{refused}'"
    assert ecr_client.list_images(repositoryName=REPO, filter={"tagStatus": "TAGGED"})["imageIds"] == []
