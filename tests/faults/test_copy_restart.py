"""The operator SIGKILLed in the middle of copying a 512 MiB blob across accounts and regions, on the real
API server: after the restart the copy completes, the target's blob has the right digest (hashed from
its bytes), the resource is Ready, and the target holds no stray image; a download cut mid-stream after
the restart is resumed from the last part uploaded.

ECR behaviours relied on: an upload never completed is not a layer (API reference, CompleteLayerUpload:
"the layer is only available once CompleteLayerUpload is called"; InitiateLayerUpload starts a new
upload with a new uploadId), so the restarted operator starts the blob anew; GetDownloadUrlForLayer's
pre-signed URL serves Range requests (S3 GetObject, "Range"); PutImage stores a manifest under the tag
given, and DescribeImages lists every image of a repository, untagged ones included (service model
``ecr/2015-09-21``). The expired-URL case is covered at the integration level (tests/integration/
test_copy.py), where URLs can be made to expire at once.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import ControlPlane
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, assume_role
from ecr_tag_localenv.ecr_faults import FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.waiting import wait_for
from ecr_tag_operator.manifests import OCI_MANIFEST
from tests.e2e.helpers import condition, eit, get, promotion_grants, promotion_spec, unique
from tests.ecr.oci_http import login
from tests.plugins.operator_process import policy_yaml

from .conftest import OperatorFactory, new_namespace

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MIB = 1024 * 1024
SIZE = 512 * MIB
PIECE = MIB
ACCOUNT_B = "444455556666"
DEV_REGION, PROD_REGION = "us-east-1", "eu-west-1"
PART = 5 * MIB  # the operator's default part size (ECR's minimum)


def pieces(total: int) -> Iterator[bytes]:
    """Deterministic bytes, one MiB at a time: the blob is never whole in memory."""
    for n in range(0, total, PIECE):
        yield hashlib.sha256(n.to_bytes(8, "big")).digest() * (min(PIECE, total - n) // 32)


def stream_blob(server: RunningEmulator, client: Any, repository: str, total: int) -> str:
    """Push a blob through the emulator's OCI face in one streamed POST (OCI distribution spec, "Single
    POST" monolithic upload): the emulator's blob store writes it to disk while hashing it."""
    hasher = hashlib.sha256()
    for piece in pieces(total):
        hasher.update(piece)
    digest = "sha256:" + hasher.hexdigest()
    resp = requests.post(
        f"http://{server.registry}/v2/{repository}/blobs/uploads/",
        params={"digest": digest},
        data=pieces(total),  # a generator: sent chunked, never held whole
        auth=login(client),
        timeout=300,
    )
    assert resp.status_code == 201, resp.text
    return digest


def digest_of_blob(client: Any, repository: str, digest: str) -> tuple[str, int]:
    """(sha256 of the bytes the target serves for ``digest``, their length), read in pieces."""
    url = client.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
    hasher = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 - the emulator's loopback URL
        while piece := resp.read(4 * MIB):
            hasher.update(piece)
            size += len(piece)
    return "sha256:" + hasher.hexdigest(), size


def layer_state(client: Any, repository: str, digest: str) -> str:
    got = client.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
    return str(got["layers"][0]["layerAvailability"]) if got["layers"] else "MISSING"


