"""GitOps manners on the real API server: EcrImageTags applied by Argo CD with server-side apply.

Argo CD (``ServerSideApply=true``) runs ``kubectl apply --server-side --field-manager=argocd-controller``
on the rendered files and shows the application OutOfSync whenever a server-side dry-run differs from
the live object. So the operator must never write (own) a spec field, must keep Argo's labels and
annotations as they are, must put what it writes in places Argo's apply does not touch (the status
subresource, its own ``ecrtag.dev/`` annotations), and must not re-tag in ECR on metadata-only edits.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for

from .helpers import condition, unique

pytestmark = pytest.mark.e2e

ARGO_MANAGER = "argocd-controller"
# kopf sends no fieldManager; the API server then names the manager after the User-Agent, cut at
# the first "/": the operator's session sends "ecr-tag-operator/<version>" (apisession.py).
OPERATOR_MANAGER = "ecr-tag-operator"
DIFFBASE = "ecrtag.dev/last-handled-configuration"
TRACKING_ID = "argocd.argoproj.io/tracking-id"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
INSTANCE = "app.kubernetes.io/instance"
ECR_WRITES = ("PutImage", "BatchDeleteImage")


def argo_metadata(name: str, namespace: str, app: str = "promo") -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations Argo CD puts on a resource of application ``app``."""
    labels = {INSTANCE: app}
    annotations = {
        TRACKING_ID: f"{app}:ecrtag.dev/EcrImageTag:{namespace}/{name}",
        SYNC_WAVE: "-1",
    }
    return labels, annotations


