"""kopf's registrations, and the adapters that turn a kopf call into a core request and apply the
core's decision: a status patch, events, metrics, a retry. The decisions themselves are made in
:mod:`.core` and the pure modules below it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from . import apisession, authz, core, grants, metrics
from .apisession import KubeObjects
from .core import Decision, Request
from .drift_schedule import Entry, Group, entry_of
from .drift_scheduler import DriftScheduler, Tuning, Urgent
from .model import Permission
from .ownership import Claim, ClaimKey, Winners, claim_of, claimed_elsewhere, claims, contested
from .policy_reporter import PolicyEntry, PolicyReporter
from .runtime import Runtime, runtime_of
from .settings import Settings
from .spec import EcrImageTagSpec, SpecError, parse_spec
from .status import previous_tags

GROUP, VERSION, PLURAL, POLICIES = "ecrtag.dev", "v1alpha1", "ecrimagetags", "ecrtagpolicies"
# kopf passes each index as a keyword named after its function; typed as plain mappings here, and
# defaulted so that the handlers still fit kopf's callback protocols.
TagClaims = Mapping[ClaimKey, Iterable[Claim]]
Policies = Mapping[str, Iterable[PolicyEntry]]
NamespaceLabels = Mapping[str, Iterable[Mapping[str, str]]]
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
    """Every resource's claims on (account, region, repository, tag), for deciding owners."""
    runtime = runtime_of(memo)
    return claims(meta, spec, runtime.settings.region, runtime.own_account)


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


class Grants:
    """The adapters' view of the grants, from kopf's indexes: the valid policies and each namespace's
    labels. One is made per reconcile (a write or a delete asks the grants now) and one per drift
    tick, from copies taken on the event loop; answers are kept for the view's short life."""

    def __init__(self, runtime: Runtime, policies: Policies, labels: NamespaceLabels) -> None:
        self._runtime = runtime
        self._valid = [
            e.parsed for entries in policies.values() for e in entries if isinstance(e.parsed, grants.Policy)
        ]
        self._labels = labels
        self._kept: dict[str, grants.NamespaceGrants] = {}
        self._writes: dict[tuple[str, ClaimKey], bool] = {}
        self._permissions: dict[tuple[Any, ...], Permission] = {}

    @classmethod
    def snapshot(cls, runtime: Runtime, policies: Policies, labels: NamespaceLabels) -> Grants:
        """A view that no longer follows the indexes: safe to use off the event loop."""
        return cls(runtime, {k: tuple(v) for k, v in policies.items()}, {k: tuple(v) for k, v in labels.items()})

    def of(self, namespace: str) -> grants.NamespaceGrants:
        found = self._kept.get(namespace)
        if found is None:
            labels = next(iter(self._labels.get(namespace) or ()), {})
            found = authz.namespace_grants(
                self._valid, namespace, labels, self._runtime.own_account, self._runtime.settings.region
            )
            self._kept[namespace] = found
        return found

    def grants_claim(self, key: ClaimKey, claim: Claim) -> bool:
        """Only claims their namespace is granted now count: a refused resource cannot squat a tag."""
        asked = (claim.namespace, key)
        found = self._writes.get(asked)
        if found is None:
            found = self._writes[asked] = self.of(claim.namespace).may_write(key[0], key[1], key[2], key[3])
        return found

    def permission(self, spec: EcrImageTagSpec, namespace: str) -> Permission:
        """authz.permission, asked once per namespace and distinct target and source in a view."""
        target = (spec.mode, spec.registry_id, spec.region, spec.repository_name, spec.tags)
        asked = (namespace, *target, spec.source_registry, spec.source.region, spec.source_repository)
        found = self._permissions.get(asked)
        if found is None:
            found = self._permissions[asked] = authz.permission(spec, namespace, self.of(namespace))
        return found


