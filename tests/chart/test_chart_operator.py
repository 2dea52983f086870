"""The operator, run with exactly the access the chart grants: `helm install` into a control plane of
this module's own, then the operator process with the chart's ServiceAccount token and the
Deployment's own settings (--namespace flags). With the chart's default values no EcrTagPolicy exists,
so every EcrImageTag is Forbidden before any ECR call; a policy from values.policies (helm upgrade)
then grants one namespace. It must read policies and namespaces through its indexes, write the
policy's status, and never hit a 403, in both modes."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import ControlPlane, ensure_binaries
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from tests.chart.helm import CHART, Helm, Obj, container
from tests.e2e.helpers import unique
from tests.plugins.ecr_server import aws_client

pytestmark = pytest.mark.e2e

# What kopf and the Kubernetes API say when an identity lacks access.
DENIED = ("Not enough permissions", "APIForbiddenError", "is forbidden")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ControlPlane]:
    # A control plane without the CRD and without any other operator: the release installs the CRD,
    # and only the operator started here reconciles.
    with ControlPlane(ensure_binaries()) as cp:
        yield cp


def _ready(cluster: ControlPlane, ns: str, name: str, reason: str | None = None) -> dict[str, Any] | None:
    """The Ready condition once it is decided for the current generation (and has ``reason``)."""
    out = cluster.kubectl("get", "ecrimagetag", name, "-n", ns, "-o", "yaml", "--ignore-not-found").stdout
    obj = yaml.safe_load(out) if out.strip() else None
    if not obj or obj.get("status", {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    for cond in obj["status"].get("conditions") or []:
        if cond["type"] == "Ready" and cond["status"] != "Unknown" and reason in (None, cond["reason"]):
            return dict(cond)
    return None


def _ecr_image_tag(cluster: ControlPlane, ns: str, name: str, repository: str) -> None:
    manifest = {
        "apiVersion": "ecrtag.dev/v1alpha1",
        "kind": "EcrImageTag",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"repositoryName": repository, "source": {"tag": "build-1"}, "tags": ["prod"]},
    }
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(manifest))


def _operator_settings(objs: list[Obj]) -> tuple[dict[str, str], list[str]]:
    """The Deployment's operator settings and flags, minus the ports the test process picks itself."""
    c = container(objs)
    env = {e["name"]: e["value"] for e in c["env"] if e["name"].startswith("ECR_TAG_OPERATOR_") and "value" in e}
    args = [a for a in c["args"][1:] if not a.startswith(("--liveness=", "--metrics-port="))]
    return env, args


def _policy_ready(cluster: ControlPlane, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "ecrtagpolicy", name, "-o", "yaml", "--ignore-not-found").stdout
    obj = yaml.safe_load(out) if out.strip() else None
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return dict(cond)
    return None


def _repository_calls(server: RunningEmulator, repository: str) -> dict[str, int]:
    counts = server.control.calls()
    return {op: n for op, repos in counts.by_repository.items() if (n := repos.get(repository, 0))}


@pytest.mark.parametrize("watch_namespaces", [False, True], ids=["all-namespaces", "watch-namespaces"])
def test_operator_works_with_the_chart_rbac_alone(
    helm: Helm, cluster: ControlPlane, ecr_server: RunningEmulator, tmp_path: Path, watch_namespaces: bool
) -> None:
    ops, team_a, team_b = unique("ops"), unique("team-a"), unique("team-b")
    for ns in (ops, team_a, team_b):
        cluster.kubectl("create", "namespace", ns)
    ecr = aws_client(ecr_server.endpoint_url, "ecr", 3)
    allowed, refused = unique("team-a/web"), unique("team-b/web")
    for repo in (allowed, refused):
        ecr_seed.push(ecr, repo, "build-1", "docker", seed=repo)
    before = {repo: _repository_calls(ecr_server, repo) for repo in (allowed, refused)}
    # The chart's default values: no policy and no allow-all, so nothing is allowed.
    values: list[str] = []
    if watch_namespaces:
        values += ["--set", f"watchNamespaces={{{team_a},{team_b}}}"]
    release = unique("eto")
    kube = ("--namespace", ops, "--kubeconfig", str(cluster.kubeconfig_path))
    # --take-ownership: the CRDs stay after an earlier test's uninstall (helm.sh/resource-policy: keep).
    helm.run("install", release, str(CHART), "--take-ownership", *values, *kube)
    policy = unique("team-a")
    try:
        objs = [d for d in yaml.safe_load_all(helm.run("get", "manifest", release, *kube).stdout) if d]
        assert not [o for o in objs if o["kind"] == "EcrTagPolicy"]
        env, args = _operator_settings(objs)
        assert ("--namespace=" + team_a in args) is watch_namespaces
        sa = f"{release}-ecr-tag-operator"
        user = f"system:serviceaccount:{ops}:{sa}"
        # RBAC reaches the authorizer through an informer: start once the last binding is in effect.
        wait_for(
            "RBAC",
            lambda: (
                cluster.kubectl("auth", "can-i", "watch", "namespaces", f"--as={user}", check=False).stdout.strip()
                == "yes"
            ),
        )
        for crd in ("ecrimagetags.ecrtag.dev", "ecrtagpolicies.ecrtag.dev"):
            cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        kubeconfig = cluster.service_account_kubeconfig(sa, ops, tmp_path / "sa.kubeconfig")
        operator = OperatorProcess(kubeconfig, {**ecr_server.env, **env}, args=args, log_path=tmp_path / "operator.log")
        with operator:
            _ecr_image_tag(cluster, team_a, "ours", allowed)
            _ecr_image_tag(cluster, team_b, "theirs", refused)
            try:
                for ns, name in ((team_a, "ours"), (team_b, "theirs")):
                    got = wait_for(f"{name} refused", functools.partial(_ready, cluster, ns, name), timeout=60)
                    assert (got["status"], got["reason"]) == ("False", "Forbidden"), got
                    assert f"no EcrTagPolicy grants namespace {ns} anything" in got["message"], got
                # Refused before any ECR call: the emulator saw nothing of either repository.
                assert {repo: _repository_calls(ecr_server, repo) for repo in before} == before
                # A cluster admin grants team_a through the chart, now that the CRD exists.
                spec = {"namespaces": [team_a], "registries": [{"write": [{"repositories": ["team-a/*"]}]}]}
                granting = f"policies={json.dumps([{'name': policy, 'spec': spec}])}"
                helm.run("upgrade", release, str(CHART), "--reuse-values", "--set-json", granting, *kube)
                ours = wait_for("ours granted", functools.partial(_ready, cluster, team_a, "ours", "InSync"))
                granted = wait_for("policy status", lambda: _policy_ready(cluster, policy), timeout=60)
                theirs = _ready(cluster, team_b, "theirs")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\noperator log (tail):\n{operator.log_tail(40)}") from None
            log = operator.log_text()
        assert ours["status"] == "True", (ours, operator.log_tail())
        assert (granted["status"], granted["reason"]) == ("True", "Valid"), granted
        assert theirs is not None
        assert (theirs["status"], theirs["reason"]) == ("False", "Forbidden"), theirs
        assert _repository_calls(ecr_server, refused) == before[refused]
        denied = [line for line in log.splitlines() if any(d in line for d in DENIED)]
        assert not denied, "\n".join(denied)
    finally:
        for ns in (team_a, team_b):
            for name in ("ours", "theirs"):
                cluster.kubectl(
                    "patch",
                    "ecrimagetag",
                    name,
                    "-n",
                    ns,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )
        helm.run("uninstall", release, *kube, "--ignore-not-found", check=False)
