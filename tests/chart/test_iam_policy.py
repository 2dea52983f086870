"""docs/iam*.json: the ECR policies allow exactly the ECR operations the operator calls, on repositories
only; the assume-only policy exactly what AssumeRole with attribution needs; the target account's trust
policy checks the session name, SourceIdentity and session tags the operator sends."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import repo_root
from ecr_tag_operator import ecr
from ecr_tag_operator.grants import NAMESPACE_TAG, ROLE_ARN_PATTERN, source_identity

DOCS = repo_root() / "docs"
# DescribeRepositories (tag mutability) and DescribeImages (archived images) are reads too, and so are a
# copy's reads of its source: GetDownloadUrlForLayer (blobs) and ListImageReferrers (signatures, SBOMs).
READS = {
    "ecr:BatchGetImage",
    "ecr:BatchCheckLayerAvailability",
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:ListImageReferrers",
}
# A copy writes blobs into its target with the layer-upload calls.
WRITES = {
    "ecr:PutImage",
    "ecr:BatchDeleteImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
}
ASSUME = {"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}
ECR_POLICIES = ["iam-policy.json", "iam-policy-scoped.json", "iam-policy-target-account.json"]


def _statements(path: Path) -> list[dict[str, Any]]:
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = policy["Statement"]
    return statements


def test_the_operator_calls_exactly_these_operations() -> None:
    # Every ECR call goes through Boto3Ecr._call, which knows only the operations in _SNAKE.
    assert {f"ecr:{op}" for op in ecr._SNAKE} == READS | WRITES


def test_every_iam_document_is_a_policy_that_a_test_reads() -> None:
    names = sorted(p.name for p in DOCS.glob("iam*.json"))
    assert names == sorted([*ECR_POLICIES, "iam-policy-assume-only.json", "iam-trust-policy-target-account.json"])
    for name in names:
        assert _statements(DOCS / name), name


@pytest.mark.parametrize("name", ECR_POLICIES)
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


def test_own_account_policy_is_scoped_to_one_account_and_region() -> None:
    for statement in _statements(DOCS / "iam-policy.json"):
        assert statement["Resource"] == "arn:aws:ecr:REGION:ACCOUNT:repository/*"


def test_target_account_policy_is_scoped_by_account_region_and_source_identity() -> None:
    for statement in _statements(DOCS / "iam-policy-target-account.json"):
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert resource.startswith("arn:aws:ecr:eu-west-1:444455556666:repository/"), resource
        assert statement["Condition"]["StringEquals"] == {
            "aws:RequestedRegion": "eu-west-1",
            "aws:SourceIdentity": source_identity("team-a"),
        }


def test_assume_only_policy_allows_exactly_assume_role_with_attribution() -> None:
    (statement,) = _statements(DOCS / "iam-policy-assume-only.json")
    assert statement["Effect"] == "Allow"
    assert set(statement["Action"]) == ASSUME
    assert statement["Resource"]
    for resource in statement["Resource"]:
        # Exact roles, as an EcrTagPolicy's roleArn names them: never a wildcard.
        assert re.fullmatch(ROLE_ARN_PATTERN, resource), resource


def test_trust_policy_checks_what_the_operator_sends() -> None:
    (statement,) = _statements(DOCS / "iam-trust-policy-target-account.json")
    assert statement["Effect"] == "Allow"
    assert set(statement["Action"]) == ASSUME
    assert statement["Principal"] == {"AWS": "arn:aws:iam::111122223333:role/ecr-tag-operator"}
    condition = statement["Condition"]
    # What the operator sends for namespace team-a (ecr.assume_role_args) passes the conditions;
    # team-ab's does not.
    sent = ecr.assume_role_args("team-a")
    tags = {t["Key"]: t["Value"] for t in sent["Tags"]}
    assert condition["StringEquals"] == {
        "sts:SourceIdentity": sent["SourceIdentity"],
        f"aws:RequestTag/{NAMESPACE_TAG}": tags[NAMESPACE_TAG],
    }
    (pattern,) = condition["StringLike"].values()
    assert fnmatch.fnmatchcase(sent["RoleSessionName"], pattern)
    assert not fnmatch.fnmatchcase(ecr.assume_role_args("team-ab")["RoleSessionName"], pattern)
    assert set(condition["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(tags)
