"""Tag ownership and namespace rules: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from ecr_tag_operator.authz import forbidden, parse_patterns, patterns_for, role_for
from ecr_tag_operator.ownership import Claim, claim_of, claims, contested
from ecr_tag_operator.spec import parse_spec


def meta(name: str, created: str, ns: str = "team-a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": ns, "creationTimestamp": created, **extra}


def raw(source_tag: str, tags: list[str], repo: str = "team-a/web", **extra: Any) -> dict[str, Any]:
    return {"repositoryName": repo, "source": {"tag": source_tag}, "tags": tags, **extra}


def index_of(*resources: tuple[dict[str, Any], dict[str, Any]]) -> dict[Any, list[Claim]]:
    out: dict[Any, list[Claim]] = {}
    for m, s in resources:
        for key, claim in claims(m, s, "us-east-1").items():
            out.setdefault(key, []).append(claim)
    return out


def owners_for(m: dict[str, Any], s: dict[str, Any], index: dict[Any, list[Claim]]) -> dict[str, str]:
    spec = parse_spec(s)
    return contested(spec, claim_of(m, spec, "us-east-1"), lambda k: index.get(k, []), "us-east-1")


def test_oldest_claim_wins_and_the_loser_is_told_who() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod", "a-only"]))
    b = (meta("b", "2026-01-02T00:00:00Z", ns="team-b"), raw("build-2", ["prod"]))
    index = index_of(a, b)
    assert owners_for(*a, index) == {}
    assert owners_for(*b, index) == {"prod": "team-a/a"}


def test_same_creation_time_breaks_ties_by_namespace_then_name() -> None:
    a = (meta("z", "2026-01-01T00:00:00Z", ns="aaa"), raw("build-1", ["prod"]))
    b = (meta("a", "2026-01-01T00:00:00Z", ns="bbb"), raw("build-2", ["prod"]))
    index = index_of(a, b)
    assert owners_for(*b, index) == {"prod": "aaa/z"}
    assert owners_for(*a, index) == {}


def test_claims_of_the_same_source_do_not_conflict() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    b = (meta("b", "2026-01-02T00:00:00Z"), raw("build-1", ["prod"]))
    assert owners_for(*b, index_of(a, b)) == {}


def test_other_repositories_regions_and_registries_do_not_conflict() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    others = [
        raw("build-2", ["prod"], repo="team-a/api"),
        raw("build-2", ["prod"], region="eu-west-1"),
        raw("build-2", ["prod"], registryId="123456789012"),
    ]
    for n, s in enumerate(others):
        b = (meta(f"b{n}", "2026-01-02T00:00:00Z"), s)
        assert owners_for(*b, index_of(a, b)) == {}


def test_observe_invalid_and_deleting_resources_claim_nothing() -> None:
    assert claims(meta("o", "t"), raw("b", ["prod"], mode="Observe"), "us-east-1") == {}
    assert claims(meta("i", "t"), {"repositoryName": "X"}, "us-east-1") == {}
    assert claims(meta("d", "t", deletionTimestamp="2026-01-01T00:00:00Z"), raw("b", ["p"]), "us-east-1") == {}


def test_winner_gone_next_claimant_takes_over() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    b = (meta("b", "2026-01-02T00:00:00Z"), raw("build-2", ["prod"]))
    c = (meta("c", "2026-01-03T00:00:00Z"), raw("build-3", ["prod"]))
    assert owners_for(*c, index_of(a, b, c)) == {"prod": "team-a/a"}
    assert owners_for(*c, index_of(b, c)) == {"prod": "team-a/b"}
    assert owners_for(*b, index_of(b, c)) == {}


@pytest.mark.parametrize(
    ("patterns", "repo", "source_repo", "allowed"),
    [
        ("team-a/*,shared/base", "team-a/web", None, True),
        ("team-a/*,shared/base", "team-b/web", None, False),
        ("team-a/*,shared/base", "team-a/web", "shared/base", True),
        ("team-a/*", "team-a/web", "team-b/build", False),
        ("*", "anything/at-all", None, True),
        ("", "team-a/web", None, False),
        ("123456789012:team-a/*", "team-a/web", None, False),
    ],
)
def test_repository_rules(patterns: str, repo: str, source_repo: str | None, allowed: bool) -> None:
    source: dict[str, Any] = {"tag": "b"} | ({"repositoryName": source_repo} if source_repo else {})
    spec = parse_spec({"repositoryName": repo, "source": source, "tags": ["t"]})
    why = forbidden(spec, parse_patterns(patterns), "team-a")
    assert (why is None) == allowed
    if why:
        assert "namespace team-a may not use" in why


def test_account_prefixed_pattern_matches_that_account_only() -> None:
    spec = parse_spec(
        {"repositoryName": "team-a/web", "registryId": "123456789012", "source": {"tag": "b"}, "tags": ["t"]}
    )
    assert forbidden(spec, ["123456789012:team-a/*"], "ns") is None
    assert forbidden(spec, ["210987654321:team-a/*"], "ns") is not None


def test_namespace_annotation_replaces_the_default() -> None:
    assert patterns_for({"ecrtag.dev/allowed-repositories": "a/*, b/c"}, ["*"]) == ("a/*", "b/c")
    assert patterns_for({}, ["*"]) == ("*",)
    assert patterns_for(None, []) == ()


def test_roles_need_the_operators_allowance() -> None:
    ann = {"ecrtag.dev/assume-role-arn": "arn:aws:iam::123456789012:role/promoter"}
    assert role_for(ann, ["arn:aws:iam::123456789012:role/*"], "ns") == (ann["ecrtag.dev/assume-role-arn"], None)
    role, why = role_for(ann, [], "ns")
    assert role is None
    assert why is not None
    assert "allowedRoleArns" in why
    assert role_for({}, ["*"], "ns") == (None, None)
