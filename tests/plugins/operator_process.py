"""The operator as a child process against the real control plane and the ECR emulator.

The session's operator watches only the namespaces made by ``operated_namespace`` (a kopf glob on
their prefix), never the whole cluster: tests elsewhere create EcrImageTags that no operator may touch
(status written by hand, finalizers they set), and must pass whether this operator is running or not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from tests.plugins.control_plane import fresh_namespace

# Short retry delays so transient-failure tests converge in seconds, not minutes.
TEST_ENV = {"ECR_TAG_OPERATOR_TRANSIENT_RETRY_DELAY": "2", "ECR_TAG_OPERATOR_MAX_ATTEMPTS": "3"}

OPERATED_PREFIX = "operated"


@pytest.fixture(scope="session")
def operator_process(
    control_plane: KubeCluster, ecr_server: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the session's end-to-end tests; its log tail is printed when a test fails."""
    proc = OperatorProcess(
        control_plane.kubeconfig_path,
        {**ecr_server.env, **TEST_ENV},
        # kopf's namespace globs: it watches Namespaces and serves each matching one as it appears.
        args=["--namespace", f"{OPERATED_PREFIX}-*"],
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def operated_namespace(control_plane: KubeCluster, operator_process: OperatorProcess) -> Iterator[str]:
    """A fresh namespace for one test, served by the session's operator."""
    with fresh_namespace(control_plane, OPERATED_PREFIX) as name:
        yield name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    proc = getattr(item, "funcargs", {}).get("operator_process")
    if report.failed and isinstance(proc, OperatorProcess):  # type: ignore[attr-defined]
        report.sections.append(("operator log (tail)", proc.log_tail(120)))  # type: ignore[attr-defined]
    return report
