"""Health checks evaluated by Argo CD's own code: hack/argocd-health, built by hack/build-argocd-health.sh
from argo-cd's util/lua and gitops-engine's health package (gopher-lua, the Lua the controller runs).

The harness gives the script to gitops-engine's health.GetResourceHealth as the argocd-cm override for
ecrtag.dev/EcrImageTag (useOpenLibs off, as argocd-cm has it unless set), exactly as the controller's
controller/health.go does, and decodes each object as the controller's watch does (integers as int64).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from .support import HEALTH_LUA, REPO

BUILD_SCRIPT = REPO / "hack" / "build-argocd-health.sh"


@dataclass(frozen=True)
class Health:
    status: str
    message: str
    error: str = ""  # set when the check failed: gitops-engine then says Unknown with the error as message


@cache
def harness() -> Path:
    """The built harness for the current sources; a missing one fails the test (it is never skipped)."""
    where = subprocess.run(["bash", str(BUILD_SCRIPT), "--path"], capture_output=True, text=True, check=True)
    binary = Path(where.stdout.strip())
    if not binary.is_file():
        pytest.fail(
            f"{binary} is missing: run hack/build-argocd-health.sh (or `make argocd-health`) to build Argo CD's "
            "health-check harness (a few minutes the first time, then cached)",
            pytrace=False,
        )
    return binary


def evaluate_files(paths: Sequence[Path], script: str | Path = HEALTH_LUA, *, open_libs: bool = False) -> list[Health]:
    """Each file's health, in order. ``script`` is a path or the script's text."""
    with tempfile.TemporaryDirectory(prefix="argocd-health-") as tmp:
        if isinstance(script, str):
            script_path = Path(tmp) / "health.lua"
            script_path.write_text(script, encoding="utf-8")
        else:
            script_path = script
        command = [str(harness()), "-script", str(script_path)]
        if open_libs:
            command.append("-use-open-libs")
        done = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"argocd-health failed: {done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(p) for p in paths]
    return [Health(line["status"], line["message"], line.get("error", "")) for line in lines]


def evaluate(
    objects: Sequence[Mapping[str, Any]], script: str | Path = HEALTH_LUA, *, open_libs: bool = False
) -> list[Health]:
    """Each object's health, in order, the objects written as JSON (as the API server serves them)."""
    with tempfile.TemporaryDirectory(prefix="argocd-objects-") as tmp:
        paths = []
        for i, obj in enumerate(objects):
            path = Path(tmp) / f"{i}.json"
            path.write_text(json.dumps(obj), encoding="utf-8")
            paths.append(path)
        return evaluate_files(paths, script, open_libs=open_libs)


def evaluate_one(obj: Mapping[str, Any], script: str | Path = HEALTH_LUA, *, open_libs: bool = False) -> Health:
    (health,) = evaluate([obj], script, open_libs=open_libs)
    return health
