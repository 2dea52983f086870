"""The adapters' view of kopf's indexes: what the grants allow (policies and namespace labels), which
tags granted rivals own, and from those a core Request for one resource, or the drift tick's test for
urgent checks. Kept apart from handlers.py, which holds kopf's registrations only."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from . import authz, drift_urgency, grants
from .core import Request
from .drift_schedule import Entry, claim_prefix
from .drift_scheduler import Urgent
from .model import Permission
from .ownership import Caps, Claim, ClaimKey, Holding, Queues, claim_of, claimed_elsewhere, contested, crowded
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
_T = TypeVar("_T")


def settled(read: Callable[[], _T]) -> _T:
    """``read`` of kopf's indexes from a handler's thread, again if the event loop changed an index
    while a Python loop walked it ("dictionary changed size during iteration"): the handler would
    otherwise fail and wait a minute for kopf's retry."""
    for _ in range(8):
        try:
            return read()
        except RuntimeError:
            continue
    return read()


def caps_of(runtime: Runtime) -> Caps:
    return Caps(runtime.settings.max_claims_per_tag, runtime.settings.max_claims_per_namespace)


class Grants:
    """The adapters' view of the grants, from kopf's indexes: the valid policies and each namespace's
    labels. One is made per reconcile (a write or a delete asks the grants now) and one per drift
    tick, from copies taken on the event loop; answers are kept for the view's short life."""

    def __init__(self, runtime: Runtime, policies: Policies, labels: NamespaceLabels) -> None:
        self._runtime = runtime
        self._valid = settled(
            lambda: [e.parsed for entries in policies.values() for e in entries if isinstance(e.parsed, grants.Policy)]
        )
        self._labels = labels
        self._kept: dict[str, grants.NamespaceGrants] = {}
        self._writes: dict[tuple[str, ClaimKey], bool] = {}
        self._permissions: dict[tuple[Any, ...], Permission] = {}
        # allows() by the Ask object (drift entries share one per distinct ask): the Ask is kept with
        # its answer, so its id is not reused while the answer is here.
        self._allowed: dict[tuple[int, str], tuple[authz.Ask, bool]] = {}

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
        return self.may_claim(key, claim[1])

    def may_claim(self, key: ClaimKey, namespace: str) -> bool:
        """Whether claims of ``namespace`` count for ``key`` (drift_urgency.GrantView)."""
        asked = (namespace, key)
        found = self._writes.get(asked)
        if found is None:
            found = self._writes[asked] = self.of(namespace).may_write(key[0], key[1], key[2], key[3])
        return found

    def permission(self, spec: EcrImageTagSpec, namespace: str) -> Permission:
        """authz.permission, asked once per namespace and distinct target and source in a view."""
        return self.permission_of(authz.asks(spec), namespace)

    def permission_of(self, ask: authz.Ask, namespace: str) -> Permission:
        asked = (namespace, ask)
        found = self._permissions.get(asked)
        if found is None:
            found = self._permissions[asked] = authz.permission_of(ask, namespace, self.of(namespace))
        return found

    def allows(self, entry: Entry) -> bool:
        """Whether the entry's namespace may act on its spec now (drift_urgency.GrantView)."""
        ask, namespace = entry.ask, entry.namespace
        found = self._allowed.get((id(ask), namespace))
        if found is not None and found[0] is ask:
            return found[1]
        allowed = self.permission_of(ask, namespace).refused is None
        self._allowed[id(ask), namespace] = (ask, allowed)
        return allowed

    @property
    def answers(self) -> int:
        return len(self._writes) + len(self._permissions) + len(self._allowed)

    def forget(self) -> None:
        """Drop the answers kept (the grants are the same: they would be the same answers)."""
        self._writes.clear()
        self._permissions.clear()
        self._allowed.clear()


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
        # tuple() copies a store of kopf's index in one step of C (the GIL held): filtered afterwards.
        return [c for c in settled(lambda: tuple(tag_claims.get(key, ()))) if view.grants_claim(key, c)]

    capped = None
    if allowed.refused is None and trigger != "delete":
        held = settled(lambda: tuple(namespace_claims.get(namespace, ())))
        capped = crowded(spec, me, caps_of(runtime), granted, held, region, account)
    owners = contested(spec, me, granted, region, account) if allowed.refused is None and capped is None else {}
    tags = list(dict.fromkeys([*spec.tags, *previous_tags(status)]))
    undeletable = {
        t: f"claimed by {who}" for t, who in claimed_elsewhere(spec, tags, me, granted, region, account).items()
    }
    undeletable |= {t: "namespace may not delete it" for t in tags if not authz.may_delete(spec, t, mine)}
    return Request(spec, status, meta.get("generation"), trigger, allowed, owners, undeletable, capped)


