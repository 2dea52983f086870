"""Tag ownership: pure functions over claims keyed by the effective account."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ecr_tag_operator.ownership import (
    ANOTHER_NAMESPACE,
    Caps,
    Claim,
    Holding,
    Queues,
    claim_keys,
    claim_of,
    claimed_elsewhere,
    claims,
    contested,
    crowded,
    holding,
)
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
    granted = {k: [c for c in v if c[1] == "team-a"] for k, v in index.items()}  # team-b lacks the grant
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


# -- caps on claims per tag and per namespace --------------------------------------------------------------


def holdings_of(*resources: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, list[Holding]]:
    out: dict[str, list[Holding]] = {}
    for m, s in resources:
        for ns, held in holding(m, s, "us-east-1", OWN).items():
            out.setdefault(ns, []).append(held)
    return out


def refusal(
    m: dict[str, Any],
    s: dict[str, Any],
    resources: list[tuple[dict[str, Any], dict[str, Any]]],
    caps: Caps,
    granted: Any = None,
) -> str | None:
    """crowded() for one resource, as the adapter asks it (``granted`` filters the claims on a key)."""
    index, held = index_of(*resources), holdings_of(*resources)
    spec = parse_spec(s)
    me = claim_of(m, spec, "us-east-1", OWN)

    def lookup(key: Any) -> list[Claim]:
        return [c for c in index.get(key, []) if granted is None or granted(c)]

    return crowded(spec, me, caps, lookup, held.get(m["namespace"], []), "us-east-1", OWN)


def test_past_the_cap_per_tag_the_newest_claim_is_refused_and_older_ones_keep_their_place() -> None:
    caps = Caps(per_tag=2, per_namespace=10_000)
    made = [
        (meta(f"r{day}", f"2026-01-0{day}T00:00:00Z", ns=ns), raw(f"build-{day}", ["prod", f"own-{day}"]))
        for day, ns in ((1, "team-a"), (2, "team-b"), (3, "team-b"))
    ]
    assert [refusal(m, s, made, caps) for m, s in made[:2]] == [None, None]
    message = refusal(*made[2], made, caps)
    assert message is not None
    assert message.startswith("team-a/web:prod is claimed by 2 older EcrImageTags, the cap per tag")
    assert "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_TAG" in message
    assert "maxClaimsPerTag" in message
    # No rival is named, whatever its namespace, and no account.
    assert not [word for word in ("r1", "r2", "team-b", OWN) if word in message]
    # A newcomer made later is refused too; the resources that had a place keep it.
    newcomer = (meta("r0", "2026-01-09T00:00:00Z", ns="aaa"), raw("build-9", ["prod"]))
    crowd = [*made, newcomer]
    assert refusal(*newcomer, crowd, caps) is not None
    assert [refusal(m, s, crowd, caps) is None for m, s in crowd] == [True, True, False, False]
    # When an older claim goes, the next in line gets its place.
    assert refusal(*made[2], made[1:], caps) is None


def test_claims_that_are_not_granted_do_not_fill_the_cap_per_tag() -> None:
    caps = Caps(per_tag=1, per_namespace=10_000)
    squatter = (meta("s", "2020-01-01T00:00:00Z", ns="team-b"), raw("evil", ["prod"]))
    owner = (meta("a", "2026-01-01T00:00:00Z"), raw("build-1", ["prod"]))
    assert refusal(*owner, [squatter, owner], caps) is not None  # counted, it would crowd the owner out
    assert refusal(*owner, [squatter, owner], caps, granted=lambda c: c[1] == "team-a") is None


def test_past_the_cap_per_namespace_the_newest_resource_is_refused_whole() -> None:
    caps = Caps(per_tag=50, per_namespace=5)
    older = (meta("a", "2026-01-01T00:00:00Z"), raw("b", ["t1", "t2", "t3"]))
    middle = (meta("b", "2026-01-02T00:00:00Z"), raw("b", ["t4", "t5"]))
    newest = (meta("c", "2026-01-03T00:00:00Z"), raw("b", ["t6"]))
    elsewhere = [(meta(f"x{n}", "2020-01-01T00:00:00Z", ns="team-b"), raw("b", [f"u{n}"])) for n in range(4)]
    # Observe-mode, invalid and deleting resources claim nothing, so they hold no place either.
    observer = (meta("o", "2020-01-01T00:00:00Z"), raw("b", ["t7", "t8"], mode="Observe"))
    deleting = (meta("d", "2020-01-01T00:00:00Z", deletionTimestamp="2026-01-05T00:00:00Z"), raw("b", ["t9"]))
    crowd = [older, middle, newest, *elsewhere, observer, deleting]
    assert refusal(*older, crowd, caps) is None
    assert refusal(*middle, crowd, caps) is None  # 3 + 2 = 5: at the cap, not past it
    message = refusal(*newest, crowd, caps)
    assert message == (
        "namespace team-a holds 5 tag claims in older EcrImageTags, and the 1 of this one would pass the cap of "
        "5 per namespace: drop tags or EcrImageTags it no longer needs, or have "
        "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_NAMESPACE (chart value maxClaimsPerNamespace) raised"
    )
    # The cap counts each namespace on its own: team-b's four older claims are not team-a's (with them,
    # the oldest resource of team-a would be past the cap).
    assert all(refusal(m, s, crowd, caps) is None for m, s in elsewhere)
    # The older resource growing past the cap pushes the newest out, never itself.
    grown = (older[0], raw("b", ["t1", "t2", "t3", "t10"]))
    assert refusal(*grown, [grown, middle, newest], caps) is None
    assert refusal(*middle, [grown, middle, newest], caps) is not None


def test_a_holding_counts_the_claims_a_resource_makes() -> None:
    assert holding(meta("a", "t"), raw("b", ["p", "q"]), "us-east-1", OWN) == {"team-a": Holding("t", "a", 2)}
    assert holding(meta("o", "t"), raw("b", ["p"], mode="Observe"), "us-east-1", OWN) == {}
    assert holding(meta("i", "t"), {"repositoryName": "X"}, "us-east-1", OWN) == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.sampled_from(["team-a", "team-b"]),
            st.lists(st.sampled_from(["prod", "qa", "dev"]), min_size=1, max_size=3, unique=True),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 4),
    st.integers(1, 8),
)
def test_the_caps_of_a_tick_agree_with_crowded_per_resource(
    resources: list[tuple[int, str, list[str]]], per_tag: int, per_namespace: int
) -> None:
    made = [
        (meta(f"r{n}", f"2026-01-0{day + 1}T00:00:00Z", ns=ns), raw("b", tags))
        for n, (day, ns, tags) in enumerate(resources)
    ]
    caps = Caps(per_tag, per_namespace)
    index, held = index_of(*made), holdings_of(*made)
    queues = Queues(caps, lambda k: index.get(k, []), lambda ns: held.get(ns, []))
    for m, s in made:
        spec = parse_spec(s)
        me = claim_of(m, spec, "us-east-1", OWN)
        assert queues.crowded(claim_keys(spec, "us-east-1", OWN), me) == refusal(m, s, made, caps)
