"""Who may move which tag: EcrTagPolicy objects, and what they grant one namespace.

An EcrTagPolicy is cluster-scoped and written by cluster admins. It selects namespaces (a label
selector and/or exact names: a namespace is selected when either matches) and, per registry
(account and regions), grants them *write* (the target of an EcrImageTag: move or delete tags) and
*read* (a source only) on repositories and tags given as globs, and names the IAM role the operator
assumes for that registry. Nothing is allowed without a policy: the decision fails closed.

Pure: standard library and pydantic only, no clock, no I/O. The operator parses each policy with
`parse_policy`, keeps the parsed ones in an index, and for one namespace builds `NamespaceGrants`
from the policies that `matching` returns; `NamespaceGrants.decide` answers for a whole spec and
`may_write` / `may_read` / `may_delete` per tag. `policy_status` renders a policy's status.

Glob grammar (repositories and tags alike; a name is split into segments at ``/``, tags have one)::

    *      any run of characters inside one segment, possibly empty: never crosses "/"
    ?      exactly one character, never "/"
    **     only as a whole segment: any number of whole segments
             "**"         every name
             "**/web"     "web" at any depth, including the top ("web", "a/web", "a/b/web")
             "team-a/**"  everything below team-a ("team-a/web", "team-a/x/y"), not "team-a" itself
             "a/**/b"     "a/b", "a/x/b", "a/x/y/b"
    other  itself, case-sensitively

So ``team-a*`` matches ``team-a`` and ``team-ab`` but not ``team-ab/x``; ``team-a/*`` matches
``team-a/web`` but not ``team-a/x/y``; ``team-a/**`` matches both. There are no character classes or
escapes: ``[``, ``]`` and ``\\`` can appear in neither a repository name nor a tag.

Merge rule, when several valid policies select one namespace:

- grants are the union of every policy's grants, per (account, region);
- the credentials for an (account, region) are what the policies name: a ``roleArn``, or none, which
  means the operator's own credentials. All the registry entries for that (account, region), across
  the matching policies (and within one), must name the same choice; two different choices (two
  roles, or a role and none) are a conflict: the registry is refused for the namespace, read and
  write, and the conflict is reported on every policy involved. Never a guess;
- the operator's own credentials are only ever used in the operator's own account: an entry for
  another account that names no role grants nothing (and `parse_policy` refuses it when it is told
  the operator's account);
- a read grant never allows writing or deleting; a write grant also allows reading its
  repositories (any tag: reads are per repository).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .spec import REGISTRY_PATTERN

REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
# An exact IAM role ARN: partition, 12-digit account, optional path, name of at most 64 characters
# (IAM's limits); no glob characters, so a policy names one role.
ROLE_ARN_PATTERN = r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Kubernetes label keys: an optional DNS-subdomain prefix and "/", then a name of at most 63.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
REPOSITORY_GLOB_PATTERN = r"^[a-z0-9._*?/-]{1,256}$"
TAG_GLOB_PATTERN = r"^[a-zA-Z0-9._*?-]{1,128}$"
ALL_TAGS = "*"

# The most entries a status lists; counts always cover everything.
STATUS_LIST_CAP = 50

# STS AssumeRole limits (botocore's sts service model, shapes roleSessionNameType,
# sourceIdentityType, tagKeyType, tagValueType; STS API reference, AssumeRole and Tag): a session
# name is 2-64 characters of [\w+=,.@-]; a source identity 2-64 of the same characters (the
# service model allows 256, the API reference 64: the stricter wins) and not starting with "aws:";
# a session tag key 1-128 and value 0-256 characters of [\p{L}\p{Z}\p{N}_.:/=+\-@]. \w is ASCII
# there (Java's regular expressions), so it is spelled out.
SESSION_NAME_MAX = 64
SOURCE_IDENTITY_MAX = 64
TAG_VALUE_MAX = 256
SESSION_NAME_PREFIX = "eit"
NAMESPACE_TAG = "ecrtag.dev/namespace"
NAME_TAG = "ecrtag.dev/name"
_NOT_STS_NAME = re.compile(r"[^A-Za-z0-9_+=,.@-]")
_NOT_STS_TAG_VALUE = re.compile(r"[^\w\s.:/=+@-]")

Access = Literal["read", "write"]


class PolicyError(ValueError):
    """An EcrTagPolicy that cannot be used; the message names each field at fault, for its status."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


