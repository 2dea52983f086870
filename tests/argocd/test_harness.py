"""The harness itself: where its build is cached, and a missing build failing with the command that makes it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .argocd_lua import BUILD_SCRIPT, harness


def test_a_missing_harness_fails_with_the_command_that_builds_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ECR_TAG_OPERATOR_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(pytest.fail.Exception, match=r"run hack/build-argocd-health\.sh"):
        harness.__wrapped__()


def _where(script: Path, cache: Path) -> Path:
    done = subprocess.run(
        ["bash", str(script), "--path"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "ECR_TAG_OPERATOR_CACHE": str(cache)},
    )
    return Path(done.stdout.strip())


def test_an_edited_harness_is_never_served_from_an_older_build(tmp_path: Path) -> None:
    hack = tmp_path / "hack"
    shutil.copytree(BUILD_SCRIPT.parent / "argocd-health", hack / "argocd-health")
    shutil.copy(BUILD_SCRIPT, hack / BUILD_SCRIPT.name)
    before = _where(hack / BUILD_SCRIPT.name, tmp_path / "cache")
    assert before.parent.parent == tmp_path / "cache" / "bin"
    assert before.parent.name.startswith("argocd-health-v3.2.0-")
    assert before == _where(BUILD_SCRIPT, tmp_path / "cache"), "the copy is not the repository's harness"
    with (hack / "argocd-health" / "main.go").open("a", encoding="utf-8") as main:
        main.write("\n// edited\n")
    assert _where(hack / BUILD_SCRIPT.name, tmp_path / "cache") != before
