"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from tests.plugins.control_plane import fresh_namespace
from tests.plugins.ecr_server import aws_client
from tests.plugins.operator_process import OPERATED_PREFIX, policy_yaml

from .helpers import PolicyApply
from .oci_cli import OciClients


@pytest.fixture
def ecr_session_client(ecr_server: RunningEmulator) -> Any:
    """An ECR client on the session's emulator, which the shared operator uses too: tests keep to
    repositories of their own instead of resetting it."""
    return aws_client(ecr_server.endpoint_url, "ecr", 3)


@pytest.fixture
def oci_clients(tmp_path_factory: pytest.TempPathFactory) -> OciClients:
    """crane, oras and cosign with a HOME of their own (a missing binary fails the test that runs it)."""
    return OciClients(tmp_path_factory.mktemp("oci-home"))


@pytest.fixture
def policies(control_plane: KubeCluster, operator_process: OperatorProcess) -> Iterator[PolicyApply]:
    """``apply(name, spec)`` creates or replaces an EcrTagPolicy; every one is deleted afterwards."""
    made: set[str] = set()

    def put(name: str, spec: dict[str, Any]) -> str:
        made.add(name)
        control_plane.kubectl("apply", "-f", "-", input=policy_yaml(name, spec))
        return name

    try:
        yield put
    finally:
        for name in sorted(made):
            control_plane.kubectl("delete", "ecrtagpolicy", name, "--ignore-not-found", check=False)


@pytest.fixture
def tenants(control_plane: KubeCluster, operator_process: OperatorProcess) -> Iterator[Callable[[], str]]:
    """``new()`` makes a namespace the session's operator serves and no policy grants yet. Its
    EcrImageTags are deleted afterwards (their finalizers handled) before the namespace: with no
    namespace controller, a deleted namespace keeps its objects, and the operator would go on checking
    them for drift in later tests."""
    with contextlib.ExitStack() as stack:

        def new() -> str:
            name = stack.enter_context(fresh_namespace(control_plane, OPERATED_PREFIX))
            stack.callback(
                control_plane.kubectl,
                *("delete", "ecrimagetags", "--all", "-n", name, "--timeout=180s"),
                check=False,
                timeout=200,
            )
            return name

        yield new
