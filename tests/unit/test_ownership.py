"""Tag ownership: pure functions over claims keyed by the effective account."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ecr_tag_operator.ownership import ANOTHER_NAMESPACE, Claim, Winners, claim_of, claimed_elsewhere, claims, contested
from ecr_tag_operator.spec import parse_spec

OWN = "111122223333"


def meta(name: str, created: str, ns: str = "team-a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": ns, "creationTimestamp": created, **extra}


def raw(source_tag: str, tags: list[str], repo: str = "team-a/web", **extra: Any) -> dict[str, Any]:
    return {"repositoryName": repo, "source": {"tag": source_tag}, "tags": tags, **extra}


def index_of(*resources: tuple[dict[str, Any], dict[str, Any]]) -> dict[Any, list[Claim]]:
    out: dict[Any, list[Claim]] = {}
    for m, s in resources:
        for key, claim in claims(m, s, "us-east-1", OWN).items():
            out.setdefault(key, []).append(claim)
    return out


def owners_for(m: dict[str, Any], s: dict[str, Any], index: dict[Any, list[Claim]]) -> dict[str, str]:
    spec = parse_spec(s)
    return contested(spec, claim_of(m, spec, "us-east-1", OWN), lambda k: index.get(k, []), "us-east-1", OWN)


def test_oldest_claim_wins_and_the_loser_is_told_who() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod", "a-only"]))
    b = (meta("b", "2026-01-02T00:00:00Z", ns="team-b"), raw("build-2", ["prod"]))
    index = index_of(a, b)
    assert owners_for(*a, index) == {}
    assert owners_for(*b, index) == {"prod": ANOTHER_NAMESPACE}  # team-a's names are not shown to team-b


def test_an_owner_in_the_same_namespace_is_named() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    b = (meta("b", "2026-01-02T00:00:00Z"), raw("build-2", ["prod"]))
    assert owners_for(*b, index_of(a, b)) == {"prod": "team-a/a"}


def test_the_same_tag_written_with_and_without_the_own_account_is_one_claim() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    b = (meta("b", "2026-01-02T00:00:00Z"), raw("build-2", ["prod"], registryId=OWN))
    assert owners_for(*b, index_of(a, b)) == {"prod": "team-a/a"}


def test_a_claim_that_is_not_granted_is_not_counted() -> None:
    squatter = (meta("s", "2020-01-01T00:00:00Z", ns="team-b"), raw("build-9", ["prod"]))
    owner = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    index = index_of(squatter, owner)
    granted = {k: [c for c in v if c.namespace == "team-a"] for k, v in index.items()}  # team-b lacks the grant
    assert owners_for(*owner, index) == {"prod": ANOTHER_NAMESPACE}
    assert owners_for(*owner, granted) == {}


def test_a_tag_another_resource_claims_is_never_deleted_whatever_its_source() -> None:
    mine = (meta("a", "2026-01-02T00:00:00Z"), raw("build-1", ["prod"]))
    copycat = (meta("c", "2026-01-03T00:00:00Z", ns="team-b"), raw("build-1", ["prod", "qa"]))
    index = index_of(mine, copycat)
    spec = parse_spec(copycat[1])
    me = claim_of(copycat[0], spec, "us-east-1", OWN)
    found = claimed_elsewhere(spec, ["prod", "qa"], me, lambda k: index.get(k, []), "us-east-1", OWN)
    assert found == {"prod": ANOTHER_NAMESPACE}


def test_same_creation_time_breaks_ties_by_namespace_then_name() -> None:
    a = (meta("z", "2026-01-01T00:00:00Z", ns="aaa"), raw("build-1", ["prod"]))
    b = (meta("a", "2026-01-01T00:00:00Z", ns="bbb"), raw("build-2", ["prod"]))
    index = index_of(a, b)
    assert owners_for(*b, index) == {"prod": ANOTHER_NAMESPACE}
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
        raw("build-2", ["prod"], registryId="444455556666"),
    ]
    for n, s in enumerate(others):
        b = (meta(f"b{n}", "2026-01-02T00:00:00Z"), s)
        assert owners_for(*b, index_of(a, b)) == {}


def test_observe_invalid_and_deleting_resources_claim_nothing() -> None:
    assert claims(meta("o", "t"), raw("b", ["prod"], mode="Observe"), "us-east-1", OWN) == {}
    assert claims(meta("i", "t"), {"repositoryName": "X"}, "us-east-1", OWN) == {}
    deleting = meta("d", "t", deletionTimestamp="2026-01-01T00:00:00Z")
    assert claims(deleting, raw("b", ["p"]), "us-east-1", OWN) == {}


def test_winner_gone_next_claimant_takes_over() -> None:
    a = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    b = (meta("b", "2026-01-02T00:00:00Z"), raw("build-2", ["prod"]))
    c = (meta("c", "2026-01-03T00:00:00Z"), raw("build-3", ["prod"]))
    assert owners_for(*c, index_of(a, b, c)) == {"prod": "team-a/a"}
    assert owners_for(*c, index_of(b, c)) == {"prod": "team-a/b"}
    assert owners_for(*b, index_of(b, c)) == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["team-a", "team-b"]),
            st.sampled_from(["b1", "b2"]),
            st.lists(st.sampled_from(["prod", "qa", "dev"]), min_size=1, max_size=3, unique=True),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_winners_of_a_tick_agree_with_contested_per_resource(
    resources: list[tuple[int, str, str, list[str]]],
) -> None:
    made = [
        (meta(f"r{n}", f"2026-01-0{day + 1}T00:00:00Z", ns=ns), raw(src, tags))
        for n, (day, ns, src, tags) in enumerate(resources)
    ]
    index = index_of(*made)
    winners = Winners(index, lambda key, claim: True)
    for m, s in made:
        spec = parse_spec(s)
        me = claim_of(m, spec, "us-east-1", OWN)
        assert winners.contested(spec, me, "us-east-1", OWN) == owners_for(m, s, index)
