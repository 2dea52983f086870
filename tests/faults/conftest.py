"""Fixtures for the fault tests: a control plane, an ECR emulator and operators of their own.

Nothing here is shared with tests/e2e: these tests kill and restart their operators, inject faults
into ECR and restart kube-apiserver, none of which may leak into other tests.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import (
    BinariesError,
    ControlPlane,
    ControlPlaneError,
    ensure_binaries,
)
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from tests.plugins.control_plane import OPERATOR_CRD, POLICY_CRD
from tests.plugins.ecr_server import aws_client, emulator_or_fail
from tests.plugins.operator_process import policy_yaml

# Short kopf retry delay so a transient failure is retried in seconds (the default is 20 s).
OPERATOR_TEST_ENV = {"ECR_TAG_OPERATOR_TRANSIENT_RETRY_DELAY": "2", "ECR_TAG_OPERATOR_MAX_ATTEMPTS": "3"}

# Extra environment for every operator these tests start, as a JSON object: a way to try candidate
# settings without changing code, e.g. FAULTS_OPERATOR_ENV='{"ECR_TAG_OPERATOR_WATCH_CLIENT_TIMEOUT": "20"}'.
EXTRA_OPERATOR_ENV: dict[str, str] = json.loads(os.environ.get("FAULTS_OPERATOR_ENV") or "{}")

OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture(scope="package")
def fault_bin_dir() -> Path:
    failure = ""
    try:
        return ensure_binaries()
    except BinariesError as exc:
        failure = f"no control-plane binaries: {exc}"
    pytest.fail(failure, pytrace=False)


def start_control_plane(bin_dir: Path) -> ControlPlane:
    """A started local control plane with the operator's CRD Established; fails the test otherwise."""
    plane = ControlPlane(bin_dir)
    failure = ""
    try:
        plane.start()
        plane.install_crds(OPERATOR_CRD)
        plane.install_crds(POLICY_CRD)
        # Nothing is allowed without a policy: the fault tests' namespaces may use every repository
        # of the emulator's account and region (etcd keeps it across a control-plane restart).
        spec = {"namespaceSelector": {}, "registries": [{"write": [{"repositories": ["**"]}]}]}
        plane.kubectl("apply", "-f", "-", input=policy_yaml("faults-allow-all", spec))
        return plane
    except ControlPlaneError as exc:
        failure = f"the local control plane did not start: {exc}"
    plane.stop()
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="package")
def fault_cluster(fault_bin_dir: Path) -> Iterator[ControlPlane]:
    """kube-apiserver + etcd for the fault tests that do not restart it."""
    plane = start_control_plane(fault_bin_dir)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="package")
def fault_ecr_server() -> Iterator[RunningEmulator]:
    yield from emulator_or_fail()


@pytest.fixture
def fault_ecr(fault_ecr_server: RunningEmulator) -> Iterator[RunningEmulator]:
    """The emulator with its state, fault rules and call counts reset before and faults cleared after."""
    if fault_ecr_server.process.poll() is not None:
        pytest.fail(f"the ECR emulator has exited:\n{fault_ecr_server.log_text()}", pytrace=False)
    fault_ecr_server.control.reset_all()
    try:
        yield fault_ecr_server
    finally:
        fault_ecr_server.control.clear_faults()


@pytest.fixture
def ecr_admin(fault_ecr: RunningEmulator) -> Any:
    """The test's own ECR client (seeding, checking): it retries, so injected faults do not fail the test."""
    return aws_client(fault_ecr.endpoint_url, "ecr", 10)


def new_namespace(cluster: ControlPlane) -> str:
    name = f"faults-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def operators(fault_ecr: RunningEmulator, tmp_path: Path) -> Iterator[OperatorFactory]:
    """``operators(cluster, namespace, env={...}, kubeconfig=...)``: a (not yet started) operator watching one namespace,
    on the test's own emulator; every one made is stopped at the end, and its log tail is shown on failure."""
    made: list[OperatorProcess] = []

    def make(
        cluster: ControlPlane, namespace: str, env: Mapping[str, str] | None = None, kubeconfig: Path | None = None
    ) -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig or cluster.kubeconfig_path,
            {**fault_ecr.env, **OPERATOR_TEST_ENV, **EXTRA_OPERATOR_ENV, **(env or {})},
            args=["--namespace", namespace],
            log_path=tmp_path / f"operator-{len(made) + 1}.log",
        )
        made.append(proc)
        return proc

    make.made = made  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for proc in made:
            proc.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    factory = getattr(item, "funcargs", {}).get("operators")
    if report.failed and factory is not None:  # type: ignore[attr-defined]
        for i, proc in enumerate(getattr(factory, "made", []), start=1):
            report.sections.append((f"operator {i} log (tail)", proc.log_tail(150)))  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="module")
def restartable_cluster(fault_bin_dir: Path) -> Iterator[ControlPlane]:
    """A control plane apart from ``fault_cluster``, for the tests that restart it."""
    plane = start_control_plane(fault_bin_dir)
    try:
        yield plane
    finally:
        plane.stop()
