"""examples/argo-cd: every EcrImageTag is a spec the operator accepts and the CRD admits, and each
environment orders its EcrImageTag (wave -1) before the Deployment that pulls the tag (wave 0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_operator.spec import parse_spec

from .support import EXAMPLES, REPO, crd_schema, load_documents, schema_problems

ENVIRONMENTS = EXAMPLES / "environments"
WAVE = "argocd.argoproj.io/sync-wave"
PROMOTED = "example.com/promoted-digest"


def _objects(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(root.rglob("*.yaml")):
        for doc in load_documents(path):
            yield path, doc


def _of_kind(root: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, o) for p, o in _objects(root) if o.get("kind") == kind]


def _wave(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(WAVE, "0"))


def test_every_ecrimagetag_parses_with_the_operators_spec_model() -> None:
    found = _of_kind(EXAMPLES, "EcrImageTag")
    assert len(found) >= 3
    for path, obj in found:
        assert obj["apiVersion"] == "ecrtag.dev/v1alpha1", path
        spec = parse_spec(obj["spec"])
        assert spec.mode == "Enforce", path
        assert list(schema_problems(obj, crd_schema())) == [], path


def test_every_yaml_file_holds_only_known_kinds() -> None:
    kinds = {(o.get("apiVersion"), o.get("kind")) for _, o in _objects(EXAMPLES)}
    assert kinds == {
        ("ecrtag.dev/v1alpha1", "EcrImageTag"),
        ("apps/v1", "Deployment"),
        ("argoproj.io/v1alpha1", "Application"),
        ("v1", "ConfigMap"),
    }


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_each_environment_moves_its_tag_before_the_deployment_pulls_it(env: str) -> None:
    root = ENVIRONMENTS / env
    (tags,) = [o for _, o in _of_kind(root, "EcrImageTag")]
    (deployment,) = [o for _, o in _of_kind(root, "Deployment")]
    assert (_wave(tags), _wave(deployment)) == (-1, 0)

    spec = parse_spec(tags["spec"])
    assert spec.tags == (env,)
    assert spec.source.digest is not None, "promotion is by digest"
    assert spec.same_repository

    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    registry = f"{spec.registry_id}.dkr.ecr.{spec.region}.amazonaws.com"
    assert container["image"] == f"{registry}/{spec.repository_name}:{env}"
    assert container["imagePullPolicy"] == "Always", "a moved tag must be pulled again, not taken from a node's cache"
    # Moving a tag leaves the pod template as it was; the digest annotation is what rolls the pods.
    assert template["metadata"]["annotations"][PROMOTED] == spec.source.digest


def test_environments_manage_distinct_tags_of_one_repository() -> None:
    specs = [parse_spec(o["spec"]) for _, o in _of_kind(ENVIRONMENTS, "EcrImageTag")]
    assert len({s.repository_name for s in specs}) == 1
    all_tags = [t for s in specs for t in s.tags]
    assert len(all_tags) == len(set(all_tags)), "two EcrImageTags managing one tag would be a TagConflict"
    # A build reaches prod only through staging: the digests along the pipeline are distinct builds.
    assert len({s.source.digest for s in specs}) == len(specs)


def test_applications_deploy_each_environment_directory() -> None:
    apps = _of_kind(EXAMPLES / "applications", "Application")
    paths = set()
    for path, app in apps:
        spec = app["spec"]
        assert spec["project"] == "default", path
        source = spec["source"]
        target = REPO / source["path"]
        assert target.is_dir(), f"{path}: {source['path']} is not a directory of this repository"
        assert target.parent == ENVIRONMENTS, path
        assert spec["destination"]["namespace"] == f"web-{target.name}", path
        assert app["metadata"]["name"] == f"web-{target.name}", path
        paths.add(target)
    assert paths == {p for p in ENVIRONMENTS.iterdir() if p.is_dir()}
