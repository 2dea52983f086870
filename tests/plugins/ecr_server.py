"""Fixtures for the ECR emulator (moto server with ECR corrections) running in its own process.

- ``ecr_server`` (session): the running emulator; ``.endpoint_url``, ``.control`` (EmulatorControl),
  ``.env`` (environment for a child process: endpoints, dummy credentials, region).
- ``ecr`` (function): a second session emulator, reset (moto's state, fault rules, call counts) for
  each test. The first one serves the session's operator, which keeps checking the e2e tests'
  resources for drift, so it is never reset and its counts are read per repository.
- ``ecr_client`` (function): a boto3 ECR client on it that never retries, so faults are seen as sent.
- ``aws_client_factory``: ``make(service, total_max_attempts=1, access_key_id=..., secret_access_key=...)``
  for other clients (IAM, STS, a retrying ECR client, ...).

Nothing here changes ``os.environ``: endpoints and credentials are passed explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from ecr_tag_localenv.ecr_launcher import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    REGION,
    EmulatorStartError,
    RunningEmulator,
    start_emulator,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

AwsClientFactory = Callable[..., Any]


def aws_client(
    endpoint_url: str,
    service: str,
    total_max_attempts: int = 1,
    access_key_id: str = DUMMY_ACCESS_KEY_ID,
    secret_access_key: str = DUMMY_SECRET_ACCESS_KEY,
) -> Any:
    """A boto3 client for ``service`` on the emulator; ``total_max_attempts=1`` means no retries at all.

    (botocore's ``max_attempts`` counts *retries*, so ``{"max_attempts": 1}`` would still retry once.)
    """
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(retries={"mode": "standard", "total_max_attempts": total_max_attempts}),
    )


def emulator_or_fail() -> Iterator[RunningEmulator]:
    """A running emulator for a fixture to yield from, or a test failure carrying its output."""
    with ExitStack() as stack:
        failure = ""
        try:
            server = stack.enter_context(start_emulator())
        except EmulatorStartError as exc:
            failure = str(exc)
        if failure:
            # Outside the except block: the report shows the emulator's output once, without a chain.
            pytest.fail(failure, pytrace=False)
        yield server


@pytest.fixture(scope="session")
def ecr_server() -> Iterator[RunningEmulator]:
    """The emulator process for the whole session, stopped (and reaped) at the end whatever happens."""
    yield from emulator_or_fail()


@pytest.fixture(scope="session")
def isolated_ecr_server() -> Iterator[RunningEmulator]:
    """An emulator that no operator of the session talks to: tests may reset it and count every call."""
    yield from emulator_or_fail()


@pytest.fixture
def ecr(isolated_ecr_server: RunningEmulator) -> RunningEmulator:
    """The isolated emulator with moto's state, fault rules and call counts reset for this test."""
    if isolated_ecr_server.process.poll() is not None:
        pytest.fail(f"the ECR emulator has exited:\n{isolated_ecr_server.log_text()}", pytrace=False)
    isolated_ecr_server.control.reset_all()
    return isolated_ecr_server


@pytest.fixture
def aws_client_factory(ecr: RunningEmulator) -> AwsClientFactory:
    def make(service: str, total_max_attempts: int = 1, **credentials: str) -> Any:
        return aws_client(ecr.endpoint_url, service, total_max_attempts, **credentials)

    return make


@pytest.fixture
def ecr_client(ecr: RunningEmulator) -> ECRClient:
    client: ECRClient = aws_client(ecr.endpoint_url, "ecr")
    return client
