"""What a namespace may do with one spec: the grants (:mod:`.grants`, from EcrTagPolicy objects)
asked about the spec's target, its source and every tag, answered as a :class:`model.Permission`.
Pure: the adapters look up the policies and the namespace's labels and pass them in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .grants import Access, NamespaceGrants, Policy, Source, Target
from .model import Permission
from .spec import EcrImageTagSpec

Ask = tuple[Target, Source, Access]  # (target, source, access to the target)


def namespace_grants(
    policies: Iterable[Policy], namespace: str, labels: Mapping[str, str], own_account: str, region: str
) -> NamespaceGrants:
    return NamespaceGrants.for_namespace(policies, namespace, labels, own_account, region)


def asks(spec: EcrImageTagSpec) -> Ask:
    """What a spec asks of the grants: its target, its source (read in its own region, else the
    target's) and the access to the target (Observe mode only reads it)."""
    return (
        Target(spec.registry_id, spec.region, spec.repository_name, spec.tags),
        Source(spec.source_registry, spec.source.region or spec.region, spec.source_repository),
        "read" if spec.mode == "Observe" else "write",
    )


def permission(spec: EcrImageTagSpec, namespace: str, grants: NamespaceGrants) -> Permission:
    """The roles to use, or why the namespace may not act on this spec."""
    return permission_of(asks(spec), namespace, grants)


def permission_of(ask: Ask, namespace: str, grants: NamespaceGrants) -> Permission:
    """:func:`permission` for what a spec asks (the drift index keeps the ask, not the spec)."""
    target, source, access = ask
    verdict = grants.decide(target, source, target_access=access)
    if not verdict.allowed:
        return Permission(refused=verdict.message, namespace=namespace)
    return Permission(role_arn=verdict.target_role, source_role_arn=verdict.source_role, namespace=namespace)


def may_delete(spec: EcrImageTagSpec, tag: str, grants: NamespaceGrants) -> bool:
    """A delete is a write: asked of the grants now, for the tag itself."""
    return grants.may_delete(spec.registry_id, spec.region, spec.repository_name, tag)
