"""The status body: conditions with stable lastTransitionTime, lists capped, ECR's words trimmed.

Everything here is pure; the adapters write the result as a merge patch, which replaces lists whole,
so every list is written complete, and a key that is no longer known is written as null (removed).
Reading a previous status goes through the helpers here too, so it is parsed in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from .manifests import Platform
from .model import Assessment, Condition, CopyReport, Failure, Observation

# Credentials never belong in status; AWS messages sometimes quote request parameters, so drop any
# token-looking words before they are written anywhere a user can read.
_SECRET_HINTS = ("AKIA", "ASIA", "X-Amz-Security-Token", "X-Amz-Credential", "aws_secret")


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Ready condition of a status, or an empty mapping."""
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond
    return {}


def ready_reason(status: Mapping[str, Any]) -> str | None:
    reason = ready_condition(status).get("reason")
    return str(reason) if reason else None


def previous_tags(status: Mapping[str, Any]) -> list[str]:
    """The tags the last status listed (a tag dropped from spec since is released)."""
    return [str(t["tag"]) for t in status.get("tags") or [] if isinstance(t, Mapping) and "tag" in t]


def previous_digest(status: Mapping[str, Any]) -> str | None:
    """The source digest the last status named: the image this resource last put its tags on."""
    image = status.get("image") or {}
    digest = image.get("digest") if isinstance(image, Mapping) else None
    return str(digest) if digest else None


def owned_elsewhere(status: Mapping[str, Any]) -> frozenset[str]:
    """Tags the last status named another owner for."""
    return frozenset(str(t.get("tag")) for t in status.get("tags") or [] if isinstance(t, Mapping) and t.get("owner"))


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


# Another tenant's or the operator's identity is not a tenant's business: IAM principals' ARNs and
# account ids in ECR's and STS's messages are shown as placeholders.
_ARN = re.compile(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:[^\s,;)]+")
_ACCOUNT = re.compile(r"\b\d{12}\b")


