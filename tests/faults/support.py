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
from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES
from tests.e2e.helpers import condition

FULL = os.environ.get("FAULTS_FULL", "") == "1"


class KnownBug(AssertionError):
    """The one failure a test marked ``xfail(strict=True, raises=KnownBug)`` expects: any other failure
    of that test is still a failure, and once the bug is fixed the strict xfail says so."""


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
    deadline = began + timeout
    behind: list[str] = list(names)
    seen: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        seen = list_objects(cluster, namespace)
        behind = [n for n in names if not is_ready(seen.get(n))]
        if not behind:
            return time.monotonic() - began
        time.sleep(1.0)  # poll interval
    sample = {n: condition(seen.get(n), "Ready") for n in behind[:5]}
    raise AssertionError(f"{len(behind)} of {len(names)} not Ready after {timeout}s; first: {sample}")


def tag_digests(client: Any, repository: str, tags: Sequence[str]) -> dict[str, str | None]:
    """Where each tag points now (None: absent), read in batches of 100 as ECR allows."""
    found: dict[str, str | None] = dict.fromkeys(tags)
    for start in range(0, len(tags), 100):
        got = client.batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": t} for t in tags[start : start + 100]],
            acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES),
        )
        for image in got["images"]:
            found[image["imageId"]["imageTag"]] = image["imageId"]["imageDigest"]
    return found


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


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
