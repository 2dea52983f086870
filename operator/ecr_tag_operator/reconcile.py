"""One reconcile: observe ECR, plan (pure), write, assess (pure), render the status body.

No kopf here: handlers.py calls this and turns the result into a status patch, events and errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import metrics
from .ecr import EcrApi, EcrCallError, Failure, ImageId, PutOutcome, Registry
from .observe import Observation, observe
from .planner import Assessment, Outcomes, Plan, assess, assess_call_failure, plan, plan_deletion
from .settings import Settings
from .spec import EcrImageTagSpec
from .status import render


@dataclass(frozen=True)
class Result:
    status: dict[str, Any]
    assessment: Assessment
    transient: Failure | None  # set when the caller should retry soon (kopf.TemporaryError)


def previous_tags(status: Mapping[str, Any]) -> list[str]:
    return [str(t["tag"]) for t in status.get("tags") or [] if isinstance(t, Mapping) and "tag" in t]


def previous_digest(status: Mapping[str, Any]) -> str | None:
    image = status.get("image") or {}
    digest = image.get("digest") if isinstance(image, Mapping) else None
    return str(digest) if digest else None


def _execute(
    ecr: EcrApi,
    spec: EcrImageTagSpec,
    where: Registry,
    obs: Observation,
    the_plan: Plan,
    ours_before: str | None,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> Outcomes:
    puts: list[PutOutcome] = []
    deleted: tuple[str, ...] = ()
    delete_failures: tuple[Failure, ...] = ()
    src = obs.source
    try:
        if src is not None:
            for tag in the_plan.puts:
                outcome = ecr.put_image(where, spec.repository_name, tag, src.manifest, src.media_type, src.digest)
                puts.append(outcome)
                metrics.TAG_WRITES.labels("PutImage", outcome.result).inc()
                old = obs.tag_digests.get(tag)
                if outcome.result == "put":
                    if old is not None and old != ours_before:  # moved off our image, not a promotion
                        metrics.DRIFT_CORRECTIONS.inc()
                    log.info(
                        "PutImage repository=%s tag=%s old=%s new=%s",
                        spec.repository_name,
                        tag,
                        old,
                        src.digest,
                    )
                elif outcome.failure is not None:
                    log.warning(
                        "PutImage repository=%s tag=%s failed: %s",
                        spec.repository_name,
                        tag,
                        outcome.failure.code,
                    )
        if the_plan.deletes:
            delete_failures = ecr.delete_tags(where, spec.repository_name, the_plan.deletes)
            failed = {f.tag for f in delete_failures}
            deleted = tuple(t for t in the_plan.deletes if t not in failed)
            for tag in deleted:
                metrics.TAG_WRITES.labels("BatchDeleteImage", "deleted").inc()
                log.info(
                    "BatchDeleteImage repository=%s tag=%s old=%s (released from spec.tags)",
                    spec.repository_name,
                    tag,
                    obs.tag_digests.get(tag),
                )
    except EcrCallError as exc:
        if not exc.transient:
            raise
        return Outcomes(tuple(puts), delete_failures, deleted, interrupted=exc.failure)
    return Outcomes(tuple(puts), delete_failures, deleted)


def reconcile(
    ecr: EcrApi,
    spec: EcrImageTagSpec,
    status: Mapping[str, Any],
    settings: Settings,
    now: datetime,
    generation: int | None,
    log: logging.Logger | logging.LoggerAdapter[Any],
    contested: Mapping[str, str] | None = None,
    role_arn: str | None = None,
) -> Result:
    region = spec.region or settings.region
    where = Registry(region, spec.registry_id, role_arn)
    prev_tags = previous_tags(status)
    released: Sequence[str] = [t for t in prev_tags if t not in spec.tags]
    obs: Observation | None = None
    try:
        obs = observe(ecr, spec, region, released, role_arn)
        ours_before = previous_digest(status)
        the_plan = plan(spec, obs, prev_tags, ours_before, contested)
        outcomes = _execute(ecr, spec, where, obs, the_plan, ours_before, log)
        assessment = assess(spec, obs, the_plan, outcomes, contested)
        transient = outcomes.interrupted
    except EcrCallError as exc:
        assessment = assess_call_failure(spec, exc.failure)
        transient = exc.failure if exc.transient else None
        obs = None
    body = render(
        assessment,
        obs,
        status,
        now,
        generation,
        max_layers=settings.max_listed_layers,
        max_failures=settings.max_listed_failures,
        message_limit=settings.max_message_length,
    )
    return Result(body, assessment, transient)


@dataclass(frozen=True)
class Finalized:
    deleted: tuple[str, ...]
    retained: tuple[tuple[str, str], ...]


def finalize(
    ecr: EcrApi,
    spec: EcrImageTagSpec,
    status: Mapping[str, Any],
    settings: Settings,
    log: logging.Logger | logging.LoggerAdapter[Any],
    role_arn: str | None = None,
    contested: Mapping[str, str] | None = None,
) -> Finalized:
    """Delete the tags that still point at this resource's image and that no other resource owns;
    EcrCallError when a call fails."""
    where = Registry(spec.region or settings.region, spec.registry_id, role_arn)
    tags = list(dict.fromkeys([*spec.tags, *previous_tags(status)]))
    got = ecr.batch_get_image(where, spec.repository_name, [ImageId(tag=t) for t in tags])
    digests = {img.image_id.tag: img.digest for img in got.images if img.image_id.tag}
    owned = [t for t in tags if t not in (contested or {})]
    delete, kept = plan_deletion(owned, digests, previous_digest(status))
    kept += tuple((t, f"owned by {owner}") for t, owner in (contested or {}).items() if t in tags)
    failures = ecr.delete_tags(where, spec.repository_name, delete) if delete else ()
    failed = {f.tag: f"{f.code}: {f.message}" for f in failures}
    for tag in delete:
        if tag not in failed:
            metrics.TAG_WRITES.labels("BatchDeleteImage", "deleted").inc()
            log.info(
                "BatchDeleteImage repository=%s tag=%s old=%s (resource deleted)",
                spec.repository_name,
                tag,
                digests[tag],
            )
    return Finalized(
        tuple(t for t in delete if t not in failed),
        kept + tuple((t, why) for t, why in failed.items() if t),
    )
