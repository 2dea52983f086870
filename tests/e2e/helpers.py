"""Helpers for end-to-end tests: EcrImageTag manifests, kubectl JSON, conditions, metrics, grants and
the emulator's call ledger."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for

# moto's account for any credentials it has not been told about: the operator's own account here
# (sts:GetCallerIdentity at start-up).
OWN_ACCOUNT = "123456789012"
# Account ids are scrubbed from what a tenant is shown.
SHOWN_ACCOUNT = "[account]"
# The shortest drift interval a spec may name: three drift cycles take about 90 s.
DRIFT = "30s"
# What a write does to a repository, and what an attack must never cause there.
WRITES = ("PutImage", "BatchDeleteImage")

PolicyApply = Callable[[str, dict[str, Any]], str]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eit(name: str, namespace: str, **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "ecrtag.dev/v1alpha1",
            "kind": "EcrImageTag",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def get(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "ecrimagetag", name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(out.stdout) if out.stdout.strip() else None


def ready(cluster: KubeCluster, ns: str, name: str, status: str, reason: str) -> dict[str, Any] | None:
    """The object once its Ready condition has this status and reason for its current generation."""
    obj = get(cluster, ns, name)
    cond = condition(obj, "Ready")
    ok = cond.get("status") == status and cond.get("reason") == reason
    return obj if ok and obj and obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` (``..._total`` for a counter) whose labels include ``labels``,
    in a Prometheus text exposition; 0 when there are none (a labelled series appears at its first use)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def apply(cluster: KubeCluster, manifest: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=manifest)


def write_grant(*repositories: str, **entry: Any) -> dict[str, Any]:
    """One registry entry (the operator's own account and region unless ``entry`` says otherwise)
    granting write on ``repositories``."""
    return {**entry, "write": [{"repositories": list(repositories)}]}


def for_namespaces(*namespaces: str, registries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"namespaces": list(namespaces), "registries": registries}


def repository_calls(server: RunningEmulator, repository: str) -> dict[str, int]:
    """Every ECR call the emulator counted for one repository, by operation."""
    counts = server.control.calls()
    return {op: n for op, repos in counts.by_repository.items() if (n := repos.get(repository, 0))}


def writes_to(server: RunningEmulator, repository: str) -> dict[str, int]:
    """The emulator's PutImage and BatchDeleteImage counts for one repository."""
    counts = server.control.calls()
    return {op: counts.of(op, repository) for op in WRITES}


def drift_reconciles(operator: OperatorProcess) -> float:
    return metric_sum(operator.metrics(), "ecr_tag_operator_reconciles_total", trigger="drift")


@dataclass(frozen=True)
class DriftMark:
    """Where a repository's drift checks stood: its BatchGetImage count and the drift reconciles."""

    repository: str
    reads: int
    drifts: float


def drift_mark(server: RunningEmulator, operator: OperatorProcess, repository: str) -> DriftMark:
    return DriftMark(repository, server.control.calls().of("BatchGetImage", repository), drift_reconciles(operator))


def wait_for_drift_cycles(
    server: RunningEmulator,
    operator: OperatorProcess,
    repository: str,
    cycles: int = 3,
    readers: int = 1,
    since: DriftMark | None = None,
) -> None:
    """Until the operator has checked ``repository`` for drift ``cycles`` more times (than at
    ``since``, a mark taken before an attack began, or now).

    A drift check of a resource whose source is in its target repository reads both with one
    BatchGetImage (coalesced per repository), so the emulator's count for the repository counts the
    checks; the operator's drift reconciles must have moved as much. Nothing else may read the
    repository meanwhile, except ``readers - 1`` other resources checked at the same interval: their
    checks may share the read or not, so then the drift reconciles must also have moved ``cycles``
    times for each of them.
    """
    mark = since or drift_mark(server, operator, repository)
    assert mark.repository == repository
    wait_for(
        f"{cycles} drift checks of {repository}",
        lambda: (
            server.control.calls().of("BatchGetImage", repository) >= mark.reads + cycles
            and drift_reconciles(operator) >= mark.drifts + cycles * readers
        ),
        timeout=cycles * 30 + 90,
        every=1.0,
    )
    moved = drift_reconciles(operator) - mark.drifts
    assert moved >= cycles, f"{moved} drift reconciles for {cycles} drift reads"


def resources(cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    """Every EcrImageTag of a namespace."""
    out = cluster.kubectl("get", "ecrimagetags", "-n", namespace, "-o", "json", timeout=120)
    return list(json.loads(out.stdout)["items"])


def is_ready(obj: dict[str, Any], status: str = "True", reason: str = "InSync") -> bool:
    """Whether the Ready condition has this status and reason for the object's current generation."""
    cond = condition(obj, "Ready")
    observed = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
    return observed and cond.get("status") == status and cond.get("reason") == reason


# -- a dev -> prod promotion across accounts and regions (the copy tests) -------------------------------


def promotion_grants(
    namespace: str, prod_account: str, prod_region: str, role_arn: str, dev_region: str
) -> dict[str, Any]:
    """An EcrTagPolicy's spec: ``namespace`` reads dev/** of the operator's own account in ``dev_region``
    and writes prod/** of ``prod_account`` in ``prod_region`` through ``role_arn``."""
    return {
        "namespaces": [namespace],
        "registries": [
            {"regions": [dev_region], "read": [{"repositories": ["dev/**"]}]},
            {
                "registryId": prod_account,
                "regions": [prod_region],
                "roleArn": role_arn,
                "write": [{"repositories": ["prod/**"]}],
            },
        ],
    }


def promotion_spec(
    dev: tuple[str, str, str], prod: tuple[str, str, str], source_tag: str = "build-1", tags: tuple[str, ...] = ("v1",)
) -> dict[str, Any]:
    """An EcrImageTag's spec promoting ``source_tag`` of ``dev`` to ``prod``, each (account, region, repository)."""
    (dev_account, dev_region, dev_repo), (prod_account, prod_region, prod_repo) = dev, prod
    return {
        "repositoryName": prod_repo,
        "registryId": prod_account,
        "region": prod_region,
        "source": {"tag": source_tag, "repositoryName": dev_repo, "registryId": dev_account, "region": dev_region},
        "tags": list(tags),
    }
