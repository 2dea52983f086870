"""The decisions, as pure functions: no I/O and no clock.

``plan`` says which tags to write and delete from what was observed; ``assess`` turns the observation
and the write outcomes into conditions, per-tag states and failures. Both are table-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .model import Assessment, Condition, Failure, Observation, Outcomes, Plan, TagState
from .reasons import Reason, reason_for
from .spec import EcrImageTagSpec


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "absent"


def _listing(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def layers_condition(spec: EcrImageTagSpec, obs: Observation) -> Condition:
    src = obs.source
    if src is None:
        return Condition("LayersAvailable", "Unknown", Reason.SOURCE_NOT_RESOLVED, "the source image was not read")
    copying = _copy_condition(spec, obs)
    if copying is not None:
        return copying
    missing_children = [d for d, present in obs.children_present.items() if not present]
    if missing_children:
        return Condition(
            "LayersAvailable",
            "False",
            Reason.REFERENCED_IMAGES_NOT_FOUND,
            f"{len(missing_children)} of {len(obs.children_present)} child manifests are not in "
            f"{spec.repository_name}: {_listing(missing_children)}",
        )
    blobs = [blob.digest for blob, _ in src.blobs()]
    missing = [d for d in blobs if d not in obs.layers]
    if missing:
        return Condition(
            "LayersAvailable",
            "False",
            Reason.LAYERS_NOT_FOUND,
            f"{len(missing)} of {len(blobs)} blobs are not in {spec.repository_name}: {_listing(missing)}",
        )
    for state, reason in (("UNAVAILABLE", Reason.LAYERS_UNAVAILABLE), ("ARCHIVED", Reason.LAYERS_ARCHIVED)):
        hit = [d for d in blobs if obs.layers[d].availability == state]
        if hit:
            hint = (
                "; only archived images hold them there: restore one (aws ecr update-image-storage-class "
                "--target-storage-class STANDARD), or push the image into the repository again"
                if state == "ARCHIVED"
                else ""
            )
            return Condition(
                "LayersAvailable",
                "False",
                reason,
                f"{len(hit)} of {len(blobs)} blobs are {state} in {spec.repository_name}: {_listing(hit)}{hint}",
            )
    if obs.child_failures:
        first = obs.child_failures[0]
        return Condition("LayersAvailable", "False", reason_for(first.code), f"a child manifest: {first.message}")
    return Condition(
        "LayersAvailable",
        "True",
        Reason.LAYERS_AVAILABLE,
        f"all {len(blobs)} blobs are AVAILABLE in {spec.repository_name}",
    )


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _copy_condition(spec: EcrImageTagSpec, obs: Observation) -> Condition | None:
    """A copy into the target that did not finish: Copying while it may still (it resumes at the next
    reconcile), else ECR's (or the download's) reason for the blob it stopped at."""
    report = obs.copy
    if report is None or (report.finished and report.error is None):
        return None
    done = (
        f"{report.blobs_copied + report.blobs_skipped} of {report.blobs_total} blobs "
        f"({_mib(report.bytes_copied + report.bytes_skipped)} of {_mib(report.bytes_total)}) in {spec.repository_name}"
    )
    error = report.error
    if error is None or report.retryable:
        said = f"; {error.operation} answered {error.code}: {error.message}" if error else ""
        return Condition("LayersAvailable", "False", Reason.COPYING, f"copying: {done}{said}")
    return Condition(
        "LayersAvailable",
        "False",
        reason_for(error.code),
        f"copy stopped at {error.layer_digest or 'a manifest'}: {error.operation} answered {error.code}: "
        f"{error.message} ({done})",
    )


def plan(
    spec: EcrImageTagSpec,
    obs: Observation,
    previous_tags: Sequence[str] = (),
    previous_digest: str | None = None,
    contested: Mapping[str, str] | None = None,
    undeletable: Mapping[str, str] | None = None,
) -> Plan:
    """Which tags to put and delete. ``previous_tags`` are the tags the last status listed: those no
    longer in spec are released, and deleted under deletionPolicy Delete if they still point at our
    image and are not ``undeletable`` (not granted to this namespace now, or claimed by another live
    resource). ``contested`` maps tags another resource owns to that owner: never written here."""
    contested = contested or {}
    undeletable = undeletable or {}
    src = obs.source
    if spec.mode == "Observe" or src is None:
        return Plan()
    ours = {d for d in (src.digest, previous_digest) if d}
    deletes: tuple[str, ...] = ()
    if spec.deletion_policy == "Delete":
        deletes = tuple(
            t for t in previous_tags if t not in spec.tags and t not in undeletable and obs.tag_digests.get(t) in ours
        )
    layers = layers_condition(spec, obs)
    if layers.status != "True":
        return Plan(deletes=deletes, blocked=layers)
    puts = tuple(
        t
        for t in spec.tags
        if t not in contested and obs.tag_digests.get(t) != src.digest and not held_by_mutability(obs, t)
    )
    return Plan(puts=puts, deletes=deletes)


def held_by_mutability(obs: Observation, tag: str) -> bool:
    """The tag exists at another image and the repository's mutability says ECR would refuse to move
    it: not written (ECR's answer would be ImageTagAlreadyExists at every check)."""
    return (
        obs.mutability is not None
        and obs.mutability.immutable(tag)
        and obs.tag_digests.get(tag) not in (None, obs.source.digest if obs.source else None)
    )


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
        f = obs.source_failure or Failure("BatchGetImage", Reason.IMAGE_NOT_FOUND, "the source image was not read")
        source_cond = Condition("SourceResolved", "False", reason_for(f.code), f.message or f.code)
    else:
        kind = f"index of {len(src.parsed.children)} manifests" if src.parsed.is_index else "image"
        source_cond = Condition("SourceResolved", "True", Reason.RESOLVED, f"{kind} {src.digest}")
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
                reason = Reason.TAG_CONFLICT
            elif spec.mode == "Enforce" and held_by_mutability(obs, tag) and obs.mutability is not None:
                reason = Reason.IMAGE_TAG_ALREADY_EXISTS
                message = f"the repository's tag mutability is {obs.mutability.describe()}: {tag} stays at {now}"
            elif src is None:
                reason = Reason.SOURCE_NOT_RESOLVED
            elif spec.mode == "Observe":
                reason = Reason.DRIFTED
            elif the_plan.blocked is not None:
                reason = the_plan.blocked.reason
            elif outcomes.interrupted is not None:
                reason = reason_for(outcomes.interrupted.code)
            else:
                reason = Reason.NOT_IN_SYNC
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
        return Condition("TagsInSync", "Unknown", Reason.SOURCE_NOT_RESOLVED, "the source image was not read")
    behind = [s for s in states if not s.in_sync]
    if not behind:
        return Condition("TagsInSync", "True", Reason.IN_SYNC, f"{len(states)} of {len(states)} tags point at {digest}")
    # The most telling reason: a failure ECR named beats drift, drift beats "not yet".
    reasons = [s.reason or Reason.NOT_IN_SYNC for s in behind]
    reason = next((r for r in reasons if r not in (Reason.DRIFTED, Reason.NOT_IN_SYNC)), reasons[0])
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
        return Condition("Ready", "True", Reason.IN_SYNC, f"observed: {tags.message}")
    return Condition("Ready", "True", Reason.IN_SYNC, tags.message)


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


def assess_refusal(reason: str, message: str, tags: Sequence[str] = ()) -> Assessment:
    """The operator will not act (an invalid spec, a namespace not granted the repository): nothing
    was read, so no condition may stay True and no tag is known to be in sync."""
    unknown = f"not checked: {message}"
    return Assessment(
        (
            Condition("Ready", "False", reason, message),
            Condition("SourceResolved", "Unknown", reason, unknown),
            Condition("LayersAvailable", "Unknown", reason, unknown),
            Condition("TagsInSync", "Unknown", reason, unknown),
        ),
        tags=tuple(TagState(tag, None, False, reason) for tag in tags),
    )


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
