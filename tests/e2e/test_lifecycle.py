"""Status tells the truth through ECR's image lifecycle, on the real API server (issue 14, cases 1, 3
and 7): a deleted image is not put back, a refusal leaves nothing True, an archived source is
reported with how to restore it. Each test prints the status it ends with (CI's log keeps it)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from tests.plugins.operator_process import GRANTED_LABEL

from .helpers import condition, eit, ready, unique

pytestmark = pytest.mark.e2e


def show(obj: dict[str, Any]) -> None:
    print(yaml.safe_dump({"status": obj["status"]}, sort_keys=False, width=200))


def test_a_deleted_source_image_is_reported_and_not_put_back(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/deleted")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    spec = {"repositoryName": repo, "source": {"digest": img.digest}, "tags": ["prod"], "driftCheckInterval": "30s"}
    control_plane.kubectl("apply", "-f", "-", input=eit("web", operated_namespace, **spec))
    wait_for("InSync", lambda: ready(control_plane, operated_namespace, "web", "True", "InSync"))
    # Deleted for security reasons: by digest, every tag goes with it.
    ecr_session_client.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": img.digest}])
    puts = ecr_server.control.calls().of("PutImage", repo)
    obj = wait_for(
        "ImageNotFound at the next drift check",
        lambda: ready(control_plane, operated_namespace, "web", "False", "ImageNotFound"),
        timeout=120,
    )
    show(obj)
    assert tag_digest(ecr_session_client, repo, "prod") is None
    assert ecr_server.control.calls().of("PutImage", repo) == puts
    assert "image" not in obj["status"]
    assert condition(obj, "SourceResolved")["status"] == "False"
    assert [t["inSync"] for t in obj["status"]["tags"]] == [False]


def test_a_grant_lifted_after_sync_leaves_no_condition_true(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/lifted")
    ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    spec = {"repositoryName": repo, "source": {"tag": "build-1"}, "tags": ["prod"]}
    control_plane.kubectl("apply", "-f", "-", input=eit("web", operated_namespace, **spec))
    wait_for("InSync", lambda: ready(control_plane, operated_namespace, "web", "True", "InSync"))
    control_plane.kubectl("label", "namespace", operated_namespace, f"{GRANTED_LABEL}-")  # the grant goes
    obj = wait_for(
        "Forbidden", lambda: ready(control_plane, operated_namespace, "web", "False", "Forbidden"), timeout=60
    )
    show(obj)
    status = obj["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False",
        "SourceResolved": "Unknown",
        "LayersAvailable": "Unknown",
        "TagsInSync": "Unknown",
    }
    assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in status["conditions"])
    assert status["failures"] == []
    assert [t["inSync"] for t in status["tags"]] == [False]
    assert "lastSyncTime" not in status
    assert "image" not in status


def test_an_archived_source_says_how_to_restore_it_and_recovers_once_restored(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/archived")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    spec = {"repositoryName": repo, "source": {"digest": img.digest}, "tags": ["prod"], "driftCheckInterval": "30s"}
    control_plane.kubectl("apply", "-f", "-", input=eit("web", operated_namespace, **spec))
    wait_for("InSync", lambda: ready(control_plane, operated_namespace, "web", "True", "InSync"))
    ecr_session_client.update_image_storage_class(
        repositoryName=repo, imageId={"imageDigest": img.digest}, targetStorageClass="ARCHIVE"
    )
    obj = wait_for(
        "ImageArchived at the next drift check",
        lambda: ready(control_plane, operated_namespace, "web", "False", "ImageArchived"),
        timeout=120,
    )
    show(obj)
    message = condition(obj, "Ready")["message"]
    assert "aws ecr update-image-storage-class" in message
    assert f"imageDigest={img.digest}" in message
    ecr_session_client.update_image_storage_class(
        repositoryName=repo, imageId={"imageDigest": img.digest}, targetStorageClass="STANDARD"
    )
    wait_for(
        "InSync once restored",
        lambda: ready(control_plane, operated_namespace, "web", "True", "InSync"),
        timeout=120,
    )
    assert tag_digest(ecr_session_client, repo, "prod") == img.digest
