"""The operator as a child process against the real control plane and the ECR emulator.

The session's operator watches only the namespaces made by ``operated_namespace`` (a kopf glob on
their prefix), never the whole cluster: tests elsewhere create EcrImageTags that no operator may touch
(status written by hand, finalizers they set), and must pass whether this operator is running or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from tests.plugins.control_plane import fresh_namespace

# Short retry delays so transient-failure tests converge in seconds, not minutes; a drift tick of 2 s
# so that a grant given or lifted shows within seconds; copy progress every second, so that a copy of
# a few seconds shows it more than once.
TEST_ENV = {
    "ECR_TAG_OPERATOR_TRANSIENT_RETRY_DELAY": "2",
    "ECR_TAG_OPERATOR_MAX_ATTEMPTS": "3",
    "ECR_TAG_OPERATOR_DRIFT_TICK": "2",
    "ECR_TAG_OPERATOR_COPY_PROGRESS_INTERVAL": "1",
}

OPERATED_PREFIX = "operated"
# Namespaces with this label are granted every repository of the emulator's account and region by
# the session's policy; tenancy tests make namespaces without it and grants of their own.
GRANTED_LABEL = "e2e.ecrtag.dev/granted"
SESSION_POLICY = "e2e-granted"


def policy_yaml(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "ecrtag.dev/v1alpha1", "kind": "EcrTagPolicy", "metadata": {"name": name}, "spec": spec}
    )


@pytest.fixture(scope="session")
def session_policy(control_plane: KubeCluster) -> Iterator[str]:
    """The EcrTagPolicy that grants the namespaces of ``operated_namespace`` everything in the
    operator's own account and region (nothing is allowed without a policy)."""
    spec = {
        "namespaceSelector": {"matchLabels": {GRANTED_LABEL: "true"}},
        "registries": [{"write": [{"repositories": ["**"]}]}],
    }
    control_plane.kubectl("apply", "-f", "-", input=policy_yaml(SESSION_POLICY, spec))
    try:
        yield SESSION_POLICY
    finally:
        control_plane.kubectl("delete", "ecrtagpolicy", SESSION_POLICY, "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def operator_process(
    control_plane: KubeCluster,
    ecr_server: RunningEmulator,
    session_policy: str,
    tmp_path_factory: pytest.TempPathFactory,
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
    """A fresh namespace for one test, served by the session's operator and granted by its policy."""
    with fresh_namespace(control_plane, OPERATED_PREFIX, {GRANTED_LABEL: "true"}) as name:
        yield name


@pytest.fixture
def ungranted_namespace(control_plane: KubeCluster, operator_process: OperatorProcess) -> Iterator[str]:
    """A fresh namespace the session's operator serves but no policy of the session grants."""
    with fresh_namespace(control_plane, OPERATED_PREFIX) as name:
        yield name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    proc = getattr(item, "funcargs", {}).get("operator_process")
    if report.failed and isinstance(proc, OperatorProcess):  # type: ignore[attr-defined]
        report.sections.append(("operator log (tail)", proc.log_tail(120)))  # type: ignore[attr-defined]
    return report
