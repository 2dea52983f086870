"""The operator as a process on a real kube-apiserver + etcd, with the ECR emulator behind it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_tags import tag_digest, tag_digests
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for

from .helpers import condition, eit, get, metric_sum, unique

pytestmark = pytest.mark.e2e


def apply(cluster: KubeCluster, manifest: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=manifest)


def test_apply_ready_status_and_printer_columns(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/web")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    apply(
        control_plane,
        eit("web", operated_namespace, repositoryName=repo, source={"tag": "build-1"}, tags=["prod", "v1"]),
    )
    control_plane.kubectl(
        "wait", "--for=condition=Ready", "ecrimagetag/web", "-n", operated_namespace, "--timeout=60s", timeout=70
    )
    obj = get(control_plane, operated_namespace, "web")
    assert obj is not None
    status = obj["status"]
    assert status["image"]["digest"] == img.digest
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert {t["tag"]: t["digest"] for t in status["tags"]} == {"prod": img.digest, "v1": img.digest}
    assert status["layerSummary"]["available"] == len(img.blob_digests)
    assert tag_digest(ecr_session_client, repo, "prod") == img.digest
    assert tag_digest(ecr_session_client, repo, "v1") == img.digest
    # kopf's marks carry our own prefix, and nothing of ours is written into spec.
    assert any(k.startswith("ecrtag.dev/") for k in obj["metadata"].get("annotations", {}))
    assert obj["spec"] == {
        "repositoryName": repo,
        "source": {"tag": "build-1"},
        "tags": ["prod", "v1"],
        "mode": "Enforce",
        "deletionPolicy": "Retain",
        "driftCheckInterval": "5m",
        "copy": "IfMissing",  # the CRD's defaults
        "referrers": ["All"],
    }
    wide = control_plane.kubectl("get", "eit", "web", "-n", operated_namespace, "-o", "wide").stdout
    header = wide.splitlines()[0].split()
    assert header[:7] == ["NAME", "REPOSITORY", "TAGS", "DIGEST", "READY", "REASON", "MESSAGE"]
    assert img.digest in wide
    assert "InSync" in wide
    explain = control_plane.kubectl("explain", "ecrimagetag.spec.source").stdout
    assert "Give a tag, a digest, or both" in explain
    assert "digest" in explain
    assert "repositoryName" in explain


def test_changing_the_source_moves_the_tags_and_emits_events(
    control_plane: KubeCluster, operated_namespace: str, operator_process: OperatorProcess, ecr_session_client: Any
) -> None:
    repo = unique("e2e/move")
    one = ecr_seed.push(ecr_session_client, repo, "build-1", "oci", seed=repo + "1")
    two = ecr_seed.push(ecr_session_client, repo, "build-2", "oci", seed=repo + "2")
    apply(
        control_plane,
        eit("move", operated_namespace, repositoryName=repo, source={"digest": one.digest}, tags=["prod"]),
    )
    wait_for("prod at build-1", lambda: tag_digest(ecr_session_client, repo, "prod") == one.digest)
    apply(
        control_plane,
        eit("move", operated_namespace, repositoryName=repo, source={"digest": two.digest}, tags=["prod"]),
    )
    wait_for("prod at build-2", lambda: tag_digest(ecr_session_client, repo, "prod") == two.digest)

    def ready_on_new_generation() -> bool:
        obj = get(control_plane, operated_namespace, "move")
        ready = condition(obj, "Ready")
        return bool(obj and ready.get("status") == "True" and obj["status"]["observedGeneration"] == 2)

    wait_for("Ready for generation 2", ready_on_new_generation)
    events = control_plane.kubectl(
        "get", "events", "-n", operated_namespace, "--field-selector", "involvedObject.name=move", "-o", "json"
    )
    moved = [e["message"] for e in json.loads(events.stdout)["items"] if e["reason"] == "TagMoved"]
    assert any(two.digest in m and one.digest in m for m in moved), moved


def test_observe_mode_makes_no_write_and_reports_drift(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/observe")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    before = ecr_server.control.calls().of("PutImage", repo)
    apply(
        control_plane,
        eit("watch", operated_namespace, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"], mode="Observe"),
    )
    obj = wait_for(
        "Ready=False Drifted",
        lambda: (
            (o := get(control_plane, operated_namespace, "watch"))
            and condition(o, "Ready").get("reason") == "Drifted"
            and o
        ),
    )
    assert obj["status"]["tags"] == [{"tag": "prod", "inSync": False, "reason": "Drifted"}]
    assert obj["status"]["image"]["digest"] == img.digest
    assert ecr_server.control.calls().of("PutImage", repo) == before
    assert tag_digest(ecr_session_client, repo, "prod") is None


def test_delete_policy_removes_tags_then_finalizer_then_object(
    control_plane: KubeCluster, operated_namespace: str, operator_process: OperatorProcess, ecr_session_client: Any
) -> None:
    repo = unique("e2e/delete")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    apply(
        control_plane,
        eit(
            "gone",
            operated_namespace,
            repositoryName=repo,
            source={"tag": "build-1"},
            tags=["a", "b"],
            deletionPolicy="Delete",
        ),
    )
    obj = wait_for(
        "finalizer and Ready",
        lambda: (
            (o := get(control_plane, operated_namespace, "gone"))
            and condition(o, "Ready").get("status") == "True"
            and o
        ),
    )
    assert "ecrtag.dev/finalizer" in obj["metadata"]["finalizers"]
    other = ecr_seed.push(ecr_session_client, repo, "b", "docker", seed=repo + "other")  # b moved by hand
    control_plane.kubectl("delete", "ecrimagetag", "gone", "-n", operated_namespace, "--wait=false")
    wait_for("object gone", lambda: get(control_plane, operated_namespace, "gone") is None)
    assert tag_digest(ecr_session_client, repo, "a") is None
    assert tag_digest(ecr_session_client, repo, "b") == other.digest
    assert tag_digest(ecr_session_client, repo, "build-1") == img.digest


def test_retain_policy_deletes_the_object_and_keeps_the_tags(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/retain")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    apply(control_plane, eit("keep", operated_namespace, repositoryName=repo, source={"tag": "build-1"}, tags=["a"]))
    wait_for(
        "Ready",
        lambda: condition(get(control_plane, operated_namespace, "keep"), "Ready").get("status") == "True",
    )
    control_plane.kubectl("delete", "ecrimagetag", "keep", "-n", operated_namespace, "--wait=false")
    wait_for("object gone", lambda: get(control_plane, operated_namespace, "keep") is None)
    assert ecr_server.control.calls().of("BatchDeleteImage", repo) == 0
    assert tag_digest(ecr_session_client, repo, "a") == img.digest


def test_metrics_moved_with_the_reconciles(
    control_plane: KubeCluster, operated_namespace: str, operator_process: OperatorProcess, ecr_session_client: Any
) -> None:
    def counts() -> tuple[float, float, float]:
        text = operator_process.metrics()
        return (
            metric_sum(text, "ecr_tag_operator_tag_writes_total", operation="PutImage", outcome="put"),
            metric_sum(text, "ecr_tag_operator_ecr_calls_total", operation="PutImage", code=""),
            metric_sum(text, "ecr_tag_operator_reconciles_total"),
        )

    puts, put_calls, reconciles = counts()
    repo = unique("e2e/metrics")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    apply(control_plane, eit("m", operated_namespace, repositoryName=repo, source={"tag": "build-1"}, tags=["a", "b"]))
    wait_for(
        "a and b at build-1",
        lambda: tag_digests(ecr_session_client, repo, ["a", "b"]) == dict.fromkeys("ab", img.digest),
    )

    # Counted once the reconcile ends, a moment after its last PutImage: poll.
    def counted() -> tuple[float, float, float] | None:
        now = counts()
        return now if now[0] >= puts + 2 else None

    after = wait_for("two tag writes counted", counted, timeout=30)
    assert after[1] >= put_calls + 2
    assert after[2] >= reconciles + 1


def test_drift_is_corrected_with_an_event_and_a_metric(
    control_plane: KubeCluster, operated_namespace: str, operator_process: OperatorProcess, ecr_session_client: Any
) -> None:
    repo = unique("e2e/drift")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    apply(
        control_plane,
        eit(
            "d",
            operated_namespace,
            repositoryName=repo,
            source={"tag": "build-1"},
            tags=["prod"],
            driftCheckInterval="30s",
        ),
    )
    wait_for("prod at build-1", lambda: tag_digest(ecr_session_client, repo, "prod") == img.digest)
    before = metric_sum(operator_process.metrics(), "ecr_tag_operator_drift_corrections_total")
    other = ecr_seed.push(ecr_session_client, repo, "prod", "docker", seed=repo + "hand")  # moved by hand
    # The next drift check is due 30 s (plus up to 10 %) after the last sync, seen at a 5 s tick.
    wait_for("prod put back", lambda: tag_digest(ecr_session_client, repo, "prod") == img.digest, timeout=150)
    events = json.loads(
        control_plane.kubectl(
            "get", "events", "-n", operated_namespace, "--field-selector", "reason=DriftCorrected", "-o", "json"
        ).stdout
    )
    assert [e["involvedObject"]["name"] for e in events["items"]] == ["d"]
    assert other.digest in events["items"][0]["message"]
    assert metric_sum(operator_process.metrics(), "ecr_tag_operator_drift_corrections_total") == before + 1
