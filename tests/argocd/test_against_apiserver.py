"""The example manifests and the health-check fixtures, checked by a real kube-apiserver with the
operator's CRD: its patterns, CEL rules and strict field validation, status included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import KubeCluster

from .support import CHECK_DIR, EXAMPLES, load_one

pytestmark = pytest.mark.e2e

FIXTURES = sorted((CHECK_DIR / "testdata").glob("*.yaml"))
CURRENT_CRD_REJECTS = {"degraded_invalid_spec": "driftCheckInterval must be at least 30s"}


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_example_environment_passes_server_side_validation(
    control_plane: KubeCluster, k8s_namespace: str, env: str
) -> None:
    done = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        k8s_namespace,
        "-f",
        str(EXAMPLES / "environments" / env),
    )
    assert "ecrimagetag.ecrtag.dev/web created (server dry run)" in done.stdout
    assert "deployment.apps/web created (server dry run)" in done.stdout


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k in ("name", "annotations", "labels")}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta, "spec": obj["spec"]}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_spec_and_status_are_what_the_api_server_stores(
    control_plane: KubeCluster, k8s_namespace: str, path: Path
) -> None:
    obj = load_one(path)
    name = f"fx-{path.stem.replace('_', '-')}"[:63]
    bare = _bare(obj)
    bare["metadata"]["name"] = name
    created = control_plane.kubectl(
        "create", "--validate=strict", "-n", k8s_namespace, "-o", "json", "-f", "-", input=json.dumps(bare), check=False
    )
    if path.stem in CURRENT_CRD_REJECTS:
        assert created.returncode != 0
        assert CURRENT_CRD_REJECTS[path.stem] in created.stderr
        return
    assert created.returncode == 0, created.stderr
    if "status" not in obj:
        return
    stored = json.loads(created.stdout)
    stored["status"] = obj["status"]
    replaced = control_plane.kubectl(
        "replace",
        "--subresource=status",
        "--validate=strict",
        "-n",
        k8s_namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(stored),
    )
    assert json.loads(replaced.stdout)["status"] == obj["status"]
