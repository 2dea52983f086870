"""A long copy shows its progress on the real API server while it runs: ``status.copy.bytes.copied`` is
seen at more than one value between 0 and the total before Ready is True, with Ready False, reason
Copying, meanwhile; the copied-bytes metric moves before the reconcile ends too.

ECR behaviours relied on (service model ``ecr/2015-09-21``): InitiateLayerUpload answers ``partSize``;
UploadLayerPart's ``layerPartBlob`` is one part of an upload (parts in order; ECR's service quotas:
5 MiB at least but the last, 10 MiB at most by default); CompleteLayerUpload names the layer by the
sha256 of its bytes. Every UploadLayerPart is slowed by a fault rule so that the copy takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
import yaml
from mypy_boto3_ecr.client import ECRClient

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_faults import FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from ecr_tag_operator.manifests import OCI_MANIFEST

from .helpers import condition, eit, get, metric_sum, unique

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
BLOB_BYTES = 128 * MIB
PART_BYTES = 10 * MIB  # the seeding client's parts (the emulator's partSize, ECR's "Maximum layer part size")
PART_LATENCY_MS = 350  # 26 parts of the operator's 5 MiB: about 9 s of copying, several progress updates a second apart


def upload_large_blob(client: ECRClient, repository: str, size: int, seed: str) -> str:
    """A blob of ``size`` pseudo-random bytes pushed in parts, one part in memory at a time (the emulator
    appends each part to its blob store's file)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    hasher = hashlib.sha256()
    upload_id = client.initiate_layer_upload(repositoryName=repository)["uploadId"]
    for first in range(0, size, PART_BYTES):
        part = rng.randbytes(min(PART_BYTES, size - first))
        hasher.update(part)
        client.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    digest = "sha256:" + hasher.hexdigest()
    done = client.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])
    assert done["layerDigest"] == digest
    return digest


def status_yaml(obj: dict[str, Any]) -> str:
    """What `kubectl get ecrimagetag -o yaml` shows of the copy: status.copy and the Ready condition."""
    status = obj["status"]
    shown = {"status": {"copy": status.get("copy"), "conditions": [condition(obj, "Ready")]}}
    return yaml.safe_dump(shown, sort_keys=False, width=120)


def test_a_long_copy_shows_bytes_copied_growing_before_ready(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: ECRClient,
) -> None:
    dev, prod = unique("dev/big"), unique("prod/big")
    for repo in (dev, prod):
        ecr_seed.ensure_repository(ecr_session_client, repo)
    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "variant": dev}).encode()
    config = ecr_seed.upload_blob(ecr_session_client, dev, config_bytes)
    layer = upload_large_blob(ecr_session_client, dev, BLOB_BYTES, seed=dev)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": len(config_bytes),
            },
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": BLOB_BYTES}],
        }
    )
    ecr_seed.put_manifest(ecr_session_client, dev, manifest, tag="build-1", media_type=OCI_MANIFEST)
    total = BLOB_BYTES + len(config_bytes)

    metrics_before = metric_sum(operator_process.metrics(), "ecr_tag_operator_copied_bytes_total")
    ecr_server.control.set_faults(operations={"UploadLayerPart": FaultRule(latency_ms=PART_LATENCY_MS)})
    try:
        spec = {"repositoryName": prod, "source": {"tag": "build-1", "repositoryName": dev}, "tags": ["v1"]}
        control_plane.kubectl("apply", "-f", "-", input=eit("big", operated_namespace, **spec))
        seen: dict[int, dict[str, Any]] = {}  # bytes.copied between 0 and the total -> the object then
        metrics_during: list[float] = []

        def done() -> dict[str, Any] | None:
            obj = get(control_plane, operated_namespace, "big")
            ready = condition(obj, "Ready")
            if obj is None or ready.get("observedGeneration") != 1:
                return None
            if ready.get("status") == "True":
                return obj
            copied = ((obj["status"].get("copy") or {}).get("bytes") or {}).get("copied", 0)
            if ready.get("reason") == "Copying" and 0 < copied < total:
                seen.setdefault(copied, obj)
                metrics_during.append(metric_sum(operator_process.metrics(), "ecr_tag_operator_copied_bytes_total"))
            return None

        final = wait_for("the copy to finish with Ready True", done, timeout=180, every=0.2)
    finally:
        ecr_server.control.clear_faults()

    assert len(seen) >= 2, f"status.copy.bytes.copied seen at {sorted(seen)} while copying; want two values"
    first, later = sorted(seen)[0], sorted(seen)[-1]
    during = seen[first]
    assert during["status"]["copy"]["finished"] is False
    assert during["status"]["copy"]["bytes"]["total"] == total
    assert during["status"]["copy"]["inFlight"] == layer
    ready_during = condition(during, "Ready")
    assert (ready_during["status"], ready_during["reason"]) == ("False", "Copying")
    # The tags are the reconcile's to write when it ends: none is claimed while the copy runs.
    assert "tags" not in during["status"] or not any(t.get("inSync") for t in during["status"]["tags"])
    assert first < later
    # The metric moved while the copy ran, not only once it was done.
    assert any(metrics_before < m < metrics_before + total for m in metrics_during), metrics_during
    copy = final["status"]["copy"]
    assert copy["finished"] is True
    assert copy["bytes"]["copied"] == total
    ready_after = condition(final, "Ready")
    assert ready_after["reason"] == "InSync"
    after_metrics = metric_sum(operator_process.metrics(), "ecr_tag_operator_copied_bytes_total")
    assert after_metrics - metrics_before == total  # counted once, partly while copying and the rest at the end
    print(f"\n# during the copy ({len(seen)} values of bytes.copied seen: {sorted(seen)})\n{status_yaml(during)}")
    print(f"# seen later during the copy\n{status_yaml(seen[later])}")
    print(f"# after the copy\n{status_yaml(final)}")