# --------------------------------------------------------------------------------------------------
# globs


def check_glob(pattern: str, *, tag: bool = False) -> None:
    """Raise ValueError when `pattern` is not a glob of the grammar above (for a tag when `tag`)."""
    if not re.fullmatch(TAG_GLOB_PATTERN if tag else REPOSITORY_GLOB_PATTERN, pattern):
        if tag:
            raise ValueError(f"{pattern!r} is not a tag glob: 1-128 of letters, digits, . _ - * ?")
        raise ValueError(f"{pattern!r} is not a repository glob: 1-256 of a-z 0-9 . _ - / * ?")
    segments = pattern.split("/")
    if "" in segments:
        raise ValueError(f"{pattern!r} has an empty path segment (a leading, trailing or doubled /)")
    if any("**" in s and s != "**" for s in segments):
        raise ValueError(f"{pattern!r}: ** must be a whole path segment (such as team-a/**)")


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The regular expression of a glob (which must pass `check_glob`)."""
    segments: list[str] = []
    for seg in pattern.split("/"):
        if not (seg == "**" and segments and segments[-1] == "**"):  # **/** is **
            segments.append(seg)
    out: list[str] = []
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if seg == "**":
            if i == 0 and i == last:
                out.append(".*")
            elif i == 0:
                out.append("(?:[^/]+/)*")  # leading: zero or more segments, each with its "/"
            elif i == last:
                out.append("(?:/[^/]+)+")  # trailing: one or more segments below the prefix
            else:
                out.append("/(?:[^/]+/)*")  # middle: the separators around zero or more segments
            continue
        if i > 0 and segments[i - 1] != "**":
            out.append("/")
        out.append("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in seg))
    return re.compile("".join(out))


def glob_match(pattern: str, name: str) -> bool:
    """Whether `name` (a repository name or a tag) matches `pattern`; see the module's grammar."""
    return compile_glob(pattern).fullmatch(name) is not None


def _any_match(patterns: Iterable[str], name: str) -> bool:
    return any(glob_match(p, name) for p in patterns)


# --------------------------------------------------------------------------------------------------
# the EcrTagPolicy spec


class _Model(BaseModel):
    # extra="forbid": an unknown (misspelt) field must fail closed, never be dropped: a dropped
    # "tags" would widen a write grant to every tag.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class LabelSelectorRequirement(_Model):
    key: str = Field(max_length=317, pattern=LABEL_KEY_PATTERN)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @field_validator("values")
    @classmethod
    def _values_valid(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if not re.fullmatch(LABEL_VALUE_PATTERN, v)]
        if bad:
            raise ValueError(f"not valid label values: {', '.join(bad)}")
        return values

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Kubernetes' semantics (apimachinery labels.Requirement.Matches): NotIn also holds when the
        # key is absent.
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


class LabelSelector(_Model):
    """A Kubernetes label selector; every requirement must hold, and ``{}`` selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @field_validator("match_labels")
    @classmethod
    def _labels_valid(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = [
            f"{k}={v}"
            for k, v in labels.items()
            if len(k) > 317 or not re.fullmatch(LABEL_KEY_PATTERN, k) or not re.fullmatch(LABEL_VALUE_PATTERN, v)
        ]
        if bad:
            raise ValueError(f"not valid labels: {', '.join(bad)}")
        return labels

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether a label set satisfies a selector (Kubernetes semantics; ``{}`` matches everything)."""
    return selector.matches(labels)


