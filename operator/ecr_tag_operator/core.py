"""The reconcile core: a request in, a :class:`Decision` out.

A request carries everything a reconcile depends on: the parsed spec, the previous status, what the
namespace is permitted (decided by the adapter from the grants), which tags other resources own, and
the trigger. The core observes ECR through the port, plans (pure), writes, assesses (pure) and renders
the whole status body; it returns that body with the events to post, the figures to record and when
to come back. No kopf, no HTTP to Kubernetes, no metrics library: the adapters (handlers.py and the
drift scheduler) apply a decision, each in a few lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from .copier import Route, copy_image, copy_referrers
from .model import (
    Assessment,
    Condition,
    CopyReport,
    EcrCallError,
    Failure,
    ImageId,
    Observation,
    Outcomes,
    Permission,
    Plan,
    PutOutcome,
    ReadPolicy,
    Registry,
    TagState,
)
from .observe import observe
from .planner import assess, assess_call_failure, assess_refusal, layers_condition, plan, plan_deletion
from .ports import CopyProgress, EcrApi
from .reasons import Reason, is_transient
from .settings import Settings
from .spec import EcrImageTagSpec, SpecError, parse_spec
from .status import copy_progress, previous_digest, previous_tags, ready_reason, render, trim

Log = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Tally:
    """What a reconcile wrote, for the adapters' metrics."""

    tag_writes: tuple[tuple[str, str], ...] = ()  # (operation, outcome) per tag written or deleted
    drift_corrections: int = 0  # tags that had moved off our image and were put back
    copied_blobs: int = 0  # blobs copied into the target (referrers' included)
    copied_bytes: int = 0


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any]  # the whole status body, as a merge patch (lists complete)
    result: str  # the reconciles_total result: true, false, transient, forbidden, invalid
    events: tuple[Event, ...] = ()
    tags: tuple[TagState, ...] = ()
    tally: Tally = field(default_factory=Tally)
    requeue_after: float | None = None  # transient: reconcile again after this many seconds

    @property
    def transient(self) -> bool:
        return self.requeue_after is not None


@dataclass(frozen=True)
class Request:
    spec: EcrImageTagSpec
    status: Mapping[str, Any]
    generation: int | None
    trigger: str  # create, update, resume, spec, drift, rescue
    permission: Permission = field(default_factory=Permission)
    contested: Mapping[str, str] = field(default_factory=dict)  # tag -> owner shown to this tenant
    # Tags this resource may not delete now, with why: not granted to its namespace, or claimed by
    # another live resource. A status is never the only evidence for a destructive act.
    undeletable: Mapping[str, str] = field(default_factory=dict)
    # Why a cap on claims (per tag, per namespace) refuses this resource, decided by the adapter.
    crowded: str | None = None
    # Where a copy reports while it runs (the adapters patch status.copy); None: only at the end.
    progress: CopyProgress | None = None


def skip_on_resume(status: Mapping[str, Any], generation: int | None) -> bool:
    """Seen and synced before a restart: the drift scheduler checks it when due, so that a restart of
    the operator does not read every resource at once."""
    return bool(status.get("lastSyncTime")) and status.get("observedGeneration") == generation


def read_policy(trigger: str, spec: EcrImageTagSpec, settings: Settings) -> ReadPolicy:
    """A drift check waits longer for company than a spec change, whose user is waiting."""
    patience = settings.drift_read_patience if trigger in ("drift", "resume") else settings.change_read_patience
    return ReadPolicy(patience=patience, layer_max_age=spec.drift_check_interval.total_seconds())


def _render(
    assessment: Assessment,
    obs: Observation | None,
    status: Mapping[str, Any],
    now: datetime,
    generation: int | None,
    settings: Settings,
    sync: Literal["now", "keep", "clear"],
) -> dict[str, Any]:
    return render(
        assessment,
        obs,
        status,
        now,
        generation,
        max_layers=settings.max_listed_layers,
        max_failures=settings.max_listed_failures,
        message_limit=settings.max_message_length,
        sync=sync,
        max_referrers=settings.max_listed_referrers,
    )


