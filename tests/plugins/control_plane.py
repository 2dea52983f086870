"""Fixtures for a real Kubernetes API: a local etcd + kube-apiserver, or an existing cluster.

`USE_EXISTING_CLUSTER=true` with `KUBECONFIG` set uses that cluster instead (envtest's convention).
Missing binaries or a failed build fail the tests that need the control plane; they never skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecr_tag_localenv.control_plane import (
    BinariesError,
    ControlPlane,
    ControlPlaneError,
    KubeCluster,
    ensure_binaries,
    repo_root,
)

OPERATOR_CRD = repo_root() / "crds" / "ecrimagetags.ecrtag.dev.yaml"
POLICY_CRD = repo_root() / "crds" / "ecrtagpolicies.ecrtag.dev.yaml"


def _reporter_line(config: pytest.Config, line: str) -> None:
    # A first build takes many minutes: show its progress live despite output capturing.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


def _existing_cluster() -> KubeCluster:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    paths = [p for p in kubeconfig.split(os.pathsep) if p]
    if len(paths) != 1:
        pytest.fail(
            f"USE_EXISTING_CLUSTER=true needs KUBECONFIG set to exactly one file, got {kubeconfig!r}",
            pytrace=False,
        )
    # The pinned kubectl when built (a known version), else whatever PATH offers.
    try:
        kubectl = ensure_binaries(build=False) / "kubectl"
    except BinariesError:
        found = shutil.which("kubectl")
        if found is None:
            raise
        kubectl = Path(found)
    return KubeCluster(kubeconfig_path=Path(paths[0]), kubectl_path=kubectl)


@pytest.fixture(scope="session")
def control_plane(pytestconfig: pytest.Config) -> Iterator[KubeCluster]:
    """A Kubernetes API for the whole session, with the operator's CRDs installed when present."""
    local: ControlPlane | None = None
    failure = ""
    try:
        if os.environ.get("USE_EXISTING_CLUSTER", "").lower() == "true" and os.environ.get("KUBECONFIG"):
            cluster = _existing_cluster()
        else:
            bin_dir = ensure_binaries(progress=lambda line: _reporter_line(pytestconfig, line))
            cluster = local = ControlPlane(bin_dir)
            local.start()
    except BinariesError as exc:
        failure = f"no control-plane binaries: {exc}"
    except ControlPlaneError as exc:
        failure = f"the local control plane did not start: {exc}"
    if failure:
        # Outside the except blocks, so the report shows the message once, without a chained traceback.
        pytest.fail(failure, pytrace=False)
    try:
        # The operator's CRDs are written alongside; tests that need one fail on its absence themselves.
        for crd in (OPERATOR_CRD, POLICY_CRD):
            if crd.is_file():
                cluster.install_crds(crd)
        yield cluster
    finally:
        if local is not None:
            local.stop()


@contextlib.contextmanager
def fresh_namespace(cluster: KubeCluster, prefix: str = "test", labels: dict[str, str] | None = None) -> Iterator[str]:
    """A new namespace named ``prefix-<random>`` (with ``labels``), deleted afterwards.

    Deletion is not awaited: with no namespace controller running it stays Terminating forever.
    """
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    if labels:
        cluster.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def k8s_namespace(control_plane: KubeCluster) -> Iterator[str]:
    """A fresh namespace for one test that no operator of the session watches."""
    with fresh_namespace(control_plane) as name:
        yield name
