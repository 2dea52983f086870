"""The adapters' view of kopf's indexes: what the grants allow (policies and namespace labels), which
tags granted rivals own, and from those a core Request for one resource, or the drift tick's test for
urgent checks. Kept apart from handlers.py, which holds kopf's registrations only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import authz, grants
from .core import Request
from .drift_schedule import Entry
from .drift_scheduler import Urgent
from .model import Permission
from .ownership import Caps, Claim, ClaimKey, Holding, Queues, Winners, claim_of, claimed_elsewhere, contested, crowded
from .policy_reporter import PolicyEntry
from .reasons import Reason
from .runtime import Runtime
from .spec import EcrImageTagSpec
from .status import previous_tags

# kopf's indexes, as the handlers receive them.
TagClaims = Mapping[ClaimKey, Iterable[Claim]]
Policies = Mapping[str, Iterable[PolicyEntry]]
NamespaceLabels = Mapping[str, Iterable[Mapping[str, str]]]
NamespaceClaims = Mapping[str, Iterable[Holding]]
_NO_HOLDINGS: NamespaceClaims = {}


def caps_of(runtime: Runtime) -> Caps:
    return Caps(runtime.settings.max_claims_per_tag, runtime.settings.max_claims_per_namespace)


class Grants:
    """The adapters' view of the grants, from kopf's indexes: the valid policies and each namespace's
    labels. One is made per reconcile (a write or a delete asks the grants now) and one per drift
    tick, from copies taken on the event loop; answers are kept for the view's short life."""

    def __init__(self, runtime: Runtime, policies: Policies, labels: NamespaceLabels) -> None:
        self._runtime = runtime
        self._valid = [
            e.parsed for entries in policies.values() for e in entries if isinstance(e.parsed, grants.Policy)
        ]
        self._labels = labels
        self._kept: dict[str, grants.NamespaceGrants] = {}
        self._writes: dict[tuple[str, ClaimKey], bool] = {}
        self._permissions: dict[tuple[Any, ...], Permission] = {}

    @classmethod
    def snapshot(cls, runtime: Runtime, policies: Policies, labels: NamespaceLabels) -> Grants:
        """A view that no longer follows the indexes: safe to use off the event loop."""
        return cls(runtime, {k: tuple(v) for k, v in policies.items()}, {k: tuple(v) for k, v in labels.items()})

    def of(self, namespace: str) -> grants.NamespaceGrants:
        found = self._kept.get(namespace)
        if found is None:
            labels = next(iter(self._labels.get(namespace) or ()), {})
            found = authz.namespace_grants(
                self._valid, namespace, labels, self._runtime.own_account, self._runtime.settings.region
            )
            self._kept[namespace] = found
        return found

    def grants_claim(self, key: ClaimKey, claim: Claim) -> bool:
        """Only claims their namespace is granted now count: a refused resource cannot squat a tag."""
        asked = (claim.namespace, key)
        found = self._writes.get(asked)
        if found is None:
            found = self._writes[asked] = self.of(claim.namespace).may_write(key[0], key[1], key[2], key[3])
        return found

    def permission(self, spec: EcrImageTagSpec, namespace: str) -> Permission:
        """authz.permission, asked once per namespace and distinct target and source in a view."""
        target = (spec.mode, spec.registry_id, spec.region, spec.repository_name, spec.tags)
        asked = (namespace, *target, spec.source_registry, spec.source.region, spec.source_repository)
        found = self._permissions.get(asked)
        if found is None:
            found = self._permissions[asked] = authz.permission(spec, namespace, self.of(namespace))
        return found


def request_for(
    spec: EcrImageTagSpec,
    status: Mapping[str, Any],
    meta: Mapping[str, Any],
    trigger: str,
    runtime: Runtime,
    tag_claims: TagClaims,
    view: Grants,
    *,
    namespace_claims: NamespaceClaims,
) -> Request:
    """What the core needs to know about one resource: its permission now, whether a cap on claims
    refuses it, the tags granted rivals own, and the tags it may not delete (a delete is a write:
    asked of the grants now)."""
    namespace = str(meta.get("namespace"))
    mine = view.of(namespace)
    allowed = view.permission(spec, namespace)
    region, account = runtime.settings.region, runtime.own_account
    me = claim_of(meta, spec, region, account)

    def granted(key: ClaimKey) -> list[Claim]:
        return [c for c in tag_claims.get(key, ()) if view.grants_claim(key, c)]

    capped = None
    if allowed.refused is None and trigger != "delete":
        capped = crowded(spec, me, caps_of(runtime), granted, namespace_claims.get(namespace, ()), region, account)
    owners = contested(spec, me, granted, region, account) if allowed.refused is None and capped is None else {}
    tags = list(dict.fromkeys([*spec.tags, *previous_tags(status)]))
    undeletable = {
        t: f"claimed by {who}" for t, who in claimed_elsewhere(spec, tags, me, granted, region, account).items()
    }
    undeletable |= {t: "namespace may not delete it" for t in tags if not authz.may_delete(spec, t, mine)}
    return Request(spec, status, meta.get("generation"), trigger, allowed, owners, undeletable, capped)


def urgency(
    runtime: Runtime,
    tag_claims: TagClaims,
    policies: Policies,
    labels: NamespaceLabels,
    namespace_claims: NamespaceClaims = _NO_HOLDINGS,
) -> Urgent:
    """The test for urgent checks of one tick, over copies of the indexes taken now (on the event loop;
    the test itself runs on a thread): winners per tag are computed once per tick, not per resource."""
    view = Grants.snapshot(runtime, policies, labels)
    index = {k: tuple(v) for k, v in tag_claims.items()}
    winners = Winners(index, view.grants_claim)
    holdings = {k: tuple(v) for k, v in namespace_claims.items()}
    queues = Queues(
        caps_of(runtime),
        lambda key: [c for c in index.get(key, ()) if view.grants_claim(key, c)],
        lambda namespace: holdings.get(namespace, ()),
    )
    region, account = runtime.settings.region, runtime.own_account

    def urgent(entry: Entry) -> bool:
        """A grant was given or lifted (a policy or a namespace's labels changed), a resource refused
        by a cap now fits it, or a tag's owner changed (the winner was deleted, let the tag go, or lost
        its grant)."""
        allowed = view.permission(entry.spec, entry.namespace).refused is None
        if allowed == (entry.ready_reason == "Forbidden"):
            return True
        if entry.ready_reason == Reason.TOO_MANY_CLAIMS:  # older claims went: it fits the caps now
            return queues.crowded(entry.spec, entry.claim, region, account) is None
        return allowed and set(winners.contested(entry.spec, entry.claim, region, account)) != entry.conflicts

    return urgent
