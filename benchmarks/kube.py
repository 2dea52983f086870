"""EcrImageTag objects for the benchmark: manifests, bulk creation, and cheap listing through the API.

Listing goes straight to kube-apiserver through the Kubernetes Python client (one request, JSON parsed
here) rather than through a kubectl process per poll: at 5,000 objects a kubectl poll costs seconds of
CPU on a two-core machine that also runs the operator, the apiserver and the ECR emulator.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_operator.reasons import TRANSIENT

GROUP, VERSION, PLURAL, KIND = "ecrtag.dev", "v1alpha1", "ecrimagetags", "EcrImageTag"
APPLY_CHUNK = 500  # objects per `kubectl apply` (one multi-document file each)
FIELD_MANAGER = "ecr-tag-benchmark"

State = Literal["ready", "failed", "pending"]
# Ready=False reasons that clear by themselves: still pending.
TRANSIENT_REASONS = TRANSIENT


@dataclass(frozen=True)
class Resource:
    namespace: str
    name: str
    repository: str
    source_tag: str
    tags: tuple[str, ...]
    drift_check_interval: str

    def body(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "repositoryName": self.repository,
                "source": {"tag": self.source_tag},
                "tags": list(self.tags),
                "driftCheckInterval": self.drift_check_interval,
            },
        }


def state_of(obj: Mapping[str, Any]) -> State:
    """ready: Ready=True for the current generation; failed: Ready=False for a reason that does not
    clear by itself; pending otherwise."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return "pending"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return "ready"
            if cond.get("status") == "False" and cond.get("reason") not in TRANSIENT_REASONS:
                return "failed"
            return "pending"
    return "pending"


def ready_reason(obj: Mapping[str, Any]) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return f"{cond.get('status')}/{cond.get('reason')}"
    return "none"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def status_written(obj: Mapping[str, Any]) -> datetime | None:
    """When kube-apiserver last stored a status write for the object (managedFields, second resolution).
    Unlike the conditions' timestamps, which the operator stamps when a reconcile starts, this is when
    the result landed."""
    times = [
        parse_time(entry.get("time"))
        for entry in (obj.get("metadata") or {}).get("managedFields") or []
        if entry.get("subresource") == "status"
    ]
    found = [t for t in times if t is not None]
    return max(found) if found else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Api:
    """The few API calls the benchmark makes, on one kubeconfig (a throw-away local cluster)."""

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self._api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig_path)
        )
        self._custom = k8s_client.CustomObjectsApi(self._api_client)
        self._core = k8s_client.CoreV1Api(self._api_client)

    def close(self) -> None:
        self._api_client.close()

    def ensure_namespaces(self, names: Iterable[str]) -> None:
        for name in names:
            self._core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))

    def list_all(self) -> list[dict[str, Any]]:
        resp: Any = self._custom.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, _preload_content=False, _request_timeout=60
        )
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        resp: Any = self._custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False, _request_timeout=10
        )
        obj: dict[str, Any] = json.loads(resp.data)
        return obj

    def create(self, resource: Resource) -> None:
        self._custom.create_namespaced_custom_object(
            GROUP, VERSION, resource.namespace, PLURAL, resource.body(), _request_timeout=10
        )

    def patch_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        """A JSON merge patch of the spec (a promotion: what a changed manifest applies)."""
        self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": dict(spec)}, _request_timeout=10
        )

    def apply_bulk(self, resources: Sequence[Resource], chunk: int = APPLY_CHUNK) -> None:
        """Server-side apply, one kubectl process per ``chunk`` objects (a multi-document file)."""
        with tempfile.TemporaryDirectory(prefix="ecr-tag-benchmark-") as tmp:
            for start in range(0, len(resources), chunk):
                path = Path(tmp) / f"chunk-{start:06d}.yaml"
                path.write_text(yaml.safe_dump_all([r.body() for r in resources[start : start + chunk]]))
                self.cluster.kubectl(
                    "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(path), timeout=600
                )
