"""docs/iam-policy*.json allow exactly the ECR operations the operator calls, on repositories only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import repo_root
from ecr_tag_operator import ecr

DOCS = repo_root() / "docs"
READS = {"ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"}
WRITES = {"ecr:PutImage", "ecr:BatchDeleteImage"}


def _statements(path: Path) -> list[dict[str, Any]]:
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = policy["Statement"]
    return statements


def test_the_operator_calls_exactly_these_operations() -> None:
    # Every ECR call goes through Boto3Ecr._call, which knows only the operations in _SNAKE.
    assert {f"ecr:{op}" for op in ecr._SNAKE} == READS | WRITES


@pytest.mark.parametrize("name", ["iam-policy.json", "iam-policy-scoped.json"])
def test_policy_allows_exactly_the_calls(name: str) -> None:
    statements = _statements(DOCS / name)
    allowed: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = set(statement["Action"])
        assert not any("*" in a for a in actions), statement
        # Reads and writes in separate statements, so either can be scoped on its own.
        assert actions in (READS, WRITES), statement
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        assert resources
        for resource in resources:
            assert resource.startswith("arn:aws:ecr:"), resource
            assert ":repository/" in resource, resource
        allowed |= actions
    assert allowed == {f"ecr:{op}" for op in ecr._SNAKE}


def test_scoped_example_names_team_a_repositories() -> None:
    for statement in _statements(DOCS / "iam-policy-scoped.json"):
        assert statement["Resource"] == "arn:aws:ecr:REGION:ACCOUNT:repository/team-a/*"
