"""The archive storage class beyond one account's ECR API: other accounts' registries, the OCI face, referrers.

Where ECR says so:
- ECR user guide, "Archiving an image": an archived image cannot be pulled ("fail with a 404 error"), and
  botocore's ECR model: UpdateImageStorageClass and DescribeImagesFilter.imageStatus (ACTIVE by default),
  LayerAvailability ARCHIVED; every repository operation's ``registryId`` ("If you do not specify a registry,
  the default registry is assumed").
- ECR user guide, "Private repository policies": another account acts on a repository only where its policy
  allows the action; ``ecr:UpdateImageStorageClass`` is an action like any other.
- botocore's ECR model: ListImageReferrersFilter.artifactStatus ("If not specified, only artifacts with
  ACTIVE status are returned") and ImageReferrer.artifactStatus (ACTIVE, ARCHIVED or ACTIVATING).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, PULL_ACTIONS, assume_role, repository_policy
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_media import ALL_MODERN_MANIFEST_TYPES, OCI_MANIFEST, sha256_digest
from tests.ecr.oci_http import Registry, login

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

ACCOUNT_B = "222222222222"
REPO = "team-a/web"


@pytest.fixture
def ecr_b(ecr: RunningEmulator) -> ECRClient:
    client: ECRClient = assume_role(ecr.endpoint_url, ACCOUNT_B).client("ecr", ecr.endpoint_url)
    return client


def _archive(client: ECRClient, digest: str, **registry: str) -> str:
    answer = client.update_image_storage_class(
        repositoryName=REPO, imageId={"imageDigest": digest}, targetStorageClass="ARCHIVE", **registry
    )
    return answer["imageStatus"]


def _statuses(client: ECRClient, **registry: str) -> dict[str, str]:
    details = client.describe_images(repositoryName=REPO, filter={"imageStatus": "ANY"}, **registry)["imageDetails"]
    return {d["imageDigest"]: d["imageStatus"] for d in details}


def test_archiving_in_one_registry_leaves_the_same_image_in_another_active(
    ecr_client: ECRClient, ecr_b: ECRClient
) -> None:
    mine = ecr_seed.push(ecr_client, REPO, "v1", "docker", seed="same")
    theirs = ecr_seed.push(ecr_b, REPO, "v1", "docker", seed="same")
    assert mine.digest == theirs.digest  # the same bytes in two registries

    assert _archive(ecr_b, theirs.digest) == "ARCHIVED"
    assert _statuses(ecr_b) == {theirs.digest: "ARCHIVED"}
    assert _statuses(ecr_client) == {mine.digest: "ACTIVE"}
    pulled = ecr_client.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "v1"}])
    assert [i["imageId"]["imageDigest"] for i in pulled["images"]] == [mine.digest]


def test_another_account_cannot_pull_an_archived_image_nor_archive_without_the_policy(
    ecr_client: ECRClient, ecr_b: ECRClient
) -> None:
    image = ecr_seed.push(ecr_client, REPO, "v1", "docker", seed="shared")
    ecr_client.set_repository_policy(
        repositoryName=REPO, policyText=repository_policy(ACCOUNT_B, actions=(*PULL_ACTIONS, "ecr:DescribeImages"))
    )
    theirs: dict[str, Any] = {"registryId": DEFAULT_ACCOUNT}
    with pytest.raises(ClientError) as exc:
        _archive(ecr_b, image.digest, **theirs)
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ecr:UpdateImageStorageClass" in exc.value.response["Error"]["Message"]
    assert _statuses(ecr_client) == {image.digest: "ACTIVE"}

    assert _archive(ecr_client, image.digest) == "ARCHIVED"
    assert _statuses(ecr_b, **theirs) == {image.digest: "ARCHIVED"}
    got = ecr_b.batch_get_image(
        repositoryName=REPO, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=list(ALL_MODERN_MANIFEST_TYPES), **theirs
    )
    assert got["images"] == []
    assert [f["failureCode"] for f in got["failures"]] == ["ImageNotFound"]
    assert "ARCHIVED" in got["failures"][0]["failureReason"]
    layers = ecr_b.batch_check_layer_availability(repositoryName=REPO, layerDigests=list(image.blob_digests), **theirs)
    assert {layer["layerAvailability"] for layer in layers["layers"]} == {"ARCHIVED"}


def test_the_oci_face_answers_404_for_an_archived_manifest(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    image = ecr_seed.push(ecr_client, REPO, "v1", "oci", seed="face")
    registry = Registry(ecr.registry, login(ecr_client))
    assert registry.get_manifest(REPO, "v1", [OCI_MANIFEST]).status_code == 200

    _archive(ecr_client, image.digest)
    for reference in ("v1", image.digest):
        answer = registry.get_manifest(REPO, reference, [OCI_MANIFEST])
        assert answer.status_code == 404, answer.text
        assert registry.error_code(answer) == "MANIFEST_UNKNOWN"
        assert "ARCHIVED" in answer.text


def _push_signature(client: ECRClient, subject: ecr_seed.PushedImage) -> str:
    config, payload = b"{}", b"signature bytes"
    ecr_seed.upload_blob(client, REPO, config)
    ecr_seed.upload_blob(client, REPO, payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": sha256_digest(config)},
        "layers": [{"mediaType": "application/octet-stream", "size": len(payload), "digest": sha256_digest(payload)}],
        "subject": {"mediaType": subject.media_type, "size": len(subject.manifest.encode()), "digest": subject.digest},
    }
    return ecr_seed.put_manifest(client, REPO, json.dumps(manifest), media_type=OCI_MANIFEST)


def test_an_archived_referrer_has_artifact_status_archived(ecr_client: ECRClient) -> None:
    subject = ecr_seed.push(ecr_client, REPO, "v1", "oci", seed="subject")
    signature = _push_signature(ecr_client, subject)

    def listed(status: str | None) -> list[tuple[str, str]]:
        kwargs: dict[str, Any] = {"filter": {"artifactStatus": status}} if status else {}
        answer = ecr_client.list_image_referrers(
            repositoryName=REPO, subjectId={"imageDigest": subject.digest}, **kwargs
        )
        return [(r["digest"], r["artifactStatus"]) for r in answer["referrers"]]

    assert listed(None) == [(signature, "ACTIVE")]
    _archive(ecr_client, signature)
    assert listed(None) == []
    assert listed("ARCHIVED") == [(signature, "ARCHIVED")]
    assert listed("ANY") == [(signature, "ARCHIVED")]
    assert listed("ACTIVATING") == []
