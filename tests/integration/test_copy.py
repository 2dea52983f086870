"""Promotion that copies what the target lacks, against the ECR emulator: another account (an assumed
role in account B) and another region, a two-platform OCI index with OCI 1.1 referrers, through the
operator's real botocore client and the emulator's pre-signed download URLs.

ECR behaviours relied on (service model ``ecr/2015-09-21``): GetDownloadUrlForLayer hands out a
pre-signed URL for a blob; InitiateLayerUpload answers ``partSize``; UploadLayerPart's ``layerPartBlob``
is at most 20 MiB and every part but the last at least 5 MiB (ECR service quotas); CompleteLayerUpload
refuses a digest that does not match the bytes; PutImage with ``imageDigest`` and no tag stores a manifest
by digest; ListImageReferrers lists the manifests whose ``subject`` is the given digest."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mypy_boto3_ecr.client import ECRClient

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, assume_role
from ecr_tag_localenv.ecr_faults import FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_operator.core import Decision, Request, reconcile
from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES, OCI_MANIFEST, digest_of
from ecr_tag_operator.model import Permission
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

LOG = logging.getLogger("test")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
ACCOUNT_B = "222222222222"
DEV_REGION, PROD_REGION = "us-east-1", "eu-west-1"
DEV, PROD = "dev/web", "prod/web"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MIB = 1024 * 1024


class Promotion:
    """The operator in account A (the emulator's default credentials) promoting A's dev repository in
    one region into B's prod repository in another, through a role of B."""

    def __init__(self, server: RunningEmulator, dev: ECRClient) -> None:
        self.server = server
        self.dev = dev
        role = assume_role(server.endpoint_url, ACCOUNT_B, role_name="prod-promoter", region=PROD_REGION)
        self.role_arn = role.role_arn
        self.prod: ECRClient = role.client("ecr", server.endpoint_url, PROD_REGION)
        ecr_seed.ensure_repository(self.dev, DEV)
        ecr_seed.ensure_repository(self.prod, PROD)
        self.settings = Settings(endpoint_url=server.endpoint_url, region=PROD_REGION, max_attempts=2)
        self.ecr = Boto3Ecr(self.settings)
        self.status: dict[str, Any] = {}

    def run(self, settings: Settings | None = None, **overrides: Any) -> Decision:
        raw = {
            "repositoryName": PROD,
            "registryId": ACCOUNT_B,
            "region": PROD_REGION,
            "source": {"tag": "build-1", "repositoryName": DEV, "registryId": DEFAULT_ACCOUNT, "region": DEV_REGION},
            "tags": ["v1", "stable"],
        } | overrides
        request = Request(parse_spec(raw), self.status, 1, "create", Permission(role_arn=self.role_arn))
        result = reconcile(request, self.ecr, settings or self.settings, NOW, LOG)
        self.status = {k: v for k, v in {**self.status, **result.status}.items() if v is not None}
        return result

    def tag_digest(self, client: ECRClient, repository: str, tag: str) -> str | None:
        got = client.batch_get_image(
            repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
        )
        return got["images"][0]["imageId"]["imageDigest"] if got["images"] else None

    def manifest(self, client: ECRClient, repository: str, digest: str) -> str | None:
        got = client.batch_get_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest}], acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
        )
        return got["images"][0]["imageManifest"] if got["images"] else None


@pytest.fixture
def p(ecr: RunningEmulator, ecr_client: ECRClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Promotion]:
    for key, value in ecr.env.items():
        monkeypatch.setenv(key, value)
    yield Promotion(ecr, ecr_client)
    ecr.control.clear_faults()
    ecr.control.reset_settings()


def ready(result: Decision) -> tuple[str, str]:
    cond = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    return cond["status"], cond["reason"]


def upload_in_parts(client: ECRClient, repository: str, data: bytes, part: int = 10 * MIB) -> str:
    """Seed a blob larger than one LayerPartBlob (20 MiB) in parts, as a client pushing it would."""
    upload_id = client.initiate_layer_upload(repositoryName=repository)["uploadId"]
    for first in range(0, len(data), part):
        chunk = data[first : first + part]
        client.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(chunk) - 1,
            layerPartBlob=chunk,
        )
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = client.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])
    return str(done["layerDigest"])


def push_referrer(client: ECRClient, subject: ecr_seed.PushedImage, artifact_type: str, body: bytes) -> str:
    """An OCI 1.1 artifact manifest referring to ``subject`` (as cosign 2/3 and syft attach them)."""
    empty = ecr_seed.upload_blob(client, subject.repository, b"{}")
    layer = ecr_seed.upload_blob(client, subject.repository, body)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(body)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)},
        }
    )
    return ecr_seed.put_manifest(client, subject.repository, manifest, media_type=OCI_MANIFEST)


