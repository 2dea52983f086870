"""What a namespace may do with one spec: the grants of its EcrTagPolicies, asked as a Permission."""

from __future__ import annotations

from typing import Any

import pytest

from ecr_tag_operator import authz
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.spec import parse_spec

OWN, REGION = "111122223333", "eu-west-1"
ROLE = "arn:aws:iam::444455556666:role/ecr-tags-team-a"
POLICY = parse_policy(
    "team-a",
    {
        "namespaces": ["team-a"],
        "registries": [
            {
                "write": [{"repositories": ["team-a/*"], "tags": ["prod", "staging"]}],
                "read": [{"repositories": ["shared/base"]}],
            },
            {"registryId": "444455556666", "roleArn": ROLE, "write": [{"repositories": ["team-a/*"]}]},
        ],
    },
    OWN,
)


def spec(**overrides: Any) -> Any:
    return parse_spec({"repositoryName": "team-a/web", "source": {"tag": "build-1"}, "tags": ["prod"]} | overrides)


def grants_of(namespace: str) -> Any:
    return authz.namespace_grants([POLICY], namespace, {}, OWN, REGION)


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        ({}, True),
        ({"tags": ["prod", "latest"]}, False),  # a tag outside the grant
        ({"repositoryName": "team-ab/web"}, False),  # globs stay inside a segment
        ({"source": {"tag": "v1", "repositoryName": "shared/base"}}, True),  # a read grant serves a source
        ({"repositoryName": "shared/base", "source": {"tag": "v1"}}, False),  # ...but never a target
        ({"region": "us-east-1"}, False),  # an unlisted region
        ({"registryId": "999988887777"}, False),  # another account
    ],
)
def test_permission_follows_the_grants(overrides: dict[str, Any], allowed: bool) -> None:
    got = authz.permission(spec(**overrides), "team-a", grants_of("team-a"))
    assert (got.refused is None) == allowed, got.refused
    assert got.namespace == "team-a"


def test_observe_mode_needs_only_a_read_grant() -> None:
    observe = spec(repositoryName="shared/base", mode="Observe")
    assert authz.permission(observe, "team-a", grants_of("team-a")).refused is None


def test_the_role_is_the_one_the_policy_names_for_that_registry() -> None:
    got = authz.permission(spec(registryId="444455556666"), "team-a", grants_of("team-a"))
    assert got.refused is None
    assert got.role_arn == ROLE
    assert got.source_role_arn == ROLE
    own = authz.permission(spec(), "team-a", grants_of("team-a"))
    assert own.role_arn is None  # the operator's own credentials in its own account


def test_a_namespace_no_policy_selects_may_do_nothing() -> None:
    got = authz.permission(spec(), "team-b", grants_of("team-b"))
    assert got.refused == "no EcrTagPolicy grants namespace team-b anything"


def test_a_delete_is_asked_per_tag() -> None:
    assert authz.may_delete(spec(), "prod", grants_of("team-a"))
    assert not authz.may_delete(spec(), "latest", grants_of("team-a"))