class _Progress:
    """A copy's reports while it runs, made into partial status patches (``status.copy``, and Ready and
    LayersAvailable False with reason Copying) and metric increments for the request's progress port.
    Keeps the conditions it wrote, so that lastTransitionTime stays as written, and what the metrics
    were given, so that the reconcile's tally adds only the rest."""

    def __init__(
        self,
        port: CopyProgress,
        spec: EcrImageTagSpec,
        obs: Observation,
        status: Mapping[str, Any],
        generation: int | None,
        now: datetime,
        settings: Settings,
    ) -> None:
        self._port = port
        self._spec = spec
        self._obs = obs
        self._generation = generation
        self._now = now
        self._settings = settings
        self.conditions: list[Mapping[str, Any]] | None = None  # as last written; None: nothing written
        self._previous: Sequence[Mapping[str, Any]] = status.get("conditions") or []
        self.blobs = self.bytes = 0  # given to the metrics so far

    def __call__(self, report: CopyReport) -> None:
        layers = layers_condition(self._spec, replace(self._obs, copy=report))
        ready = Condition("Ready", layers.status, layers.reason, layers.message)
        s = self._settings
        patch = copy_progress(
            report,
            (ready, layers),
            self.conditions if self.conditions is not None else self._previous,
            self._now,
            self._generation,
            message_limit=s.max_message_length,
            max_referrers=s.max_listed_referrers,
        )
        if self._port.status(patch):
            self.conditions = patch["conditions"]
        blobs, size = max(0, report.blobs_copied - self.blobs), max(0, report.bytes_copied - self.bytes)
        if blobs or size:
            self._port.moved(blobs, size)
            self.blobs, self.bytes = self.blobs + blobs, self.bytes + size

    def written(self, status: Mapping[str, Any]) -> Mapping[str, Any]:
        """The status as this copy left it: the final render keeps the transition times it wrote."""
        return status if self.conditions is None else {**status, "conditions": self.conditions}

    def rest(self, tally: Tally) -> Tally:
        """The tally less what the metrics were given while the copy ran."""
        return replace(
            tally,
            copied_blobs=max(0, tally.copied_blobs - self.blobs),
            copied_bytes=max(0, tally.copied_bytes - self.bytes),
        )


def _warning_on_entry(assessment: Assessment, status: Mapping[str, Any], limit: int) -> tuple[Event, ...]:
    """A Warning when the resource enters a permanent failure: once, not on every drift check."""
    ready = assessment.ready
    if ready.status != "False" or is_transient(ready.reason) or ready.reason == ready_reason(status):
        return ()
    return (Event("Warning", ready.reason, trim(ready.message, limit)),)


def refuse(
    reason: str,
    message: str,
    spec: EcrImageTagSpec | None,
    status: Mapping[str, Any],
    generation: int | None,
    now: datetime,
    settings: Settings,
) -> Decision:
    """The operator will not act (InvalidSpec, Forbidden, TooManyClaims): the whole status says so,
    nothing is read."""
    # An invalid spec names no tags the operator can trust: the ones the last status listed are shown.
    assessment = assess_refusal(reason, message, spec.tags if spec else previous_tags(status))
    body = _render(assessment, None, status, now, generation, settings, "clear")
    result = "invalid" if reason == Reason.INVALID_SPEC else "forbidden"
    return Decision(body, result, _warning_on_entry(assessment, status, settings.max_message_length), assessment.tags)


def parse(
    raw_spec: Mapping[str, Any], status: Mapping[str, Any], generation: int | None, now: datetime, settings: Settings
) -> EcrImageTagSpec | Decision:
    """The spec, or the InvalidSpec decision: retrying cannot help until the spec changes."""
    try:
        return parse_spec(raw_spec)
    except (SpecError, ValidationError) as exc:
        return refuse(Reason.INVALID_SPEC, str(exc), None, status, generation, now, settings)


