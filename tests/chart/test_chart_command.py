"""The container command the chart runs exists, and accepts every flag the chart passes."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from ecr_tag_localenv.control_plane import repo_root
from ecr_tag_operator import cli
from tests.chart.helm import VALUES_EVERYTHING, Helm, container, load_yaml, one

RENDERINGS = {
    "defaults": (),
    "everything": ("-f", str(VALUES_EVERYTHING)),
    "metrics-off": ("--set", "metrics.enabled=false"),
}


def _flag(arg: str) -> str:
    return arg.split("=", 1)[0]


def test_command_is_a_console_script_of_the_package(helm: Helm) -> None:
    command = container(helm.template())["command"]
    assert command == ["ecr-tag-operator"]
    scripts = entry_points(group="console_scripts", name=command[0])
    assert [ep.value for ep in scripts] == ["ecr_tag_operator.cli:main"]
    assert next(iter(scripts)).load() is cli.main


def test_run_help_lists_every_flag_the_chart_passes(helm: Helm) -> None:
    script = Path(sys.executable).with_name("ecr-tag-operator")
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .)"
    result = subprocess.run([str(script), "run", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    passed: set[str] = set()
    for values in RENDERINGS.values():
        args = container(helm.template(*values))["args"]
        assert args[0] == "run"
        passed |= {_flag(a) for a in args[1:]}
    assert passed >= {"--liveness", "--log-format", "--metrics-port", "--namespace", "--verbose"}
    assert passed <= listed, f"flags the chart passes that `run --help` does not list: {passed - listed}"


@pytest.mark.parametrize("name", RENDERINGS)
def test_cli_parses_the_rendered_args(helm: Helm, name: str) -> None:
    objs = helm.template(*RENDERINGS[name])
    args = container(objs)["args"]
    parsed = cli.parser().parse_args(args)
    assert parsed.command == "run"
    assert parsed.liveness == "http://0.0.0.0:8080/healthz"
    probe = container(objs)["livenessProbe"]["httpGet"]
    assert parsed.liveness.endswith(probe["path"])
    values = load_yaml(VALUES_EVERYTHING) if name == "everything" else {}
    assert parsed.log_format == values.get("logFormat", "json")
    assert parsed.namespace == values.get("watchNamespaces", [])
    assert parsed.verbose is values.get("verbose", False)
    expected_port = 0 if name == "metrics-off" else values.get("metrics", {}).get("port", 9090)
    assert parsed.metrics_port == expected_port


def test_dockerfile_matches_the_chart(helm: Helm) -> None:
    dockerfile = (repo_root() / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["ecr-tag-operator"\]$', dockerfile, re.MULTILINE)
    assert re.search(r'^CMD \["run"\]$', dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    pod = one(helm.template(), "Deployment")["spec"]["template"]["spec"]
    assert users == [(str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"]))]
