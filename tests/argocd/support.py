"""Shared helpers for the Argo CD tests: paths, YAML as the API server reads it, and the CRD's schema."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "ecrimagetags.ecrtag.dev.yaml"
CHECK_DIR = REPO / "argocd" / "ecrtag.dev" / "EcrImageTag"
HEALTH_LUA = CHECK_DIR / "health.lua"
EXAMPLES = REPO / "examples" / "argo-cd"
HEALTH_KEY = "resource.customizations.health.ecrtag.dev_EcrImageTag"


class _KubeLoader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except timestamps stay strings (as they do in a Kubernetes object)."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document in a file."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.load_all(fh, Loader=_KubeLoader) if doc is not None]


def load_one(path: Path) -> Any:
    docs = load_documents(path)
    assert len(docs) == 1, f"{path} holds {len(docs)} documents, expected one"
    return docs[0]


@cache
def crd_schema() -> Mapping[str, Any]:
    crd = load_one(CRD_PATH)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def schema_problems(value: Any, schema: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """What the CRD's structural schema rejects in ``value``: types, unknown fields, required fields,
    enums, patterns, lengths and item counts. CEL rules (x-kubernetes-validations) are not evaluated;
    the operator's spec model checks the same rules."""
    where = path or "<root>"
    kind = schema.get("type")
    if kind is not None:
        allowed = _TYPES[kind]
        if not isinstance(value, allowed) or (kind in ("integer", "number") and isinstance(value, bool)):
            yield f"{where}: {type(value).__name__} where the CRD wants {kind}"
            return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r} is not one of {schema['enum']}"
    if isinstance(value, str):
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            yield f"{where}: {value!r} does not match {schema['pattern']}"
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            yield f"{where}: length {len(value)} is outside the CRD's bounds"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            yield f"{where}: {len(value)} items is outside the CRD's bounds"
        if schema.get("x-kubernetes-list-type") == "set" and len(set(map(repr, value))) != len(value):
            yield f"{where}: a set with duplicate items"
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                yield from schema_problems(item, items, f"{path}[{i}]")
    if isinstance(value, dict) and "properties" in schema:
        props: Mapping[str, Any] = schema["properties"]
        for key in schema.get("required", []):
            if key not in value:
                yield f"{where}: required field {key!r} is missing"
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key not in props:
                yield f"{child}: not a field of the CRD"
            else:
                yield from schema_problems(item, props[key], child)
