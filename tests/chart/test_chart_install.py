"""`helm install` into the real kube-apiserver: every object is created, and the ServiceAccount can do
exactly what docs/rbac.md says. No node runs here, so the operator's pod never starts; what the
Deployment would do is tested elsewhere."""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.waiting import wait_for
from tests.chart.helm import (
    CHART,
    HEALTH_CHECK_KEY,
    SOURCE_CRD,
    SOURCE_HEALTH_CHECK,
    SOURCE_POLICY_CRD,
    VALUES_EVERYTHING,
    Helm,
    load_yaml,
    one,
)

pytestmark = pytest.mark.e2e

CRD_NAME = "ecrimagetags.ecrtag.dev"
POLICY_CRD_NAME = "ecrtagpolicies.ecrtag.dev"


class Release:
    def __init__(self, helm: Helm, cluster: KubeCluster, namespace: str) -> None:
        self.helm = helm
        self.cluster = cluster
        self.namespace = namespace
        self.name = f"eto-{uuid.uuid4().hex[:6]}"
        self.fullname = f"{self.name}-ecr-tag-operator"
        self.user = f"system:serviceaccount:{namespace}:{self.fullname}"

    def _helm(self, *args: str) -> str:
        return self.helm.run(
            *args, "--namespace", self.namespace, "--kubeconfig", str(self.cluster.kubeconfig_path)
        ).stdout

    def install(self, *values: str) -> list[dict[str, object]]:
        # The session's control plane already has the CRD (applied from crds/ without Helm's
        # ownership marks): --take-ownership lets the release adopt it, as on a cluster that had it.
        self._helm("install", self.name, str(CHART), "--take-ownership", *values)
        manifest = self._helm("get", "manifest", self.name)
        return [doc for doc in yaml.safe_load_all(manifest) if doc]

    def uninstall(self) -> None:
        self._helm("uninstall", self.name)

    def notes(self) -> str:
        return self._helm("get", "notes", self.name)

    def can_i(self, *args: str) -> bool:
        result = self.cluster.kubectl(
            "auth",
            "can-i",
            *args,
            f"--as={self.user}",
            "--as-group=system:serviceaccounts",
            f"--as-group=system:serviceaccounts:{self.namespace}",
            "--as-group=system:authenticated",
            check=False,
        )
        answer = result.stdout.strip()
        assert answer in {"yes", "no"}, result.stderr
        return answer == "yes"


@pytest.fixture
def release(helm: Helm, control_plane: KubeCluster, k8s_namespace: str) -> Iterator[Release]:
    rel = Release(helm, control_plane, k8s_namespace)
    try:
        yield rel
    finally:
        helm.run(
            "uninstall",
            rel.name,
            "--namespace",
            rel.namespace,
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "--ignore-not-found",
            check=False,
        )