def test_sigkill_mid_blob_then_restart_completes_the_copy_with_the_right_digest_and_no_stray_image(
    fault_cluster: ControlPlane, fault_ecr: RunningEmulator, ecr_admin: Any, operators: OperatorFactory
) -> None:
    began = time.monotonic()
    role = assume_role(fault_ecr.endpoint_url, ACCOUNT_B, role_name="prod-promoter", region=PROD_REGION)
    prod = role.client("ecr", fault_ecr.endpoint_url, PROD_REGION, total_max_attempts=3)
    dev_repo, prod_repo = f"dev/{unique('big')}", f"prod/{unique('big')}"
    ecr_seed.ensure_repository(ecr_admin, dev_repo)
    ecr_seed.ensure_repository(prod, prod_repo)
    layer = stream_blob(fault_ecr, ecr_admin, dev_repo, SIZE)
    config = ecr_seed.upload_blob(ecr_admin, dev_repo, b'{"architecture":"amd64","os":"linux"}')
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": SIZE}],
        }
    )
    image = ecr_seed.put_manifest(ecr_admin, dev_repo, manifest, tag="build-1", media_type=OCI_MANIFEST)
    seeded = time.monotonic() - began

    namespace = new_namespace(fault_cluster)
    policy = f"copy-{namespace}"
    grants = promotion_grants(namespace, ACCOUNT_B, PROD_REGION, role.role_arn, DEV_REGION)
    fault_cluster.kubectl("apply", "-f", "-", input=policy_yaml(policy, grants))
    operator = operators(fault_cluster, namespace)
    try:
        operator.start()
        fault_ecr.control.reset_calls()
        spec = promotion_spec((DEFAULT_ACCOUNT, DEV_REGION, dev_repo), (ACCOUNT_B, PROD_REGION, prod_repo))
        fault_cluster.kubectl("apply", "-f", "-", input=eit("big", namespace, **spec))

        # Kill once a few parts of the big blob are in (the config is one part of its own).
        wait_for(
            "the first parts of the 512 MiB blob uploaded",
            lambda: fault_ecr.control.calls().of("UploadLayerPart", prod_repo) >= 4,
            timeout=120,
            every=0.1,
        )
        operator.kill()
        parts_before_kill = fault_ecr.control.calls().of("UploadLayerPart", prod_repo)
        assert layer_state(prod, prod_repo, layer) != "AVAILABLE", "the kill came after the blob was complete"
        assert parts_before_kill < SIZE // PART, parts_before_kill

        # After the restart, the first two downloads are cut 7 MiB in: each is resumed, not started over.
        fault_ecr.control.set_faults(
            operations={"GetDownloadUrlForLayer": FaultRule(cut_after_bytes=7 * MIB, cut_downloads=2)}
        )
        fault_ecr.control.reset_calls()
        restarted = time.monotonic()
        operator.start()

        def ready_now() -> dict[str, Any] | None:
            obj = get(fault_cluster, namespace, "big")
            ok = condition(obj, "Ready").get("status") == "True"
            return obj if obj and ok and obj["status"].get("observedGeneration") == 1 else None

        obj = wait_for("Ready=True after the restart", ready_now, timeout=150, every=1.0)
        copy_seconds = time.monotonic() - restarted
        calls = fault_ecr.control.calls()
    finally:
        fault_cluster.kubectl("delete", "ecrtagpolicy", policy, "--ignore-not-found", check=False)

    # The copy completed after the restart, with a new upload of the whole blob.
    status = obj["status"]
    assert status["copy"]["finished"] is True, status["copy"]
    assert status["failures"] == [], status["failures"]
    assert calls.of("UploadLayerPart", prod_repo) >= -(-SIZE // PART)
    assert calls.of("CompleteLayerUpload", prod_repo) >= 1
    # The cut downloads were resumed from the last part uploaded: at most a part's worth read again each.
    assert calls.downloads >= 2
    assert SIZE + MIB < calls.downloaded_bytes <= SIZE + 2 * (7 * MIB) + 64, calls.downloaded_bytes

    # The target's blob is the source's, from its bytes.
    assert digest_of_blob(prod, prod_repo, layer) == (layer, SIZE)
    # No stray image: the one image (digest of the manifest's bytes), tagged v1, nothing untagged.
    details = prod.describe_images(repositoryName=prod_repo)["imageDetails"]
    assert [(d["imageDigest"], sorted(d.get("imageTags", []))) for d in details] == [(image, ["v1"])]
    untagged = prod.list_images(repositoryName=prod_repo, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert untagged == []

    print(
        f"\n[faults] sigkill mid-blob: {SIZE // MIB} MiB, seeded in {seeded:.1f} s, killed after "
        f"{parts_before_kill} parts, Ready {copy_seconds:.1f} s after the restart, "
        f"{calls.downloads} downloads, wall {time.monotonic() - began:.1f} s"
    )
