"""Helpers for end-to-end tests: EcrImageTag manifests, kubectl JSON, and polling with a deadline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES

T = TypeVar("T")


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


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0, every: float = 0.25) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def tag_digest(client: Any, repository: str, tag: str) -> str | None:
    got = client.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
    )
    return got["images"][0]["imageId"]["imageDigest"] if got["images"] else None