def trim(text: str, limit: int) -> str:
    words = [("[redacted]" if any(h in w for h in _SECRET_HINTS) else w) for w in text.split()]
    text = _ACCOUNT.sub("[account]", _ARN.sub("[principal]", " ".join(words)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    new: Sequence[Condition],
    now: datetime,
    generation: int | None,
    message_limit: int,
) -> list[dict[str, Any]]:
    """New conditions, keeping lastTransitionTime where a condition's status did not change, and
    keeping previous conditions of types not mentioned now (a partial assessment)."""
    before = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for cond in new:
        old = before.pop(cond.type, None)
        changed = old is None or old.get("status") != cond.status
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": trim(cond.message, message_limit),
            "lastTransitionTime": timestamp(now) if changed or old is None else old.get("lastTransitionTime"),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    out.extend(dict(c) for c in before.values())
    return out


def failure_entry(f: Failure, message_limit: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "operation": f.operation,
        "code": f.code,
        "reason": trim(f.message, message_limit),
    }
    if f.tag:
        entry["tag"] = f.tag
    if f.layer_digest:
        entry["layerDigest"] = f.layer_digest
    if f.image_id is not None and f.image_id.to_api():
        entry["imageId"] = f.image_id.to_api()
    return entry


def render(
    assessment: Assessment,
    obs: Observation | None,
    previous: Mapping[str, Any],
    now: datetime,
    generation: int | None,
    *,
    max_layers: int,
    max_failures: int,
    message_limit: int,
    sync: Literal["now", "keep", "clear"] = "now",
    max_referrers: int = 20,
) -> dict[str, Any]:
    """The whole status, as a merge patch, for every outcome (refusals and failed calls included).

    ``sync`` says what becomes of lastSyncTime: ``now`` after ECR was read and acted on, ``keep`` after
    a transient failure (retried soon; not a sync), ``clear`` when the operator refused to act."""
    body: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(
            previous.get("conditions") or [], assessment.conditions, now, generation, message_limit
        ),
        "failures": [failure_entry(f, message_limit) for f in assessment.failures[:max_failures]],
        "failuresTruncated": len(assessment.failures) > max_failures,
        # What is not known now is removed, not left as it was: a stale image or layer list would lie.
        "image": None,
        "layers": None,
        "layersTruncated": None,
        "layerSummary": None,
        "copy": None,
    }
    if sync == "now":
        body["lastSyncTime"] = timestamp(now)
    elif sync == "clear":
        body["lastSyncTime"] = None
    if assessment.tags:
        body["tags"] = [
            {"tag": t.tag, "inSync": t.in_sync}
            | ({"digest": t.digest} if t.digest else {})
            | ({"reason": t.reason} if t.reason else {})
            | ({"owner": t.owner} if t.owner else {})
            for t in assessment.tags
        ]
    src = obs.source if obs else None
    if obs is not None and src is not None:
        children = src.parsed.children
        body["image"] = {
            "digest": src.digest,
            "mediaType": src.media_type,
            # Capped like the layers: an index of thousands of children must not outgrow etcd's limit.
            "platforms": [
                {"digest": c.digest, "present": obs.children_present.get(c.digest, False)}
                | {k: v for k, v in (("os", p.os), ("architecture", p.architecture), ("variant", p.variant)) if v}
                for c in children[:max_layers]
                for p in [c.platform or Platform()]
            ],
        }
        if src.parsed.is_index:
            body["image"] |= {"platformCount": len(children), "platformsTruncated": len(children) > max_layers}
        blobs = src.blobs()
        layers: list[dict[str, Any]] = []
        counts = {"total": len(blobs), "available": 0, "unavailable": 0, "archived": 0, "missing": 0}
        for blob, owner in blobs:
            info = obs.layers.get(blob.digest)
            entry: dict[str, Any] = {"layerDigest": blob.digest}
            if blob.media_type:
                entry["mediaType"] = blob.media_type
            if src.parsed.is_index:
                entry["manifestDigest"] = owner
            if info is None:
                counts["missing"] += 1
            else:
                entry["layerAvailability"] = info.availability
                counts[info.availability.lower()] = counts.get(info.availability.lower(), 0) + 1
                size = info.size if info.size is not None else blob.size
                if size is not None:
                    entry["layerSize"] = size
            layers.append(entry)
        body["layers"] = layers[:max_layers]
        body["layersTruncated"] = len(layers) > max_layers
        body["layerSummary"] = counts
        if obs.copy is not None:
            body["copy"] = copy_entry(obs.copy, message_limit, max_referrers)
    return body


def copy_progress(
    report: CopyReport,
    conditions: Sequence[Condition],
    previous_conditions: Sequence[Mapping[str, Any]],
    now: datetime,
    generation: int | None,
    *,
    message_limit: int,
    max_referrers: int = 20,
) -> dict[str, Any]:
    """A copy while it runs, as a partial merge patch: ``status.copy`` and the conditions (the list whole,
    as a merge patch replaces it; lastTransitionTime kept where a status did not change). Nothing else
    is written: the tags, the image and lastSyncTime are the reconcile's to write when it ends."""
    return {
        "copy": copy_entry(report, message_limit, max_referrers),
        "conditions": merge_conditions(previous_conditions, conditions, now, generation, message_limit),
    }


def copy_entry(report: CopyReport, message_limit: int, max_referrers: int) -> dict[str, Any]:
    """``status.copy``: what the last reconcile's copy into the target did."""
    entry: dict[str, Any] = {
        "blobs": {"total": report.blobs_total, "copied": report.blobs_copied, "skipped": report.blobs_skipped},
        "bytes": {"total": report.bytes_total, "copied": report.bytes_copied, "skipped": report.bytes_skipped},
        "parts": report.parts,
        "finished": report.finished and report.error is None,
        "childrenPut": len(report.children_put),
        "inFlight": report.in_flight,
        "lastError": failure_entry(report.error, message_limit) if report.error else None,
        "referrers": [
            {"digest": r.digest} | ({"artifactType": r.artifact_type} if r.artifact_type else {})
            for r in report.referrers[:max_referrers]
        ],
        "referrersTruncated": len(report.referrers) > max_referrers,
    }
    if report.tags_put:
        entry["tagsPut"] = list(report.tags_put)
    return entry
