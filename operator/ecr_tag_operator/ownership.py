"""Tag claims: which EcrImageTag owns a (registry, region, repository, tag) when several want it.

The oldest claim wins (creationTimestamp, then namespace/name), so the outcome does not depend on
which resource the operator happens to reconcile first. Claims that name the same source image do
not conflict: they want the same thing. Pure functions; kopf's in-memory index holds the claims.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .spec import EcrImageTagSpec, SpecError, parse_spec

ClaimKey = tuple[str, str, str, str]  # (registry id or "", region, repository, tag)


@dataclass(frozen=True, order=True)
class Claim:
    created: str
    namespace: str
    name: str
    source: tuple[str, str, str, str, str]  # (registry, region, repository, tag, digest) of the source

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def claim_keys(spec: EcrImageTagSpec, default_region: str) -> list[ClaimKey]:
    region = spec.region or default_region
    return [(spec.registry_id or "", region, spec.repository_name, tag) for tag in spec.tags]


def claim_of(meta: Mapping[str, Any], spec: EcrImageTagSpec, default_region: str) -> Claim:
    region = spec.region or default_region
    source = (
        spec.source_registry or "",
        region,
        spec.source_repository,
        spec.source.tag or "",
        spec.source.digest or "",
    )
    return Claim(str(meta.get("creationTimestamp") or ""), str(meta.get("namespace")), str(meta.get("name")), source)


def claims(meta: Mapping[str, Any], raw_spec: Mapping[str, Any], default_region: str) -> dict[ClaimKey, Claim]:
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
    me = claim_of(meta, spec, default_region)
    return dict.fromkeys(claim_keys(spec, default_region), me)


def contested(
    spec: EcrImageTagSpec,
    me: Claim,
    lookup: Callable[[ClaimKey], Iterable[Claim]],
    default_region: str,
) -> dict[str, str]:
    """Tags of ``spec`` that an older claim with another source owns: tag -> the owner's namespace/name."""
    out: dict[str, str] = {}
    for key in claim_keys(spec, default_region):
        rivals = [c for c in lookup(key) if (c.namespace, c.name) != (me.namespace, me.name) and c.source != me.source]
        winner = min([*rivals, me])
        if winner is not me:
            out[key[3]] = winner.ref
    return out
