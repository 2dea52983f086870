"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from typing import Any

import pytest

from ecr_tag_localenv.ecr_launcher import RunningEmulator
from tests.plugins.ecr_server import aws_client

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