class Urgency:
    """The drift tick's test for urgent checks (a grant given or lifted, a tag's owner changed), kept
    between ticks by :class:`drift_urgency.Urgency`. :meth:`prepare` runs on the event loop and
    copies only the grant indexes (policies and namespace labels: small), and only to compare them
    with the last tick's; the returned scan runs on the scheduler's thread over the drift entries.
    The tag claims index is not read: the entries hold the same claims. A resource refused by a cap on
    claims is urgent once older claims went and it fits: the namespaces' holdings (one small record
    per resource) are copied for that."""

    def __init__(
        self,
        runtime: Runtime,
        policies: Policies,
        labels: NamespaceLabels,
        namespace_claims: NamespaceClaims = _NO_HOLDINGS,
        arrivals_per_update: int = drift_urgency.ARRIVALS_PER_UPDATE,
    ) -> None:
        self._runtime = runtime
        self._budget = arrivals_per_update
        self._policies = policies
        self._labels = labels
        self._holdings = namespace_claims
        self._seen: tuple[Any, Any] | None = None
        self._view: Grants | None = None
        self.kept = self._afresh()

    def prepare(self) -> Callable[[Sequence[Entry]], Urgent]:
        policies = {k: tuple(v) for k, v in self._policies.items()}
        labels = {k: tuple(v) for k, v in self._labels.items()}
        # What the grants are made of: valid policies and labels (a policy's status is not).
        seen = ([(k, e.parsed) for k, v in policies.items() for e in v if isinstance(e.parsed, grants.Policy)], labels)
        if self._view is None or seen != self._seen:
            self._view = Grants(self._runtime, policies, labels)
            self._seen = seen
        view = self._view
        holdings = {k: tuple(v) for k, v in self._holdings.items()}

        def scan(entries: Sequence[Entry]) -> Urgent:
            if view.answers > 4 * len(entries) + 1024:
                view.forget()  # answers about resources long gone
            try:
                urgent = self.kept.update(entries, view)
            except Exception:
                # Half an update is no answer: the next tick starts afresh.
                self.kept = self._afresh()
                raise
            capped = [e for e in entries if e.ready_reason == Reason.TOO_MANY_CLAIMS]
            if not capped:
                return urgent
            fits = self._fitting(capped, view, holdings)
            # A capped resource is urgent only when it fits the caps again or lost its grant: its status
            # names no owners, so the owners' test would find it urgent at every tick.
            return lambda entry: entry.uid in fits if entry.ready_reason == Reason.TOO_MANY_CLAIMS else urgent(entry)

        return scan

    def _afresh(self) -> drift_urgency.Urgency:
        return drift_urgency.Urgency(self._runtime.settings.region, self._runtime.own_account, self._budget)

    def _fitting(self, capped: Sequence[Entry], view: Grants, holdings: NamespaceClaims) -> set[str]:
        kept = self.kept
        queues = Queues(
            caps_of(self._runtime),
            lambda key: [c for c in kept.claims_of(key) if view.grants_claim(key, c)],
            lambda namespace: holdings.get(namespace, ()),
        )
        region, account = self._runtime.settings.region, self._runtime.own_account
        out = set()
        for entry in capped:
            if not kept.integrated(entry.uid):
                continue  # its older rivals may not all be in kept.claims_of yet: at a later tick
            prefix = claim_prefix(entry, region, account)
            keys = [(*prefix, tag) for tag in entry.tags]
            if not view.allows(entry) or queues.crowded(keys, entry.claim) is None:
                out.add(entry.uid)
        return out
