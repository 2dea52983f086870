"""The Helm chart, rendered with `helm template`: lint, schema, CRDs, pod security, RBAC, policies and their
guard, Argo CD health check."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_operator.grants import NamespaceGrants, parse_policy
from ecr_tag_operator.settings import Settings
from tests.chart.helm import (
    CHART,
    CHART_CRD_COPY,
    CHART_HEALTH_CHECK_COPY,
    CHART_POLICY_CRD_COPY,
    HEALTH_CHECK_KEY,
    SOURCE_CRD,
    SOURCE_HEALTH_CHECK,
    SOURCE_POLICY_CRD,
    VALUES,
    VALUES_EVERYTHING,
    Helm,
    Obj,
    container,
    load_schema,
    load_yaml,
    lookup,
    of_kind,
    one,
    resolve,
    schema_properties,
)

EVERYTHING = ("-f", str(VALUES_EVERYTHING))
NAMESPACED = ("--set", "watchNamespaces={team-a,team-b}")

OPERATOR_RULES = [
    {"apiGroups": ["ecrtag.dev"], "resources": ["ecrimagetags"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["ecrtag.dev"], "resources": ["ecrimagetags/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
CRD_WATCH_RULES = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]
NAMESPACES_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]
POLICIES_RULES = [
    {"apiGroups": ["ecrtag.dev"], "resources": ["ecrtagpolicies"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["ecrtag.dev"], "resources": ["ecrtagpolicies/status"], "verbs": ["patch"]},
]
CRD_NAMES = ("ecrimagetags.ecrtag.dev", "ecrtagpolicies.ecrtag.dev")
SOURCES = {"ecrimagetags.ecrtag.dev": SOURCE_CRD, "ecrtagpolicies.ecrtag.dev": SOURCE_POLICY_CRD}


def _env(objs: list[Obj]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(objs)["env"]}


def _kinds(objs: list[Obj]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objs)


# --------------------------------------------------------------------------------------------------
# lint and the values files


@pytest.mark.parametrize("values", [(), EVERYTHING, NAMESPACED], ids=["defaults", "everything", "namespaced"])
def test_lint_strict_is_clean(helm: Helm, values: tuple[str, ...]) -> None:
    result = helm.run("lint", "--strict", str(CHART), *values, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_defaults_render_the_cluster_wide_operator(helm: Helm) -> None:
    objs = helm.template()
    assert _kinds(objs) == [
        ("ClusterRole", "rel-ecr-tag-operator"),
        ("ClusterRole", "rel-ecr-tag-operator-crd-watch"),
        ("ClusterRole", "rel-ecr-tag-operator-namespaces"),
        ("ClusterRole", "rel-ecr-tag-operator-policies"),
        ("ClusterRoleBinding", "rel-ecr-tag-operator"),
        ("ClusterRoleBinding", "rel-ecr-tag-operator-crd-watch"),
        ("ClusterRoleBinding", "rel-ecr-tag-operator-namespaces"),
        ("ClusterRoleBinding", "rel-ecr-tag-operator-policies"),
        ("CustomResourceDefinition", "ecrimagetags.ecrtag.dev"),
        ("CustomResourceDefinition", "ecrtagpolicies.ecrtag.dev"),
        ("Deployment", "rel-ecr-tag-operator"),
        ("ServiceAccount", "rel-ecr-tag-operator"),
        ("ValidatingAdmissionPolicy", "rel-ecr-tag-operator-policy-guard"),
        ("ValidatingAdmissionPolicy", "rel-ecr-tag-operator-spec-write-guard"),
        ("ValidatingAdmissionPolicy", "rel-ecr-tag-operator-status-write-guard"),
        ("ValidatingAdmissionPolicyBinding", "rel-ecr-tag-operator-policy-guard"),
        ("ValidatingAdmissionPolicyBinding", "rel-ecr-tag-operator-spec-write-guard"),
        ("ValidatingAdmissionPolicyBinding", "rel-ecr-tag-operator-status-write-guard"),
    ]
    # Fail closed: the default render grants nothing (no EcrTagPolicy, no allow-all).
    assert of_kind(objs, "EcrTagPolicy") == []
    for obj in objs:
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"} and not obj[
            "kind"
        ].startswith("ValidatingAdmissionPolicy"):
            assert obj["metadata"]["namespace"] == "ops", obj["kind"]


# Left at their defaults in values-everything.yaml because other values there only show when they are
# on; their off side has a test of its own below.
KEPT_AT_DEFAULT = {
    "metrics.enabled": "metrics.port and metrics.service need it",  # test_metrics_off_turns_the_endpoint_off
    "serviceAccount.create": "serviceAccount.annotations need it",  # test_existing_service_account
    "crds.install": "crds.keep needs it",  # test_crd_install_off_renders_no_crd
    "policyGuard.enabled": "policyGuard.adminGroups and adminUsers need it",  # test_policy_guard_can_be_turned_off
    # test_status_write_guard_can_be_turned_off
    "statusWriteGuard.enabled": "statusWriteGuard.allowedGroups and allowedUsers need it",
    "image.digest": "image.tag is ignored with it",  # test_an_image_digest_pins_the_image
}


def test_values_everything_sets_every_value() -> None:
    schema = load_schema()
    values = load_yaml(VALUES_EVERYTHING)
    defaults = load_yaml(VALUES)
    missing, unchanged = [], []
    for path, _ in schema_properties(schema, schema):
        present, value = lookup(values, path)
        if not present:
            missing.append(".".join(path))
            continue
        _, default = lookup(defaults, path)
        if value == default and not isinstance(value, dict) and ".".join(path) not in KEPT_AT_DEFAULT:
            unchanged.append(".".join(path))
    assert not missing, f"{VALUES_EVERYTHING.name} lacks {missing}"
    assert not unchanged, f"{VALUES_EVERYTHING.name} leaves these at their defaults: {unchanged}"


def test_every_value_is_commented_and_described() -> None:
    schema = load_schema()
    defined = {path for path, _ in schema_properties(schema, schema)}
    lines = VALUES.read_text().splitlines()
    seen: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    uncommented = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z0-9_.\-/]+):( |$)", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        path = tuple(name for _, name in stack)
        if path not in defined:
            continue  # an entry of a map, such as resources.requests.cpu
        seen.add(path)
        previous = next((p for p in reversed(lines[:i]) if p.strip()), "")
        if not previous.strip().startswith("#"):
            uncommented.append(".".join(path))
    assert not uncommented, f"values.yaml keys without a comment right above: {uncommented}"
    assert seen == defined, f"schema properties not in values.yaml: {sorted(defined - seen)}"
    undescribed = [".".join(p) for p, sub in schema_properties(schema, schema) if not sub.get("description")]
    assert not undescribed, f"schema properties without a description: {undescribed}"


def test_schema_is_strict_at_every_object_level() -> None:
    schema = load_schema()
    loose: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                closed = "properties" in node and node.get("additionalProperties") is False
                typed_map = "properties" not in node and isinstance(node.get("additionalProperties"), dict)
                if not (closed or typed_map):
                    loose.append(where)
            for key, sub in node.items():
                walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}/{i}")

    walk(schema, "#")
    assert not loose, f"object schemas neither closed (additionalProperties: false) nor typed maps: {loose}"
    assert schema["additionalProperties"] is False


REFUSALS = [
    (("--set", "bogus=1"), "at '': additional properties 'bogus' not allowed"),
    (("--set", "image.registry=x"), "at '/image': additional properties 'registry' not allowed"),
    (("--set", "image.digest=latest"), "at '/image/digest'"),
    (("--set", "metrics.port=abc"), "at '/metrics/port': got string, want integer"),
    (("--set", "verbose=yes"), "at '/verbose': got string, want boolean"),
    (("--set", "logFormat=xml"), "at '/logFormat': value must be one of 'plain', 'full', 'json'"),
    (("--set", "watchNamespaces={team-*}"), "at '/watchNamespaces/0': 'team-*' does not match pattern"),
    (("--set", "aws.region=Ireland"), "at '/aws/region': 'Ireland' does not match pattern"),
    (("--set", "metrics.port=8080"), "at '/metrics/port': 'not' failed"),
    (("--set-json", 'extraEnv=[{"name":"A","bogus":1}]'), "at '/extraEnv/0': additional properties 'bogus'"),
    (("--set-json", 'affinity={"nodeAffinity":{"x":1}}'), "at '/affinity/nodeAffinity': additional properties"),
    (("--set-json", 'resources={"requests":{"cpu":"lots"}}'), "at '/resources/requests/cpu'"),
    (("--set", "allowAll=yes"), "at '/allowAll': got string, want boolean"),
    (("--set", "authorization.allowedRepositories={*}"), "at '': additional properties 'authorization' not allowed"),
    (("--set-json", 'policies=[{"name":"p"}]'), "at '/policies/0': missing property 'spec'"),
    (("--set-json", 'policies=[{"name":"P_1","spec":{}}]'), "at '/policies/0/name'"),
    (
        ("--set-json", 'policies=[{"name":"p","spec":{"registries":[{"read":[{"repositories":["a"]}]}]}}]'),
        "at '/policies/0/spec': missing property 'namespaceSelector'",
    ),
    (
        ("--set-json", 'policies=[{"name":"p","spec":{"namespaces":["a"],"registries":[{}]}}]'),
        "at '/policies/0/spec/registries/0': missing property 'write'",
    ),
    (
        ("--set-json", 'policies=[{"name":"p","spec":{"namespaces":["a"],"registries":[]}}]'),
        "at '/policies/0/spec/registries': minItems",
    ),
    (
        (
            "--set-json",
            'policies=[{"name":"p","spec":{"namespaces":["a"],"registries":[{"write":[{"repositories":["team-a**"]}]}]}}]',
        ),
        "at '/policies/0/spec/registries/0/write/0/repositories/0': 'team-a**' does not match pattern",
    ),
    (
        (
            "--set-json",
            'policies=[{"name":"p","spec":{"namespaces":["a"],"registries":[{"write":[{"repositories":["a"],"tag":["x"]}]}]}}]',
        ),
        "at '/policies/0/spec/registries/0/write/0': additional properties 'tag' not allowed",
    ),
    (
        (
            "--set-json",
            'policies=[{"name":"p","spec":{"namespaces":["a"],"registries":[{"roleArn":"arn:aws:iam::111122223333:role/*","read":[{"repositories":["a"]}]}]}}]',
        ),
        "at '/policies/0/spec/registries/0/roleArn'",
    ),
    (
        (
            "--set-json",
            'policies=[{"name":"p","spec":{"namespaces":["a"],"registries":[{"regions":["eu-west"],"read":[{"repositories":["a"]}]}]}}]',
        ),
        "at '/policies/0/spec/registries/0/regions/0'",
    ),
    (
        (
            "--set-json",
            'policies=[{"name":"p","spec":{"namespaceSelector":{"matchLabel":{"a":"b"}},"registries":[{"read":[{"repositories":["a"]}]}]}}]',
        ),
        "at '/policies/0/spec/namespaceSelector': additional properties 'matchLabel' not allowed",
    ),
    (("--set-json", 'policyGuard.adminGroups=["a\\"b"]'), "at '/policyGuard/adminGroups/0'"),
    (("--set", "policyGuard.bogus=1"), "at '/policyGuard': additional properties 'bogus' not allowed"),
    (("--set-json", 'statusWriteGuard.allowedUsers=["a\\"b"]'), "at '/statusWriteGuard/allowedUsers/0'"),
    (("--set", "statusWriteGuard.enabled=yes"), "at '/statusWriteGuard/enabled': got string, want boolean"),
    (("--set", "maxClaimsPerTag=0"), "at '/maxClaimsPerTag': minimum: got 0, want 1"),
    (("--set", "maxClaimsPerNamespace=lots"), "at '/maxClaimsPerNamespace': got string, want integer"),
    (("--set", "argocd.healthCheck.enabled=yes"), "at '/argocd/healthCheck/enabled': got string, want boolean"),
    (("--set", "argocd.healthCheck.namespace=Argo_CD"), "at '/argocd/healthCheck/namespace'"),
    (("--set", "argocd.enabled=true"), "at '/argocd': additional properties 'enabled' not allowed"),
]


@pytest.mark.parametrize(("values", "message"), REFUSALS, ids=[values[1] for values, _ in REFUSALS])
def test_schema_refuses_bad_values(helm: Helm, values: tuple[str, ...], message: str) -> None:
    stderr = helm.refusal(*values)
    assert "values don't meet the specifications of the schema" in stderr
    assert message in stderr, stderr


def test_metrics_service_without_metrics_is_refused(helm: Helm) -> None:
    stderr = helm.refusal("--set", "metrics.enabled=false", "--set", "metrics.service.enabled=true")
    assert "metrics.service.enabled needs metrics.enabled" in stderr


# --------------------------------------------------------------------------------------------------
# the CRD: one source of truth


@pytest.mark.parametrize(("copy", "source"), [(CHART_CRD_COPY, SOURCE_CRD), (CHART_POLICY_CRD_COPY, SOURCE_POLICY_CRD)])
def test_chart_crd_copy_is_byte_identical_to_source(copy: Path, source: Path) -> None:
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(CHART.parent.parent)} differs from "
        f"{source.relative_to(CHART.parent.parent)}: run hack/check-crd-copy.sh --fix"
    )


@pytest.mark.parametrize("name", CRD_NAMES)
def test_rendered_crd_is_the_source_crd_plus_keep(helm: Helm, name: str) -> None:
    rendered = one(helm.template(), "CustomResourceDefinition", name)
    annotations = rendered["metadata"].pop("annotations")
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert rendered == load_yaml(SOURCES[name])


@pytest.mark.parametrize("name", CRD_NAMES)
def test_rendered_crd_without_keep_equals_source(helm: Helm, name: str) -> None:
    rendered = one(helm.template("--set", "crds.keep=false"), "CustomResourceDefinition", name)
    assert rendered == load_yaml(SOURCES[name])


def test_crd_install_off_renders_no_crd(helm: Helm) -> None:
    objs = helm.template("--set", "crds.install=false")
    assert of_kind(objs, "CustomResourceDefinition") == []
    assert of_kind(objs, "Deployment")


def test_chart_health_check_copy_is_byte_identical_to_source() -> None:
    assert CHART_HEALTH_CHECK_COPY.read_bytes() == SOURCE_HEALTH_CHECK.read_bytes(), (
        f"{CHART_HEALTH_CHECK_COPY.relative_to(CHART.parent.parent)} differs from "
        f"{SOURCE_HEALTH_CHECK.relative_to(CHART.parent.parent)}: run hack/check-crd-copy.sh --fix"
    )


# --------------------------------------------------------------------------------------------------
# helm itself


def test_helm_defaults_to_the_pinned_kubernetes(helm: Helm, tmp_path: Path) -> None:
    # hack/build-control-plane.sh sets helm's default Kubernetes version, so `helm template` and
    # `helm lint` need no --kube-version to satisfy the chart's kubeVersion.
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.0.0\n")
    (chart / "templates" / "v.yaml").write_text("# {{ .Capabilities.KubeVersion.Version }}\n")
    out = helm.run("template", "probe", str(chart)).stdout
    major, minor = helm.kube_version.removeprefix("v").split(".")[:2]
    assert f"# v{major}.{minor}.0" in out.splitlines(), out
    kube_version = load_yaml(CHART / "Chart.yaml")["kubeVersion"]
    assert kube_version == ">=1.30.0-0"  # what the default must satisfy


# --------------------------------------------------------------------------------------------------
# the Deployment


@pytest.mark.parametrize("values", [(), EVERYTHING], ids=["defaults", "everything"])
def test_pod_meets_the_restricted_pod_security_standard(helm: Helm, values: tuple[str, ...]) -> None:
    objs = helm.template(*values)
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    pod_sc = pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 65532
    assert pod_sc["runAsGroup"] == 65532
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for forbidden in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        assert forbidden not in pod
    c = container(objs)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root filesystem, and a writable /tmp from an emptyDir; no other volume type.
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert set(pod["volumes"][0]) == {"name", "emptyDir"}
    assert "ports" in c
    assert all("hostPort" not in p for p in c["ports"])


def test_deployment_defaults(helm: Helm) -> None:
    objs = helm.template()
    deployment = one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-ecr-tag-operator"
    c = container(objs)
    assert c["image"] == "ecr-tag-operator:0.1.0"
    assert c["command"] == ["ecr-tag-operator"]
    assert c["args"] == [
        "run",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=json",
        "--metrics-port=9090",
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 9090}
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    env = _env(objs)
    assert "ECR_TAG_OPERATOR_REGION" not in env  # aws.region empty: the pod's environment decides
    # The caps on tag claims, as the operator's settings default them.
    caps = ("ECR_TAG_OPERATOR_MAX_CLAIMS_PER_TAG", "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_NAMESPACE")
    assert [env[name] for name in caps] == ["50", "10000"]
    assert [Settings.model_fields[name.removeprefix("ECR_TAG_OPERATOR_").lower()].default for name in caps] == [
        50,
        10_000,
    ]
    # Grants come from EcrTagPolicies only: no setting widens them.
    assert not [name for name in env if "ALLOWED" in name]
    assert of_kind(objs, "Service") == []
    assert of_kind(objs, "ConfigMap") == []


def test_an_image_digest_pins_the_image(helm: Helm) -> None:
    digest = "sha256:" + "ab" * 32
    objs = helm.template("--set", f"image.digest={digest}", "--set", "image.tag=ignored")
    assert container(objs)["image"] == f"ecr-tag-operator@{digest}"


def test_metrics_off_turns_the_endpoint_off(helm: Helm) -> None:
    c = container(helm.template("--set", "metrics.enabled=false"))
    assert "--metrics-port=0" in c["args"]
    assert [p["name"] for p in c["ports"]] == ["health"]


def test_values_everything_lands_where_expected(helm: Helm) -> None:
    values = load_yaml(VALUES_EVERYTHING)
    objs = helm.template(*EVERYTHING)
    deployment = one(objs, "Deployment", "tag-operator")
    pod_template = deployment["spec"]["template"]
    pod = pod_template["spec"]
    c = container(objs)
    assert c["image"] == "registry.example.com/platform/ecr-tag-operator:0.1.0-rc.1"
    assert c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert c["args"] == [
        "run",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=full",
        "--metrics-port=9191",
        "--namespace=team-a",
        "--namespace=team-b",
        "--verbose",
    ]
    env = c["env"]
    assert {"name": "ECR_TAG_OPERATOR_REGION", "value": "eu-west-1"} in env
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in env
    assert {"name": "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_TAG", "value": "20"} in env
    assert {"name": "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_NAMESPACE", "value": "2500"} in env
    for extra in values["extraEnv"]:
        assert extra in env
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 9191}
    assert c["resources"] == values["resources"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod_template["metadata"]["annotations"] == values["podAnnotations"]
    assert pod_template["metadata"]["labels"]["app.kubernetes.io/name"] == "eto"
    assert pod["serviceAccountName"] == "ecr-tags"

    sa = one(objs, "ServiceAccount", "ecr-tags")
    assert sa["metadata"]["annotations"] == values["serviceAccount"]["annotations"]

    service = one(objs, "Service", "tag-operator-metrics")
    assert service["metadata"]["annotations"] == values["metrics"]["service"]["annotations"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9191, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    # policies and allowAll: each rendered as it was given, plus the one allow-all policy.
    policies = {p["metadata"]["name"]: p for p in of_kind(objs, "EcrTagPolicy")}
    assert sorted(policies) == ["platform", "tag-operator-allow-all", "team-a"]
    for given in values["policies"]:
        assert policies[given["name"]]["spec"] == given["spec"]
        assert policies[given["name"]]["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
        assert "namespace" not in policies[given["name"]]["metadata"]
    # policyGuard: its admins, as CEL lists.
    guard = one(objs, "ValidatingAdmissionPolicy", "tag-operator-policy-guard")["spec"]
    assert {v["name"]: v["expression"] for v in guard["variables"]} == {
        "adminGroups": '["platform-admins","system:masters"]',
        "adminUsers": '["arn:aws:iam::111122223333:role/cluster-admin"]',
    }

    # crds.keep false; both rbac extras off: cluster-wide only the namespaces index's and the
    # policies' read access.
    for crd in of_kind(objs, "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    cluster_wide = ["tag-operator-namespaces", "tag-operator-policies"]
    assert sorted(r["metadata"]["name"] for r in of_kind(objs, "ClusterRole")) == cluster_wide
    assert sorted(b["metadata"]["name"] for b in of_kind(objs, "ClusterRoleBinding")) == cluster_wide
    assert sorted(v["metadata"]["name"] for v in of_kind(objs, "ValidatingAdmissionPolicy")) == [
        "tag-operator-policy-guard",
        "tag-operator-status-write-guard",
    ]
    # statusWriteGuard: the operator's ServiceAccount, and the extra identities, as CEL values.
    status_guard = one(objs, "ValidatingAdmissionPolicy", "tag-operator-status-write-guard")["spec"]
    assert {v["name"]: v["expression"] for v in status_guard["variables"]} == {
        "operator": '"system:serviceaccount:ops:ecr-tags"',
        "allowedGroups": '["platform-admins"]',
        "allowedUsers": '["arn:aws:iam::111122223333:role/status-repair"]',
    }

    # argocd.healthCheck on: its ConfigMap in the release namespace; the notes name argocd's namespace.
    health = one(objs, "ConfigMap", "tag-operator-argocd-health-check")
    assert health["metadata"]["namespace"] == "ops"
    assert "kubectl -n gitops patch configmap argocd-cm --type merge" in helm.notes(*EVERYTHING)


def test_notes_explain_the_policies(helm: Helm) -> None:
    defaults = helm.notes()
    assert "The release renders none: until a cluster admin creates one, every EcrImageTag is refused" in defaults
    assert "kind: EcrTagPolicy" in defaults
    assert "allowAll is on" not in defaults
    assert "Only members of system:masters may create, change or delete\nEcrTagPolicies" in defaults
    assert "kubectl get ecrtagpolicies" in defaults
    allow_all = helm.notes("--set", "allowAll=true")
    assert "allowAll is on: the policy rel-ecr-tag-operator-allow-all lets EVERY namespace move and delete" in allow_all
    assert "single-tenant clusters\nonly" in allow_all
    assert "The release renders none" not in allow_all
    listed = helm.notes(*EVERYTHING)
    assert "The release renders 2 policies: team-a, platform." in listed
    assert "Only members of platform-admins, system:masters and the users" in listed
    assert "policyGuard" not in helm.notes("--set", "policyGuard.enabled=false")
    assert "Only the operator's ServiceAccount, members of system:masters may write the\nstatus of EcrImageTags" in (
        defaults
    )
    assert "members of platform-admins, the users arn:aws:iam::111122223333:role/status-repair may write" in listed
    assert "statusWriteGuard" not in helm.notes("--set", "statusWriteGuard.enabled=false")


def test_existing_service_account(helm: Helm) -> None:
    objs = helm.template("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=shared")
    assert of_kind(objs, "ServiceAccount") == []
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "shared"
    for binding in of_kind(objs, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "shared", "namespace": "ops"}]


# --------------------------------------------------------------------------------------------------
# RBAC and the spec write guard


@pytest.mark.parametrize("values", [(), EVERYTHING, NAMESPACED], ids=["defaults", "everything", "namespaced"])
def test_rbac_rules_have_no_wildcards_and_no_secrets(helm: Helm, values: tuple[str, ...]) -> None:
    roles = [o for o in helm.template(*values) if o["kind"] in {"Role", "ClusterRole"}]
    assert roles
    for role in roles:
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule
            assert "secrets" not in rule["resources"]
            if rule["resources"] == ["events"]:
                assert rule["verbs"] == ["create"]
            else:  # read and patch only: never update, create or delete anything
                assert set(rule["verbs"]) <= {"get", "list", "watch", "patch"}, rule


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(helm: Helm) -> None:
    objs = helm.template()
    assert one(objs, "ClusterRole", "rel-ecr-tag-operator")["rules"] == OPERATOR_RULES
    assert one(objs, "ClusterRole", "rel-ecr-tag-operator-crd-watch")["rules"] == CRD_WATCH_RULES
    assert one(objs, "ClusterRole", "rel-ecr-tag-operator-namespaces")["rules"] == NAMESPACES_RULES
    assert one(objs, "ClusterRole", "rel-ecr-tag-operator-policies")["rules"] == POLICIES_RULES
    for name in (
        "rel-ecr-tag-operator",
        "rel-ecr-tag-operator-crd-watch",
        "rel-ecr-tag-operator-namespaces",
        "rel-ecr-tag-operator-policies",
    ):
        binding = one(objs, "ClusterRoleBinding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-ecr-tag-operator", "namespace": "ops"}]
    assert of_kind(objs, "Role") == []


def test_watch_namespaces_renders_a_role_per_namespace(helm: Helm) -> None:
    objs = helm.template(*NAMESPACED)
    roles = of_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["metadata"]["name"] == "rel-ecr-tag-operator"
        assert role["rules"] == OPERATOR_RULES
    bindings = of_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rel-ecr-tag-operator",
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-ecr-tag-operator", "namespace": "ops"}]
    # Cluster-wide, only read access remains (and policies' status): the CRD watch, the namespaces
    # index, and policies (Namespaces and EcrTagPolicies are cluster-scoped, and kopf lists and
    # watches them all whatever it watches EcrImageTags in).
    cluster_wide = [
        "rel-ecr-tag-operator-crd-watch",
        "rel-ecr-tag-operator-namespaces",
        "rel-ecr-tag-operator-policies",
    ]
    assert sorted(r["metadata"]["name"] for r in of_kind(objs, "ClusterRole")) == cluster_wide
    assert sorted(b["metadata"]["name"] for b in of_kind(objs, "ClusterRoleBinding")) == cluster_wide
    assert one(objs, "ClusterRole", "rel-ecr-tag-operator-namespaces")["rules"] == NAMESPACES_RULES
    assert one(objs, "ClusterRole", "rel-ecr-tag-operator-policies")["rules"] == POLICIES_RULES
    assert "--namespace=team-a" in container(objs)["args"]
    assert "--namespace=team-b" in container(objs)["args"]


def test_spec_write_guard_targets_the_operator_service_account(helm: Helm) -> None:
    objs = helm.template()
    policy = one(objs, "ValidatingAdmissionPolicy", "rel-ecr-tag-operator-spec-write-guard")["spec"]
    assert policy["failurePolicy"] == "Fail"
    assert policy["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["ecrtag.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["UPDATE"],
            "resources": ["ecrimagetags"],
        }
    ]
    (condition,) = policy["matchConditions"]
    assert condition["expression"] == 'request.userInfo.username == "system:serviceaccount:ops:rel-ecr-tag-operator"'
    assert [v["expression"] for v in policy["validations"]] == ["object.spec == oldObject.spec"]
    binding = one(objs, "ValidatingAdmissionPolicyBinding", "rel-ecr-tag-operator-spec-write-guard")["spec"]
    assert binding == {"policyName": "rel-ecr-tag-operator-spec-write-guard", "validationActions": ["Deny"]}


def test_schema_definitions_resolve() -> None:
    # Every $ref in the schema points at an existing definition (helm would refuse the chart otherwise,
    # but only for values that reach the broken branch).
    schema = load_schema()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
                resolve(node, schema)
            for sub in node.values():
                walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(schema)
    assert refs


# --------------------------------------------------------------------------------------------------
# the Argo CD health check


def test_argocd_health_check_is_off_by_default(helm: Helm) -> None:
    assert of_kind(helm.template(), "ConfigMap") == []
    assert "argocd" not in helm.notes().lower()


@pytest.mark.parametrize("values", [(), EVERYTHING, NAMESPACED], ids=["defaults", "everything", "namespaced"])
def test_chart_never_writes_argocd_cm(helm: Helm, values: tuple[str, ...]) -> None:
    objs = helm.template(*values, "--set", "argocd.healthCheck.enabled=true")
    assert [o for o in objs if o["metadata"]["name"] == "argocd-cm"] == []
    assert [o["metadata"]["namespace"] for o in of_kind(objs, "ConfigMap")] == ["ops"]


def test_argocd_health_check_config_map_holds_the_script(helm: Helm) -> None:
    objs = helm.template("--set", "argocd.healthCheck.enabled=true")
    cm = one(objs, "ConfigMap", "rel-ecr-tag-operator-argocd-health-check")
    assert cm["metadata"]["namespace"] == "ops"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
    assert cm["data"] == {HEALTH_CHECK_KEY: SOURCE_HEALTH_CHECK.read_text()}
    notes = helm.notes("--set", "argocd.healthCheck.enabled=true")
    assert "The chart does not write argocd-cm" in notes
    assert (
        "  kubectl -n argocd patch configmap argocd-cm --type merge \\\n"
        '    -p "{\\"data\\":$(kubectl -n ops get configmap rel-ecr-tag-operator-argocd-health-check'
        " -o jsonpath='{.data}')}\"\n"
    ) in notes


# --------------------------------------------------------------------------------------------------
# EcrTagPolicies and their guard

OWN, REGION = "111122223333", "eu-west-1"


def _policies(objs: list[Obj]) -> dict[str, Obj]:
    return {p["metadata"]["name"]: p for p in of_kind(objs, "EcrTagPolicy")}


def test_allow_all_renders_exactly_one_explicit_policy(helm: Helm) -> None:
    (policy,) = of_kind(helm.template("--set", "allowAll=true"), "EcrTagPolicy")
    assert policy["apiVersion"] == "ecrtag.dev/v1alpha1"
    assert policy["metadata"]["name"] == "rel-ecr-tag-operator-allow-all"
    assert "namespace" not in policy["metadata"]
    assert policy["spec"] == {"namespaceSelector": {}, "registries": [{"write": [{"repositories": ["**"]}]}]}
    # What it means, as the operator reads it: every namespace, every repository and tag of the
    # operator's own account and region, with its own credentials; nothing anywhere else.
    parsed = parse_policy(policy["metadata"]["name"], policy["spec"], own_account=OWN)
    grants = NamespaceGrants.for_namespace([parsed], "any-namespace", {}, OWN, REGION)
    assert grants.may_write(None, None, "team-a/deep/web", "prod")
    assert [(r.location.account, r.location.region, r.role_arn) for r in grants.registries()] == [(OWN, REGION, None)]
    assert not grants.may_write("444455556666", None, "team-a/web", "prod")
    assert not grants.may_write(None, "us-east-1", "team-a/web", "prod")


def test_values_policies_render_and_parse(helm: Helm) -> None:
    values = load_yaml(VALUES_EVERYTHING)
    policies = _policies(helm.template("--set-json", f"policies={json.dumps(values['policies'])}"))
    assert sorted(policies) == ["platform", "team-a"]
    for given in values["policies"]:
        rendered = policies[given["name"]]
        assert rendered["spec"] == given["spec"]
        # The operator accepts every policy the chart's schema let through.
        parse_policy(given["name"], rendered["spec"], own_account=OWN)


def test_policy_guard_lets_only_admins_change_policies(helm: Helm) -> None:
    objs = helm.template()
    policy = one(objs, "ValidatingAdmissionPolicy", "rel-ecr-tag-operator-policy-guard")["spec"]
    assert policy["failurePolicy"] == "Fail"
    assert policy["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["ecrtag.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": ["ecrtagpolicies"],  # not ecrtagpolicies/status: the operator's
        }
    ]
    assert "matchConditions" not in policy  # everyone is checked, the operator included
    assert {v["name"]: v["expression"] for v in policy["variables"]} == {
        "adminGroups": '["system:masters"]',
        "adminUsers": "[]",
    }
    (validation,) = policy["validations"]
    assert validation["reason"] == "Forbidden"
    assert "request.userInfo.groups.exists(g, g in variables.adminGroups)" in validation["expression"]
    binding = one(objs, "ValidatingAdmissionPolicyBinding", "rel-ecr-tag-operator-policy-guard")["spec"]
    assert binding == {"policyName": "rel-ecr-tag-operator-policy-guard", "validationActions": ["Deny"]}


def test_policy_guard_can_be_turned_off(helm: Helm) -> None:
    objs = helm.template("--set", "policyGuard.enabled=false")
    names = {o["metadata"]["name"] for o in objs if o["kind"].startswith("ValidatingAdmissionPolicy")}
    assert names == {"rel-ecr-tag-operator-spec-write-guard", "rel-ecr-tag-operator-status-write-guard"}


def test_policy_guard_without_admins_is_refused(helm: Helm) -> None:
    stderr = helm.refusal("--set-json", "policyGuard.adminGroups=[]")
    assert "policyGuard.enabled needs at least one of policyGuard.adminGroups and policyGuard.adminUsers" in stderr


# --------------------------------------------------------------------------------------------------
# the status write guard


def test_status_write_guard_lets_only_the_operator_write_status(helm: Helm) -> None:
    objs = helm.template()
    policy = one(objs, "ValidatingAdmissionPolicy", "rel-ecr-tag-operator-status-write-guard")["spec"]
    assert policy["failurePolicy"] == "Fail"
    assert policy["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["ecrtag.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["UPDATE"],  # a PATCH is an UPDATE to admission
            "resources": ["ecrimagetags/status"],  # not ecrimagetags: tenants own their spec
        }
    ]
    assert "matchConditions" not in policy  # every identity is checked
    assert {v["name"]: v["expression"] for v in policy["variables"]} == {
        "operator": '"system:serviceaccount:ops:rel-ecr-tag-operator"',
        "allowedGroups": '["system:masters"]',
        "allowedUsers": "[]",
    }
    (validation,) = policy["validations"]
    assert validation["reason"] == "Forbidden"
    assert validation["expression"].startswith("request.userInfo.username == variables.operator ||")
    assert "request.userInfo.groups.exists(g, g in variables.allowedGroups)" in validation["expression"]
    assert "writes the status of an EcrImageTag, not ' + request.userInfo.username" in validation["messageExpression"]
    binding = one(objs, "ValidatingAdmissionPolicyBinding", "rel-ecr-tag-operator-status-write-guard")["spec"]
    assert binding == {"policyName": "rel-ecr-tag-operator-status-write-guard", "validationActions": ["Deny"]}


def test_status_write_guard_follows_an_existing_service_account(helm: Helm) -> None:
    objs = helm.template("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=shared")
    policy = one(objs, "ValidatingAdmissionPolicy", "rel-ecr-tag-operator-status-write-guard")["spec"]
    assert policy["variables"][0] == {"name": "operator", "expression": '"system:serviceaccount:ops:shared"'}


def test_status_write_guard_can_be_turned_off(helm: Helm) -> None:
    objs = helm.template("--set", "statusWriteGuard.enabled=false")
    names = {o["metadata"]["name"] for o in objs if o["kind"].startswith("ValidatingAdmissionPolicy")}
    assert names == {"rel-ecr-tag-operator-spec-write-guard", "rel-ecr-tag-operator-policy-guard"}
