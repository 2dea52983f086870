"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from typing import Any

import pytest

from ecr_tag_localenv.ecr_launcher import RunningEmulator
from tests.plugins.ecr_server import aws_client


@pytest.fixture
def ecr_session_client(ecr_server: RunningEmulator) -> Any:
    """An ECR client on the session's emulator, which the shared operator uses too: tests keep to
    repositories of their own instead of resetting it."""
    return aws_client(ecr_server.endpoint_url, "ecr", 3)
