"""Tests of the control-plane fixture itself: versions, RBAC, CRDs, storage, and clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_tag_localenv import control_plane as cp_module
from ecr_tag_localenv.control_plane import (
    BUILD_COMMAND,
    BinariesError,
    ControlPlane,
    ControlPlaneError,
    KubeCluster,
    KubectlError,
    ensure_binaries,
    pinned_versions,
)
from ecr_tag_localenv.waiting import wait_for
from tests.plugins.control_plane import OPERATOR_CRD


def _local_only(cluster: KubeCluster) -> ControlPlane:
    if not isinstance(cluster, ControlPlane):
        pytest.skip("checks the local control plane; USE_EXISTING_CLUSTER is set")
    return cluster


def _bin_dir() -> Path:
    try:
        return ensure_binaries(build=False)
    except BinariesError as exc:
        pytest.fail(str(exc), pytrace=False)


def _children() -> set[int]:
    """PIDs whose parent is this process, zombies included (a zombie means it was not reaped)."""
    me = os.getpid()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent PID; field 2 (the name) may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            found.add(int(entry.name))
    return found


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Binaries (no cluster needed)


def test_binaries_missing_without_build_says_how_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cp_module.BIN_DIR_ENV, raising=False)
    monkeypatch.setenv("ECR_TAG_OPERATOR_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BinariesError, match="kube-apiserver") as info:
        ensure_binaries(build=False)
    assert BUILD_COMMAND in str(info.value)


def test_bin_dir_env_var_wins_and_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cp_module.BIN_DIR_ENV, str(tmp_path))
    with pytest.raises(BinariesError, match="etcd") as info:
        ensure_binaries()  # build=True, yet an explicit directory is never built into
    assert BUILD_COMMAND in str(info.value)
    for name in cp_module.REQUIRED_BINARIES:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    assert ensure_binaries() == tmp_path


# --------------------------------------------------------------------------------------------------
# The session control plane


@pytest.mark.e2e
def test_client_and_server_report_pinned_version(control_plane: KubeCluster) -> None:
    _local_only(control_plane)
    expected = pinned_versions()["kubernetes"]
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == expected
    assert versions["serverVersion"]["gitVersion"] == expected


@pytest.mark.e2e
def test_apiserver_listens_on_loopback_only(control_plane: KubeCluster) -> None:
    local = _local_only(control_plane)
    assert local.server_url.startswith("https://127.0.0.1:")
    args = Path(f"/proc/{local.pids['kube-apiserver']}/cmdline").read_bytes().split(b"\0")
    assert b"--bind-address=127.0.0.1" in args
    assert b"--authorization-mode=RBAC" in args


@pytest.mark.e2e
def test_rbac_applies_to_service_account_token(control_plane: KubeCluster, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", ns)
    control_plane.kubectl("create", "secret", "generic", "probe", "-n", ns, "--from-literal=k=v")
    sa = KubeCluster(
        control_plane.service_account_kubeconfig("reader", ns, tmp_path / "reader.kubeconfig", duration="10m"),
        control_plane.kubectl_path,
    )

    # The token really authenticates as the ServiceAccount (TokenRequest + the signing key work).
    whoami = json.loads(sa.kubectl("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:reader"

    denied = sa.kubectl("get", "secrets", "-n", ns, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    control_plane.kubectl("create", "role", "read-secrets", "-n", ns, "--verb=get,list", "--resource=secrets")
    control_plane.kubectl(
        "create",
        "rolebinding",
        "reader-reads",
        "-n",
        ns,
        "--role=read-secrets",
        f"--serviceaccount={ns}:reader",
    )
    # RBAC changes reach the authorizer through an informer: poll.
    wait_for(
        "the Role to allow reading secrets",
        lambda: sa.kubectl("get", "secrets", "-n", ns, check=False).returncode == 0,
        timeout=30,
    )
    assert "probe" in sa.kubectl("get", "secrets", "-n", ns, "-o", "name").stdout
    # The grant is exactly the Role: still no access elsewhere.
    assert sa.kubectl("get", "secrets", "-n", "default", check=False).returncode != 0


@pytest.mark.e2e
def test_configmap_round_trips(control_plane: KubeCluster, k8s_namespace: str) -> None:
    data = {"plain": "value", "multi": "line one\nline two\n", "unicode": "tag → sha256:ä"}
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "round-trip", "namespace": k8s_namespace},
        "data": data,
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    stored = json.loads(
        control_plane.kubectl("get", "configmap", "round-trip", "-n", k8s_namespace, "-o", "json").stdout
    )
    assert stored["data"] == data
    assert stored["metadata"]["uid"]


@pytest.mark.e2e
def test_install_crds_establishes_and_serves_custom_resources(
    control_plane: KubeCluster, k8s_namespace: str, tmp_path: Path
) -> None:
    crd = tmp_path / "widgets.yaml"
    crd.write_text(
        textwrap.dedent(
            """\
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: widgets.fixture-test.ecrtag.dev
            spec:
              group: fixture-test.ecrtag.dev
              scope: Namespaced
              names: {plural: widgets, singular: widget, kind: Widget}
              versions:
                - name: v1
                  served: true
                  storage: true
                  schema:
                    openAPIV3Schema:
                      type: object
                      properties:
                        spec:
                          type: object
                          required: [size]
                          properties:
                            size: {type: integer, minimum: 1}
            """
        )
    )
    control_plane.install_crds(crd)
    condition = control_plane.kubectl(
        "get",
        "crd",
        "widgets.fixture-test.ecrtag.dev",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    ).stdout
    assert condition == "True"

    widget: dict[str, Any] = {
        "apiVersion": "fixture-test.ecrtag.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": k8s_namespace},
        "spec": {"size": 3},
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(widget))
    got = json.loads(control_plane.kubectl("get", "widget", "w", "-n", k8s_namespace, "-o", "json").stdout)
    assert got["spec"] == {"size": 3}
    # The schema is enforced by the apiserver.
    widget["metadata"]["name"] = "bad"
    widget["spec"] = {"size": 0}
    with pytest.raises(KubectlError, match=r"spec\.size"):
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(widget))


@pytest.mark.e2e
def test_operator_crd_is_installed(control_plane: KubeCluster) -> None:
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(OPERATOR_CRD.read_text()) if d]
    assert names
    for name in names:
        status = control_plane.kubectl(
            "get", "crd", name, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        ).stdout
        assert status == "True", name


@pytest.mark.e2e
def test_k8s_namespace_is_fresh_and_active(control_plane: KubeCluster, k8s_namespace: str) -> None:
    phase = control_plane.kubectl("get", "namespace", k8s_namespace, "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Active"
    assert control_plane.kubectl("get", "configmaps,secrets", "-n", k8s_namespace, "-o", "name").stdout == ""


# --------------------------------------------------------------------------------------------------
# Separate ControlPlane instances: lifecycle


class _TestBodyFailed(Exception):
    pass


@pytest.mark.e2e
def test_stop_on_failure_leaves_no_process_or_directory() -> None:
    before = _children()
    plane = ControlPlane(_bin_dir())
    pids: dict[str, int] = {}
    tmp_dir = Path()
    try:
        with plane:
            pids = plane.pids
            tmp_dir = plane.tmp_dir
            assert set(pids) == {"etcd", "kube-apiserver"}
            assert all(_pid_exists(pid) for pid in pids.values())
            assert plane.startup_seconds is not None
            assert plane.startup_seconds < plane.start_timeout
            assert plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
            raise _TestBodyFailed
    except _TestBodyFailed:
        pass

    assert not any(_pid_exists(pid) for pid in pids.values()), pids
    assert _children() <= before
    assert not tmp_dir.exists()
    assert plane.pids == {}
    with pytest.raises(ControlPlaneError, match="not running"):
        plane.kubectl("get", "namespaces")
    plane.stop()  # idempotent


@pytest.mark.e2e
def test_start_failure_reports_log_tail_and_cleans_up() -> None:
    before = _children()
    plane = ControlPlane(_bin_dir(), extra_apiserver_args=["--no-such-flag=1"])
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited") as info:
        plane.start()
    assert "no-such-flag" in str(info.value)
    assert not plane.running
    assert _children() <= before  # etcd, already started, was stopped and reaped too


@pytest.mark.e2e
def test_processes_are_killed_if_sigterm_is_ignored() -> None:
    # Stand-in for a hung apiserver: SIGSTOP makes it ignore SIGTERM until SIGKILL.
    plane = ControlPlane(_bin_dir(), stop_timeout=1.0)
    plane.start()
    try:
        apiserver = plane.pids["kube-apiserver"]
        os.kill(apiserver, signal.SIGSTOP)
    finally:
        started = time.monotonic()
        plane.stop()
    assert not _pid_exists(apiserver)
    assert time.monotonic() - started < 15


def test_kubectl_error_message_includes_stderr() -> None:
    err = KubectlError(1, ["kubectl", "get", "x"], "", 'error: the server doesn\'t have a resource type "x"\n')
    assert 'resource type "x"' in str(err)
    assert isinstance(err, subprocess.CalledProcessError)