def _execute(
    ecr: EcrApi, spec: EcrImageTagSpec, where: Registry, obs: Observation, the_plan: Plan, log: Log
) -> Outcomes:
    """Write what the plan says. A failed call never erases what was already written: the outcomes so
    far are kept, and a transient failure is reported as the interruption."""
    puts: list[PutOutcome] = []
    src = obs.source
    try:
        if src is not None:
            for tag in the_plan.puts:
                outcome = ecr.put_image(where, spec.repository_name, tag, src.manifest, src.media_type, src.digest)
                puts.append(outcome)
                if outcome.result == "put":
                    log.info(
                        "PutImage repository=%s tag=%s old=%s new=%s",
                        spec.repository_name,
                        tag,
                        obs.tag_digests.get(tag),
                        src.digest,
                    )
                elif outcome.failure is not None:
                    log.warning(
                        "PutImage repository=%s tag=%s failed: %s", spec.repository_name, tag, outcome.failure.code
                    )
    except EcrCallError as exc:
        if not exc.transient:
            raise
        return Outcomes(tuple(puts), interrupted=exc.failure)
    if not the_plan.deletes:
        return Outcomes(tuple(puts))
    try:
        delete_failures = ecr.delete_tags(where, spec.repository_name, the_plan.deletes)
    except EcrCallError as exc:
        failed = tuple(
            Failure(exc.failure.operation, exc.failure.code, exc.failure.message, ImageId(tag=t), tag=t)
            for t in the_plan.deletes
        )
        return Outcomes(tuple(puts), failed, interrupted=exc.failure if exc.transient else None)
    refused = {f.tag for f in delete_failures}
    deleted = tuple(t for t in the_plan.deletes if t not in refused)
    for tag in deleted:
        log.info(
            "BatchDeleteImage repository=%s tag=%s old=%s (released from spec.tags)",
            spec.repository_name,
            tag,
            obs.tag_digests.get(tag),
        )
    return Outcomes(tuple(puts), delete_failures, deleted)


def _events_and_tally(
    spec: EcrImageTagSpec, assessment: Assessment, outcomes: Outcomes, ours_before: str | None
) -> tuple[list[Event], Tally]:
    events: list[Event] = []
    corrections = 0
    for tag, old, new in assessment.moved:
        # Put back after someone moved it off our image, or moved on purpose (new tag, new source).
        corrected = old is not None and old != ours_before
        corrections += corrected
        what = "DriftCorrected" if corrected else "TagMoved"
        events.append(Event("Normal", what, f"{spec.repository_name}:{tag} {old or 'absent'} -> {new}"))
    for tag in assessment.deleted:
        events.append(Event("Normal", "TagDeleted", f"{spec.repository_name}:{tag} released from spec.tags"))
    writes = [("PutImage", o.result) for o in outcomes.puts] + [
        ("BatchDeleteImage", "deleted") for _ in outcomes.deleted
    ]
    return events, Tally(tuple(writes), corrections)


def reconcile(req: Request, ecr: EcrApi, settings: Settings, now: datetime, log: Log) -> Decision:
    """One reconcile of one resource: the decision, with the whole status body."""
    spec, status = req.spec, req.status
    if req.permission.refused is not None:
        return refuse(Reason.FORBIDDEN, req.permission.refused, spec, status, req.generation, now, settings)
    if req.crowded is not None:
        return refuse(Reason.TOO_MANY_CLAIMS, req.crowded, spec, status, req.generation, now, settings)
    region = spec.region or settings.region
    allowed = req.permission
    where = Registry.of(region, spec.registry_id, allowed.role_arn, allowed.namespace)
    source_at = Registry.of(
        spec.source_region(settings.region), spec.source_registry, allowed.source_role_arn, allowed.namespace
    )
    route = Route(source_at, spec.source_repository, where, spec.repository_name)
    prev_tags = previous_tags(status)
    released: Sequence[str] = [t for t in prev_tags if t not in spec.tags]
    ours_before = previous_digest(status)
    obs: Observation | None = None
    outcomes = Outcomes()
    transient: Failure | None
    progress: _Progress | None = None
    try:
        obs = observe(ecr, spec, where, source_at, released, read_policy(req.trigger, spec, settings))
        if req.progress is not None:
            progress = _Progress(req.progress, spec, obs, status, req.generation, now, settings)
        obs = copy_image(ecr, spec, route, obs, settings, log, progress=progress)
        the_plan = plan(spec, obs, prev_tags, ours_before, req.contested, req.undeletable)
        outcomes = _execute(ecr, spec, where, obs, the_plan, log)
        if the_plan.blocked is None and outcomes.interrupted is None:
            obs = replace(obs, copy=copy_referrers(ecr, spec, route, obs, settings, log))
        assessment = assess(spec, obs, the_plan, outcomes, req.contested)
        transient = outcomes.interrupted
    except EcrCallError as exc:
        assessment = assess_call_failure(spec, exc.failure)
        transient = exc.failure if exc.transient else None
        obs = None
    ready = assessment.ready
    # A transient reason (an interrupted write, a throttled read, an upstream that is down) is retried
    # soon; lastSyncTime stays as it was, so the drift scheduler does not count this as a sync.
    retry = transient is not None or (ready.status != "True" and is_transient(ready.reason))
    shown = progress.written(status) if progress else status
    body = _render(assessment, obs, shown, now, req.generation, settings, "keep" if retry else "now")
    events, tally = _events_and_tally(spec, assessment, outcomes, ours_before)
    copied = obs.copy if obs is not None else None
    if copied is not None and copied.blobs_copied:
        events.append(_blobs_copied(spec, route, copied))
        tally = replace(tally, copied_blobs=copied.blobs_copied, copied_bytes=copied.bytes_copied)
    if progress is not None:
        tally = progress.rest(tally)
    events += _warning_on_entry(assessment, status, settings.max_message_length)
    result = "transient" if retry else ready.status.lower()
    # A copy that stopped at its time budget, with nothing wrong, goes on at once.
    budget_spent = copied is not None and not copied.finished and copied.error is None
    return Decision(
        body,
        result,
        tuple(events),
        assessment.tags,
        tally,
        requeue_after=(1.0 if budget_spent else settings.transient_retry_delay) if retry else None,
    )


