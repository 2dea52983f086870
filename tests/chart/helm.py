"""Running the pinned helm binary against the chart, and reading what it renders."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecr_tag_localenv.control_plane import repo_root

CHART = repo_root() / "charts" / "ecr-tag-operator"
SOURCE_CRD = repo_root() / "crds" / "ecrimagetags.ecrtag.dev.yaml"
CHART_CRD_COPY = CHART / "files" / "crd.yaml"
SOURCE_POLICY_CRD = repo_root() / "crds" / "ecrtagpolicies.ecrtag.dev.yaml"
CHART_POLICY_CRD_COPY = CHART / "files" / "crd-ecrtagpolicies.yaml"
SOURCE_HEALTH_CHECK = repo_root() / "argocd" / "ecrtag.dev" / "EcrImageTag" / "health.lua"
CHART_HEALTH_CHECK_COPY = CHART / "files" / "argocd-health.lua"
HEALTH_CHECK_KEY = "resource.customizations.health.ecrtag.dev_EcrImageTag"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
VALUES_EVERYTHING = Path(__file__).with_name("values-everything.yaml")

Obj = dict[str, Any]


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""

    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr.strip()}")
        self.result = result


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: Mapping[str, str]
    kube_version: str  # the pinned Kubernetes, which hack/build-control-plane.sh makes helm's default

    def run(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=dict(self.env),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise HelmError(list(args), result)
        return result

    def template_args(self, *values: str, release: str = "rel", namespace: str = "ops") -> list[str]:
        # No --kube-version: the build script gives helm the pinned Kubernetes as its default.
        return ["template", release, str(CHART), "--namespace", namespace, *values]

    def template(self, *values: str, release: str = "rel", namespace: str = "ops") -> list[Obj]:
        """The rendered objects; `values` are helm flags such as "-f", path or "--set", "a=b"."""
        out = self.run(*self.template_args(*values, release=release, namespace=namespace)).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def notes(self, *values: str, release: str = "rel", namespace: str = "ops") -> str:
        """The chart's NOTES.txt as `helm install` would print it, without a cluster.

        `helm template` never renders NOTES.txt, so a copy of the chart renders it through `tpl` into
        a ConfigMap of its own, with the same values, release and namespace.
        """
        with tempfile.TemporaryDirectory(prefix="chart-notes-") as tmp:
            chart = Path(tmp) / CHART.name
            shutil.copytree(CHART, chart)
            (chart / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
            probe = chart / "templates" / "zz-notes.yaml"
            probe.write_text(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
                'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
            )
            args = ["template", release, str(chart), "--namespace", namespace, "--show-only", "templates/zz-notes.yaml"]
            (doc,) = [d for d in yaml.safe_load_all(self.run(*args, *values).stdout) if d]
        notes: str = doc["data"]["notes"]
        return notes

    def refusal(self, *values: str) -> str:
        """helm's stderr for values it must refuse; fails the test when helm renders them."""
        result = self.run(*self.template_args(*values), check=False)
        assert result.returncode != 0, f"helm accepted {values}:\n{result.stdout[:2000]}"
        return result.stderr


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in of_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(objs: list[Obj]) -> Obj:
    containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Obj = containers[0]
    return result


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_schema() -> Obj:
    schema: Obj = json.loads(SCHEMA.read_text())
    return schema


def schema_properties(
    schema: Mapping[str, Any], root: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """Every property the chart itself defines, as (path, schema), following local $refs.

    Maps, arrays and Kubernetes types (anything behind a $ref to the schema's definitions, such as
    affinity) are leaves: what is inside them is the user's, not a value of the chart.
    """
    for name, sub in (schema.get("properties") or {}).items():
        resolved = resolve(sub, root)
        path = (*prefix, name)
        yield path, resolved
        if "$ref" not in sub and resolved.get("type") == "object" and "properties" in resolved:
            yield from schema_properties(resolved, root, path)


def resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    assert isinstance(ref, str)
    assert ref.startswith("#/"), f"only local $refs are expected, got {ref!r}"
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged


def lookup(values: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    node = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
