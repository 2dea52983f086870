"""The `helm` fixture: the pinned helm binary, built by hack/build-control-plane.sh when missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_tag_localenv.control_plane import BinariesError, ensure_binaries, pinned_versions
from tests.chart.helm import Helm


def _progress(config: pytest.Config, line: str) -> None:
    # A first build takes many minutes: show it live despite output capturing.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def helm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        bin_dir = ensure_binaries(progress=lambda line: _progress(pytestconfig, line))
    except BinariesError as exc:
        message = f"no helm binary: {exc}"
    else:
        message = ""
    if message:
        pytest.fail(message, pytrace=False)
    home = tmp_path_factory.mktemp("helm-home")
    # Helm's cache, config and data directories stay inside the test's temporary directory.
    env = {
        "PATH": str(bin_dir),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Helm(binary=Path(bin_dir) / "helm", env=env, kube_version=pinned_versions()["kubernetes"])
