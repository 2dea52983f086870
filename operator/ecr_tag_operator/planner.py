"""The decisions, as pure functions: no I/O and no clock.

``plan`` says which tags to write and delete from what was observed; ``assess`` turns the observation
and the write outcomes into conditions, per-tag states and failures. Both are table-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .ecr import Failure, PutOutcome
from .observe import Observation
from .spec import EcrImageTagSpec

ConditionStatus = Literal["True", "False", "Unknown"]

# Reasons that clear by themselves: Argo CD's health check shows these as Progressing, not Degraded.
TRANSIENT_REASONS = frozenset(
    {
        "Throttling",
        "ServerError",
        "ServiceUnavailable",
        "InternalFailure",
        "RequestTimeout",
        "TooManyRequests",
        "RequestLimitExceeded",
        "EndpointConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Reconciling",
    }
)


def reason_for(code: str) -> str:
    """A condition reason from ECR's code: one CamelCase word, ECR's name without 'Exception'."""
    if code == "ServerException":
        return "ServerError"
    if code.endswith("Exception") and len(code) > len("Exception"):
        return code[: -len("Exception")]
    return code


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class TagState:
    tag: str
    digest: str | None
    in_sync: bool
    reason: str | None = None
    owner: str | None = None  # namespace/name of the resource that owns the tag, when another does
    message: str | None = None  # ECR's words, when ECR refused the tag


@dataclass(frozen=True)
class Plan:
    puts: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()
    blocked: Condition | None = None  # why nothing may be written (layers or children missing)


@dataclass(frozen=True)
class Assessment:
    conditions: tuple[Condition, ...]
    tags: tuple[TagState, ...] = ()
    failures: tuple[Failure, ...] = ()
    moved: tuple[tuple[str, str | None, str], ...] = ()  # (tag, old digest, new digest) for each PutImage
    deleted: tuple[str, ...] = ()

    @property
    def ready(self) -> Condition:
        return next(c for c in self.conditions if c.type == "Ready")


@dataclass(frozen=True)
class Outcomes:
    puts: tuple[PutOutcome, ...] = ()
    delete_failures: tuple[Failure, ...] = ()
    deleted: tuple[str, ...] = ()
    interrupted: Failure | None = None  # a transient failure stopped the writes part-way


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "absent"


def _listing(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def layers_condition(spec: EcrImageTagSpec, obs: Observation) -> Condition:
    src = obs.source
    if src is None:
        return Condition("LayersAvailable", "Unknown", "SourceNotResolved", "the source image was not read")
    missing_children = [d for d, present in obs.children_present.items() if not present]
    if missing_children:
        return Condition(
            "LayersAvailable",
            "False",
            "ReferencedImagesNotFound",
            f"{len(missing_children)} of {len(obs.children_present)} child manifests are not in "
            f"{spec.repository_name}: {_listing(missing_children)}",
        )
    blobs = [blob.digest for blob, _ in src.blobs()]
    missing = [d for d in blobs if d not in obs.layers]
    if missing:
        return Condition(
            "LayersAvailable",
            "False",
            "LayersNotFound",
            f"{len(missing)} of {len(blobs)} blobs are not in {spec.repository_name}: {_listing(missing)}",
        )
    for state, reason in (("UNAVAILABLE", "LayersUnavailable"), ("ARCHIVED", "LayersArchived")):
        hit = [d for d in blobs if obs.layers[d].availability == state]
        if hit:
            return Condition(
                "LayersAvailable",
                "False",
                reason,
                f"{len(hit)} of {len(blobs)} blobs are {state} in {spec.repository_name}: {_listing(hit)}",
            )
    if obs.child_failures:
        first = obs.child_failures[0]
        return Condition("LayersAvailable", "False", reason_for(first.code), f"a child manifest: {first.message}")
    return Condition(
        "LayersAvailable",
        "True",
        "LayersAvailable",
        f"all {len(blobs)} blobs are AVAILABLE in {spec.repository_name}",
    )


def plan(
    spec: EcrImageTagSpec,
    obs: Observation,
    previous_tags: Sequence[str] = (),
    previous_digest: str | None = None,
    contested: Mapping[str, str] | None = None,
) -> Plan:
    """Which tags to put and delete. ``previous_tags`` are the tags the last status listed: those no
    longer in spec are released, and deleted under deletionPolicy Delete if they still point at our
    image. ``contested`` maps tags another resource owns to that owner: never written here."""
    contested = contested or {}
    src = obs.source
    if spec.mode == "Observe" or src is None:
        return Plan()
    ours = {d for d in (src.digest, previous_digest) if d}
    deletes: tuple[str, ...] = ()
    if spec.deletion_policy == "Delete":
        deletes = tuple(
            t for t in previous_tags if t not in spec.tags and t not in contested and obs.tag_digests.get(t) in ours
        )
    layers = layers_condition(spec, obs)
    if layers.status != "True":
        return Plan(deletes=deletes, blocked=layers)
    puts = tuple(t for t in spec.tags if t not in contested and obs.tag_digests.get(t) != src.digest)
    return Plan(puts=puts, deletes=deletes)


def assess(
    spec: EcrImageTagSpec,
    obs: Observation,
    the_plan: Plan,
    outcomes: Outcomes,
    contested: Mapping[str, str] | None = None,
) -> Assessment:
    contested = contested or {}
    src = obs.source
    failures: list[Failure] = [*obs.tag_failures, *obs.child_failures, *obs.layer_failures]
    if obs.source_failure:
        failures.insert(0, obs.source_failure)

    if src is None:
        f = obs.source_failure or Failure("BatchGetImage", "ImageNotFound", "the source image was not read")
        source_cond = Condition("SourceResolved", "False", reason_for(f.code), f.message or f.code)
    else:
        kind = f"index of {len(src.parsed.children)} manifests" if src.parsed.is_index else "image"
        source_cond = Condition("SourceResolved", "True", "Resolved", f"{kind} {src.digest}")
    layers_cond = layers_condition(spec, obs)

    put_by_tag = {o.tag: o for o in outcomes.puts}
    states: list[TagState] = []
    moved: list[tuple[str, str | None, str]] = []
    for tag in spec.tags:
        now = obs.tag_digests.get(tag)
        reason: str | None = None
        message: str | None = None
        outcome = put_by_tag.get(tag)
        if src is not None and outcome is not None:
            if outcome.result == "put":
                moved.append((tag, now, src.digest))
                now = src.digest
            elif outcome.result == "unchanged":
                now = src.digest
            elif outcome.failure is not None:
                failures.append(outcome.failure)
                reason = reason_for(outcome.failure.code)
                message = f"{outcome.failure.code}: {outcome.failure.message}"
        in_sync = src is not None and now == src.digest
        if not in_sync and reason is None:
            if tag in contested:
                reason = "TagConflict"
            elif src is None:
                reason = "SourceNotResolved"
            elif spec.mode == "Observe":
                reason = "Drifted"
            elif the_plan.blocked is not None:
                reason = the_plan.blocked.reason
            elif outcomes.interrupted is not None:
                reason = reason_for(outcomes.interrupted.code)
            else:
                reason = "NotInSync"
        states.append(TagState(tag, now, in_sync, reason, contested.get(tag), message))
    failures.extend(outcomes.delete_failures)
    if outcomes.interrupted is not None:
        failures.append(outcomes.interrupted)

    tags_cond = _tags_condition(spec, src.digest if src else None, states)
    ready = _ready(source_cond, layers_cond, tags_cond, outcomes.interrupted, spec)
    return Assessment(
        (ready, source_cond, layers_cond, tags_cond),
        tuple(states),
        tuple(failures),
        tuple(moved),
        outcomes.deleted,
    )


def _tags_condition(spec: EcrImageTagSpec, digest: str | None, states: Sequence[TagState]) -> Condition:
    if digest is None:
        return Condition("TagsInSync", "Unknown", "SourceNotResolved", "the source image was not read")
    behind = [s for s in states if not s.in_sync]
    if not behind:
        return Condition("TagsInSync", "True", "InSync", f"{len(states)} of {len(states)} tags point at {digest}")
    # The most telling reason: a failure ECR named beats drift, drift beats "not yet".
    reasons = [s.reason or "NotInSync" for s in behind]
    reason = next((r for r in reasons if r not in ("Drifted", "NotInSync")), reasons[0])
    detail = _listing(
        [f"{s.tag} (owned by {s.owner})" if s.owner else f"{s.tag} ({_short(s.digest)}: {s.reason})" for s in behind]
    )
    verb = "in Observe mode, " if spec.mode == "Observe" else ""
    refused = next((s for s in behind if s.message), None)
    ecr_said = f"; ECR refused {refused.tag}: {refused.message}" if refused else ""
    return Condition(
        "TagsInSync",
        "False",
        reason,
        f"{verb}{len(behind)} of {len(states)} tags do not point at {_short(digest)}: {detail}{ecr_said}",
    )


def _ready(
    source: Condition,
    layers: Condition,
    tags: Condition,
    interrupted: Failure | None,
    spec: EcrImageTagSpec,
) -> Condition:
    if interrupted is not None:
        return Condition(
            "Ready",
            "False",
            reason_for(interrupted.code),
            f"ECR answered {interrupted.operation} with {interrupted.code}; retrying: {interrupted.message}",
        )
    for cond in (source, layers, tags):
        if cond.status != "True":
            return Condition("Ready", "False", cond.reason, cond.message)
    if spec.mode == "Observe":
        return Condition("Ready", "True", "InSync", f"observed: {tags.message}")
    return Condition("Ready", "True", "InSync", tags.message)


def assess_call_failure(spec: EcrImageTagSpec, failure: Failure) -> Assessment:
    """A whole ECR call failed before anything could be planned (repository missing, access denied,
    throttled beyond botocore's retries): nothing is known now, so no condition may stay True."""
    reason = reason_for(failure.code)
    message = f"ECR answered {failure.operation} with {failure.code}: {failure.message}"
    unknown = f"not checked: {message}"
    return Assessment(
        (
            Condition("Ready", "False", reason, message),
            Condition("SourceResolved", "Unknown", reason, unknown),
            Condition("LayersAvailable", "Unknown", reason, unknown),
            Condition("TagsInSync", "Unknown", reason, unknown),
        ),
        tags=tuple(TagState(tag, None, False, reason) for tag in spec.tags),
        failures=(failure,),
    )


def assess_refusal(reason: str, message: str, spec: EcrImageTagSpec | None = None) -> Assessment:
    """The operator will not act (an invalid spec, a namespace not allowed the repository)."""
    tags = tuple(TagState(tag, None, False, reason) for tag in spec.tags) if spec else ()
    return Assessment((Condition("Ready", "False", reason, message),), tags=tags)


def plan_deletion(
    tags: Sequence[str], tag_digests: Mapping[str, str | None], ours: str | None
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """On deletion under deletionPolicy Delete: the tags to delete (those still at our image) and the
    tags kept, each with why. Never by digest, which would remove every tag of the image."""
    delete: list[str] = []
    kept: list[tuple[str, str]] = []
    for tag in tags:
        now = tag_digests.get(tag)
        if ours is None:
            kept.append((tag, "this resource never resolved an image"))
        elif now is None:
            continue  # already gone
        elif now != ours:
            kept.append((tag, f"points at {now[:19]}, not at this resource's image"))
        else:
            delete.append(tag)
    return tuple(delete), tuple(kept)
