"""Tag claims: which EcrImageTag owns a (account, region, repository, tag) when several want it.

Only claims that their namespace is granted now count (the adapters filter what ``lookup`` returns
through the grants): a resource that may not write a tag cannot squat it. Between granted claims the
oldest wins (creationTimestamp, then namespace/name), so the outcome does not depend on which resource
the operator happens to reconcile first. Claims that name the same source image do not conflict:
they want the same thing. Every claim is keyed by the *effective* account (the spec's registryId, or
the operator's own when it names none), so one tag written two ways is one key.

Pure functions; kopf's in-memory index holds the claims.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from .spec import EcrImageTagSpec, SpecError, parse_spec

ClaimKey = tuple[str, str, str, str]  # (effective account, region, repository, tag)
ANOTHER_NAMESPACE = "another namespace"  # what a tenant is told of an owner outside its namespace


# A claim: (created, namespace, name, source), where source is (account, region, repository, tag,
# digest) of the source image; ordered as ownership decides, oldest first. A plain tuple of strings, as
# kopf's index keeps it: Python's collectors stop walking such a tuple, and then the index's stores of
# nothing else (a class instance is walked at every full collection: at 10,000 resources x 100 tags
# a full collection of the index after the first took ~80 ms with one, ~30 ms with tuples).
Source = tuple[str, str, str, str, str]
Claim = tuple[str, str, str, Source]


def shown_to(claim: Claim, namespace: str) -> str:
    """The owner as a tenant of ``namespace`` may see it: another namespace's names are not shown."""
    return f"{claim[1]}/{claim[2]}" if claim[1] == namespace else ANOTHER_NAMESPACE


def claim_keys(spec: EcrImageTagSpec, default_region: str, own_account: str) -> list[ClaimKey]:
    region = spec.region or default_region
    return [(spec.registry_id or own_account, region, spec.repository_name, tag) for tag in spec.tags]


def claim_of(meta: Mapping[str, Any], spec: EcrImageTagSpec, default_region: str, own_account: str) -> Claim:
    region = spec.region or default_region
    source = (
        spec.source_registry or own_account,
        region,
        spec.source_repository,
        spec.source.tag or "",
        spec.source.digest or "",
    )
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("namespace")), str(meta.get("name")), source)


def claims(
    meta: Mapping[str, Any], raw_spec: Mapping[str, Any], default_region: str, own_account: str
) -> dict[ClaimKey, Claim]:
    """What one resource claims, for kopf's index. Invalid, Observe-mode and deleting resources claim
    nothing: they never write."""
    if meta.get("deletionTimestamp"):
        return {}
    try:
        spec = parse_spec(raw_spec)
    except SpecError:
        return {}
    if spec.mode == "Observe":
        return {}
    me = claim_of(meta, spec, default_region, own_account)
    return dict.fromkeys(claim_keys(spec, default_region, own_account), me)


Lookup = Callable[[ClaimKey], Iterable[Claim]]


def _others(key: ClaimKey, me: Claim, lookup: Lookup) -> list[Claim]:
    return [c for c in lookup(key) if c[2] != me[2] or c[1] != me[1]]


def contested(
    spec: EcrImageTagSpec, me: Claim, lookup: Lookup, default_region: str, own_account: str
) -> dict[str, str]:
    """Tags of ``spec`` that an older granted claim with another source owns: tag -> the owner, as
    this resource's namespace may see it."""
    out: dict[str, str] = {}
    for key in claim_keys(spec, default_region, own_account):
        rivals = [c for c in _others(key, me, lookup) if c[3] != me[3]]
        winner = min([*rivals, me])
        if winner is not me:
            out[key[3]] = shown_to(winner, me[1])
    return out


def claimed_elsewhere(
    spec: EcrImageTagSpec, tags: Iterable[str], me: Claim, lookup: Lookup, default_region: str, own_account: str
) -> dict[str, str]:
    """Tags that another live, granted resource claims, whatever its source: never deleted by this
    one (tag -> the claimant, as this resource's namespace may see it)."""
    region = spec.region or default_region
    out: dict[str, str] = {}
    for tag in tags:
        others = _others((spec.registry_id or own_account, region, spec.repository_name, tag), me, lookup)
        if others:
            out[tag] = shown_to(min(others), me[1])
    return out