def test_an_index_with_referrers_is_promoted_across_accounts_and_regions_with_equal_digests(p: Promotion) -> None:
    index = ecr_seed.push_oci_index(p.dev, DEV, "build-1", seed="xacct")
    sig = push_referrer(p.dev, index, SIG_TYPE, b"a signature bundle")
    sbom = push_referrer(p.dev, index, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}')
    p.server.control.reset_calls()

    result = p.run()
    assert ready(result) == ("True", "InSync"), result.status["conditions"]
    for tag in ("v1", "stable"):
        assert p.tag_digest(p.prod, PROD, tag) == index.digest
    for digest in (index.digest, *(c.digest for c in index.children), sig, sbom):
        text = p.manifest(p.prod, PROD, digest)
        assert text is not None, digest
        assert digest_of(text) == digest  # the bytes, not only ECR's say-so
    copy = result.status["copy"]
    assert copy["finished"] is True
    assert copy["childrenPut"] == 2
    assert {(r["digest"], r["artifactType"]) for r in copy["referrers"]} == {(sig, SIG_TYPE), (sbom, SBOM_TYPE)}
    calls = p.server.control.calls()
    assert calls.downloads > 0
    assert calls.downloaded_bytes == copy["bytes"]["copied"]
    assert "BlobsCopied" in [e.reason for e in result.events]

    p.server.control.reset_calls()
    again = p.run()
    assert ready(again) == ("True", "InSync")
    calls = p.server.control.calls()
    assert calls.downloads == 0
    assert calls.downloaded_bytes == 0
    assert calls.of("UploadLayerPart") == 0
    assert again.status["copy"]["bytes"]["copied"] == 0
    assert again.status["copy"]["blobs"]["skipped"] == again.status["copy"]["blobs"]["total"]


def test_copy_never_reports_missing_blobs_without_copying(p: Promotion) -> None:
    ecr_seed.push_oci_image(p.dev, DEV, "build-1", seed="never")
    p.server.control.reset_calls()
    result = p.run(copy="Never")
    assert ready(result)[1] in ("LayersNotFound", "ReferencedImagesNotFound")
    assert p.server.control.calls().downloads == 0
    assert p.tag_digest(p.prod, PROD, "v1") is None


def test_a_cut_download_and_an_expired_url_are_retried_and_the_digest_is_right(p: Promotion) -> None:
    rng_blob = bytes(range(256)) * (12 * MIB // 256)
    layer = upload_in_parts(p.dev, DEV, rng_blob)
    config = ecr_seed.upload_blob(p.dev, DEV, b'{"architecture":"amd64","os":"linux"}')
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": len(rng_blob)}],
        }
    )
    ecr_seed.put_manifest(p.dev, DEV, manifest, tag="build-1", media_type=OCI_MANIFEST)
    # Cut the first two downloads after 7 MiB, inside the second 5 MiB part: each retry resumes cleanly.
    p.server.control.set_faults(
        operations={"GetDownloadUrlForLayer": FaultRule(cut_after_bytes=7 * MIB, cut_downloads=2)}
    )
    p.server.control.reset_calls()
    settings = p.settings.model_copy(update={"copy_parallel_blobs": 1, "copy_attempts": 5})
    result = p.run(settings=settings)
    assert ready(result) == ("True", "InSync"), result.status
    calls = p.server.control.calls()
    assert calls.downloads >= 3  # the config, a cut download of the layer, the one that finished
    assert len(rng_blob) < calls.downloaded_bytes < 3 * len(rng_blob)  # some bytes read twice, not all thrice
    got = p.prod.batch_check_layer_availability(repositoryName=PROD, layerDigests=[layer])
    assert got["layers"][0]["layerAvailability"] == "AVAILABLE"
    assert got["layers"][0]["layerSize"] == len(rng_blob)

    # An expired URL: every URL expires at once; the copy keeps asking for new ones until attempts run out.
    ecr_seed.push_oci_image(p.dev, DEV, "build-1", seed="expired")
    p.server.control.clear_faults()
    p.server.control.set_settings(download_url_seconds=0)
    stuck = p.run()
    assert ready(stuck) == ("False", "Copying")
    assert stuck.status["copy"]["lastError"]["code"] == "AccessDenied"
    assert stuck.requeue_after is not None
    p.server.control.reset_settings()
    assert ready(p.run()) == ("True", "InSync")


def test_a_64_mib_blob_is_copied_in_parts_of_the_operator_s_part_size(
    p: Promotion, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parts are ``copy_part_bytes`` (ECR's 5 MiB minimum by default), never more than InitiateLayerUpload's
    ``partSize`` (10 MiB, ECR's "Maximum layer part size" quota)."""
    size = 64 * MIB
    data = bytes(range(251)) * (size // 251) + b"x" * (size % 251)
    layer = upload_in_parts(p.dev, DEV, data)
    config = ecr_seed.upload_blob(p.dev, DEV, b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
        }
    )
    ecr_seed.put_manifest(p.dev, DEV, manifest, tag="build-1", media_type=OCI_MANIFEST)
    partsize = min(p.settings.copy_part_bytes, p.server.control.settings().max_layer_part_bytes)
    assert partsize == 5 * MIB
    p.server.control.reset_calls()
    started = time.monotonic()
    result = p.run()
    took = time.monotonic() - started
    assert ready(result) == ("True", "InSync")
    copy = result.status["copy"]
    assert copy["bytes"]["copied"] == size + 2
    assert copy["parts"] == -(-size // partsize) + 1  # the layer's parts and the config's one
    assert p.server.control.calls().of("UploadLayerPart") == copy["parts"]
    with capsys.disabled():
        print(f"\n64 MiB blob: {copy['parts']} parts, {took:.2f} s, {size / MIB / took:.1f} MiB/s")