def _request(
    spec: EcrImageTagSpec,
    status: Mapping[str, Any],
    meta: Mapping[str, Any],
    trigger: str,
    runtime: Runtime,
    tag_claims: TagClaims,
    view: Grants,
) -> Request:
    """What the core needs to know about one resource: its permission now, the tags granted rivals
    own, and the tags it may not delete (a delete is a write: asked of the grants now)."""
    namespace = str(meta.get("namespace"))
    mine = view.of(namespace)
    allowed = view.permission(spec, namespace)
    region, account = runtime.settings.region, runtime.own_account
    me = claim_of(meta, spec, region, account)

    def granted(key: ClaimKey) -> list[Claim]:
        return [c for c in tag_claims.get(key, ()) if view.grants_claim(key, c)]

    owners = contested(spec, me, granted, region, account) if allowed.refused is None else {}
    tags = list(dict.fromkeys([*spec.tags, *previous_tags(status)]))
    undeletable = {
        t: f"claimed by {who}" for t, who in claimed_elsewhere(spec, tags, me, granted, region, account).items()
    }
    undeletable |= {t: "namespace may not delete it" for t in tags if not authz.may_delete(spec, t, mine)}
    return Request(spec, status, meta.get("generation"), trigger, allowed, owners, undeletable)


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
        request = _request(
            parsed, status, meta, trigger, runtime, tag_claims, Grants(runtime, policies, namespace_labels)
        )
        with runtime.lock_for(uid):
            decision = core.reconcile(request, runtime.ecr, runtime.settings, runtime.clock(), logger)
    finally:
        runtime.leave(namespace)
    runtime.undefer(uid)
    _apply(decision, patch, body, trigger)


# -- the drift scheduler's adapters --------------------------------------------------------------------


def _urgency(runtime: Runtime, tag_claims: TagClaims, policies: Policies, labels: NamespaceLabels) -> Urgent:
    """The test for urgent checks of one tick, over copies of the indexes taken now (on the event loop;
    the test itself runs on a thread): winners per tag are computed once per tick, not per resource."""
    view = Grants.snapshot(runtime, policies, labels)
    winners = Winners({k: tuple(v) for k, v in tag_claims.items()}, view.grants_claim)
    region, account = runtime.settings.region, runtime.own_account

    def urgent(entry: Entry) -> bool:
        """A grant was given or lifted (a policy or a namespace's labels changed), or a tag's owner
        changed (the winner was deleted, let the tag go, or lost its grant)."""
        allowed = view.permission(entry.spec, entry.namespace).refused is None
        if allowed == (entry.ready_reason == "Forbidden"):
            return True
        return allowed and set(winners.contested(entry.spec, entry.claim, region, account)) != entry.conflicts

    return urgent


def _drift_check(
    raw: dict[str, Any],
    trigger: str,
    *,
    runtime: Runtime,
    settings: kopf.OperatorSettings,
    tag_claims: TagClaims,
    view: Callable[[], Grants],
) -> Decision | None:
    """One drift check (or rescue of a lost creation) of a freshly read object, on the scheduler's
    threads; the scheduler applies the decision."""
    body = kopf.Body(raw)  # type: ignore[arg-type]
    try:
        parsed = parse_spec(body.spec)
    except SpecError:
        return None  # already reported by the spec handler; nothing to check until the spec changes
    logger = kopf.ObjectLogger(body=body, settings=settings)
    if trigger == "rescue":
        # Under heavy load kopf can lose an object's creation after a timed-out patch (seen with
        # 5,000 objects created at once); the scheduler takes it over.
        logger.warning("no reconcile since creation; reconciling from the drift scheduler")
    namespace, uid = str(body.meta.get("namespace")), str(body.meta.get("uid"))
    if not runtime.enter(namespace):
        return None  # its namespace is at its share: a later tick
    try:
        request = _request(parsed, body.status, body.meta, trigger, runtime, tag_claims, view())
        with runtime.lock_for(uid):
            decision = core.reconcile(request, runtime.ecr, runtime.settings, runtime.clock(), logger)
    finally:
        runtime.leave(namespace)
    runtime.undefer(uid)
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
        urgency=functools.partial(_urgency, runtime, tag_claims, policies, namespace_labels),
        deferred=runtime.deferred,
        keep_only=functools.partial(_forget_gone, runtime),
        check=functools.partial(
            _drift_check,
            runtime=runtime,
            settings=settings,
            tag_claims=tag_claims,
            view=lambda: Grants(runtime, policies, namespace_labels),
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
    for name in ("drift_store", "policy_store"):
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
    request = _request(parsed, status, meta, "delete", runtime, tag_claims, Grants(runtime, policies, namespace_labels))
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
