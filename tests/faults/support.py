"""Helpers for the fault tests: scale, many resources at once, and what ECR and the status say."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_tags import tag_digests
from ecr_tag_localenv.waiting import wait_for
from tests.e2e.helpers import condition

FULL = os.environ.get("FAULTS_FULL", "") == "1"


def scale(fast: int, full: int) -> int:
    return full if FULL else fast


@dataclass(frozen=True)
class Tenant:
    """One EcrImageTag and the image it names: its own digest, its own tags, in a shared repository."""

    name: str
    repository: str
    source_tag: str
    tags: tuple[str, ...]
    digest: str

    def manifest(self, namespace: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "ecrtag.dev/v1alpha1",
            "kind": "EcrImageTag",
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": {
                "repositoryName": self.repository,
                "source": {"tag": self.source_tag},
                "tags": list(self.tags),
                **spec,
            },
        }


def seed_tenants(client: Any, prefix: str, count: int, repositories: int) -> list[Tenant]:
    """Push ``count`` distinct images spread over ``repositories`` repositories, one per tenant."""
    tenants = []
    for i in range(count):
        repo = f"{prefix}/r{i % repositories}"
        image = ecr_seed.push(client, repo, f"src-{i}", "docker" if i % 2 else "oci", seed=f"{prefix}-{i}")
        tenants.append(Tenant(f"t{i}", repo, f"src-{i}", (f"t{i}-a", f"t{i}-b"), image.digest))
    return tenants


def apply_all(cluster: KubeCluster, namespace: str, tenants: Iterable[Tenant], **spec: Any) -> None:
    docs = [t.manifest(namespace, **spec) for t in tenants]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs), timeout=120)


def list_objects(cluster: KubeCluster, namespace: str) -> dict[str, dict[str, Any]]:
    out = cluster.kubectl("get", "ecrimagetags", "-n", namespace, "-o", "json", timeout=60)
    return {o["metadata"]["name"]: o for o in json.loads(out.stdout)["items"]}


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    """Ready=True for the current generation."""
    if not obj:
        return False
    status = obj.get("status") or {}
    return (
        condition(dict(obj), "Ready").get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


def ready_count(cluster: KubeCluster, namespace: str) -> int:
    return sum(is_ready(o) for o in list_objects(cluster, namespace).values())


def wait_all_ready(cluster: KubeCluster, namespace: str, names: Sequence[str], timeout: float) -> float:
    """Poll until every named object is Ready; return the seconds waited. Fails with the laggards."""
    began = time.monotonic()
    seen: dict[str, dict[str, Any]] = {}

    def laggards() -> list[str]:
        seen.update(list_objects(cluster, namespace))
        return [n for n in names if not is_ready(seen.get(n))]

    try:
        wait_for("every object Ready", lambda: not laggards(), timeout=timeout, every=1.0)
    except TimeoutError:
        behind = laggards()
        sample = {n: condition(seen.get(n), "Ready") for n in behind[:5]}
        raise AssertionError(f"{len(behind)} of {len(names)} not Ready after {timeout}s; first: {sample}") from None
    return time.monotonic() - began


def misplaced_tags(client: Any, tenants: Sequence[Tenant]) -> list[str]:
    """Every tenant tag that does not point at its tenant's digest, as 'repo:tag now -> wanted'."""
    by_repo: dict[str, list[Tenant]] = defaultdict(list)
    for t in tenants:
        by_repo[t.repository].append(t)
    wrong = []
    for repo, group in by_repo.items():
        now = tag_digests(client, repo, [tag for t in group for tag in t.tags])
        wrong += [f"{repo}:{tag} {now[tag]} -> {t.digest}" for t in group for tag in t.tags if now[tag] != t.digest]
    return wrong


def image_digests(client: Any, repository: str) -> set[str]:
    """Distinct image digests stored in a repository (describe_images, every page)."""
    digests: set[str] = set()
    for page in client.get_paginator("describe_images").paginate(repositoryName=repository):
        digests.update(d["imageDigest"] for d in page["imageDetails"])
    listed: set[str] = set()
    for page in client.get_paginator("list_images").paginate(repositoryName=repository):
        listed.update(i["imageDigest"] for i in page["imageIds"])
    assert listed == digests, f"{repository}: list_images and describe_images disagree: {listed ^ digests}"
    return digests


def images_by_repository(client: Any, repositories: Iterable[str]) -> dict[str, set[str]]:
    return {repo: image_digests(client, repo) for repo in sorted(set(repositories))}


def expected_images(tenants: Iterable[Tenant]) -> dict[str, set[str]]:
    want: dict[str, set[str]] = defaultdict(set)
    for t in tenants:
        want[t.repository].add(t.digest)
    return dict(want)
