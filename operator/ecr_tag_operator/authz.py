"""Who may move which tag: the repositories a namespace may target (and read a source from).

Rules come from the operator's settings (a cluster-wide default) and, per namespace, from the
annotation ``ecrtag.dev/allowed-repositories`` that cluster admins set on the Namespace. A pattern is
a shell-style glob over the repository name, optionally prefixed by an account id and a colon
(``123456789012:team-a/*``). Pure functions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from .model import Permission
from .settings import Settings
from .spec import EcrImageTagSpec

ALLOWED_REPOSITORIES = "ecrtag.dev/allowed-repositories"
ASSUME_ROLE = "ecrtag.dev/assume-role-arn"


def parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def patterns_for(annotations: Mapping[str, str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """The namespace's own rule when it has one, else the cluster-wide default."""
    if annotations and ALLOWED_REPOSITORIES in annotations:
        return parse_patterns(annotations[ALLOWED_REPOSITORIES])
    return tuple(default)


def _allowed(registry: str | None, repository: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        account, sep, glob = pattern.rpartition(":")
        if sep and account != (registry or ""):
            continue
        if fnmatch.fnmatchcase(repository, glob):
            return True
    return False


def forbidden(spec: EcrImageTagSpec, patterns: Sequence[str], namespace: str) -> str | None:
    """Why the namespace may not act on this spec, or None when it may."""
    where = "the namespace's ecrtag.dev/allowed-repositories" if patterns else "no rule"
    for role, registry, repository in (
        ("target", spec.registry_id, spec.repository_name),
        ("source", spec.source_registry, spec.source_repository),
    ):
        if not _allowed(registry, repository, patterns):
            shown = f"{registry}:{repository}" if registry else repository
            allowed = ", ".join(patterns) or "nothing"
            return f"namespace {namespace} may not use {role} repository {shown} (allowed: {allowed}; {where})"
    return None


def role_for(
    annotations: Mapping[str, str] | None, allowed_roles: Sequence[str], namespace: str
) -> tuple[str | None, str | None]:
    """(role ARN to assume, None) or (None, why it is refused). No annotation: (None, None)."""
    role = (annotations or {}).get(ASSUME_ROLE)
    if not role:
        return None, None
    if any(fnmatch.fnmatchcase(role, pattern) for pattern in allowed_roles):
        return role, None
    return None, f"namespace {namespace} names role {role}, which the operator's allowedRoleArns does not allow"


def permission(
    spec: EcrImageTagSpec, namespace: str, annotations: Mapping[str, str] | None, settings: Settings
) -> Permission:
    """What the namespace may do with this spec: the role to use, or why it is refused."""
    why = forbidden(spec, patterns_for(annotations, parse_patterns(settings.allowed_repositories)), namespace)
    if why:
        return Permission(refused=why)
    role, why = role_for(annotations, parse_patterns(settings.allowed_role_arns), namespace)
    return Permission(role_arn=role, refused=why)
