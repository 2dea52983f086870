"""Several accounts' registries in one emulator: ``registryId`` routes a request, repository policies decide.

Imported only inside the emulator process (it imports moto). moto keys its ECR state by (account, region):
the account comes from the request's credentials (an access key made through IAM in that account, or STS
AssumeRole credentials of a role in it; anything else is moto's default account) and the region from the
SigV4 credential scope. moto then ignores ``registryId`` (PutImage writes into the caller's registry) or
compares it with the caller's account (a repository of another account is "not found"). ECR instead acts
on the registry that ``registryId`` names, and lets a principal of another account in only where that
repository's policy (SetRepositoryPolicy) allows the action (ECR user guide, "Private repository policies"):

- no ``registryId``, or the caller's own: as before; an explicit Deny in the repository policy still
  applies (IAM policy evaluation: an explicit deny in any policy wins);
- another account's registry: the request reaches that account's backend only if the named repository
  exists and its policy allows the caller's principal the action, and denies it nothing. Otherwise
  ``AccessDeniedException`` in IAM's wording ("User: ARN is not authorized to perform: ecr:ACTION on
  resource: ARN because no resource-based policy allows the ecr:ACTION action", IAM user guide,
  "Troubleshoot access denied error messages"). A missing repository is denied the same way rather than
  reported RepositoryNotFoundException: the docs do not say, and a denial does not tell another account
  which repositories exist. Requests on no repository (CreateRepository, DescribeRepositories without
  names) into another registry are denied: a repository policy cannot grant them.

The caller's identity policies are still checked by moto's IAM enforcement (``--iam-enforce``) against the
repository ARN in the named registry (:func:`ecr_tag_localenv.ecr_corrections._determine_resource`).
Policy conditions are not evaluated: an Allow statement with a ``Condition`` grants nothing and a Deny
statement with one denies (fail closed).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from moto.core.exceptions import ServiceException
from moto.ecr.exceptions import InvalidParameterException
from moto.ecr.models import ECRBackend, Repository, ecr_backends
from moto.ecr.responses import ECRResponse
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

_ACCOUNT_RE: Final = re.compile(r"[0-9]{12}")
_ARN_ACCOUNT_RE: Final = re.compile(r"arn:[^:]+:ecr:[^:]*:([0-9]{12}):")
_ROOT_RE: Final = re.compile(r"arn:[^:]+:iam::([0-9]{12}):root")
# IAM action per operation where it is not "ecr:" + the operation's name (service model: "The IAM principal
# invoking this operation must have the ecr:BatchGetImage permission").
_ACTION_OF: Final = {"ListImageReferrers": "ecr:BatchGetImage"}


class AccessDeniedException(ServiceException):
    code = "AccessDeniedException"


@dataclass(frozen=True)
class Caller:
    """The principal behind a request's credentials, and the ARNs a policy may name it by."""

    account: str
    arn: str
    arns: frozenset[str]


def caller_of(response: ECRResponse) -> Caller:
    account: str = response.current_account
    partition = get_partition(response.region)
    key = response.get_access_key()
    role = sts_backends[account][partition].get_assumed_role_from_access_key(key)
    if role is not None:
        # A policy names a role by its ARN (arn:aws:iam::ACCOUNT:role/NAME); the session has its own ARN.
        return Caller(account, role.arn, frozenset({role.arn, role.role_arn}))
    user = iam_backends[account][partition].get_user_from_access_key_id(key)
    if user is not None:
        return Caller(account, user.arn, frozenset({user.arn}))
    root = f"arn:{partition}:iam::{account}:root"
    return Caller(account, root, frozenset({root}))


def action_of(operation: str) -> str:
    return _ACTION_OF.get(operation, f"ecr:{operation}")


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: object, value: str, case_sensitive: bool) -> bool:
    if not isinstance(pattern, str):
        return False
    if case_sensitive:
        return fnmatch.fnmatchcase(value, pattern)
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _names_principal(entry: object, caller: Caller) -> bool:
    if not isinstance(entry, str):
        return False
    if entry == "*":
        return True
    root = _ROOT_RE.fullmatch(entry)
    if _ACCOUNT_RE.fullmatch(entry) or root:
        # An account (or its root ARN) as principal delegates to every principal of that account.
        return caller.account == (root.group(1) if root else entry)
    return entry in caller.arns


def _principal_matches(statement: dict[str, Any], caller: Caller) -> bool:
    if "NotPrincipal" in statement:
        named = statement["NotPrincipal"]
        entries = _as_list(named.get("AWS", [])) if isinstance(named, dict) else _as_list(named)
        return not any(_names_principal(e, caller) for e in entries)
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    return any(_names_principal(e, caller) for e in _as_list(principal.get("AWS", [])))


