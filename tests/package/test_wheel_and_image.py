"""What ships: the operator's wheel holds the operator alone (no local environment, no tests), and
the image installs it from a hash-locked set of runtime dependencies on a base pinned by digest."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("ecr_tag_operator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_the_operator_package_alone(wheel_files: list[str]) -> None:
    code = [
        n for n in wheel_files if not n.startswith("ecr_tag_operator-") or not n.split("/")[0].endswith(".dist-info")
    ]
    assert code, wheel_files
    assert {n.split("/")[0] for n in code} == {"ecr_tag_operator"}
    assert not [n for n in wheel_files if "localenv" in n or n.startswith("tests/")]
    assert "ecr_tag_operator/core.py" in wheel_files
    assert "ecr_tag_operator/py.typed" in wheel_files


def test_every_file_the_package_data_names_exists() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["package-data"]["ecr_tag_operator"]:
        assert list((ROOT / "operator" / "ecr_tag_operator").glob(pattern)), pattern


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M)}
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock.strip())
    assert all("--hash=sha256:" in block for block in blocks), "every pin carries hashes"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    missing = sorted(_name(r) for r in declared if _name(r) not in pinned)
    assert missing == [], "run `make lock`"
    assert "moto" not in pinned
    assert "kubernetes" not in pinned


def test_the_dockerfile_installs_from_the_lock_on_a_base_pinned_by_digest() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "ARG PYTHON_IMAGE names the base"
    assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", base.group(1)), "pin the base by digest"
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert "--require-hashes" in text
    assert "-r requirements.lock" in text
    assert re.search(r"pip install --no-deps --prefix=/install \.$", text, re.M)
    assert "pip uninstall" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "!localenv/" not in ignored
    assert "!requirements.lock" in ignored


def test_tests_and_benchmarks_run_the_operator_with_the_images_environment() -> None:
    from ecr_tag_localenv.operator_process import IMAGE_ENV

    text = (ROOT / "Dockerfile").read_text()
    runtime_stage = text.rsplit("FROM ", 1)[1]
    env = dict(re.findall(r"(\w+)=(\S+)", "".join(re.findall(r"^ENV (.+)$", runtime_stage, re.M))))
    assert IMAGE_ENV.items() <= env.items(), f"the image's ENV {env} lacks {IMAGE_ENV}"
