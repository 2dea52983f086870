"""Helpers for end-to-end tests: EcrImageTag manifests, kubectl JSON, conditions and metrics."""

from __future__ import annotations

import json
import uuid
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ecr_tag_localenv.control_plane import KubeCluster


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
