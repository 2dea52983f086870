"""kopf entry points, and only those: parse the spec, decide who may act, reconcile, patch status,
post events."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf

from . import apisession, metrics
from .apisession import KubeObjects
from .authz import ALLOWED_REPOSITORIES, ASSUME_ROLE, forbidden, parse_patterns, patterns_for, role_for
from .batching import ReadPolicy, read_policy
from .drift_schedule import Entry, Group, entry_of
from .drift_scheduler import DriftScheduler, Outcome, Tuning
from .ecr import EcrCallError
from .ownership import Claim, ClaimKey, claim_of, claims, contested
from .planner import TRANSIENT_REASONS, Assessment, assess_refusal
from .reconcile import finalize, previous_digest, reconcile
from .runtime import Runtime, runtime_of
from .settings import Settings
from .spec import EcrImageTagSpec, SpecError, parse_spec
from .status import merge_conditions, trim

GROUP, VERSION, PLURAL = "ecrtag.dev", "v1alpha1", "ecrimagetags"
# kopf passes each index as a keyword named after its function; typed as plain mappings here, and
# defaulted so that the handlers still fit kopf's callback protocols.
TagClaims = Mapping[ClaimKey, Iterable[Claim]]
NamespaceRules = Mapping[str, Iterable[dict[str, str]]]
DriftEntries = Mapping[Group, Iterable[Entry]]
_NONE: Mapping[Any, Any] = {}


def _runtime(memo: kopf.Memo) -> Runtime:
    """The runtime a test or the CLI put on memo, else one built from the environment."""
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        runtime = Runtime.build(Settings())
        memo["runtime"] = runtime
    return runtime


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    runtime = _runtime(memo)
    ours = runtime.settings
    # kopf's marks on objects under our own domain instead of kopf.zalando.org.
    settings.persistence.finalizer = ours.finalizer
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ours.annotation_prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ours.annotation_prefix, key="last-handled-configuration"
    )
    # Watch streams can go silent without an error; time them out so they are re-established.
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.connect_timeout = ours.api_connect_timeout
    settings.watching.chunk_size = ours.api_list_chunk_size  # paged lists: each page fits the request timeout
    # A request on a dead keep-alive connection would otherwise wait kopf's default 300 s.
    settings.networking.connect_timeout = ours.api_connect_timeout
    settings.networking.request_timeout = ours.api_request_timeout
    settings.execution.max_workers = ours.max_workers
    # kopf starts a worker per object with an event and keeps its body until the handler is done:
    # 5,000 objects created at once would all wait for PutImage tokens in memory (~95 KB each).
    # Bounded, the rest wait as raw events; short-lived, so that status events do not hold slots.
    settings.queueing.worker_limit = ours.object_worker_limit
    settings.queueing.idle_timeout = ours.object_worker_idle
    if ours.metrics_port:
        metrics.serve(ours.metrics_port, ours.metrics_host)
    logger.info("ecr-tag-operator started: region=%s, metrics port %s", ours.region, ours.metrics_port or "off")


@kopf.on.login()
async def login(
    settings: kopf.OperatorSettings, logger: kopf.Logger, memo: kopf.Memo, **kwargs: Any
) -> kopf.AiohttpSession | None:
    """kopf's own credentials, served through a session with a bounded connection pool."""
    info = apisession.credentials(settings=settings, logger=logger, **kwargs)
    runtime = _runtime(memo)
    runtime.credentials = info  # for the drift scheduler's own session
    return apisession.session_for(info, runtime.settings.api_connection_limit) if info else None