def _blobs_copied(spec: EcrImageTagSpec, route: Route, report: CopyReport) -> Event:
    source = f"{route.source.registry_id or 'own'}/{route.source.region}/{route.source_repository}"
    return Event(
        "Normal",
        "BlobsCopied",
        f"copied {report.blobs_copied} blobs ({report.bytes_copied} bytes) from {source} into "
        f"{spec.repository_name}; {report.blobs_skipped} already there",
    )


@dataclass(frozen=True)
class Finalized:
    events: tuple[Event, ...]
    tally: Tally = field(default_factory=Tally)
    requeue_after: float | None = None  # a transient failure: try the deletion again later


def finalize(
    spec: EcrImageTagSpec,
    status: Mapping[str, Any],
    permission: Permission,
    undeletable: Mapping[str, str],
    ecr: EcrApi,
    settings: Settings,
    log: Log,
) -> Finalized:
    """deletionPolicy Delete: remove, by tag, the tags that still point at this resource's image and
    that it may delete now (granted, claimed by no other live resource). Never blocks deletion on a
    permanent failure: it says what was kept."""
    limit = settings.max_message_length

    def retained(why: str) -> Finalized:
        return Finalized((Event("Warning", "TagsRetained", trim(why, limit)),))

    if spec.mode == "Observe":  # Observe never writes to ECR, whatever an earlier Enforce put
        return retained("no tag deleted: mode Observe writes nothing to ECR")
    if permission.refused is not None:
        return retained(f"no tag deleted: {permission.refused}")
    where = Registry.of(spec.region or settings.region, spec.registry_id, permission.role_arn, permission.namespace)
    tags = list(dict.fromkeys([*spec.tags, *previous_tags(status)]))
    try:
        got = ecr.batch_get_image(where, spec.repository_name, [ImageId(tag=t) for t in tags])
        digests = {img.image_id.tag: img.digest for img in got.images if img.image_id.tag}
        owned = [t for t in tags if t not in undeletable]
        delete, kept = plan_deletion(owned, digests, previous_digest(status))
        kept += tuple((t, why) for t, why in undeletable.items() if t in tags)
        failures = ecr.delete_tags(where, spec.repository_name, delete) if delete else ()
    except EcrCallError as exc:
        if exc.transient:
            return Finalized((), requeue_after=settings.transient_retry_delay)
        return retained(f"no tag deleted: {exc}")
    failed = {f.tag: f"{f.code}: {f.message}" for f in failures}
    done = tuple(t for t in delete if t not in failed)
    for tag in done:
        log.info(
            "BatchDeleteImage repository=%s tag=%s old=%s (resource deleted)", spec.repository_name, tag, digests[tag]
        )
    events: list[Event] = []
    if done:
        events.append(Event("Normal", "TagsDeleted", f"deleted {', '.join(done)}"))
    kept += tuple((t, why) for t, why in failed.items() if t)
    if kept:
        events.append(Event("Warning", "TagsRetained", trim("kept " + "; ".join(f"{t}: {w}" for t, w in kept), limit)))
    return Finalized(tuple(events), Tally(tuple(("BatchDeleteImage", "deleted") for _ in done)))
