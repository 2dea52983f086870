"""A dev -> prod promotion on the real API server: a two-platform OCI index with a signature and an SBOM
referrer, in account A (the operator's own) in us-east-1, promoted by one EcrImageTag into account B in
eu-west-1 through a role of B that an EcrTagPolicy names. The operator copies what B lacks.

ECR behaviours relied on (service model ``ecr/2015-09-21``): GetDownloadUrlForLayer, InitiateLayerUpload /
UploadLayerPart / CompleteLayerUpload, PutImage by digest without a tag, ListImageReferrers; an image's
digest is the sha256 of its manifest's bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, assume_role
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES, OCI_MANIFEST
from tests.plugins.control_plane import fresh_namespace
from tests.plugins.operator_process import OPERATED_PREFIX, policy_yaml

from .helpers import condition, eit, get, promotion_grants, promotion_spec, unique

pytestmark = pytest.mark.e2e

ACCOUNT_B = "333344445555"
DEV_REGION, PROD_REGION = "us-east-1", "eu-west-1"
SIG_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SBOM_TYPE = "application/spdx+json"


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def manifest(client: Any, repository: str, digest: str) -> str | None:
    got = client.batch_get_image(
        repositoryName=repository, imageIds=[{"imageDigest": digest}], acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
    )
    return got["images"][0]["imageManifest"] if got["images"] else None


def push_referrer(client: Any, subject: ecr_seed.PushedImage, artifact_type: str, body: bytes) -> str:
    empty = ecr_seed.upload_blob(client, subject.repository, b"{}")
    layer = ecr_seed.upload_blob(client, subject.repository, body)
    text = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(body)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)},
        }
    )
    return ecr_seed.put_manifest(client, subject.repository, text, media_type=OCI_MANIFEST)


def wait_ready(
    cluster: KubeCluster, namespace: str, name: str, generation: int, timeout: float = 120
) -> dict[str, Any]:
    """The resource once Ready is True for ``generation`` (the project's wait_for: polled, with a deadline)."""

    def ready_now() -> dict[str, Any] | None:
        obj = get(cluster, namespace, name)
        ready = condition(obj, "Ready")
        return obj if obj and ready.get("status") == "True" and ready.get("observedGeneration") == generation else None

    return wait_for(f"{namespace}/{name} Ready for generation {generation}", ready_now, timeout=timeout)


def test_an_index_with_referrers_is_promoted_into_another_account_and_region(
    control_plane: KubeCluster,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    role = assume_role(ecr_server.endpoint_url, ACCOUNT_B, role_name="prod-promoter", region=PROD_REGION)
    prod = role.client("ecr", ecr_server.endpoint_url, PROD_REGION, total_max_attempts=3)
    dev_repo, prod_repo = f"dev/{unique('web')}", f"prod/{unique('web')}"
    ecr_seed.ensure_repository(ecr_session_client, dev_repo)
    ecr_seed.ensure_repository(prod, prod_repo)
    index = ecr_seed.push_oci_index(ecr_session_client, dev_repo, "build-1", seed=dev_repo)
    sig = push_referrer(ecr_session_client, index, SIG_TYPE, b"a signature bundle")
    sbom = push_referrer(ecr_session_client, index, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}')

    with fresh_namespace(control_plane, OPERATED_PREFIX) as namespace:
        policy = f"copy-{namespace}"
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=policy_yaml(policy, promotion_grants(namespace, ACCOUNT_B, PROD_REGION, role.role_arn, DEV_REGION)),
        )
        try:
            spec = promotion_spec((DEFAULT_ACCOUNT, DEV_REGION, dev_repo), (ACCOUNT_B, PROD_REGION, prod_repo))
            before = ecr_server.control.calls().downloaded_bytes
            control_plane.kubectl("apply", "-f", "-", input=eit("web", namespace, **spec))
            obj = wait_ready(control_plane, namespace, "web", 1)
            status = obj["status"]
            copied = ecr_server.control.calls().downloaded_bytes - before
            assert copied == status["copy"]["bytes"]["copied"] > 0

            for digest in (index.digest, *(c.digest for c in index.children), sig, sbom):
                text = manifest(prod, prod_repo, digest)
                assert text is not None, f"{digest} is not in the target"
                assert sha256(text) == digest
            tagged = prod.batch_get_image(
                repositoryName=prod_repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
            )
            assert tagged["images"][0]["imageId"]["imageDigest"] == index.digest
            carried = {(r["digest"], r.get("artifactType")) for r in status["copy"]["referrers"]}
            assert carried == {(sig, SIG_TYPE), (sbom, SBOM_TYPE)}
            events = control_plane.kubectl(
                "get", "events", "-n", namespace, "--field-selector", "reason=BlobsCopied", "-o", "name"
            )
            assert events.stdout.strip(), "no BlobsCopied event"

            # A second reconcile (a spec change) transfers nothing.
            before = ecr_server.control.calls().downloaded_bytes
            control_plane.kubectl(
                "apply", "-f", "-", input=eit("web", namespace, **(spec | {"tags": ["v1", "stable"]}))
            )
            again = wait_ready(control_plane, namespace, "web", 2)
            assert ecr_server.control.calls().downloaded_bytes == before
            assert again["status"]["copy"]["bytes"]["copied"] == 0
            assert again["status"]["copy"]["blobs"]["skipped"] == again["status"]["copy"]["blobs"]["total"]
            # What a user sees (pytest -s shows it): the copy's status, then the re-run's.
            print(f"\n# status after the copy\n{json.dumps(status, indent=1)}")
            print(f"\n# status after the second reconcile\n{json.dumps(again['status'], indent=1)}")
        finally:
            control_plane.kubectl("delete", "ecrtagpolicy", policy, "--ignore-not-found", check=False)
