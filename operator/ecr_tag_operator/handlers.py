"""kopf's registrations, and the adapters that turn a kopf call into a core request and apply the
core's decision: a status patch, events, metrics, a retry. The decisions themselves are made in
:mod:`.core` and the pure modules below it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from . import apisession, core, grants, metrics, views
from .apisession import KubeObjects, StatusProgress
from .core import Decision
from .drift_schedule import Entry, Group, entry_of, shared_claims
from .drift_scheduler import DriftScheduler, Tuning
from .heap import Heap
from .kopf_startup import WorkerLimit
from .ownership import Claim, ClaimKey, Holding, claims, holding
from .policy_reporter import PolicyEntry, PolicyReporter
from .runtime import Runtime, runtime_of
from .spec import SpecError, parse_spec
from .views import NamespaceClaims, NamespaceLabels, Policies, TagClaims

GROUP, VERSION, PLURAL, POLICIES = "ecrtag.dev", "v1alpha1", "ecrimagetags", "ecrtagpolicies"
# kopf passes each index as a keyword named after its function; typed as plain mappings (views.py),
# and defaulted so that the handlers still fit kopf's callback protocols.
DriftEntries = Mapping[Group, Iterable[Entry]]
_NONE: Mapping[Any, Any] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    runtime = runtime_of(memo)
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
    # Not while kopf lists what exists: every object needs a worker before any is handled.
    settings.queueing.worker_limit = WorkerLimit(ours.object_worker_limit, runtime.handling.is_set)
    settings.queueing.idle_timeout = ours.object_worker_idle
    metrics.DEFERRED.set_function(runtime.deferred_count)
    if ours.metrics_port:
        metrics.serve(ours.metrics_port, ours.metrics_host)
    logger.info("ecr-tag-operator started: region=%s, metrics port %s", ours.region, ours.metrics_port or "off")


@kopf.on.login()
async def login(
    settings: kopf.OperatorSettings, logger: kopf.Logger, memo: kopf.Memo, **kwargs: Any
) -> kopf.AiohttpSession | None:
    """kopf's own credentials, served through a session with a bounded connection pool."""
    info = apisession.credentials(settings=settings, logger=logger, **kwargs)
    runtime = runtime_of(memo)
    runtime.credentials = info  # for the drift scheduler's own session
    return apisession.session_for(info, runtime.settings.api_connection_limit) if info else None


