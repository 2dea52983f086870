"""EcrTagPolicy grants: the glob grammar, label selectors, parsing, the merge rule, decisions,
STS attribution, and the policy's status. Pure: no process, no clock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_tag_operator.grants import (
    INVALID_POLICY,
    NAME_TAG,
    NAMESPACE_PATTERN,
    NAMESPACE_TAG,
    REGION_PATTERN,
    ROLE_ARN_PATTERN,
    ROLE_CONFLICT,
    VALID,
    Conflict,
    LabelSelector,
    Location,
    NamespaceGrants,
    Policy,
    PolicyError,
    Source,
    Target,
    check_glob,
    find_conflicts,
    glob_match,
    matched_namespaces,
    matching,
    parse_policy,
    policy_status,
    selector_matches,
    session_name,
    session_tags,
    source_identity,
)
from ecr_tag_operator.spec import REGISTRY_PATTERN

OWN = "111122223333"
OTHER = "444455556666"
REGION = "eu-west-1"
ROLE_A = f"arn:aws:iam::{OWN}:role/ecr-tags-team-a"
ROLE_B = f"arn:aws:iam::{OWN}:role/ecr-tags-team-b"
ROLE_OTHER = f"arn:aws:iam::{OTHER}:role/ecr-tags"
STS_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")


def policy(name: str, *registries: dict[str, Any], namespaces: list[str] | None = None, **spec: Any) -> Policy:
    raw: dict[str, Any] = {"registries": list(registries), **spec}
    if namespaces is not None:
        raw["namespaces"] = namespaces
    return parse_policy(name, raw)


def write(*repositories: str, tags: list[str] | None = None, **entry: Any) -> dict[str, Any]:
    grant: dict[str, Any] = {"repositories": list(repositories)}
    if tags is not None:
        grant["tags"] = tags
    return {"write": [grant], **entry}


def read(*repositories: str, **entry: Any) -> dict[str, Any]:
    return {"read": [{"repositories": list(repositories)}], **entry}


def grants(namespace: str, *policies: Policy, labels: dict[str, str] | None = None) -> NamespaceGrants:
    return NamespaceGrants.for_namespace(policies, namespace, labels or {}, OWN, REGION)


def target(repository: str, *tags: str, account: str | None = None, region: str | None = None) -> Target:
    return Target(account, region, repository, tags or ("prod",))


def source(repository: str, account: str | None = None, region: str | None = None) -> Source:
    return Source(account, region, repository)


# --------------------------------------------------------------------------------------------------
# the glob grammar

GLOBS = [
    # * stays inside one segment
    ("team-a*", "team-a", True),
    ("team-a*", "team-ab", True),
    ("team-a*", "team-ab/x", False),
    ("team-a*", "team-a/web", False),
    ("*", "web", True),
    ("*", "team-a/web", False),
    ("*/web", "team-a/web", True),
    ("*/web", "a/b/web", False),
    ("team-*/web", "team-a/web", True),
    ("team-*/web", "team-/web", True),
    ("team-*/web", "team-a/b/web", False),
    ("team-a/*", "team-a/web", True),
    ("team-a/*", "team-a/x/y", False),
    ("team-a/*", "team-a", False),
    ("team-a/*-svc", "team-a/web-svc", True),
    ("team-a/*-svc", "team-a/web-db", False),
    # ? is one character, never /
    ("team-?", "team-a", True),
    ("team-?", "team-ab", False),
    ("team-?", "team-", False),
    ("a?b", "a/b", False),
    # ** is whole segments
    ("team-a/**", "team-a/web", True),
    ("team-a/**", "team-a/x/y", True),
    ("team-a/**", "team-a", False),
    ("team-a/**", "team-ab/x", False),
    ("**", "web", True),
    ("**", "a/b/c", True),
    ("**/web", "web", True),
    ("**/web", "a/web", True),
    ("**/web", "a/b/web", True),
    ("**/web", "a/webx", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**/b", "ab", False),
    ("a/**/**/b", "a/b", True),
    ("a/**/**/b", "a/x/y/b", True),
    # literal characters, exactly and case-sensitively
    ("team.a/web", "team.a/web", True),
    ("team.a/web", "teamxa/web", False),  # "." is not a regex wildcard
    ("team_a/web", "team_a/web", True),
    ("shared/base-images", "shared/base-images", True),
    ("shared/base-images", "shared/base-images/x", False),
    ("shared/base-images", "shared/base", False),
    # tags use the same matcher
    ("*", "prod", True),
    ("v1.*", "v1.2.3", True),
    ("v1.*", "v10", False),
    ("release-?", "release-1", True),
    ("Prod", "prod", False),
    ("prod", "prod", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), GLOBS, ids=[f"{p}~{n}" for p, n, _ in GLOBS])
def test_glob_grammar(pattern: str, name: str, expected: bool) -> None:
    try:
        check_glob(pattern)  # every pattern here is valid, as a repository glob or else as a tag glob
    except ValueError:
        check_glob(pattern, tag=True)
    assert glob_match(pattern, name) is expected


BAD_GLOBS = [
    ("team-a**", False, "** must be a whole path segment"),
    ("**x/web", False, "** must be a whole path segment"),
    ("a/***", False, "** must be a whole path segment"),
    ("/team-a", False, "empty path segment"),
    ("team-a/", False, "empty path segment"),
    ("a//b", False, "empty path segment"),
    ("Team-A/*", False, "not a repository glob"),
    ("team-[ab]/*", False, "not a repository glob"),
    ("", False, "not a repository glob"),
    ("a" * 257, False, "not a repository glob"),
    ("a/b", True, "not a tag glob"),
    ("pr[o]d", True, "not a tag glob"),
    ("a" * 129, True, "not a tag glob"),
]


@pytest.mark.parametrize(("pattern", "tag", "message"), BAD_GLOBS, ids=[p[:20] or "empty" for p, _, _ in BAD_GLOBS])
def test_bad_globs_are_refused(pattern: str, tag: bool, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_glob(pattern, tag=tag)


# --------------------------------------------------------------------------------------------------
# label selectors: Kubernetes semantics

SELECTORS: list[tuple[dict[str, Any], dict[str, str], bool]] = [
    ({}, {}, True),
    ({}, {"team": "a"}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "a", "env": "dev"}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
    ({"matchLabels": {"team": "a"}}, {}, False),
    ({"matchLabels": {"team": "a", "env": "prod"}}, {"team": "a", "env": "dev"}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, {"team": "b"}, True),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, {"team": "c"}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {"team": "b"}, True),
    ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {"team": "a"}, False),
    # NotIn also holds when the label is absent (apimachinery labels.Requirement.Matches).
    ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
    ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"other": "x"}, False),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": "a"}, False),
    # matchLabels and every expression are ANDed.
    (
        {
            "matchLabels": {"tier": "prod"},
            "matchExpressions": [
                {"key": "team", "operator": "In", "values": ["a"]},
                {"key": "frozen", "operator": "DoesNotExist"},
            ],
        },
        {"tier": "prod", "team": "a"},
        True,
    ),
    (
        {
            "matchLabels": {"tier": "prod"},
            "matchExpressions": [
                {"key": "team", "operator": "In", "values": ["a"]},
                {"key": "frozen", "operator": "DoesNotExist"},
            ],
        },
        {"tier": "prod", "team": "a", "frozen": "yes"},
        False,
    ),
    ({"matchLabels": {"example.com/team": "a"}}, {"example.com/team": "a"}, True),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTORS)
def test_label_selector(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(LabelSelector.model_validate(selector), labels) is expected


# --------------------------------------------------------------------------------------------------
# parsing

VALID_REGISTRY = {"write": [{"repositories": ["team-a/*"]}]}

BAD_SPECS: list[tuple[dict[str, Any] | None, str]] = [
    (None, "spec.registries: Field required"),
    ({"registries": [VALID_REGISTRY]}, "needs namespaceSelector, namespaces, or both"),
    ({"namespaces": ["a"], "registries": []}, "spec.registries: List should have at least 1 item"),
    ({"namespaces": [], "registries": [VALID_REGISTRY]}, "spec.namespaces: List should have at least 1 item"),
    ({"namespaces": ["Team_A"], "registries": [VALID_REGISTRY]}, "spec.namespaces: not namespace names: Team_A"),
    ({"namespaces": ["a", "a"], "registries": [VALID_REGISTRY]}, "namespaces must be unique"),
    ({"namespaces": ["a"], "registries": [{}]}, "spec.registries[0]: a registry needs at least one write or read"),
    (
        {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "registryId": "1234"}]},
        "spec.registries[0].registryId: String should match pattern",
    ),
    (
        {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "regions": ["eu-west"]}]},
        "spec.registries[0].regions: not AWS regions (such as eu-west-1): eu-west",
    ),
    (
        {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "regions": []}]},
        "spec.registries[0].regions: List should have at least 1 item",
    ),
    (
        {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "roleArn": "arn:aws:iam::111122223333:role/ecr-*"}]},
        "spec.registries[0].roleArn: String should match pattern",
    ),
    (
        {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "roleArn": "arn:aws:iam::1111:role/x"}]},
        "spec.registries[0].roleArn: String should match pattern",
    ),
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["team-a**"]}]}]},
        "spec.registries[0].write[0].repositories: 'team-a**': ** must be a whole path segment",
    ),
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["team-a/*"], "tags": ["a/b"]}]}]},
        "spec.registries[0].write[0].tags: 'a/b' is not a tag glob",
    ),
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["team-a/*"], "tags": []}]}]},
        "spec.registries[0].write[0].tags: List should have at least 1 item",
    ),
    (
        {"namespaces": ["a"], "registries": [{"read": [{"repositories": ["shared/*"], "tags": ["x"]}]}]},
        "spec.registries[0].read[0].tags: Extra inputs are not permitted",
    ),
    # A misspelt field fails closed: dropped, "tag" would have left the grant on every tag.
    (
        {"namespaces": ["a"], "registries": [{"write": [{"repositories": ["team-a/*"], "tag": ["dev"]}]}]},
        "spec.registries[0].write[0].tag: Extra inputs are not permitted",
    ),
    (
        {"namespaces": ["a"], "namespaceSelectr": {}, "registries": [VALID_REGISTRY]},
        "spec.namespaceSelectr: Extra inputs are not permitted",
    ),
    (
        {
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]},
            "registries": [VALID_REGISTRY],
        },
        "spec.namespaceSelector.matchExpressions[0]: operator In needs at least one value",
    ),
    (
        {
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]},
            "registries": [VALID_REGISTRY],
        },
        "operator Exists takes no values",
    ),
    (
        {
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]},
            "registries": [VALID_REGISTRY],
        },
        "spec.namespaceSelector.matchExpressions[0].operator: Input should be 'In', 'NotIn', 'Exists' or 'DoesNotExist'",
    ),
    (
        {"namespaceSelector": {"matchLabels": {"bad key!": "a"}}, "registries": [VALID_REGISTRY]},
        "not valid labels: bad key!=a",
    ),
    # Within one policy, one registry and region has one role.
    (
        {
            "namespaces": ["a"],
            "registries": [
                {**VALID_REGISTRY, "registryId": OWN, "regions": ["eu-west-1", "us-east-1"], "roleArn": ROLE_A},
                {**VALID_REGISTRY, "registryId": OWN, "regions": ["us-east-1"], "roleArn": ROLE_B},
            ],
        },
        f"registries[0] and registries[1] name different roles for registryId {OWN}, region us-east-1: "
        f"{ROLE_A} and {ROLE_B}",
    ),
    (
        {"namespaces": ["a"], "registries": [VALID_REGISTRY, {**VALID_REGISTRY, "roleArn": ROLE_A}]},
        "registryId (own account), region (own region): the operator's own credentials and " + ROLE_A,
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_SPECS, ids=[m[:60] for _, m in BAD_SPECS])
def test_invalid_policies_are_refused_naming_the_field(raw: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("team-a", raw)
    assert message in str(info.value), str(info.value)
    assert info.value.name == "team-a"


def test_several_problems_are_reported_together_without_noise() -> None:
    raw = {"namespaces": ["a"], "registries": [{"regions": ["x"], "write": [{"repositories": ["a//b"]}]}]}
    with pytest.raises(PolicyError) as info:
        parse_policy("p", raw)
    problems = str(info.value).split("; ")
    assert [p.split(":")[0] for p in problems] == [
        "spec.registries[0].regions",
        "spec.registries[0].write[0].repositories",
    ]


def test_a_valid_policy_parses_with_defaults() -> None:
    parsed = parse_policy(
        "team-a",
        {
            "namespaceSelector": {"matchLabels": {"team": "a"}},
            "namespaces": ["team-a-dev"],
            "registries": [
                {
                    "registryId": OTHER,
                    "regions": ["eu-west-1"],
                    "roleArn": ROLE_OTHER,
                    "write": [{"repositories": ["team-a/*"], "tags": ["prod", "stable-*"]}],
                    "read": [{"repositories": ["shared/base-images"]}],
                },
                {"read": [{"repositories": ["shared/**"]}]},
            ],
        },
    )
    first, second = parsed.spec.registries
    assert (first.registry_id, first.regions, first.role_arn) == (OTHER, ("eu-west-1",), ROLE_OTHER)
    assert first.write[0].tags == ("prod", "stable-*")
    assert (second.registry_id, second.regions, second.role_arn, second.write) == (None, None, None, ())


def test_role_arns_with_paths_and_partitions_parse() -> None:
    for arn in (
        "arn:aws:iam::111122223333:role/ecr/team-a/promoter",
        "arn:aws-cn:iam::111122223333:role/promoter",
        "arn:aws-us-gov:iam::111122223333:role/a+b=c,d.e@f_g-h",
    ):
        p = parse_policy("p", {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "roleArn": arn}]})
        assert p.spec.registries[0].role_arn == arn


def test_another_account_without_a_role_is_refused_once_the_own_account_is_known() -> None:
    raw = {"namespaces": ["a"], "registries": [{**VALID_REGISTRY, "registryId": OTHER}]}
    parse_policy("p", raw)  # the own account unknown: only the merge rule can refuse it
    parse_policy("p", raw, own_account=OTHER)  # it is the operator's own account
    with pytest.raises(PolicyError) as info:
        parse_policy("p", raw, own_account=OWN)
    assert str(info.value) == (
        f"spec.registries[0]: registryId {OTHER} is not the operator's account ({OWN}) and needs a roleArn: "
        "the operator's own credentials are only used in its own account"
    )


# --------------------------------------------------------------------------------------------------
# which policies select a namespace


def test_namespaces_and_selector_each_select() -> None:
    by_name = policy("by-name", write("a/*"), namespaces=["team-a", "team-a-dev"])
    by_label = policy("by-label", write("a/*"), namespaceSelector={"matchLabels": {"team": "a"}})
    both = policy("both", write("a/*"), namespaces=["legacy"], namespaceSelector={"matchLabels": {"team": "a"}})
    everyone = policy("everyone", write("a/*"), namespaceSelector={})
    all_policies = [everyone, both, by_label, by_name]
    assert [p.name for p in matching(all_policies, "team-a", {})] == ["by-name", "everyone"]
    assert [p.name for p in matching(all_policies, "x", {"team": "a"})] == ["both", "by-label", "everyone"]
    assert [p.name for p in matching(all_policies, "legacy", {"team": "b"})] == ["both", "everyone"]
    assert [p.name for p in matching(all_policies, "y", {"team": "b"})] == ["everyone"]
    namespaces = {"team-a": {"team": "a"}, "team-a-dev": {}, "legacy": {}, "z": {"team": "b"}}
    assert matched_namespaces(both, namespaces) == ["legacy", "team-a"]
    assert matched_namespaces(everyone, namespaces) == ["legacy", "team-a", "team-a-dev", "z"]


# --------------------------------------------------------------------------------------------------
# decisions

TEAM_A = policy("team-a", write("team-a/*", read=[{"repositories": ["shared/base-images"]}]), namespaces=["team-a"])


def test_no_policy_allows_nothing() -> None:
    verdict = grants("team-a").decide(target("team-a/web"), source("team-a/web"))
    assert not verdict.allowed
    assert verdict.message == "no EcrTagPolicy grants namespace team-a anything"
    assert verdict.policies == ()
    assert (verdict.target_role, verdict.source_role) == (None, None)


def test_a_policy_for_another_namespace_allows_nothing() -> None:
    verdict = grants("team-b", TEAM_A).decide(target("team-a/web"), source("team-a/web"))
    assert verdict.message == "no EcrTagPolicy grants namespace team-b anything"


def test_write_grant_allows_target_and_same_repository_source() -> None:
    verdict = grants("team-a", TEAM_A).decide(target("team-a/web", "prod", "stable"), source("team-a/web"))
    assert verdict.allowed, verdict.message
    assert verdict.message == "granted by team-a"
    assert verdict.granted_by == ("team-a",)
    assert (verdict.target_account, verdict.target_region) == (OWN, REGION)
    assert (verdict.source_account, verdict.source_region) == (OWN, REGION)
    assert (verdict.target_role, verdict.source_role) == (None, None)  # the operator's own credentials


def test_the_message_names_what_is_missing_and_the_policies_considered() -> None:
    team_b = policy("team-b", write("team-b/*", registryId=OWN, regions=[REGION]), namespaces=["team-b"])
    verdict = grants("team-b", team_b).decide(target("team-a/web", account=OWN), source("team-b/web"))
    assert not verdict.allowed
    assert verdict.message == (
        f"namespace team-b may not write team-a/web:prod in {OWN}/{REGION} (policies considered: team-b)"
    )


def test_a_read_grant_never_allows_writing() -> None:
    g = grants("team-a", TEAM_A)
    verdict = g.decide(target("shared/base-images", "latest"), source("team-a/web"))
    assert not verdict.allowed
    assert "may not write shared/base-images:latest" in verdict.message
    assert not g.may_write(None, None, "shared/base-images", "latest")
    assert not g.may_delete(None, None, "shared/base-images", "latest")
    assert g.may_read(None, None, "shared/base-images")
    # ...and reading from it is what it is for.
    assert g.decide(target("team-a/web"), source("shared/base-images")).allowed


def test_the_source_needs_a_read_or_write_grant() -> None:
    g = grants("team-a", TEAM_A)
    verdict = g.decide(target("team-a/web"), source("team-b/web"))
    assert not verdict.allowed
    assert verdict.message == (
        f"namespace team-a may not read source team-b/web in {OWN}/{REGION} (policies considered: team-a)"
    )
    assert g.may_read(None, None, "team-a/api")  # a write grant also reads


def test_segment_aware_globs_in_grants() -> None:
    g = grants("team-a", policy("p", write("team-a*"), namespaces=["team-a"]))
    assert g.may_write(None, None, "team-ab", "prod")
    assert not g.may_write(None, None, "team-ab/x", "prod")
    verdict = g.decide(target("team-ab/x"), source("team-ab/x"))
    assert not verdict.allowed
    assert "may not write team-ab/x:prod" in verdict.message


def test_tag_globs_limit_a_write_grant() -> None:
    p = policy("p", write("team-a/web", tags=["dev-*", "pr-?"]), namespaces=["ns"])
    g = grants("ns", p)
    assert g.may_write(None, None, "team-a/web", "dev-123")
    assert g.may_write(None, None, "team-a/web", "pr-7")
    assert not g.may_write(None, None, "team-a/web", "pr-77")
    assert not g.may_write(None, None, "team-a/web", "prod")
    assert not g.may_delete(None, None, "team-a/web", "prod")
    assert g.may_read(None, None, "team-a/web")  # reads are per repository, whatever the tags
    verdict = g.decide(target("team-a/web", "dev-1", "prod", "latest"), source("team-a/web"))
    assert not verdict.allowed
    assert f"may not write tags prod, latest of team-a/web in {OWN}/{REGION}" in verdict.message
    many = tuple(f"t{i}" for i in range(8))
    verdict = g.decide(target("team-a/web", *many), source("team-a/web"))
    assert "may not write tags t0, t1, t2, t3, t4 and 3 more of team-a/web" in verdict.message


def test_tags_are_granted_across_several_grants_and_policies() -> None:
    dev = policy("dev", write("team-a/web", tags=["dev"]), namespaces=["ns"])
    prod = policy("prod", write("team-a/web", tags=["prod"]), namespaces=["ns"])
    verdict = grants("ns", dev, prod).decide(target("team-a/web", "dev", "prod"), source("team-a/web"))
    assert verdict.allowed
    assert verdict.granted_by == ("dev", "prod")
    assert verdict.message == "granted by dev, prod"


def test_account_and_region_are_part_of_every_grant() -> None:
    p = policy("p", write("team-a/*", registryId=OTHER, regions=["eu-west-1"], roleArn=ROLE_OTHER), namespaces=["ns"])
    g = grants("ns", p)
    assert g.decide(target("team-a/web", account=OTHER), source("team-a/web", account=OTHER)).allowed
    # Another account: an unprefixed grant once matched every account; now it is the grant's own.
    for account in (None, OWN, "999999999999"):
        verdict = g.decide(target("team-a/web", account=account), source("team-a/web", account=OTHER))
        assert not verdict.allowed
        shown = account or OWN
        assert f"may not write team-a/web:prod in {shown}/{REGION}: no policy grants it registry {shown}" in (
            verdict.message
        )
    # An unlisted region.
    verdict = g.decide(
        target("team-a/web", account=OTHER, region="us-east-1"), source("team-a/web", account=OTHER, region="us-east-1")
    )
    assert not verdict.allowed
    assert f"no policy grants it registry {OTHER} in us-east-1" in verdict.message
    assert [(r.location, r.role_arn) for r in g.registries()] == [(Location(OTHER, "eu-west-1"), ROLE_OTHER)]


def test_omitted_registry_and_regions_mean_the_operators_own() -> None:
    g = grants("ns", policy("p", write("team-a/*"), namespaces=["ns"]))
    assert g.may_write(None, None, "team-a/web", "prod")
    assert g.may_write(OWN, REGION, "team-a/web", "prod")
    assert not g.may_write(OWN, "us-east-1", "team-a/web", "prod")
    assert not g.may_write(OTHER, REGION, "team-a/web", "prod")
    assert [r.location for r in g.registries()] == [Location(OWN, REGION)]


def test_several_regions_in_one_entry() -> None:
    p = policy("p", write("team-a/*", regions=["eu-west-1", "us-east-1"]), namespaces=["ns"])
    g = grants("ns", p)
    assert g.may_write(None, "us-east-1", "team-a/web", "prod")
    assert g.may_write(None, None, "team-a/web", "prod")
    assert not g.may_write(None, "eu-central-1", "team-a/web", "prod")


def test_roles_come_from_the_policy_per_registry() -> None:
    p = policy(
        "p",
        write("team-a/*", roleArn=ROLE_A),
        read("shared/*", registryId=OTHER, roleArn=ROLE_OTHER),
        namespaces=["ns"],
    )
    verdict = grants("ns", p).decide(target("team-a/web"), source("shared/base", account=OTHER))
    assert verdict.allowed, verdict.message
    assert (verdict.target_role, verdict.source_role) == (ROLE_A, ROLE_OTHER)
    assert (verdict.source_account, verdict.source_region) == (OTHER, REGION)


def test_another_account_without_a_role_grants_nothing() -> None:
    # Parsed without the operator's account, the merge rule still never lends its credentials out.
    p = policy("p", read("shared/*", registryId=OTHER), write("team-a/*"), namespaces=["ns"])
    g = grants("ns", p)
    assert not g.may_read(OTHER, None, "shared/base")
    assert g.registry(OTHER, None) is None
    verdict = g.decide(target("team-a/web"), source("shared/base", account=OTHER))
    assert not verdict.allowed
    assert (
        f"may not read source shared/base in {OTHER}/{REGION}: policy p names no roleArn for {OTHER}/{REGION}, and the "
        f"operator's own credentials are only used in its own account {OWN}"
    ) in verdict.message
    assert [r.location for r in g.registries()] == [Location(OWN, REGION)]


def test_observe_only_needs_a_read_grant_on_the_target() -> None:
    g = grants("team-a", TEAM_A)
    assert g.decide(target("shared/base-images"), source("shared/base-images"), target_access="read").allowed
    verdict = g.decide(target("team-b/web"), source("team-a/web"), target_access="read")
    assert not verdict.allowed
    assert f"may not read team-b/web in {OWN}/{REGION}" in verdict.message


def test_both_target_and_source_problems_are_named() -> None:
    verdict = grants("team-a", TEAM_A).decide(target("team-b/web"), source("team-c/web"))
    assert verdict.message == (
        f"namespace team-a may not write team-b/web:prod in {OWN}/{REGION}; "
        f"may not read source team-c/web in {OWN}/{REGION} (policies considered: team-a)"
    )


# --------------------------------------------------------------------------------------------------
# the merge rule


def test_grants_of_several_policies_are_a_union() -> None:
    a = policy("a", write("team-a/*"), namespaces=["ns"])
    b = policy("b", read("shared/*"), namespaceSelector={"matchLabels": {"tier": "prod"}})
    g = grants("ns", a, b, labels={"tier": "prod"})
    assert g.policies == ("a", "b")
    assert g.conflicts == ()
    verdict = g.decide(target("team-a/web"), source("shared/base"))
    assert verdict.allowed
    assert verdict.granted_by == ("a", "b")
    # Without the label only one policy selects it.
    assert not grants("ns", a, b).decide(target("team-a/web"), source("shared/base")).allowed


def test_the_same_role_in_several_policies_is_no_conflict() -> None:
    a = policy("a", write("team-a/*", roleArn=ROLE_A), namespaces=["ns"])
    b = policy("b", read("shared/*", roleArn=ROLE_A), namespaces=["ns"])
    g = grants("ns", a, b)
    assert g.conflicts == ()
    assert g.decide(target("team-a/web"), source("shared/x")).target_role == ROLE_A


@pytest.mark.parametrize(
    ("role_a", "role_b"),
    [(ROLE_A, ROLE_B), (ROLE_A, None), (None, ROLE_B)],
    ids=["two-roles", "role-and-own-credentials", "own-credentials-and-role"],
)
def test_different_credentials_for_one_registry_are_a_conflict(role_a: str | None, role_b: str | None) -> None:
    a = policy("a", write("team-a/*", **({"roleArn": role_a} if role_a else {})), namespaces=["ns"])
    b = policy("b", read("shared/*", **({"roleArn": role_b} if role_b else {})), namespaces=["ns"])
    g = grants("ns", a, b)
    (conflict,) = g.conflicts
    assert conflict.location == Location(OWN, REGION)
    assert conflict.policies == ("a", "b")
    assert conflict.choices == (("a", role_a), ("b", role_b))
    # The registry is refused, read and write, for this namespace: never a guess.
    assert not g.may_write(None, None, "team-a/web", "prod")
    assert not g.may_read(None, None, "shared/x")
    assert g.registry(None, None) is None
    assert g.registries() == ()
    verdict = g.decide(target("team-a/web"), source("team-a/web"))
    assert not verdict.allowed
    shown_a = role_a or "the operator's own credentials"
    shown_b = role_b or "the operator's own credentials"
    assert verdict.message == (
        f"namespace ns may not write team-a/web:prod in {OWN}/{REGION}: policies name different credentials for "
        f"{OWN}/{REGION} (a: {shown_a}, b: {shown_b}), so it is refused until they agree (policies considered: a, b)"
    )
    assert (verdict.target_role, verdict.source_role) == (None, None)


def test_a_conflict_refuses_only_its_registry() -> None:
    a = policy("a", write("team-a/*", roleArn=ROLE_A), write("team-a/*", regions=["us-east-1"]), namespaces=["ns"])
    b = policy("b", write("team-a/*", roleArn=ROLE_B), namespaces=["ns"])
    g = grants("ns", a, b)
    assert [c.location for c in g.conflicts] == [Location(OWN, REGION)]
    assert g.may_write(None, "us-east-1", "team-a/web", "prod")
    assert not g.may_write(None, REGION, "team-a/web", "prod")


def test_one_policy_can_conflict_with_itself_once_defaults_resolve() -> None:
    # registryId omitted and registryId = the operator's account are one registry: parse cannot know.
    p = policy("p", write("team-a/*"), write("team-b/*", registryId=OWN, roleArn=ROLE_A), namespaces=["ns"])
    (conflict,) = grants("ns", p).conflicts
    assert conflict.policies == ("p",)
    assert conflict.choices == (("p", None), ("p", ROLE_A))


def test_find_conflicts_covers_every_namespace() -> None:
    a = policy("a", write("x/*", roleArn=ROLE_A), namespaceSelector={"matchLabels": {"team": "a"}})
    b = policy("b", write("y/*", roleArn=ROLE_B), namespaces=["ns1", "ns3"])
    namespaces = {"ns1": {"team": "a"}, "ns2": {"team": "a"}, "ns3": {}, "ns4": {"team": "a"}}
    found = find_conflicts([a, b], namespaces, OWN, REGION)
    assert [(c.namespace, c.policies) for c in found] == [("ns1", ("a", "b"))]
    assert found[0].message == (f"namespace ns1: different credentials for {OWN}/{REGION} (a: {ROLE_A}, b: {ROLE_B})")


# --------------------------------------------------------------------------------------------------
# STS attribution


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("team-a", "web", "eit.team-a.web"),
        ("a", "b", "eit.a.b"),
        ("team-a", "web.prod-1", "eit.team-a.web.prod-1"),
        ("n" * 10, "x" * 49, f"eit.{'n' * 10}.{'x' * 49}"),  # exactly 64
    ],
)
def test_session_name_is_the_resource(namespace: str, name: str, expected: str) -> None:
    assert session_name(namespace, name) == expected
    assert STS_NAME.fullmatch(session_name(namespace, name))


def test_long_session_names_are_trimmed_and_stay_unique() -> None:
    namespace = "n" * 63
    names = ["x" * 253, "x" * 252 + "y", "x" * 60]
    sessions = [session_name(namespace, n) for n in names]
    for session in sessions:
        assert STS_NAME.fullmatch(session), session
        assert len(session) == 64
        assert session.startswith(f"eit.{namespace[:49]}")
    assert len(set(sessions)) == 3
    # Stable: the same resource always gets the same session name.
    assert session_name(namespace, names[0]) == sessions[0]
    assert re.fullmatch(r".*-[0-9a-f]{10}", sessions[0])


def test_session_name_replaces_characters_sts_refuses() -> None:
    weird = session_name("team a", "web:prod")
    assert STS_NAME.fullmatch(weird)
    assert weird.startswith("eit.team-a.web-prod-")
    assert weird != session_name("team-a", "web-prod")


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [("team-a", "team-a"), ("ab", "ab"), ("a", "a_"), ("n" * 63, "n" * 63)],
)
def test_source_identity_is_the_namespace(namespace: str, expected: str) -> None:
    assert source_identity(namespace) == expected
    assert STS_NAME.fullmatch(source_identity(namespace))
    assert not source_identity(namespace).startswith("aws:")


def test_session_tags_carry_namespace_and_name() -> None:
    tags = session_tags("team-a", "web")
    assert tags == {NAMESPACE_TAG: "team-a", NAME_TAG: "web"}
    assert NAMESPACE_TAG == "ecrtag.dev/namespace"
    key = re.compile(r"^[\w\s.:/=+@-]{1,128}$")
    for k, v in session_tags("n" * 63, "x" * 253).items():
        assert key.fullmatch(k)
        assert len(v) <= 256
    assert session_tags("n", "x" * 300)[NAME_TAG].startswith("x" * 200)
    assert len(session_tags("n", "x" * 300)[NAME_TAG]) == 256


# --------------------------------------------------------------------------------------------------
# the policy's status

T0, T1 = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"


def _ready(body: dict[str, Any]) -> dict[str, Any]:
    (cond,) = body["conditions"]
    assert cond["type"] == "Ready"
    return dict(cond)


def test_status_of_a_valid_policy() -> None:
    body = policy_status(
        "team-a", TEAM_A, generation=3, matched=["team-a"], conflicts=[], previous_conditions=[], now=T0
    )
    assert body == {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": VALID,
                "message": "selects 1 namespace",
                "lastTransitionTime": T0,
                "observedGeneration": 3,
            }
        ],
        "matchedNamespaceCount": 1,
        "matchedNamespaces": ["team-a"],
        "matchedNamespacesTruncated": False,
        "conflicts": [],
        "conflictsTruncated": False,
    }


def test_status_of_an_invalid_policy() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("bad", {"namespaces": ["a"], "registries": [{}]})
    body = policy_status("bad", info.value, generation=2, matched=["a"], conflicts=[], previous_conditions=[], now=T0)
    ready = _ready(body)
    assert (ready["status"], ready["reason"]) == ("False", INVALID_POLICY)
    assert ready["message"] == ("grants nothing: spec.registries[0]: a registry needs at least one write or read grant")
    assert body["matchedNamespaceCount"] == 0
    assert body["matchedNamespaces"] == []


def test_status_reports_conflicts_on_every_policy_involved() -> None:
    a = policy("a", write("x/*", roleArn=ROLE_A), namespaces=["ns1", "ns2"])
    b = policy("b", write("y/*", roleArn=ROLE_B), namespaces=["ns1"])
    c = policy("c", write("z/*", registryId=OTHER, roleArn=ROLE_OTHER), namespaces=["ns1"])
    namespaces: dict[str, dict[str, str]] = {"ns1": {}, "ns2": {}}
    conflicts = find_conflicts([a, b, c], namespaces, OWN, REGION)
    bodies = {
        p.name: policy_status(
            p.name,
            p,
            generation=1,
            matched=matched_namespaces(p, namespaces),
            conflicts=conflicts,
            previous_conditions=[],
            now=T0,
        )
        for p in (a, b, c)
    }
    for name in ("a", "b"):
        ready = _ready(bodies[name])
        assert (ready["status"], ready["reason"]) == ("False", ROLE_CONFLICT)
        assert bodies[name]["conflicts"] == [
            {
                "namespace": "ns1",
                "registryId": OWN,
                "region": REGION,
                "policies": ["a", "b"],
                "message": f"namespace ns1: different credentials for {OWN}/{REGION} (a: {ROLE_A}, b: {ROLE_B})",
            }
        ]
    assert _ready(bodies["a"])["message"] == (
        "selects 2 namespaces; conflicting credentials in 1 registry of namespaces ns1: those registries are "
        "refused there (see conflicts)"
    )
    assert _ready(bodies["c"])["reason"] == VALID
    assert bodies["c"]["conflicts"] == []


def test_status_lists_are_capped_and_sorted() -> None:
    names = [f"ns-{i:03d}" for i in range(120, 0, -1)]
    body = policy_status("p", TEAM_A, generation=1, matched=names, conflicts=[], previous_conditions=[], now=T0)
    assert body["matchedNamespaceCount"] == 120
    assert body["matchedNamespaces"] == sorted(names)[:50]
    assert body["matchedNamespacesTruncated"] is True
    conflicts = [Conflict(n, Location(OWN, REGION), (("p", None), ("q", ROLE_A))) for n in names]
    body = policy_status(
        "p", TEAM_A, generation=1, matched=names, conflicts=conflicts, previous_conditions=[], now=T0, cap=10
    )
    assert [c["namespace"] for c in body["conflicts"]] == sorted(names)[:10]
    assert body["conflictsTruncated"] is True
    assert "namespaces ns-001, ns-002, ns-003, ns-004, ns-005 and 115 more" in _ready(body)["message"]


def test_last_transition_time_moves_only_when_the_status_does() -> None:
    first = policy_status("p", TEAM_A, generation=1, matched=[], conflicts=[], previous_conditions=[], now=T0)
    again = policy_status(
        "p", TEAM_A, generation=2, matched=["a"], conflicts=[], previous_conditions=first["conditions"], now=T1
    )
    ready = _ready(again)
    assert ready["lastTransitionTime"] == T0  # still True, though the message and generation changed
    assert (ready["message"], ready["observedGeneration"]) == ("selects 1 namespace", 2)
    error = PolicyError("p", "spec.registries: Field required")
    broken = policy_status(
        "p", error, generation=3, matched=[], conflicts=[], previous_conditions=again["conditions"], now=T1
    )
    assert _ready(broken)["lastTransitionTime"] == T1
    assert "observedGeneration" not in policy_status(
        "p", TEAM_A, generation=None, matched=[], conflicts=[], previous_conditions=[], now=T0
    )


# --------------------------------------------------------------------------------------------------
# the CRD says what the parser says

CRD = Path(__file__).resolve().parents[2] / "crds" / "ecrtagpolicies.ecrtag.dev.yaml"


def _crd_spec() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def test_crd_patterns_are_the_parsers() -> None:
    spec = _crd_spec()
    registry = spec["properties"]["registries"]["items"]["properties"]
    assert registry["registryId"]["pattern"] == REGISTRY_PATTERN
    assert registry["regions"]["items"]["pattern"] == REGION_PATTERN
    assert registry["roleArn"]["pattern"] == ROLE_ARN_PATTERN
    assert spec["properties"]["namespaces"]["items"]["pattern"] == NAMESPACE_PATTERN


GLOB_CORPUS = [
    *(p for p, _, _ in GLOBS),
    *(p for p, _, _ in BAD_GLOBS),
    "**/**",
    "a/**/**/b",
    "*a*b*",
    "a**b",
    "***",
    "a/*?/b",
    "?",
    "-",
    "team-a/",
    "a b",
]


@pytest.mark.parametrize("pattern", GLOB_CORPUS)
def test_crd_glob_patterns_accept_exactly_what_the_parser_accepts(pattern: str) -> None:
    grant = _crd_spec()["properties"]["registries"]["items"]["properties"]["write"]["items"]["properties"]
    for tag, schema in ((False, grant["repositories"]["items"]), (True, grant["tags"]["items"])):
        try:
            check_glob(pattern, tag=tag)
        except ValueError:
            parser = False
        else:
            parser = True
        crd = len(pattern) <= schema["maxLength"] and re.fullmatch(schema["pattern"], pattern) is not None
        assert crd is parser, (pattern, "tag" if tag else "repository")