# -- caps: how many claims one tag and one namespace may hold ---------------------------------------------
#
# Claims queue by age, as ownership does: a resource keeps its place whatever is created after it, so
# a newcomer past a cap is refused and never evicts an older claim. The cap per tag counts the granted
# claims of every namespace (an ungranted one cannot fill it); the cap per namespace counts every claim
# of the namespace's own resources. A refused claim still holds its place in line for ownership, like an
# owner whose source fails: caps bound the work, they do not decide owners.


@dataclass(frozen=True)
class Caps:
    per_tag: int
    per_namespace: int


@dataclass(frozen=True, slots=True)
class Holding:
    """One resource's claims, as its namespace counts them (kopf's index keeps one per resource)."""

    created: str
    name: str
    claims: int

    @property
    def place(self) -> tuple[str, str]:
        return (self.created, self.name)


def holding(
    meta: Mapping[str, Any], raw_spec: Mapping[str, Any], default_region: str, own_account: str
) -> dict[str, Holding]:
    """What one resource adds to its namespace's count, for kopf's index: the claims :func:`claims` makes."""
    made = claims(meta, raw_spec, default_region, own_account)
    if not made:
        return {}
    held = Holding(str(meta.get("creationTimestamp") or ""), str(meta.get("name")), len(made))
    return {str(meta.get("namespace")): held}


def _over(
    keys: Sequence[ClaimKey], me: Claim, caps: Caps, in_namespace: int, on_key: Callable[[ClaimKey], int]
) -> str | None:
    if in_namespace + len(keys) > caps.per_namespace:
        return (
            f"namespace {me[1]} holds {in_namespace} tag claims in older EcrImageTags, and the "
            f"{len(keys)} of this one would pass the cap of {caps.per_namespace} per namespace: drop tags or "
            "EcrImageTags it no longer needs, or have ECR_TAG_OPERATOR_MAX_CLAIMS_PER_NAMESPACE (chart value "
            "maxClaimsPerNamespace) raised"
        )
    for key in keys:
        if on_key(key) >= caps.per_tag:
            return (
                f"{key[2]}:{key[3]} is claimed by {caps.per_tag} older EcrImageTags, the cap per tag: remove "
                "the tag from this one, or have ECR_TAG_OPERATOR_MAX_CLAIMS_PER_TAG (chart value "
                "maxClaimsPerTag) raised"
            )
    return None


def crowded(
    spec: EcrImageTagSpec,
    me: Claim,
    caps: Caps,
    lookup: Lookup,
    namespace: Iterable[Holding],
    default_region: str,
    own_account: str,
) -> str | None:
    """Why a cap refuses this resource's claims, or None: its namespace's older resources and its own
    claims would pass the cap per namespace, or one of its tags has as many older granted claims as the
    cap per tag. ``lookup`` gives a key's granted claims, ``namespace`` the holdings of this namespace."""
    place = (me[0], me[2])
    older = sum(h.claims for h in namespace if h.place < place)
    return _over(
        claim_keys(spec, default_region, own_account),
        me,
        caps,
        older,
        lambda key: sum(1 for c in _others(key, me, lookup) if c < me),
    )


class Queues:
    """:func:`crowded` for many resources at once (a drift tick): each key's and each namespace's claims
    sorted once, a resource's place in them found by bisection."""

    def __init__(self, caps: Caps, lookup: Lookup, namespaces: Callable[[str], Iterable[Holding]]) -> None:
        self._caps = caps
        self._lookup = lookup
        self._namespaces = namespaces
        self._keys: dict[ClaimKey, list[tuple[str, str, str]]] = {}
        self._spaces: dict[str, tuple[list[tuple[str, str]], list[int]]] = {}

    def _ahead_on(self, key: ClaimKey, me: Claim) -> int:
        places = self._keys.get(key)
        if places is None:
            places = self._keys[key] = sorted(c[:3] for c in self._lookup(key))
        return bisect_left(places, me[:3])

    def _ahead_in(self, me: Claim) -> int:
        found = self._spaces.get(me[1])
        if found is None:
            held = sorted(self._namespaces(me[1]), key=lambda h: h.place)
            found = self._spaces[me[1]] = (
                [h.place for h in held],
                list(accumulate((h.claims for h in held), initial=0)),
            )
        places, totals = found
        return totals[bisect_left(places, (me[0], me[2]))]

    def crowded(self, keys: Sequence[ClaimKey], me: Claim) -> str | None:
        """:func:`crowded` of the resource whose claim is ``me`` on ``keys`` (its claim keys)."""
        return _over(keys, me, self._caps, self._ahead_in(me), lambda key: self._ahead_on(key, me))