@kopf.index(GROUP, VERSION, PLURAL)
def tag_claims(meta: kopf.Meta, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> dict[ClaimKey, Claim]:
    """Every resource's claims on (account, region, repository, tag), for deciding owners."""
    runtime = runtime_of(memo)
    return shared_claims(claims(meta, spec, runtime.settings.region, runtime.own_account))


@kopf.index(GROUP, VERSION, PLURAL)
def namespace_claims(meta: kopf.Meta, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> dict[str, Holding]:
    """How many tags each resource claims, by namespace, for the cap on claims per namespace."""
    runtime = runtime_of(memo)
    return holding(meta, spec, runtime.settings.region, runtime.own_account)


@kopf.index(GROUP, VERSION, POLICIES)
def policies(
    name: str, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> dict[str, PolicyEntry]:
    """Every EcrTagPolicy, parsed once per change (an invalid one grants nothing and says why)."""
    try:
        parsed: grants.Policy | grants.PolicyError = grants.parse_policy(name, spec, runtime_of(memo).own_account)
    except grants.PolicyError as exc:
        parsed = exc
    return {name: PolicyEntry(parsed, meta.get("generation"), str(meta.get("resourceVersion")), dict(status))}


@kopf.index("", "v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    """Each Namespace's labels: what policies select it by."""
    return {name: dict(labels)}


@kopf.on.event("", "v1", "namespaces")
def indexes_ready(memo: kopf.Memo, **_: Any) -> None:
    """kopf calls handlers only once its indexes are complete; every cluster has namespaces."""
    runtime_of(memo).handling.set()


@kopf.index(GROUP, VERSION, PLURAL)
def drift_entries(
    meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> dict[Group, Entry]:
    """What the drift scheduler needs of each resource, grouped by repository; no body is kept."""
    runtime = runtime_of(memo)
    entry = entry_of(meta, spec, status, runtime.settings.region, runtime.own_account)
    return {entry.group: entry} if entry else {}


# -- from kopf's world to a request, and from a decision back ------------------------------------------


def record(uid: str, trigger: str, decision: Decision) -> None:
    """A decision's figures, as metrics."""
    metrics.RECONCILES.labels(trigger, decision.result).inc()
    metrics.record_tally(decision.tally)
    if decision.tags:
        metrics.observe_tags(uid, decision.tags)


def _apply(decision: Decision, patch: kopf.Patch, body: kopf.Body, trigger: str) -> None:
    for key, value in decision.status.items():
        patch.status[key] = value
    for event in decision.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    record(str(body.meta.get("uid")), trigger, decision)
    if decision.requeue_after is not None:
        raise kopf.TemporaryError(f"retrying: {decision.result}", delay=decision.requeue_after)


def _progress(memo: Any, meta: Mapping[str, Any], runtime: Runtime) -> StatusProgress | None:
    """Where a reconcile's copy reports while it runs: status patches on kopf's event loop through the
    session made at start-up, and the copy metrics. None before start-up (handlers called directly)."""
    store, loop = memo.get("progress_store"), memo.get("loop")
    if not isinstance(store, KubeObjects) or not isinstance(loop, asyncio.AbstractEventLoop):
        return None
    return StatusProgress(store, loop, meta, runtime.settings.api_request_timeout, metrics.record_copy)


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
    policies: Policies = _NONE,
    namespace_labels: NamespaceLabels = _NONE,
    namespace_claims: NamespaceClaims = _NONE,
    **_: Any,
) -> None:
    runtime = runtime_of(memo)
    trigger = str(reason)
    parsed = core.parse(spec, status, meta.get("generation"), runtime.clock(), runtime.settings)
    if isinstance(parsed, Decision):
        _apply(parsed, patch, body, "spec")
        return
    if trigger == "resume" and core.skip_on_resume(status, meta.get("generation")):
        return
    namespace, uid = str(meta.get("namespace")), str(meta.get("uid"))
    if not runtime.enter(namespace):
        # The namespace has its share of reconciles in flight: this change waits its turn in the drift
        # scheduler instead of holding one of kopf's workers (and a PutImage token) from the others.
        runtime.defer(uid)
        logger.info("namespace %s has %d reconciles in flight: queued", namespace, runtime.settings.namespace_in_flight)
        return
    try:
        request = views.request_for(
            parsed,
            status,
            meta,
            trigger,
            runtime,
            tag_claims,
            views.Grants(runtime, policies, namespace_labels),
            namespace_claims=namespace_claims,
        )
        request = dataclasses.replace(request, progress=_progress(memo, meta, runtime))
        with runtime.lock_for(uid):
            decision = core.reconcile(request, runtime.ecr, runtime.settings, runtime.clock(), logger)
    finally:
        runtime.leave(namespace)
    runtime.undefer(uid)
    _apply(decision, patch, body, trigger)


# -- the drift scheduler's adapters --------------------------------------------------------------------


def _drift_check(
    raw: dict[str, Any],
    trigger: str,
    *,
    runtime: Runtime,
    settings: kopf.OperatorSettings,
    tag_claims: TagClaims,
    view: Callable[[], views.Grants],
    progress: Callable[[Mapping[str, Any]], StatusProgress | None] = lambda _: None,
    namespace_claims: NamespaceClaims = _NONE,
) -> Decision | None:
    """One drift check (or rescue of a lost creation) of a freshly read object, on the scheduler's
    threads; the scheduler applies the decision. A copy's progress patches change the object: ``raw``
    is brought up to them, so that the scheduler's own patch follows them instead of being refused."""
    body = kopf.Body(raw)  # type: ignore[arg-type]
    try:
        parsed = parse_spec(body.spec)
    except SpecError:
        return None  # already reported by the spec handler; nothing to check until the spec changes
    logger = kopf.ObjectLogger(body=body, settings=settings)
    if trigger == "rescue":
        # A creation with no status after rescue_after (its handler's status never stored, its watch
        # event lost): the scheduler takes it over.
        logger.warning("no reconcile since creation; reconciling from the drift scheduler")
    # No namespace slot here: the scheduler's own threads are bounded (group size x parallel groups)
    # and hold none of kopf's workers; a group of one repository must run together to share reads.
    uid = str(body.meta.get("uid"))
    request = views.request_for(
        parsed, body.status, body.meta, trigger, runtime, tag_claims, view(), namespace_claims=namespace_claims
    )
    reporter = progress(body.meta)
    request = dataclasses.replace(request, progress=reporter)
    with runtime.lock_for(uid):
        decision = core.reconcile(request, runtime.ecr, runtime.settings, runtime.clock(), logger)
    if reporter is not None and reporter.written:
        raw.setdefault("metadata", {})["resourceVersion"] = reporter.resource_version
        raw["status"] = {**(raw.get("status") or {}), **reporter.written}
    # A taken-over change stays deferred until the scheduler has stored a final outcome (done=):
    # failed transiently or with its status refused, it has no lastSyncTime, so no check would be due.
    return decision


def _forget_gone(runtime: Runtime, uids: set[str]) -> None:
    runtime.keep_only(uids)
    metrics.keep_only(uids)


@kopf.on.startup()
async def start_drift_scheduler(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    drift_entries: DriftEntries = _NONE,
    tag_claims: TagClaims = _NONE,
    policies: Policies = _NONE,
    namespace_labels: NamespaceLabels = _NONE,
    namespace_claims: NamespaceClaims = _NONE,
    **_: Any,
) -> None:
    runtime = runtime_of(memo)
    ours = runtime.settings
    # Copy progress is patched from reconciles' threads, through a session of its own on this loop.
    memo["loop"] = asyncio.get_running_loop()
    memo["progress_store"] = KubeObjects(
        lambda: runtime.credentials,
        f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
        limit=4,
        connect_timeout=ours.api_connect_timeout,
        request_timeout=ours.api_request_timeout,
    )

    store = KubeObjects(
        lambda: runtime.credentials,
        f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
        limit=16,  # each TLS connection holds ~128 KiB of buffers; a group's GETs queue briefly instead
        connect_timeout=ours.api_connect_timeout,
        request_timeout=ours.api_request_timeout,
    )
    heap = Heap()
    heap.start()  # kopf watches nothing until the startup handlers are done
    scheduler = DriftScheduler(
        entries=lambda: (entry for values in drift_entries.values() for entry in values),
        urgency=views.Urgency(runtime, policies, namespace_labels, namespace_claims).prepare,
        deferred=runtime.deferred,
        done=runtime.undefer,
        keep_only=functools.partial(_forget_gone, runtime),
        check=functools.partial(
            _drift_check,
            runtime=runtime,
            settings=settings,
            tag_claims=tag_claims,
            view=lambda: views.Grants(runtime, policies, namespace_labels),
            progress=functools.partial(_progress, memo, runtime=runtime),
            namespace_claims=namespace_claims,
        ),
        record=record,
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
        ready=runtime.handling.is_set,
        # Full garbage collections over the built indexes would stop the event loop for up to a second.
        heap=heap,
    )
    policy_store = KubeObjects(
        lambda: runtime.credentials,
        f"/apis/{GROUP}/{VERSION}/{POLICIES}/{{name}}",
        limit=2,
        connect_timeout=ours.api_connect_timeout,
        request_timeout=ours.api_request_timeout,
        kind="EcrTagPolicy",
    )
    reporter = PolicyReporter(
        policies=lambda: {name: next(iter(entries)) for name, entries in policies.items() if entries},
        namespaces=lambda: {name: next(iter(values), {}) for name, values in namespace_labels.items()},
        own_account=runtime.own_account,
        region=ours.region,
        store=policy_store,
        tick=ours.drift_tick,
        clock=runtime.clock,
        ready=runtime.handling.is_set,
    )
    memo["drift_store"] = store
    memo["policy_store"] = policy_store
    memo["drift_task"] = asyncio.create_task(scheduler.run(), name="ecr-tag-operator drift scheduler")
    memo["policy_task"] = asyncio.create_task(reporter.run(), name="ecr-tag-operator policy status")


@kopf.on.cleanup()
async def stop_drift_scheduler(memo: kopf.Memo, **_: Any) -> None:
    for name in ("drift_task", "policy_task"):
        task = memo.get(name)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for name in ("drift_store", "policy_store", "progress_store"):
        store = memo.get(name)
        if isinstance(store, KubeObjects):
            await store.close()


# -- deletion ------------------------------------------------------------------------------------------


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
    policies: Policies = _NONE,
    namespace_labels: NamespaceLabels = _NONE,
    **_: Any,
) -> None:
    """deletionPolicy Delete: remove, by tag, the tags that still point at this resource's image."""
    runtime = runtime_of(memo)
    uid = str(meta.get("uid"))
    parsed = core.parse(spec, status, meta.get("generation"), runtime.clock(), runtime.settings)
    if isinstance(parsed, Decision):
        message = f"spec is invalid, no tag deleted: {parsed.status['conditions'][0]['message']}"
        kopf.warn(body, reason="TagsRetained", message=message)
        return
    request = views.request_for(
        parsed,
        status,
        meta,
        "delete",
        runtime,
        tag_claims,
        views.Grants(runtime, policies, namespace_labels),
        namespace_claims={},  # no cap stops a deletion
    )
    try:
        with runtime.lock_for(uid):
            done = core.finalize(
                parsed, status, request.permission, request.undeletable, runtime.ecr, runtime.settings, logger
            )
    finally:
        runtime.forget(uid)
        metrics.forget_tags(uid)
    for event in done.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    metrics.record_tally(done.tally)
    if done.requeue_after is not None:
        raise kopf.TemporaryError("deleting tags: ECR failed transiently", delay=done.requeue_after)
