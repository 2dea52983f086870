"""OCI 1.1 referrers: PutImage of artifact manifests with ``subject``, ListImageReferrers, DescribeImages fields.

Service model (botocore ecr/2015-09-21): ListImageReferrers (subjectId, filter.artifactTypes at most 5,
filter.artifactStatus ACTIVE by default, maxResults 1-50 / nextToken; "The IAM principal invoking this
operation must have the ecr:BatchGetImage permission"), ImageReferrer (digest, mediaType, artifactType,
size, annotations, artifactStatus), ImageDetail.subjectManifestDigest and .artifactMediaType. OCI image
spec 1.1, manifest ``subject`` / ``artifactType`` (else the config's mediaType).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, assume_role, repository_policy
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_media import OCI_CONFIG, OCI_MANIFEST, manifest_digest, sha256_digest

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "team-a/web"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
EMPTY_CONFIG = b"{}"  # OCI image spec 1.1: the empty descriptor's content


def _push_artifact(client: ECRClient, subject: ecr_seed.PushedImage, kind: str, payload: bytes) -> str:
    ecr_seed.upload_blob(client, REPO, EMPTY_CONFIG)
    ecr_seed.upload_blob(client, REPO, payload)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": kind,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "size": 2,
                "digest": sha256_digest(EMPTY_CONFIG),
            },
            "layers": [{"mediaType": kind, "size": len(payload), "digest": sha256_digest(payload)}],
            "subject": {
                "mediaType": subject.media_type,
                "size": len(subject.manifest.encode()),
                "digest": subject.digest,
            },
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        }
    )
    return ecr_seed.put_manifest(client, REPO, manifest, media_type=OCI_MANIFEST)


@pytest.fixture
def subject(ecr_client: ECRClient) -> ecr_seed.PushedImage:
    return ecr_seed.push(ecr_client, REPO, "v1", "oci", seed="subject")


def _referrers(client: ECRClient, digest: str, **kwargs: Any) -> dict[str, Any]:
    return dict(client.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": digest}, **kwargs))


def test_referrers_of_a_subject_are_listed(ecr_client: ECRClient, subject: ecr_seed.PushedImage) -> None:
    signature = _push_artifact(ecr_client, subject, SIGNATURE, b"signature bytes")
    sbom = _push_artifact(ecr_client, subject, SBOM, b'{"spdxVersion":"SPDX-2.3"}')
    referrers = _referrers(ecr_client, subject.digest)["referrers"]
    assert sorted(r["digest"] for r in referrers) == sorted([signature, sbom])
    by_digest = {r["digest"]: r for r in referrers}
    assert by_digest[signature]["artifactType"] == SIGNATURE
    assert by_digest[signature]["mediaType"] == OCI_MANIFEST
    assert by_digest[signature]["artifactStatus"] == "ACTIVE"
    assert by_digest[signature]["annotations"] == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    stored = ecr_client.batch_get_image(repositoryName=REPO, imageIds=[{"imageDigest": signature}])["images"][0]
    assert manifest_digest(stored["imageManifest"]) == signature
    assert by_digest[signature]["size"] == len(stored["imageManifest"].encode())
    # Nothing refers to the artifacts themselves, nor to an image that is not there.
    assert _referrers(ecr_client, signature)["referrers"] == []
    assert _referrers(ecr_client, sha256_digest(b"elsewhere"))["referrers"] == []


def test_filter_by_artifact_type_and_status(ecr_client: ECRClient, subject: ecr_seed.PushedImage) -> None:
    signature = _push_artifact(ecr_client, subject, SIGNATURE, b"sig")
    _push_artifact(ecr_client, subject, SBOM, b"sbom")
    only = _referrers(ecr_client, subject.digest, filter={"artifactTypes": [SIGNATURE]})["referrers"]
    assert [r["digest"] for r in only] == [signature]
    assert len(_referrers(ecr_client, subject.digest, filter={"artifactStatus": "ANY"})["referrers"]) == 2
    assert _referrers(ecr_client, subject.digest, filter={"artifactStatus": "ARCHIVED"})["referrers"] == []
    with pytest.raises(ClientError) as exc:
        _referrers(ecr_client, subject.digest, filter={"artifactTypes": [f"type/{i}" for i in range(6)]})
    assert exc.value.response["Error"]["Code"] == "ValidationException"


def test_pages(ecr_client: ECRClient, subject: ecr_seed.PushedImage) -> None:
    pushed = {_push_artifact(ecr_client, subject, SIGNATURE, f"sig {i}".encode()) for i in range(3)}
    seen: list[str] = []
    kwargs: dict[str, Any] = {"maxResults": 2}
    while True:
        page = _referrers(ecr_client, subject.digest, **kwargs)
        assert len(page["referrers"]) <= 2
        seen.extend(r["digest"] for r in page["referrers"])
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert sorted(seen) == sorted(pushed)


def test_describe_images_shows_subject_and_artifact_type(ecr_client: ECRClient, subject: ecr_seed.PushedImage) -> None:
    signature = _push_artifact(ecr_client, subject, SIGNATURE, b"sig")
    details = {d["imageDigest"]: d for d in ecr_client.describe_images(repositoryName=REPO)["imageDetails"]}
    assert details[signature]["subjectManifestDigest"] == subject.digest
    assert details[signature]["artifactMediaType"] == SIGNATURE
    assert "subjectManifestDigest" not in details[subject.digest]
    assert details[subject.digest]["artifactMediaType"] == OCI_CONFIG


def test_other_account_lists_referrers_with_batch_get_image(
    ecr: RunningEmulator, ecr_client: ECRClient, subject: ecr_seed.PushedImage
) -> None:
    signature = _push_artifact(ecr_client, subject, SIGNATURE, b"sig")
    other: ECRClient = assume_role(ecr.endpoint_url, "222222222222").client("ecr", ecr.endpoint_url)
    kwargs: dict[str, Any] = {"registryId": DEFAULT_ACCOUNT}
    with pytest.raises(ClientError) as exc:
        _referrers(other, subject.digest, **kwargs)
    assert "ecr:BatchGetImage" in exc.value.response["Error"]["Message"]
    ecr_client.set_repository_policy(
        repositoryName=REPO, policyText=repository_policy("222222222222", actions=("ecr:BatchGetImage",))
    )
    assert [r["digest"] for r in _referrers(other, subject.digest, **kwargs)["referrers"]] == [signature]