def write_manifest(
    directory: Path,
    name: str,
    namespace: str,
    spec: dict[str, Any],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Path:
    """Write the EcrImageTag as Argo CD would render it from Git; returns the file."""
    default_labels, default_annotations = argo_metadata(name, namespace)
    manifest = {
        "apiVersion": "ecrtag.dev/v1alpha1",
        "kind": "EcrImageTag",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": default_labels if labels is None else labels,
            "annotations": default_annotations if annotations is None else annotations,
        },
        "spec": spec,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def file_args(files: list[Path]) -> list[str]:
    return [arg for f in files for arg in ("-f", str(f))]


def argo_apply(cluster: KubeCluster, files: list[Path]) -> None:
    """Argo CD's server-side sync; without --force-conflicts, so a conflict fails the test (KubectlError)."""
    out = cluster.kubectl("apply", "--server-side", f"--field-manager={ARGO_MANAGER}", *file_args(files))
    assert "conflict" not in (out.stdout + out.stderr).lower(), out


def argo_diff(cluster: KubeCluster, files: list[Path]) -> tuple[int, str]:
    """Argo CD's server-side diff: exit code 0 and no output mean "Synced"."""
    out = cluster.kubectl("diff", "--server-side", f"--field-manager={ARGO_MANAGER}", *file_args(files), check=False)
    assert out.returncode in (0, 1), f"kubectl diff failed (exit {out.returncode}): {out.stderr}"
    return out.returncode, out.stdout + out.stderr


def assert_no_diff(cluster: KubeCluster, files: list[Path]) -> None:
    code, output = argo_diff(cluster, files)
    assert (code, output) == (0, ""), f"Argo CD would show OutOfSync:\n{output}"


def diffbase(obj: dict[str, Any]) -> dict[str, Any]:
    """The essence kopf stored after it last finished processing an event of this object."""
    raw = (obj["metadata"].get("annotations") or {}).get(DIFFBASE)
    return dict(json.loads(raw)) if raw else {}


def settled(cluster: KubeCluster, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The object once the operator is done with its current spec: Ready=True for this generation, and
    kopf's diff-base stored for exactly this spec (kopf stores it after the handlers have run)."""
    obj = get_full(cluster, namespace, name)
    if obj is None or condition(obj, "Ready").get("status") != "True":
        return None
    if obj["status"].get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    stored = diffbase(obj).get("spec") or {}
    return obj if all(stored.get(k) == v for k, v in spec.items()) else None


def ecr_writes(ecr_server: RunningEmulator, repository: str) -> dict[str, int]:
    calls = ecr_server.control.calls()
    return {op: calls.of(op, repository) for op in ECR_WRITES}


def get_full(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The object with its managedFields (``kubectl get`` strips them unless asked)."""
    out = cluster.kubectl(
        "get", "ecrimagetag", name, "-n", namespace, "-o", "json", "--show-managed-fields", "--ignore-not-found"
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def managed_fields(obj: dict[str, Any]) -> list[dict[str, Any]]:
    entries = obj["metadata"].get("managedFields")
    assert entries, "fetch the object with get_full(): managedFields are missing"
    return list(entries)


def assert_ownership(obj: dict[str, Any], spec_keys: set[str]) -> None:
    """Argo CD owns the spec (and its metadata); the operator owns no spec field, and its status writes
    went through the status subresource."""
    entries = managed_fields(obj)
    summary = [(m["manager"], m["operation"], m.get("subresource", ""), sorted(m.get("fieldsV1", {}))) for m in entries]
    argo = [m for m in entries if m["manager"] == ARGO_MANAGER]
    assert len(argo) == 1, summary
    assert argo[0]["operation"] == "Apply"
    assert "subresource" not in argo[0], summary
    argo_fields = argo[0]["fieldsV1"]
    assert set(argo_fields["f:spec"]) >= {f"f:{k}" for k in spec_keys}, argo_fields
    assert f"f:{INSTANCE}" in argo_fields["f:metadata"]["f:labels"]
    assert {f"f:{TRACKING_ID}", f"f:{SYNC_WAVE}"} <= set(argo_fields["f:metadata"]["f:annotations"])
    assert "f:status" not in argo_fields

    others = [m for m in entries if m["manager"] != ARGO_MANAGER]
    assert {m["manager"] for m in others} == {OPERATOR_MANAGER}, summary
    for m in others:
        assert "f:spec" not in m.get("fieldsV1", {}), f"{m['manager']} owns spec fields: {m['fieldsV1']}"
    status_writers = [m for m in others if "f:status" in m.get("fieldsV1", {})]
    assert status_writers, summary
    assert all(m.get("subresource") == "status" for m in status_writers), summary
    assert {"f:conditions", "f:observedGeneration"} <= set(status_writers[0]["fieldsV1"]["f:status"])
    main = [m for m in others if "subresource" not in m]
    owned_annotations = {k for m in main for k in m["fieldsV1"].get("f:metadata", {}).get("f:annotations", {})}
    assert f"f:{DIFFBASE}" in owned_annotations, summary
    # The operator claims only its own annotations, never one of Argo CD's.
    assert all(k.startswith("f:ecrtag.dev/") for k in owned_annotations), owned_annotations


def test_server_side_applied_objects_stay_in_sync_and_the_operator_owns_no_spec(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_session_client: Any,
    tmp_path: Path,
) -> None:
    ns = operated_namespace
    repos = {name: unique(f"gitops/{name}") for name in ("web", "api", "worker")}
    images = {
        name: ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo) for name, repo in repos.items()
    }
    specs = {
        "web": {"repositoryName": repos["web"], "source": {"tag": "build-1"}, "tags": ["prod", "v1"]},
        "api": {"repositoryName": repos["api"], "source": {"digest": images["api"].digest}, "tags": ["prod"]},
        "worker": {
            "repositoryName": repos["worker"],
            "source": {"tag": "build-1", "digest": images["worker"].digest},
            "tags": ["prod"],
            "deletionPolicy": "Delete",
        },
    }
    files = [write_manifest(tmp_path, name, ns, spec) for name, spec in specs.items()]

    argo_apply(control_plane, files)
    live = {
        name: wait_for(f"{name} Ready", partial(settled, control_plane, ns, name, spec)) for name, spec in specs.items()
    }
    for name, repo in repos.items():
        assert tag_digest(ecr_session_client, repo, "prod") == images[name].digest
        assert live[name]["status"]["image"]["digest"] == images[name].digest

    # Argo's next sync re-applies the same files: no conflict, and nothing written at all.
    argo_apply(control_plane, files)
    again = {name: get_full(control_plane, ns, name) for name in specs}
    for name, obj in again.items():
        assert obj is not None
        assert obj["metadata"]["generation"] == live[name]["metadata"]["generation"] == 1
        assert obj["metadata"]["resourceVersion"] == live[name]["metadata"]["resourceVersion"], name
    assert_no_diff(control_plane, files)

    for name, obj in again.items():
        assert obj is not None
        assert_ownership(obj, set(specs[name]))
        labels, annotations = argo_metadata(name, ns)
        assert {k: v for k, v in obj["metadata"]["labels"].items() if k in labels} == labels
        assert {k: v for k, v in obj["metadata"]["annotations"].items() if not k.startswith("ecrtag.dev/")} == (
            annotations
        )
        assert set(obj["metadata"]["labels"]) == set(labels)  # the operator adds no label
        assert obj["spec"] == {
            "mode": "Enforce",
            "deletionPolicy": "Retain",
            "driftCheckInterval": "5m",
            "copy": "IfMissing",  # the CRD's defaults
            "referrers": ["All"],
            **specs[name],
        }

    # The diff is not blind: a spec edit in Git does show up (exit code 1) before it is applied.
    (tmp_path / "edited").mkdir()
    edited = write_manifest(tmp_path / "edited", "web", ns, {**specs["web"], "tags": ["prod"]})
    code, output = argo_diff(control_plane, [edited])
    assert code == 1
    assert any(line.startswith("-") and line.strip(" -") == "v1" for line in output.splitlines()), output


def test_metadata_only_change_by_argo_makes_no_ecr_write(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    tmp_path: Path,
) -> None:
    ns = operated_namespace
    repo = unique("gitops/meta")
    img = ecr_seed.push(ecr_session_client, repo, "build-1", "oci", seed=repo)
    spec = {"repositoryName": repo, "source": {"tag": "build-1"}, "tags": ["prod"]}
    files = [write_manifest(tmp_path, "meta", ns, spec)]
    argo_apply(control_plane, files)
    before = wait_for("meta Ready", lambda: settled(control_plane, ns, "meta", spec))
    assert tag_digest(ecr_session_client, repo, "prod") == img.digest
    # Someone moves prod by hand. With every tag in sync, even a needless reconcile would write nothing
    # and the counts below could not tell; with prod drifted, a reconcile on the metadata change would
    # PutImage it back. Drift is the drift timer's job (driftCheckInterval 5m, far beyond this test).
    by_hand = ecr_seed.push(ecr_session_client, repo, "prod", "oci", seed=repo + "by-hand")
    writes_before = ecr_writes(ecr_server, repo)
    assert writes_before["PutImage"] >= 2  # the counter is live: the operator's PutImage and ours are in it

    # The application is renamed and opts into more sync options: only labels and annotations change.
    labels = {INSTANCE: "promo-prod"}
    annotations = {
        TRACKING_ID: f"promo-prod:ecrtag.dev/EcrImageTag:{ns}/meta",
        SYNC_WAVE: "-1",
        SYNC_OPTIONS: "ServerSideApply=true,Validate=false",
    }
    files = [write_manifest(tmp_path, "meta", ns, spec, labels, annotations)]
    argo_apply(control_plane, files)

    # Proof that the operator saw and finished this event: kopf keeps the object's last handled essence
    # (spec, labels and annotations) in the diff-base annotation, and stores it only after the handlers
    # the change selects have run (here none: the spec is unchanged; see kopf's process_changing_cause).
    # Events of one object are processed in order, so once the new tracking-id is in the diff-base, any
    # ECR write this change could cause has already been made. Waiting on a later event of *another*
    # object would prove nothing: kopf handles each object in its own worker.
    after = wait_for(
        "the operator's diff-base to record the new tracking-id",
        lambda: (
            (o := get_full(control_plane, ns, "meta"))
            and diffbase(o).get("metadata", {}).get("annotations", {}).get(TRACKING_ID) == annotations[TRACKING_ID]
            and o
        ),
    )
    assert diffbase(after)["metadata"]["labels"] == labels
    assert ecr_writes(ecr_server, repo) == writes_before
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"] == before["status"]  # no reconcile ran: not even lastSyncTime moved
    assert tag_digest(ecr_session_client, repo, "prod") == by_hand.digest
    assert {k: v for k, v in after["metadata"]["annotations"].items() if not k.startswith("ecrtag.dev/")} == (
        annotations
    )
    assert after["metadata"]["labels"] == labels
    assert_no_diff(control_plane, files)
    assert_ownership(after, set(spec))
    argo_fields = next(m for m in managed_fields(after) if m["manager"] == ARGO_MANAGER)["fieldsV1"]
    assert f"f:{SYNC_OPTIONS}" in argo_fields["f:metadata"]["f:annotations"]


def test_spec_change_by_argo_moves_the_tag_and_the_next_sync_shows_no_diff(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    tmp_path: Path,
) -> None:
    ns = operated_namespace
    repo = unique("gitops/promote")
    one = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo + "1")
    two = ecr_seed.push(ecr_session_client, repo, "build-2", "docker", seed=repo + "2")
    spec = {"repositoryName": repo, "source": {"digest": one.digest}, "tags": ["prod"]}
    files = [write_manifest(tmp_path, "promote", ns, spec)]
    argo_apply(control_plane, files)
    wait_for("Ready on build-1", lambda: settled(control_plane, ns, "promote", spec))
    assert tag_digest(ecr_session_client, repo, "prod") == one.digest
    puts_before = ecr_writes(ecr_server, repo)["PutImage"]

    # The promotion commit: a new digest in Git, synced by Argo CD.
    promoted = {**spec, "source": {"digest": two.digest}}
    files = [write_manifest(tmp_path, "promote", ns, promoted)]
    code, output = argo_diff(control_plane, files)
    assert code == 1
    assert two.digest in output
    argo_apply(control_plane, files)
    obj = wait_for("Ready on build-2", lambda: settled(control_plane, ns, "promote", promoted))
    assert obj["metadata"]["generation"] == 2
    assert obj["status"]["image"]["digest"] == two.digest
    assert {t["tag"]: t["digest"] for t in obj["status"]["tags"]} == {"prod": two.digest}
    assert tag_digest(ecr_session_client, repo, "prod") == two.digest
    assert ecr_writes(ecr_server, repo)["PutImage"] > puts_before

    # Argo CD's next sync after the operator's status update: the same file, no conflict, no write, no diff.
    argo_apply(control_plane, files)
    again = get_full(control_plane, ns, "promote")
    assert again is not None
    assert again["metadata"]["generation"] == 2
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert_no_diff(control_plane, files)
    assert_ownership(again, set(promoted))
    argo_fields = next(m for m in managed_fields(again) if m["manager"] == ARGO_MANAGER)["fieldsV1"]
    assert "f:digest" in argo_fields["f:spec"]["f:source"]
    assert again["spec"]["source"] == {"digest": two.digest}