@pytest.fixture
def extra_namespaces(control_plane: KubeCluster) -> Iterator[list[str]]:
    names = [f"team-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for name in names:
        control_plane.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _assert_all_exist(cluster: KubeCluster, objs: list[dict[str, object]]) -> None:
    assert objs
    found = json.loads(cluster.kubectl("get", "-f", "-", "-o", "json", input=yaml.safe_dump_all(objs)).stdout)
    items = found["items"] if found.get("kind") == "List" else [found]

    def key(o: dict[str, object]) -> tuple[object, object, object]:
        meta = o["metadata"]
        assert isinstance(meta, dict)
        return o["kind"], meta.get("namespace"), meta["name"]

    assert sorted(map(key, items), key=str) == sorted(map(key, objs), key=str)


def _assert_namespaces_read_only(release: Release) -> None:
    """The namespaces index: Namespaces (cluster-scoped) listed and watched, nothing else."""
    # RBAC bindings reach the authorizer through informers: poll.
    wait_for("RBAC to allow watching namespaces", lambda: release.can_i("watch", "namespaces"), timeout=30)
    assert release.can_i("list", "namespaces")
    for verb in ("get", "update", "patch", "create", "delete"):
        assert not release.can_i(verb, "namespaces"), verb
        assert not release.can_i(verb, "namespaces/default"), verb


def _ecr_image_tag(cluster: KubeCluster, namespace: str) -> str:
    name = "web"
    manifest = {
        "apiVersion": "ecrtag.dev/v1alpha1",
        "kind": "EcrImageTag",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"repositoryName": "team-a/web", "source": {"tag": "build-1"}, "tags": ["prod"]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    return name


def test_default_install_creates_every_object_and_grants_least_privilege(
    release: Release, control_plane: KubeCluster, extra_namespaces: list[str]
) -> None:
    objs = release.install()
    kinds = sorted(str(o["kind"]) for o in objs)
    assert kinds == [
        *["ClusterRole"] * 4,
        *["ClusterRoleBinding"] * 4,
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        *["ValidatingAdmissionPolicy"] * 3,
        *["ValidatingAdmissionPolicyBinding"] * 3,
    ]
    _assert_all_exist(control_plane, objs)
    for name, source in ((CRD_NAME, SOURCE_CRD), (POLICY_CRD_NAME, SOURCE_POLICY_CRD)):
        crd = json.loads(control_plane.kubectl("get", "crd", name, "-o", "json").stdout)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["spec"]["versions"][0]["schema"] == load_yaml(source)["spec"]["versions"][0]["schema"]
    # Fail closed: the default install creates no EcrTagPolicy (other tests' policies may exist).
    assert "EcrTagPolicy" not in {o["kind"] for o in objs}
    policies = json.loads(control_plane.kubectl("get", "ecrtagpolicies", "-o", "json").stdout)["items"]
    ours = [
        p for p in policies if (p["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name") == release.name
    ]
    assert ours == []

    elsewhere = extra_namespaces[0]
    # What the operator does, in any namespace (the first check waits for RBAC to propagate).
    wait_for(
        "RBAC to allow status patches",
        lambda: release.can_i("patch", "ecrimagetags.ecrtag.dev", "--subresource=status", "-n", elsewhere),
        timeout=30,
    )
    assert release.can_i("list", "ecrimagetags.ecrtag.dev", "--all-namespaces")
    assert release.can_i("watch", "ecrimagetags.ecrtag.dev", "--all-namespaces")
    assert release.can_i("get", "ecrimagetags.ecrtag.dev", "-n", elsewhere)
    assert release.can_i("patch", "ecrimagetags.ecrtag.dev", "-n", elsewhere)
    assert release.can_i("create", "events", "-n", elsewhere)
    assert release.can_i("watch", "customresourcedefinitions.apiextensions.k8s.io")
    # EcrTagPolicies: read, and their status written; nothing else.
    for verb in ("get", "list", "watch"):
        assert release.can_i(verb, "ecrtagpolicies.ecrtag.dev"), verb
    assert release.can_i("patch", "ecrtagpolicies.ecrtag.dev", "--subresource=status")
    for verb in ("create", "update", "patch", "delete"):
        assert not release.can_i(verb, "ecrtagpolicies.ecrtag.dev"), verb
    assert not release.can_i("update", "ecrtagpolicies.ecrtag.dev", "--subresource=status")
    # What it must not do.
    assert not release.can_i("get", "secrets", "-n", release.namespace)
    assert not release.can_i("list", "secrets", "--all-namespaces")
    assert not release.can_i("update", "ecrimagetags.ecrtag.dev", "-n", elsewhere)
    assert not release.can_i("update", "ecrimagetags.ecrtag.dev", "--subresource=status", "-n", elsewhere)
    assert not release.can_i("create", "ecrimagetags.ecrtag.dev", "-n", elsewhere)
    assert not release.can_i("delete", "ecrimagetags.ecrtag.dev", "-n", elsewhere)
    assert not release.can_i("patch", "customresourcedefinitions.apiextensions.k8s.io")
    assert not release.can_i("patch", "events", "-n", elsewhere)
    assert not release.can_i("list", "configmaps", "-n", elsewhere)
    _assert_namespaces_read_only(release)

    # Uninstalling keeps the CRD (helm.sh/resource-policy: keep) and removes the rest.
    release.uninstall()
    assert control_plane.kubectl("get", "crd", CRD_NAME, "-o", "name").stdout.strip()
    gone = control_plane.kubectl("get", "clusterrole", release.fullname, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


class ServiceAccountClient:
    """PATCHes as kopf sends them (no GET first, unlike kubectl), with a ServiceAccount's kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        config = json.loads(kubeconfig.read_text())  # written as JSON by service_account_kubeconfig
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"].rstrip("/")
        self.token = config["users"][0]["user"]["token"]
        if "certificate-authority-data" in cluster:
            self.context = ssl.create_default_context(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        else:
            self.context = ssl.create_default_context(cafile=cluster.get("certificate-authority"))

    def patch(self, path: str, body: object, *, json_patch: bool = False, dry_run: bool = False) -> tuple[int, str]:
        url = f"{self.server}{path}{'?dryRun=All' if dry_run else ''}"
        content_type = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        request = urllib.request.Request(  # noqa: S310 - the URL is the test cluster's https server
            url,
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:  # noqa: S310
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def test_spec_write_guard_denies_the_service_account_spec_changes(
    release: Release, control_plane: KubeCluster, extra_namespaces: list[str], tmp_path: Path
) -> None:
    release.install("--set", "crds.install=false")
    ns = extra_namespaces[0]
    name = _ecr_image_tag(control_plane, ns)
    # The ServiceAccount's own token, as the operator's pod would use it.
    sa = ServiceAccountClient(
        control_plane.service_account_kubeconfig(release.fullname, release.namespace, tmp_path / "sa.kubeconfig")
    )
    path = f"/apis/ecrtag.dev/v1alpha1/namespaces/{ns}/ecrimagetags/{name}"
    spec_patch = {"spec": {"tags": ["latest"]}}

    def denied() -> bool:
        code, body = sa.patch(path, spec_patch, dry_run=True)
        return code == 403 and "never its spec" in body

    # The admission policy reaches the API server's cache through an informer: poll.
    wait_for("the spec patch denied by the admission policy", denied, timeout=30)
    # What kopf writes still goes through: annotations, its finalizer (a JSON patch), and status.
    assert sa.patch(path, {"metadata": {"annotations": {"ecrtag.dev/probe": "1"}}})[0] == 200
    finalizer = [{"op": "add", "path": "/metadata/finalizers", "value": ["ecrtag.dev/finalizer"]}]
    assert sa.patch(path, finalizer, json_patch=True)[0] == 200
    assert sa.patch(f"{path}/status", {"status": {"observedGeneration": 1}})[0] == 200
    stored = json.loads(control_plane.kubectl("get", "ecrimagetag", name, "-n", ns, "-o", "json").stdout)
    assert stored["spec"]["tags"] == ["prod"]
    assert stored["metadata"]["annotations"]["ecrtag.dev/probe"] == "1"
    assert stored["metadata"]["finalizers"] == ["ecrtag.dev/finalizer"]
    assert stored["status"]["observedGeneration"] == 1
    # RBAC alone would have let the spec patch through: patch is granted, and RBAC cannot see fields.
    assert release.can_i("patch", "ecrimagetags.ecrtag.dev", "-n", ns)
    # The guard is the ServiceAccount's alone: an administrator may still change the spec.
    control_plane.kubectl(
        "patch", "ecrimagetag", name, "-n", ns, "--type=merge", "-p", json.dumps(spec_patch), "--dry-run=server"
    )
    # Clean up: no operator runs here to release the finalizer.
    control_plane.kubectl(
        "patch", "ecrimagetag", name, "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]'
    )


def test_status_write_guard_lets_only_the_operator_write_status(
    release: Release, control_plane: KubeCluster, extra_namespaces: list[str], tmp_path: Path
) -> None:
    """A tenant with RBAC to patch ecrimagetags/status in its own namespace (a user, or a
    ServiceAccount of that namespace) is denied with the guard's message; the operator's
    ServiceAccount, the users statusWriteGuard names and cluster admins are not."""
    repair = f"repair-{uuid.uuid4().hex[:6]}"
    release.install("--set", "crds.install=false", "--set-json", f'statusWriteGuard.allowedUsers=["{repair}"]')
    ns = extra_namespaces[0]
    name = _ecr_image_tag(control_plane, ns)
    tenant, tenant_sa = f"tenant-{uuid.uuid4().hex[:6]}", f"system:serviceaccount:{ns}:ci"
    control_plane.kubectl(
        "create", "role", "status-writer", "-n", ns, "--verb=get,patch", "--resource=ecrimagetags.ecrtag.dev"
    )
    # kubectl create role has no subresources: the rule is extended with ecrimagetags/status.
    control_plane.kubectl(
        "patch",
        "role",
        "status-writer",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op": "add", "path": "/rules/0/resources/-", "value": "ecrimagetags/status"}]',
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "status-writer",
        "-n",
        ns,
        "--role=status-writer",
        f"--user={tenant}",
        f"--user={repair}",
        f"--serviceaccount={ns}:ci",
    )
    forged = json.dumps({"status": {"observedGeneration": 7, "tags": [{"tag": "prod", "inSync": True}]}})

    def patch_status(*who: str) -> subprocess.CompletedProcess[str]:
        return control_plane.kubectl(
            "patch",
            "ecrimagetag",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            forged,
            *who,
            "--dry-run=server",
            check=False,
        )

    def can_patch(user: str) -> bool:
        result = control_plane.kubectl(
            "auth",
            "can-i",
            "patch",
            "ecrimagetags.ecrtag.dev",
            "--subresource=status",
            "-n",
            ns,
            f"--as={user}",
            check=False,
        )
        return result.stdout.strip() == "yes"

    # RBAC alone lets each of them through (bindings reach the authorizer through informers: poll).
    for user in (tenant, tenant_sa, repair):
        wait_for(f"RBAC to let {user} patch status", functools.partial(can_patch, user), timeout=30)

    def refusal() -> str | None:
        err = patch_status(f"--as={tenant}").stderr
        return err if "writes the status of an EcrImageTag" in err else None

    # The admission policy reaches the API server's cache through an informer: poll.
    refused = wait_for("the status write guard to refuse the tenant", refusal, timeout=30)
    operator = release.user
    assert (
        f"only the operator ({operator}) writes the status of an EcrImageTag, not {tenant}: change its spec" in refused
    )
    as_sa = patch_status(f"--as={tenant_sa}", f"--as-group=system:serviceaccounts:{ns}")
    assert as_sa.returncode != 0
    assert f"writes the status of an EcrImageTag, not {tenant_sa}" in as_sa.stderr
    # The users statusWriteGuard names, and cluster admins (system:masters), may.
    allowed = patch_status(f"--as={repair}")
    assert allowed.returncode == 0, allowed.stderr
    assert patch_status().returncode == 0
    # The operator's ServiceAccount, with its own token as the operator's pod would use it.
    sa = ServiceAccountClient(
        control_plane.service_account_kubeconfig(release.fullname, release.namespace, tmp_path / "sa.kubeconfig")
    )
    path = f"/apis/ecrtag.dev/v1alpha1/namespaces/{ns}/ecrimagetags/{name}/status"
    code, body = sa.patch(path, {"status": {"observedGeneration": 1}})
    assert code == 200, body
    stored = json.loads(control_plane.kubectl("get", "ecrimagetag", name, "-n", ns, "-o", "json").stdout)
    assert stored["status"] == {"observedGeneration": 1}  # the operator's write, none of the dry runs
    # The guard is the release's: uninstalled, RBAC alone decides again.
    release.uninstall()
    wait_for("the guard gone", lambda: patch_status(f"--as={tenant}").returncode == 0, timeout=30)


def test_watch_namespaces_install_grants_only_those_namespaces(
    release: Release, control_plane: KubeCluster, extra_namespaces: list[str]
) -> None:
    watched, other = extra_namespaces[:2], extra_namespaces[2]
    objs = release.install("--set", "crds.install=false", "--set", f"watchNamespaces={{{','.join(watched)}}}")
    roles = [o for o in objs if o["kind"] in {"Role", "RoleBinding"}]
    assert len(roles) == 4
    _assert_all_exist(control_plane, objs)

    for ns in watched:
        can_patch_status = functools.partial(
            release.can_i, "patch", "ecrimagetags.ecrtag.dev", "--subresource=status", "-n", ns
        )
        wait_for(f"RBAC to allow status patches in {ns}", can_patch_status, timeout=30)
        assert release.can_i("list", "ecrimagetags.ecrtag.dev", "-n", ns)
        assert release.can_i("watch", "ecrimagetags.ecrtag.dev", "-n", ns)
        assert release.can_i("create", "events", "-n", ns)
        assert not release.can_i("update", "ecrimagetags.ecrtag.dev", "-n", ns)
        assert not release.can_i("get", "secrets", "-n", ns)
    assert not release.can_i("patch", "ecrimagetags.ecrtag.dev", "--subresource=status", "-n", other)
    assert not release.can_i("list", "ecrimagetags.ecrtag.dev", "-n", other)
    assert not release.can_i("create", "events", "-n", other)
    assert not release.can_i("list", "ecrimagetags.ecrtag.dev", "--all-namespaces")
    assert release.can_i("watch", "customresourcedefinitions.apiextensions.k8s.io")
    # The namespaces index is cluster-wide in this mode too.
    _assert_namespaces_read_only(release)


def test_argocd_health_check_merges_into_argocd_cm_as_the_notes_say(
    release: Release, control_plane: KubeCluster, extra_namespaces: list[str], tmp_path: Path
) -> None:
    argocd = extra_namespaces[0]
    # argocd-cm as the Argo CD installation left it, with a setting of its own.
    argocd_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": argocd},
        "data": {"timeout.reconciliation": "180s"},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(argocd_cm))
    objs = release.install(
        "--set",
        "crds.install=false",
        "--set",
        "argocd.healthCheck.enabled=true",
        "--set",
        f"argocd.healthCheck.namespace={argocd}",
    )
    cm = one(objs, "ConfigMap", f"{release.fullname}-argocd-health-check")
    _assert_all_exist(control_plane, [cm])
    # The chart left argocd-cm alone.
    untouched = json.loads(control_plane.kubectl("get", "configmap", "argocd-cm", "-n", argocd, "-o", "json").stdout)
    assert untouched["data"] == argocd_cm["data"]

    # Run the command the release notes show, as a user would: bash, kubectl on PATH, KUBECONFIG.
    notes = release.notes()
    start = notes.index(f"  kubectl -n {argocd} patch configmap argocd-cm")
    command = notes[start:].split("\n\n", 1)[0].replace("\\\n", " ").strip()
    env = {
        "PATH": f"{control_plane.kubectl_path.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(control_plane.kubeconfig_path),
        "HOME": str(tmp_path),  # kubectl's discovery cache
    }
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    merged = json.loads(control_plane.kubectl("get", "configmap", "argocd-cm", "-n", argocd, "-o", "json").stdout)
    assert merged["data"] == {**argocd_cm["data"], HEALTH_CHECK_KEY: SOURCE_HEALTH_CHECK.read_text()}


def test_rendered_crd_is_accepted_by_the_api_server(helm: Helm, control_plane: KubeCluster) -> None:
    rendered = helm.run(*helm.template_args("--show-only", "templates/crd.yaml")).stdout
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}" in result.stdout
    assert f"customresourcedefinition.apiextensions.k8s.io/{POLICY_CRD_NAME}" in result.stdout


def _policy(name: str, spec: dict[str, object]) -> str:
    return json.dumps(
        {"apiVersion": "ecrtag.dev/v1alpha1", "kind": "EcrTagPolicy", "metadata": {"name": name}, "spec": spec}
    )


READ_A = {"read": [{"repositories": ["a"]}]}
BAD_POLICIES = [
    ({"registries": [READ_A]}, "spec needs namespaceSelector, namespaces, or both"),
    ({"namespaces": ["a"], "registries": [{}]}, "spec.registries[0]: Invalid value: a registry needs at least one"),
    (
        {"namespaces": ["a"], "registries": []},
        "spec.registries: Invalid value: 0: spec.registries in body should have at least 1 items",
    ),
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["team-a**"]}]}]},
        'repositories[0]: Invalid value: "team-a**"',
    ),
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["a//b"]}]}]},
        'repositories[0]: Invalid value: "a//b"',
    ),
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["a"], "tags": ["x/y"]}]}]},
        'tags[0]: Invalid value: "x/y"',
    ),
    ({"namespaces": ["a"], "registries": [{**READ_A, "regions": ["eu-west"]}]}, 'regions[0]: Invalid value: "eu-west"'),
    ({"namespaces": ["a"], "registries": [{**READ_A, "registryId": "1234"}]}, 'registryId: Invalid value: "1234"'),
    (
        {"namespaces": ["a"], "registries": [{**READ_A, "roleArn": "arn:aws:iam::111122223333:role/ecr-*"}]},
        'roleArn: Invalid value: "arn:aws:iam::111122223333:role/ecr-*"',
    ),
    (
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}, "registries": [READ_A]},
        "In and NotIn need at least one value; Exists and DoesNotExist take none",
    ),
    ({"namespaces": ["a", "a"], "registries": [READ_A]}, 'spec.namespaces[1]: Duplicate value: "a"'),
]


@pytest.mark.parametrize(("spec", "message"), BAD_POLICIES, ids=[m[:50] for _, m in BAD_POLICIES])
def test_policy_crd_refuses_bad_policies(control_plane: KubeCluster, spec: dict[str, object], message: str) -> None:
    result = control_plane.kubectl("create", "--dry-run=server", "-f", "-", input=_policy("bad", spec), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_policy_crd_keeps_misspelt_fields_for_the_operator_to_refuse(control_plane: KubeCluster) -> None:
    # Pruned, "matchLabel" would leave namespaceSelector {} (every namespace): kept, the operator's
    # parser refuses the policy (tests/unit/test_grants.py), and it grants nothing.
    spec = {"namespaceSelector": {"matchLabel": {"team": "a"}}, "registries": [{**READ_A, "registryID": "1"}]}
    out = control_plane.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=_policy("typo", spec))
    assert json.loads(out.stdout)["spec"] == spec


def test_allow_all_install_creates_one_policy_and_uninstall_removes_it(
    release: Release, control_plane: KubeCluster
) -> None:
    objs = release.install("--set", "crds.install=false", "--set", "allowAll=true")
    (policy,) = [o for o in objs if o["kind"] == "EcrTagPolicy"]
    name = f"{release.fullname}-allow-all"
    stored = json.loads(control_plane.kubectl("get", "ecrtagpolicy", name, "-o", "json").stdout)
    assert (
        stored["spec"]
        == policy["spec"]
        == {
            "namespaceSelector": {},
            "registries": [{"write": [{"repositories": ["**"]}]}],
        }
    )
    assert "allowAll is on" in release.notes()
    printed = control_plane.kubectl("get", "ecrtagpolicies", name).stdout.split("\n")[0].split()
    assert printed == ["NAME", "READY", "NAMESPACES", "AGE"]
    release.uninstall()
    gone = control_plane.kubectl("get", "ecrtagpolicy", name, check=False)
    assert "NotFound" in gone.stderr


def test_policy_guard_lets_only_admins_change_policies(
    release: Release, control_plane: KubeCluster, tmp_path: Path
) -> None:
    release.install("--set", "crds.install=false", "--set-json", 'policyGuard.adminGroups=["system:masters"]')
    user = f"mallory-{uuid.uuid4().hex[:6]}"
    grant = f"eto-test-{user}"
    # RBAC alone would let this user manage policies: only the guard stops it.
    control_plane.kubectl(
        "create", "clusterrole", grant, "--verb=create,update,patch,delete,get", "--resource=ecrtagpolicies.ecrtag.dev"
    )
    control_plane.kubectl("create", "clusterrolebinding", grant, f"--clusterrole={grant}", f"--user={user}")
    name = f"guarded-{uuid.uuid4().hex[:6]}"
    spec = {"namespaces": ["team-a"], "registries": [{"write": [{"repositories": ["team-a/*"]}]}]}
    try:

        def attempt() -> subprocess.CompletedProcess[str]:
            return control_plane.kubectl(
                "create", "--dry-run=server", f"--as={user}", "-f", "-", input=_policy(name, spec), check=False
            )

        def refusal() -> str | None:
            err = attempt().stderr
            return err if "may create, change or delete EcrTagPolicies" in err else None

        refused = wait_for("the policy guard to refuse the user", refusal, timeout=30)
        assert f"only members of system:masters may create, change or delete EcrTagPolicies, not {user}" in refused
        # An admin may; then the user may neither change nor delete it.
        control_plane.kubectl("create", "-f", "-", input=_policy(name, spec))
        patch = control_plane.kubectl(
            "patch",
            "ecrtagpolicy",
            name,
            f"--as={user}",
            "--type=merge",
            "-p",
            '{"spec":{"namespaces":["team-b"]}}',
            check=False,
        )
        assert "may create, change or delete EcrTagPolicies" in patch.stderr
        delete = control_plane.kubectl("delete", "ecrtagpolicy", name, f"--as={user}", check=False)
        assert "may create, change or delete EcrTagPolicies" in delete.stderr
        # The operator's status patches are not matched (a subresource), with its own token.
        sa = ServiceAccountClient(
            control_plane.service_account_kubeconfig(release.fullname, release.namespace, tmp_path / "sa.kubeconfig")
        )
        path = f"/apis/ecrtag.dev/v1alpha1/ecrtagpolicies/{name}"
        assert sa.patch(f"{path}/status", {"status": {"observedGeneration": 1}})[0] == 200
        code, _ = sa.patch(path, {"spec": {"namespaces": ["team-b"]}})
        assert code == 403  # RBAC: the operator never writes a policy's spec
        stored = json.loads(control_plane.kubectl("get", "ecrtagpolicy", name, "-o", "json").stdout)
        assert stored["spec"]["namespaces"] == ["team-a"]
        assert stored["status"]["observedGeneration"] == 1
    finally:
        control_plane.kubectl("delete", "ecrtagpolicy", name, "--ignore-not-found", check=False)
        control_plane.kubectl("delete", "clusterrolebinding", grant, "--ignore-not-found", check=False)
        control_plane.kubectl("delete", "clusterrole", grant, "--ignore-not-found", check=False)


@pytest.mark.parametrize("values", [(), ("-f", str(VALUES_EVERYTHING))], ids=["defaults", "everything"])
def test_pod_passes_restricted_pod_security_admission(
    helm: Helm, control_plane: KubeCluster, k8s_namespace: str, values: tuple[str, ...]
) -> None:
    # The API server's own PodSecurity admission judges the pod, in a namespace enforcing "restricted".
    control_plane.kubectl("label", "namespace", k8s_namespace, "pod-security.kubernetes.io/enforce=restricted")
    deployment = one(helm.template(*values, namespace=k8s_namespace), "Deployment")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "namespace": k8s_namespace},
        "spec": deployment["spec"]["template"]["spec"],
    }
    result = control_plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    # The check is live: one relaxed field and the same pod is refused.
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = control_plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in refused.stderr