def _unique(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be unique")
    return values


class WriteGrant(_Model):
    """Tags that may be moved and deleted (an EcrImageTag's target), in matching repositories."""

    repositories: tuple[str, ...] = Field(min_length=1, max_length=100)
    tags: tuple[str, ...] = Field(default=(ALL_TAGS,), min_length=1, max_length=100)

    @field_validator("repositories")
    @classmethod
    def _repositories_valid(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for g in globs:
            check_glob(g)
        return _unique(globs, "repositories")

    @field_validator("tags")
    @classmethod
    def _tags_valid(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for g in globs:
            check_glob(g, tag=True)
        return _unique(globs, "tags")


class ReadGrant(_Model):
    """Repositories a source image may be read from; never written."""

    repositories: tuple[str, ...] = Field(min_length=1, max_length=100)

    @field_validator("repositories")
    @classmethod
    def _repositories_valid(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for g in globs:
            check_glob(g)
        return _unique(globs, "repositories")


class RegistryEntry(_Model):
    """One account's registries in some regions: the role for them, and what may be done there."""

    registry_id: str | None = Field(default=None, pattern=REGISTRY_PATTERN)
    regions: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=32)
    role_arn: str | None = Field(default=None, max_length=2048, pattern=ROLE_ARN_PATTERN)
    write: tuple[WriteGrant, ...] = Field(default=(), max_length=50)
    read: tuple[ReadGrant, ...] = Field(default=(), max_length=50)

    @field_validator("regions")
    @classmethod
    def _regions_valid(cls, regions: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if regions is None:
            return None
        bad = [r for r in regions if not re.fullmatch(REGION_PATTERN, r)]
        if bad:
            raise ValueError(f"not AWS regions (such as eu-west-1): {', '.join(bad)}")
        return _unique(regions, "regions")

    @model_validator(mode="after")
    def _grants_something(self) -> RegistryEntry:
        if not self.write and not self.read:
            raise ValueError("a registry needs at least one write or read grant")
        return self


class PolicySpec(_Model):
    namespace_selector: LabelSelector | None = None
    namespaces: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=1000)
    registries: tuple[RegistryEntry, ...] = Field(min_length=1, max_length=100)

    @field_validator("namespaces")
    @classmethod
    def _namespaces_valid(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is None:
            return None
        bad = [n for n in names if len(n) > 63 or not re.fullmatch(NAMESPACE_PATTERN, n)]
        if bad:
            raise ValueError(f"not namespace names: {', '.join(bad)}")
        return _unique(names, "namespaces")

    @model_validator(mode="after")
    def _selects_somehow(self) -> PolicySpec:
        if self.namespace_selector is None and self.namespaces is None:
            raise ValueError("needs namespaceSelector, namespaces, or both (namespaceSelector: {} selects all)")
        return self

    @model_validator(mode="after")
    def _one_role_per_registry(self) -> PolicySpec:
        # Within one policy, as written: the same registryId with overlapping regions must name one
        # role. (Entries that only meet once defaults are resolved are the merge rule's business.)
        seen: dict[tuple[str | None, str | None], tuple[int, str | None]] = {}
        for i, entry in enumerate(self.registries):
            for region in entry.regions or (None,):
                key = (entry.registry_id, region)
                if key in seen and seen[key][1] != entry.role_arn:
                    j, other = seen[key]
                    where = f"registryId {entry.registry_id or '(own account)'}, region {region or '(own region)'}"
                    raise ValueError(
                        f"registries[{j}] and registries[{i}] name different roles for {where}: "
                        f"{_credentials(other)} and {_credentials(entry.role_arn)}"
                    )
                seen.setdefault(key, (i, entry.role_arn))
        return self


@dataclass(frozen=True)
class Policy:
    """A valid EcrTagPolicy: its name and spec."""

    name: str
    spec: PolicySpec

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """A namespace is selected when it is listed in namespaces or its labels match the selector."""
        listed = self.spec.namespaces is not None and namespace in self.spec.namespaces
        selector = self.spec.namespace_selector
        return listed or (selector is not None and selector.matches(labels))


def _field_path(loc: Sequence[int | str]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{to_camel(part) if '_' in part else part}"
    return out


def parse_policy(name: str, raw_spec: Mapping[str, Any] | None, own_account: str | None = None) -> Policy:
    """Validate a policy's spec; a PolicyError names every problem with its field, one after another.

    With `own_account` (the operator's account, from sts:GetCallerIdentity), a registry of another
    account that names no roleArn is refused too: the operator's own credentials are never used on
    another account.
    """
    try:
        spec = PolicySpec.model_validate(dict(raw_spec or {}))
    except ValidationError as exc:
        errors = exc.errors()
        problems = []
        for err in errors:
            loc = tuple(err["loc"])
            # pydantic also calls a list too short when its only items failed: say only why they did.
            if err["type"] == "too_short" and any(
                len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors
            ):
                continue
            message = str(err["msg"]).removeprefix("Value error, ").replace("Tuple should", "List should")
            problems.append(f"{_field_path(loc)}: {message.replace(' after validation', '')}")
        raise PolicyError(name, "; ".join(problems)) from None
    if own_account is not None:
        foreign = [
            f"spec.registries[{i}]: registryId {e.registry_id} is not the operator's account ({own_account}) "
            "and needs a roleArn: the operator's own credentials are only used in its own account"
            for i, e in enumerate(spec.registries)
            if e.registry_id not in (None, own_account) and e.role_arn is None
        ]
        if foreign:
            raise PolicyError(name, "; ".join(foreign))
    return Policy(name=name, spec=spec)


def matching(policies: Iterable[Policy], namespace: str, labels: Mapping[str, str]) -> list[Policy]:
    """The policies that select a namespace, by name.

    `labels` are the Namespace's labels as the API server has them, which include the automatic
    ``kubernetes.io/metadata.name`` label.
    """
    return sorted((p for p in policies if p.selects(namespace, labels)), key=lambda p: p.name)


def matched_namespaces(policy: Policy, namespaces: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The namespaces (name → labels) a policy selects, sorted."""
    return sorted(ns for ns, labels in namespaces.items() if policy.selects(ns, labels))


# --------------------------------------------------------------------------------------------------
# what one namespace may do


class Location(NamedTuple):
    """A registry: an account in a region."""

    account: str
    region: str

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


class Target(NamedTuple):
    """An EcrImageTag's target: None for account or region means the operator's own."""

    account: str | None
    region: str | None
    repository: str
    tags: tuple[str, ...]


class Source(NamedTuple):
    """An EcrImageTag's source repository: None for account or region means the operator's own."""

    account: str | None
    region: str | None
    repository: str


@dataclass(frozen=True)
class Conflict:
    """Matching policies that name different credentials for one registry of one namespace."""

    namespace: str
    location: Location
    choices: tuple[tuple[str, str | None], ...]  # (policy, roleArn or None for own credentials), sorted

    @property
    def policies(self) -> tuple[str, ...]:
        return tuple(sorted({p for p, _ in self.choices}))

    @property
    def message(self) -> str:
        named = ", ".join(f"{p}: {_credentials(r)}" for p, r in self.choices)
        return f"namespace {self.namespace}: different credentials for {self.location} ({named})"


@dataclass(frozen=True)
class GrantedRegistry:
    """A registry a namespace may use, and the role to assume there (None: the operator's own)."""

    location: Location
    role_arn: str | None


@dataclass(frozen=True)
class Verdict:
    """Whether a namespace may act on a spec, why, and with which credentials where."""

    allowed: bool
    message: str
    policies: tuple[str, ...]  # the policies considered (all that select the namespace)
    target_account: str
    target_region: str
    source_account: str
    source_region: str
    target_role: str | None = None  # None: the operator's own credentials (or refused)
    source_role: str | None = None
    granted_by: tuple[str, ...] = ()  # the policies whose grants allowed it


def _credentials(role: str | None) -> str:
    return role or "the operator's own credentials"


@dataclass
class _Registry:
    choices: list[tuple[str, str | None]] = field(default_factory=list)
    write: list[tuple[str, WriteGrant]] = field(default_factory=list)
    read: list[tuple[str, ReadGrant]] = field(default_factory=list)


def _names(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def _some(items: Sequence[str], cap: int = 5) -> str:
    shown = ", ".join(items[:cap])
    return shown if len(items) <= cap else f"{shown} and {len(items) - cap} more"


class NamespaceGrants:
    """What the policies that select one namespace let it do (the merge rule in the module doc)."""

    def __init__(self, namespace: str, policies: Iterable[Policy], own_account: str, own_region: str) -> None:
        self.namespace = namespace
        self.own_account = own_account
        self.own_region = own_region
        self.policies: tuple[str, ...] = tuple(sorted({p.name for p in policies}))
        registries: dict[Location, _Registry] = {}
        for policy in sorted(policies, key=lambda p: p.name):
            for entry in policy.spec.registries:
                account = entry.registry_id or own_account
                for region in entry.regions or (own_region,):
                    reg = registries.setdefault(Location(account, region), _Registry())
                    if (policy.name, entry.role_arn) not in reg.choices:
                        reg.choices.append((policy.name, entry.role_arn))
                    reg.write.extend((policy.name, g) for g in entry.write)
                    reg.read.extend((policy.name, g) for g in entry.read)
        self._registries = registries
        conflicts = []
        for location, reg in sorted(registries.items()):
            if len({role for _, role in reg.choices}) > 1:
                conflicts.append(
                    Conflict(namespace, location, tuple(sorted(reg.choices, key=lambda c: (c[0], c[1] or ""))))
                )
        self.conflicts: tuple[Conflict, ...] = tuple(conflicts)
        self._conflicted = {c.location: c for c in conflicts}

    @classmethod
    def for_namespace(
        cls,
        policies: Iterable[Policy],
        namespace: str,
        labels: Mapping[str, str],
        own_account: str,
        own_region: str,
    ) -> NamespaceGrants:
        """The grants of a namespace from every valid policy (the ones that select it are used)."""
        return cls(namespace, matching(policies, namespace, labels), own_account, own_region)

    def location(self, account: str | None, region: str | None) -> Location:
        return Location(account or self.own_account, region or self.own_region)

    def _refusal(self, location: Location) -> str | None:
        """Why a registry cannot be used at all by this namespace, or None."""
        reg = self._registries.get(location)
        if reg is None:
            return f"no policy grants it registry {location.account} in {location.region}"
        conflict = self._conflicted.get(location)
        if conflict is not None:
            choices = ", ".join(f"{p}: {_credentials(r)}" for p, r in conflict.choices)
            return f"policies name different credentials for {location} ({choices}), so it is refused until they agree"
        (_, role), *_ = reg.choices
        if role is None and location.account != self.own_account:
            named = sorted({p for p, _ in reg.choices})
            who = f"policy {named[0]} names" if len(named) == 1 else f"policies {_names(named)} name"
            return (
                f"{who} no roleArn for {location}, and the operator's own credentials are only used in its own "
                f"account {self.own_account}"
            )
        return None

    def registry(self, account: str | None, region: str | None) -> GrantedRegistry | None:
        """The registry and its role when this namespace may use it at all, else None."""
        location = self.location(account, region)
        if self._refusal(location) is not None:
            return None
        return GrantedRegistry(location, self._registries[location].choices[0][1])

    def registries(self) -> tuple[GrantedRegistry, ...]:
        """Every registry this namespace may use: no AWS client is needed anywhere else."""
        usable = (self.registry(*loc) for loc in sorted(self._registries))
        return tuple(r for r in usable if r is not None)

    def _writers(self, location: Location, repository: str, tag: str) -> list[str]:
        reg = self._registries.get(location)
        if reg is None or self._refusal(location) is not None:
            return []
        return [p for p, g in reg.write if _any_match(g.repositories, repository) and _any_match(g.tags, tag)]

    def _readers(self, location: Location, repository: str) -> list[str]:
        reg = self._registries.get(location)
        if reg is None or self._refusal(location) is not None:
            return []
        grants = [(p, g.repositories) for p, g in reg.write] + [(p, g.repositories) for p, g in reg.read]
        return [p for p, repos in grants if _any_match(repos, repository)]

    def may_write(self, account: str | None, region: str | None, repository: str, tag: str) -> bool:
        """Whether this namespace may move `tag` in `repository` (None: the operator's own account/region)."""
        return bool(self._writers(self.location(account, region), repository, tag))

    def may_delete(self, account: str | None, region: str | None, repository: str, tag: str) -> bool:
        """Deleting a tag needs exactly what moving it needs."""
        return self.may_write(account, region, repository, tag)

    def may_read(self, account: str | None, region: str | None, repository: str) -> bool:
        """Whether this namespace may read images from `repository` (a read or a write grant)."""
        return bool(self._readers(self.location(account, region), repository))

    def decide(self, target: Target, source: Source, *, target_access: Access = "write") -> Verdict:
        """Whether the namespace may act on a spec: every target tag written (or, with
        ``target_access="read"``, for a spec that only observes, the target read) and the source read.
        """
        tloc = self.location(target.account, target.region)
        sloc = self.location(source.account, source.region)
        considered = f"(policies considered: {_names(self.policies)})"

        def verdict(allowed: bool, message: str, granted: Iterable[str] = ()) -> Verdict:
            treg, sreg = (self.registry(*tloc), self.registry(*sloc)) if allowed else (None, None)
            return Verdict(
                allowed=allowed,
                message=message,
                policies=self.policies,
                target_account=tloc.account,
                target_region=tloc.region,
                source_account=sloc.account,
                source_region=sloc.region,
                target_role=treg.role_arn if treg else None,
                source_role=sreg.role_arn if sreg else None,
                granted_by=tuple(sorted(set(granted))),
            )

        if not self.policies:
            return verdict(False, f"no EcrTagPolicy grants namespace {self.namespace} anything")
        problems: list[str] = []
        granted: list[str] = []
        verb = "write" if target_access == "write" else "read"
        refusal = self._refusal(tloc)
        if refusal is not None:
            shown = f"{target.repository}:{target.tags[0]}" if len(target.tags) == 1 else target.repository
            problems.append(f"may not {verb} {shown} in {tloc}: {refusal}")
        elif target_access == "write":
            missing = []
            for tag in target.tags:
                writers = self._writers(tloc, target.repository, tag)
                granted.extend(writers)
                if not writers:
                    missing.append(tag)
            if missing:
                shown = (
                    f"{target.repository}:{missing[0]}"
                    if len(missing) == 1
                    else f"tags {_some(missing)} of {target.repository}"
                )
                problems.append(f"may not write {shown} in {tloc}")
        else:
            readers = self._readers(tloc, target.repository)
            granted.extend(readers)
            if not readers:
                problems.append(f"may not read {target.repository} in {tloc}")
        source_refusal = self._refusal(sloc)
        if source_refusal is not None:
            if sloc != tloc or refusal is None:
                problems.append(f"may not read source {source.repository} in {sloc}: {source_refusal}")
        else:
            readers = self._readers(sloc, source.repository)
            granted.extend(readers)
            if not readers:
                problems.append(f"may not read source {source.repository} in {sloc}")
        if problems:
            return verdict(False, f"namespace {self.namespace} " + "; ".join(problems) + f" {considered}")
        return verdict(True, f"granted by {_names(sorted(set(granted)))}", granted)


def find_conflicts(
    policies: Iterable[Policy],
    namespaces: Mapping[str, Mapping[str, str]],
    own_account: str,
    own_region: str,
) -> list[Conflict]:
    """Every role conflict in the cluster: per namespace (name → labels), the registries its
    matching policies disagree on."""
    policies = list(policies)
    out: list[Conflict] = []
    for ns in sorted(namespaces):
        out.extend(NamespaceGrants.for_namespace(policies, ns, namespaces[ns], own_account, own_region).conflicts)
    return out


# --------------------------------------------------------------------------------------------------
# attribution in the target account's CloudTrail


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:10]


def _fit(text: str, limit: int, *parts: str) -> str:
    clean = _NOT_STS_NAME.sub("-", text)
    if clean == text and len(text) <= limit:
        return text
    # Trimmed or changed: a hash of the original keeps two different resources apart.
    return clean[: limit - 11] + "-" + _digest(*parts)


def session_name(namespace: str, name: str) -> str:
    """The AssumeRole RoleSessionName for an EcrImageTag: ``eit.<namespace>.<name>``.

    It appears in the assumed-role ARN of every call, so the target account's CloudTrail names the
    resource. Kubernetes names fit STS's characters; a name longer than STS's 64 characters is cut,
    and ends in ``-`` and 10 hex digits of a hash of (namespace, name), which keeps it unique.
    A namespace holds no ``.``, so the untrimmed form is unambiguous.
    """
    return _fit(f"{SESSION_NAME_PREFIX}.{namespace}.{name}", SESSION_NAME_MAX, namespace, name)


def namespace_session_name(namespace: str) -> str:
    """The RoleSessionName the operator uses for a namespace's calls: ``eit.<namespace>``. One session
    per (role, namespace), not per resource, keeps the AWS clients bounded by namespaces; the
    resource is named in the operator's log line of each write."""
    return _fit(f"{SESSION_NAME_PREFIX}.{namespace}", SESSION_NAME_MAX, namespace)


def source_identity(namespace: str) -> str:
    """The AssumeRole SourceIdentity: the namespace's name, so a trust policy can require it
    (``sts:SourceIdentity``) and it stays on every chained session. A one-character namespace is
    padded with ``_`` (STS needs at least 2; ``_`` never appears in a namespace's name)."""
    value = _fit(namespace, SOURCE_IDENTITY_MAX, namespace)
    return value if len(value) >= 2 else value + "_"


def session_tags(namespace: str, name: str) -> dict[str, str]:
    """Session tags of the AssumeRole call: the EcrImageTag's namespace and name, for trust
    policies (``aws:RequestTag/ecrtag.dev/namespace``) and for CloudTrail."""

    def value(text: str) -> str:
        clean = _NOT_STS_TAG_VALUE.sub("-", text)
        return clean if len(clean) <= TAG_VALUE_MAX else clean[: TAG_VALUE_MAX - 11] + "-" + _digest(text)

    return {NAMESPACE_TAG: value(namespace), NAME_TAG: value(name)}


# --------------------------------------------------------------------------------------------------
# the policy's status

# Reasons of the policy's Ready condition.
VALID = "Valid"
INVALID_POLICY = "InvalidPolicy"
ROLE_CONFLICT = "RoleConflict"


def _condition(
    previous: Sequence[Mapping[str, Any]], status: str, reason: str, message: str, generation: int | None, now: str
) -> dict[str, Any]:
    # As apimachinery's meta.SetStatusCondition: lastTransitionTime moves only when status changes.
    old = next((c for c in previous if c.get("type") == "Ready"), None)
    unchanged = old is not None and old.get("status") == status and old.get("lastTransitionTime")
    entry: dict[str, Any] = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": old["lastTransitionTime"] if unchanged and old is not None else now,
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    return entry


def policy_status(
    name: str,
    parsed: Policy | PolicyError,
    *,
    generation: int | None,
    matched: Iterable[str],
    conflicts: Iterable[Conflict],
    previous_conditions: Sequence[Mapping[str, Any]],
    now: str,
    cap: int = STATUS_LIST_CAP,
) -> dict[str, Any]:
    """The whole status body of one EcrTagPolicy (a merge patch replaces lists: all are complete).

    `matched` are the namespaces it selects (`matched_namespaces`), `conflicts` every conflict in the
    cluster (`find_conflicts`: those naming this policy are kept), `now` the RFC 3339 time to stamp a
    transition with. An invalid policy grants nothing, so it matches no namespace.
    """
    if isinstance(parsed, PolicyError):
        names: list[str] = []
        mine: list[Conflict] = []
        status, reason, message = "False", INVALID_POLICY, f"grants nothing: {parsed.message}"
    else:
        names = sorted(set(matched))
        mine = sorted(
            (c for c in conflicts if name in c.policies),
            key=lambda c: (c.namespace, c.location.account, c.location.region),
        )
        count = f"{len(names)} namespace{'' if len(names) == 1 else 's'}"
        if mine:
            where = sorted({c.namespace for c in mine})
            status, reason = "False", ROLE_CONFLICT
            message = (
                f"selects {count}; conflicting credentials in {len(mine)} registr{'y' if len(mine) == 1 else 'ies'} "
                f"of namespaces {_some(where)}: those registries are refused there (see conflicts)"
            )
        else:
            status, reason, message = "True", VALID, f"selects {count}"
    body: dict[str, Any] = {} if generation is None else {"observedGeneration": generation}
    return {
        **body,
        "conditions": [_condition(previous_conditions, status, reason, message, generation, now)],
        "matchedNamespaceCount": len(names),
        "matchedNamespaces": names[:cap],
        "matchedNamespacesTruncated": len(names) > cap,
        "conflicts": [
            {
                "namespace": c.namespace,
                "registryId": c.location.account,
                "region": c.location.region,
                "policies": list(c.policies),
                "message": c.message,
            }
            for c in mine[:cap]
        ],
        "conflictsTruncated": len(mine) > cap,
    }