def _statement_applies(statement: dict[str, Any], action: str, resource: str, caller: Caller) -> bool:
    if "NotAction" in statement:
        if any(_wildcard(p, action, case_sensitive=False) for p in _as_list(statement["NotAction"])):
            return False
    elif not any(_wildcard(p, action, case_sensitive=False) for p in _as_list(statement.get("Action", []))):
        return False
    if "Resource" in statement and not any(
        _wildcard(p, resource, case_sensitive=True) for p in _as_list(statement["Resource"])
    ):
        return False
    return _principal_matches(statement, caller)


Verdict = Literal["allow", "deny", "none"]


def evaluate(policy_text: str | None, action: str, resource: str, caller: Caller) -> Verdict:
    """A repository policy's answer for ``caller`` doing ``action`` on ``resource``: deny wins over allow."""
    if not policy_text:
        return "none"
    try:
        document = json.loads(policy_text)
    except ValueError:
        return "none"
    statements = _as_list(document.get("Statement", [])) if isinstance(document, dict) else []
    verdict: Verdict = "none"
    for statement in statements:
        if not isinstance(statement, dict) or not _statement_applies(statement, action, resource, caller):
            continue
        if statement.get("Effect") == "Deny":
            return "deny"
        if statement.get("Effect") == "Allow" and "Condition" not in statement:
            verdict = "allow"
    return verdict


def _denied(caller: Caller, action: str, resource: str, explicit: bool) -> AccessDeniedException:
    why = (
        "with an explicit deny in a resource-based policy"
        if explicit
        else (f"because no resource-based policy allows the {action} action")
    )
    return AccessDeniedException(
        f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource} {why}"
    )


def _target_registry(response: ECRResponse) -> str:
    registry = response._get_param("registryId")
    if registry is None:
        arn = response._get_param("resourceArn")
        match = _ARN_ACCOUNT_RE.match(arn) if isinstance(arn, str) else None
        return match.group(1) if match else str(response.current_account)
    if not isinstance(registry, str) or not _ACCOUNT_RE.fullmatch(registry):
        raise InvalidParameterException(
            f"Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression "
            f"pattern: [0-9]{{12}}' (got {registry!r})"
        )
    return registry


def _repository_names(response: ECRResponse) -> list[str] | None:
    name = response._get_param("repositoryName")
    if isinstance(name, str):
        return [name]
    names = response._get_param("repositoryNames")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return list(names)
    arn = response._get_param("resourceArn")
    if isinstance(arn, str) and ":repository/" in arn:
        return [arn.split(":repository/", 1)[1]]
    return None


def authorize(response: ECRResponse, backend: ECRBackend, registry: str) -> None:
    """Raise AccessDeniedException unless the repository policies let the caller do this request's action."""
    operation = str(response._get_action())
    action = action_of(operation)
    names = _repository_names(response)
    own = registry == response.current_account
    repositories: Iterable[tuple[str, Repository | None]] = [
        (name, backend.repositories.get(name)) for name in names or []
    ]
    caller: Caller | None = None
    for name, repository in repositories:
        if own and (repository is None or not repository.policy):
            continue
        caller = caller or caller_of(response)
        resource = f"arn:{get_partition(response.region)}:ecr:{response.region}:{registry}:repository/{name}"
        verdict = evaluate(repository.policy if repository else None, action, resource, caller)
        if verdict == "deny" or (not own and verdict != "allow"):
            raise _denied(caller, action, resource, explicit=verdict == "deny")
    if not own and names is None:
        caller = caller or caller_of(response)
        resource = f"arn:{get_partition(response.region)}:ecr:{response.region}:{registry}:repository/*"
        raise _denied(caller, action, resource, explicit=False)


def _routed_backend(self: ECRResponse) -> ECRBackend:
    # One decision per request: moto makes a response object per request, and handlers may read this twice.
    cached: ECRBackend | None = self.__dict__.get("_registry_backend")
    if cached is not None:
        return cached
    registry = _target_registry(self)
    backend: ECRBackend = ecr_backends[registry][self.region]
    authorize(self, backend, registry)
    self.__dict__["_registry_backend"] = backend
    return backend


_applied = False


def apply() -> None:
    """Route every ECR request to the backend of the registry it names (idempotent)."""
    global _applied
    if _applied:
        return
    ECRResponse.ecr_backend = property(_routed_backend)  # type: ignore[method-assign,assignment]
    _applied = True