@kopf.index(GROUP, VERSION, PLURAL)
def tag_claims(meta: kopf.Meta, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> dict[ClaimKey, Claim]:
    """Every resource's claims on (registry, region, repository, tag), for deciding owners."""
    return claims(meta, spec, runtime_of(memo).settings.region)


@kopf.index("", "v1", "namespaces")
def namespace_rules(name: str, annotations: kopf.Annotations, **_: Any) -> dict[str, dict[str, str]]:
    """The ecrtag.dev annotations cluster admins put on namespaces."""
    return {name: {k: v for k, v in annotations.items() if k in (ALLOWED_REPOSITORIES, ASSUME_ROLE)}}


def _first(store: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return next(iter(store or ()), {})


def _patch_assessment(
    patch: kopf.Patch, status: Mapping[str, Any], meta: kopf.Meta, runtime: Runtime, assessment: Assessment
) -> None:
    patch.status["conditions"] = merge_conditions(
        status.get("conditions") or [],
        assessment.conditions,
        runtime.clock(),
        meta.get("generation"),
        runtime.settings.max_message_length,
    )
    patch.status["observedGeneration"] = meta.get("generation")
    if assessment.tags:
        patch.status["tags"] = [{"tag": t.tag, "inSync": False, "reason": t.reason} for t in assessment.tags]


def _parse(
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    runtime: Runtime,
) -> EcrImageTagSpec:
    """The spec, or Ready=False InvalidSpec in status and a PermanentError: retrying cannot help."""
    try:
        return parse_spec(spec)
    except SpecError as exc:
        message = str(exc)
        _patch_assessment(patch, status, meta, runtime, assess_refusal("InvalidSpec", message))
        kopf.warn(body, reason="InvalidSpec", message=trim(message, runtime.settings.max_message_length))
        metrics.RECONCILES.labels("spec", "invalid").inc()
        raise kopf.PermanentError(message) from None


def _permission(
    parsed: EcrImageTagSpec, namespace: str, rules: NamespaceRules, runtime: Runtime
) -> tuple[str | None, str | None]:
    """(role ARN or None, None) when the namespace may act on this spec, else (None, why not)."""
    annotations = _first(rules.get(namespace))
    default = parse_patterns(runtime.settings.allowed_repositories)
    why = forbidden(parsed, patterns_for(annotations, default), namespace)
    if why:
        return None, why
    return role_for(annotations, parse_patterns(runtime.settings.allowed_role_arns), namespace)


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("reason"))
    return None


def _contested(parsed: EcrImageTagSpec, meta: kopf.Meta, index: TagClaims, runtime: Runtime) -> dict[str, str]:
    me = claim_of(meta, parsed, runtime.settings.region)
    return contested(parsed, me, lambda key: index.get(key, ()), runtime.settings.region)


def _run(
    trigger: str,
    parsed: EcrImageTagSpec,
    status: Mapping[str, Any],
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    runtime: Runtime,
    logger: kopf.Logger,
    tag_claims: TagClaims,
    namespace_rules: NamespaceRules,
) -> None:
    role_arn, why_not = _permission(parsed, str(meta.get("namespace")), namespace_rules, runtime)
    if why_not:
        # Refused before any ECR call: the namespace is not allowed this repository or role.
        _patch_assessment(patch, status, meta, runtime, assess_refusal("Forbidden", why_not, parsed))
        patch.status["lastSyncTime"] = None
        if _ready_reason(status) != "Forbidden":
            kopf.warn(body, reason="Forbidden", message=trim(why_not, runtime.settings.max_message_length))
        metrics.RECONCILES.labels(trigger, "forbidden").inc()
        return
    owners = _contested(parsed, meta, tag_claims, runtime)
    patience = (
        runtime.settings.drift_read_patience
        if trigger in ("drift", "resume")
        else runtime.settings.change_read_patience
    )
    policy = ReadPolicy(patience=patience, layer_max_age=parsed.drift_check_interval.total_seconds())
    with runtime.lock_for(str(meta.get("uid"))), read_policy(policy):
        result = reconcile(
            runtime.ecr,
            parsed,
            status,
            runtime.settings,
            runtime.clock(),
            meta.get("generation"),
            logger,
            contested=owners,
            role_arn=role_arn,
        )
    for key, value in result.status.items():
        patch.status[key] = value
    assessment = result.assessment
    for tag, old, new in assessment.moved:
        # Put back after someone moved it off our image, or moved on purpose (new tag, new source).
        what = "DriftCorrected" if old and old != previous_digest(status) else "TagMoved"
        kopf.info(body, reason=what, message=f"{parsed.repository_name}:{tag} {old or 'absent'} -> {new}")
    for tag in assessment.deleted:
        kopf.info(body, reason="TagDeleted", message=f"{parsed.repository_name}:{tag} released from spec.tags")
    ready = assessment.ready
    if ready.status == "False" and ready.reason not in TRANSIENT_REASONS and ready.reason != _ready_reason(status):
        kopf.warn(body, reason=ready.reason, message=trim(ready.message, runtime.settings.max_message_length))
    metrics.RECONCILES.labels(trigger, "transient" if result.transient else ready.status.lower()).inc()
    metrics.observe_tags(str(meta.get("uid")), assessment.tags)
    if result.transient is not None:
        # The drift scheduler retries after a delay when the last sync time is left as it was.
        patch.status.pop("lastSyncTime", None)
        raise kopf.TemporaryError(
            f"{result.transient.operation}: {result.transient.code}",
            delay=runtime.settings.transient_retry_delay,
        )


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_spec(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    reason: str,
    tag_claims: TagClaims = _NONE,
    namespace_rules: NamespaceRules = _NONE,
    **_: Any,
) -> None:
    runtime = runtime_of(memo)
    runtime.adopt_kopf_context()  # kopf has its indexes complete once it calls a resource handler
    parsed = _parse(spec, status, meta, body, patch, runtime)
    if reason == "resume" and status.get("lastSyncTime") and status.get("observedGeneration") == meta.get("generation"):
        # Seen and synced before the restart: the drift scheduler checks it when due, so a restart of
        # the operator does not read every resource at once.
        return
    _run(str(reason), parsed, status, meta, body, patch, runtime, logger, tag_claims, namespace_rules)


@kopf.index(GROUP, VERSION, PLURAL)
def drift_entries(
    meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> dict[Group, Entry]:
    """What the drift scheduler needs of each resource, grouped by repository; no body is kept."""
    entry = entry_of(meta, spec, status, runtime_of(memo).settings.region)
    return {entry.group: entry} if entry else {}


def _urgent(entry: Entry, runtime: Runtime, tag_claims: TagClaims, namespace_rules: NamespaceRules) -> bool:
    """Act now, not at the next drift: a tag's owner changed (the winner was deleted or let the tag
    go), or a refusal has been lifted by a namespace's annotations."""
    if entry.ready_reason == "Forbidden":
        return _permission(entry.spec, entry.namespace, namespace_rules, runtime)[1] is None
    region = runtime.settings.region
    owners = contested(entry.spec, entry.claim, lambda key: tag_claims.get(key, ()), region)
    return set(owners) != entry.conflicts


def _drift_check(
    raw: dict[str, Any],
    trigger: str,
    *,
    runtime: Runtime,
    settings: kopf.OperatorSettings,
    tag_claims: TagClaims,
    namespace_rules: NamespaceRules,
) -> Outcome | None:
    """One drift check (or rescue of a lost creation) on a freshly read object; the scheduler writes
    the status patch. Runs on the scheduler's threads, in a copy of a kopf handler's context."""
    body = kopf.Body(cast(kopf.RawBody, raw))
    try:
        parsed = parse_spec(body.spec)
    except SpecError:
        return None  # already reported by the spec handler; nothing to check until the spec changes
    patch = kopf.Patch()
    logger = kopf.ObjectLogger(body=body, settings=settings)
    if trigger == "rescue":
        # Under heavy load kopf can lose an object's creation after a timed-out patch (seen with
        # 5,000 objects created at once); the scheduler takes it over.
        logger.warning("no reconcile since creation; reconciling from the drift scheduler")
    try:
        _run(trigger, parsed, body.status, body.meta, body, patch, runtime, logger, tag_claims, namespace_rules)
    except kopf.TemporaryError as exc:
        logger.warning("drift check deferred: %s", exc)
        return Outcome(dict(patch.get("status") or {}), transient=True)
    return Outcome(dict(patch.get("status") or {}), transient=False)


def _forget_gone(runtime: Runtime, uids: set[str]) -> None:
    runtime.keep_only(uids)
    metrics.keep_only(uids)


@kopf.on.startup()
async def start_drift_scheduler(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    drift_entries: DriftEntries = _NONE,
    tag_claims: TagClaims = _NONE,
    namespace_rules: NamespaceRules = _NONE,
    **_: Any,
) -> None:
    runtime = _runtime(memo)
    ours = runtime.settings
    store = KubeObjects(
        lambda: runtime.credentials,
        f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
        limit=16,  # each TLS connection holds ~128 KiB of buffers; a group's GETs queue briefly instead
        connect_timeout=ours.api_connect_timeout,
        request_timeout=ours.api_request_timeout,
    )
    scheduler = DriftScheduler(
        entries=lambda: (entry for values in drift_entries.values() for entry in values),
        urgent=lambda entry: _urgent(entry, runtime, tag_claims, namespace_rules),
        keep_only=functools.partial(_forget_gone, runtime),
        check=functools.partial(
            _drift_check, runtime=runtime, settings=settings, tag_claims=tag_claims, namespace_rules=namespace_rules
        ),
        store=store,
        tuning=Tuning(
            tick=ours.drift_tick,
            jitter=ours.drift_jitter,
            early=ours.drift_early,
            rescue_after=ours.rescue_after,
            group_size=ours.drift_group_size,
            parallel_groups=ours.drift_parallel_groups,
            retry_delay=ours.transient_retry_delay,
            hold=2 * ours.drift_tick,
        ),
        clock=runtime.clock,
        context=lambda: runtime.kopf_context,
    )
    memo["drift_store"] = store
    memo["drift_task"] = asyncio.create_task(scheduler.run(), name="ecr-tag-operator drift scheduler")


@kopf.on.cleanup()
async def stop_drift_scheduler(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("drift_task")
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    store = memo.get("drift_store")
    if isinstance(store, KubeObjects):
        await store.close()


def _delete_policy(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete"


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_delete_policy)
def delete_tags(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    tag_claims: TagClaims = _NONE,
    namespace_rules: NamespaceRules = _NONE,
    **_: Any,
) -> None:
    """deletionPolicy Delete: remove, by tag, the tags that still point at this resource's image."""
    runtime = runtime_of(memo)
    runtime.adopt_kopf_context()
    limit = runtime.settings.max_message_length
    uid = str(meta.get("uid"))
    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        kopf.warn(body, reason="TagsRetained", message=trim(f"spec is invalid, no tag deleted: {exc}", limit))
        return
    role_arn, why_not = _permission(parsed, str(meta.get("namespace")), namespace_rules, runtime)
    if why_not:
        kopf.warn(body, reason="TagsRetained", message=trim(f"no tag deleted: {why_not}", limit))
        return
    try:
        with runtime.lock_for(uid):
            owners = _contested(parsed, meta, tag_claims, runtime)
            done = finalize(runtime.ecr, parsed, status, runtime.settings, logger, role_arn, owners)
    except EcrCallError as exc:
        if exc.transient:
            raise kopf.TemporaryError(str(exc), delay=runtime.settings.transient_retry_delay) from exc
        # Blocking deletion forever would help nobody: say what was left, and let the object go.
        kopf.warn(body, reason="TagsRetained", message=trim(f"no tag deleted: {exc}", limit))
        return
    finally:
        runtime.forget(uid)
        metrics.forget_tags(uid)
    if done.deleted:
        kopf.info(body, reason="TagsDeleted", message=f"deleted {', '.join(done.deleted)}")
    if done.retained:
        kept = "; ".join(f"{tag}: {why}" for tag, why in done.retained)
        kopf.warn(body, reason="TagsRetained", message=trim(f"kept {kept}", limit))
