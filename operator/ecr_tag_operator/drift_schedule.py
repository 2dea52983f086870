"""Which resources one scheduler tick checks for drift, and in which groups. Pure: no kopf, no I/O.

One scheduler replaces a kopf timer per resource: a timer keeps each object's whole body (status
and managedFields included) in memory for as long as the object exists, and timers firing
independently cannot line their reads up. The scheduler keeps an :class:`Entry` per
resource (kopf's index holds them), and each tick releases the due resources of one repository
together, so that their reads share one BatchGetImage.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from .authz import Ask, asks
from .grants import Source, Target
from .model import MAX_IDS_PER_CALL
from .ownership import Claim, ClaimKey, claim_of
from .spec import EcrImageTagSpec, SpecError, parse_spec
from .status import owned_elsewhere, ready_reason

_T = TypeVar("_T")
Group = tuple[str, str, str]  # (effective account, region, repository): reads that can share a call


@dataclass(frozen=True, slots=True)
class Entry:
    """What the scheduler needs to know of one resource, without its body or its parsed spec: kopf's
    index keeps one for every resource (about 0.9 KB, see benchmarks/tenancy.py), so only the fields a
    tick reads, with repeated strings shared."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    observed_generation: int | None
    last_sync: datetime | None
    ready_reason: str | None
    # Tags the last status named another owner for, sorted: a tuple of strings, which the garbage
    # collector does not track (a frozenset it walks: 1M references at 10,000 resources x 100 tags).
    conflicts: tuple[str, ...]
    interval: timedelta  # spec.driftCheckInterval
    ask: Ask  # what the spec asks of the grants: target (with its tags), source, access
    claim: Claim  # as the tag claims index has it (an Observe-mode resource claims nothing)
    group: Group

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def tags(self) -> tuple[str, ...]:
        return self.ask[0].tags

    @property
    def claims(self) -> bool:
        """Whether the tags claims index holds this resource's claims: it writes (is not Observe)."""
        return self.ask[2] == "write"

    @property
    def created(self) -> datetime | None:
        return _time(self.claim[0])

    @property
    def reads(self) -> tuple[str, ...]:
        """Tags one check reads from the group: its own, and the source's when it is in the same repository."""
        target, source, _ = self.ask
        source_tag = self.claim[3][3]
        if source_tag and source[:3] == target[:3]:  # (the spec keeps it out of tags there)
            return (*target.tags, source_tag)
        return target.tags


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


_shared = sys.intern


def _shared_or_none(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def entry_of(
    meta: Mapping[str, Any], raw_spec: Mapping[str, Any], status: Mapping[str, Any], region: str, own_account: str
) -> Entry | None:
    """The resource's entry, or None when there is nothing to check: an invalid spec (reported by the
    spec handler) or a resource being deleted. Strings that many resources repeat (namespace,
    repository, tags, reasons) are interned: one copy each, not one per resource."""
    if meta.get("deletionTimestamp"):
        return None
    try:
        spec = parse_spec(raw_spec)
    except SpecError:
        return None
    ask = shared_ask(asks(spec))
    claim = shared_claim(claim_of(meta, spec, region, own_account))
    account, target_region = spec.registry_id or own_account, spec.region or region
    reason, conflicts = ready_reason(status), owned_elsewhere(status)
    return Entry(
        namespace=claim[1],
        name=claim[2],
        uid=str(meta.get("uid")),
        generation=meta.get("generation"),
        observed_generation=status.get("observedGeneration"),
        last_sync=_time(status.get("lastSyncTime")),
        ready_reason=_shared_or_none(reason),
        # The owner, not the reason: a contested tag that happens to be in sync has no TagConflict.
        conflicts=tuple(sorted({_shared(t) for t in conflicts})) if conflicts else (),
        interval=_INTERVALS.get(spec.drift_check_interval, spec.drift_check_interval),
        ask=ask,
        claim=claim,
        group=(_shared(account), _shared(target_region), ask[0].repository),
    )


_DEFAULT_INTERVAL = EcrImageTagSpec.model_fields["drift_check_interval"].default
_INTERVALS = {_DEFAULT_INTERVAL: _DEFAULT_INTERVAL}  # the default's one timedelta, not one per resource


class _Kept(Generic[_T]):
    """One object per distinct value, bounded: cleared when full, which only costs new objects for
    the values asked after."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._found: dict[_T, _T] = {}

    def __len__(self) -> int:
        return len(self._found)

    def one(self, value: _T, made: Callable[[_T], _T]) -> _T:
        found = self._found.get(value)
        if found is None:
            if len(self._found) >= self.size:
                self._found.clear()
            new = made(value)
            # The made one as its own key (the caller's strings are not kept); setdefault: two index
            # functions on kopf's threads asking at once agree on one.
            found = self._found.setdefault(new, new)
        return found


# One Ask per distinct target, source and access: resources that want the same tags of one repository
# share it, its tuple of tags included (10,000 resources of 100 shared tags: one tuple of 100, not
# 10,000), and the grants answer it once per namespace (views.Grants.allows keeps answers by the
# object: hashing an Ask hashes all its tags).
_ASKS: _Kept[Ask] = _Kept(10_000)


def _interned_ask(ask: Ask) -> Ask:
    target, source, access = ask
    return (
        Target(
            _shared_or_none(target.account),
            _shared_or_none(target.region),
            _shared(target.repository),
            tuple(_shared(t) for t in target.tags),
        ),
        Source(_shared_or_none(source.account), _shared_or_none(source.region), _shared(source.repository)),
        access,
    )


def shared_ask(ask: Ask) -> Ask:
    """The one Ask equal to ``ask``, its strings interned."""
    return _ASKS.one(ask, _interned_ask)


def shared_claim(claim: Claim) -> Claim:
    """The claim with its repeated strings interned (kopf's indexes keep one per resource)."""
    created, namespace, name, (account, region, repository, tag, digest) = claim
    # The source's tag, the digest and the creation time are mostly one resource's own: not interned.
    return (created, _shared(namespace), name, (_shared(account), _shared(region), _shared(repository), tag, digest))


def shared_claims(found: dict[ClaimKey, Claim]) -> dict[ClaimKey, Claim]:
    """A resource's claims for kopf's index, strings interned, one claim object for all its keys."""
    if not found:
        return found
    claim = shared_claim(next(iter(found.values())))
    return {shared_key(key): claim for key in found}


# One tuple per claim key for every resource that claims it: kopf's index keeps each resource's keys
# in a set of its own (its reverse index), and a full collection walks those sets. 10,000 resources
# sharing 100 tags held 1M key tuples of their own (~70 MB); one each, the collection reads the sets
# without touching a million scattered objects (benchmarks.tenancy: 115 ms for the first tick's
# collection, then 70).
_KEYS: _Kept[ClaimKey] = _Kept(100_000)


def _interned_key(key: ClaimKey) -> ClaimKey:
    account, region, repository, tag = key
    return (_shared(account), _shared(region), _shared(repository), _shared(tag))


def shared_key(key: ClaimKey) -> ClaimKey:
    """The one tuple of the claim key, its strings interned."""
    return _KEYS.one(key, _interned_key)


def claim_prefix(entry: Entry, default_region: str, own_account: str) -> tuple[str, str, str]:
    """The (effective account, region, repository) of the entry's claim keys (ownership.claim_keys)."""
    target = entry.ask[0]
    return (target.account or own_account, target.region or default_region, target.repository)


def due_time(entry: Entry, jitter: float, checked: datetime | None = None) -> datetime | None:
    """When the drift check is due: the interval after the last sync (or the last check this process
    made, which writes nothing when it finds nothing new), stretched by a fixed fraction of it (from
    the uid, at most ``jitter``) so that resources synced together spread out."""
    if entry.last_sync is None:
        return None  # the spec handler has not finished its first reconcile (or is retrying)
    last = max(entry.last_sync, checked) if checked is not None else entry.last_sync
    spread = (zlib.crc32(entry.uid.encode()) % 1000) / 1000 * jitter
    return last + entry.interval * (1 + spread)


def lost_creation(entry: Entry, now: datetime, after: float) -> bool:
    """Never reconciled, and created longer ago than a busy operator needs to reach it (a queue of
    thousands of creations waits for PutImage at 10/s): its creation was lost, not queued."""
    if entry.observed_generation is not None or entry.created is None:
        return False
    return (now - entry.created).total_seconds() > after


@dataclass(frozen=True)
class Pick:
    entry: Entry
    trigger: str  # "drift" or "rescue"


def _calls(reads: int, max_reads: int) -> int:
    return max(1, -(-reads // max_reads))


@dataclass(slots=True)
class _Chunk:
    """A group being filled: its checks and the tags they read, in as few calls as its widest check
    needs alone. A check of 101 tags takes two calls in any group, so 50 such checks of one repository
    go together, not one group each: the tick dispatches 1 group, not 50, and batching.SharedReads
    makes 51 calls for them, not 100 (each fills a call with the tags the call before holds)."""

    max_members: int
    max_reads: int
    picks: list[Pick] = field(default_factory=list)
    reads: set[str] = field(default_factory=set)
    calls: int = 1

    def fits(self, reads: tuple[str, ...]) -> bool:
        if not self.picks:
            return True
        if len(self.picks) >= self.max_members:
            return False
        room = max(self.calls, _calls(len(reads), self.max_reads)) * self.max_reads
        return len(self.reads) + len(reads) <= room or len(self.reads.union(reads)) <= room

    def add(self, pick: Pick, reads: tuple[str, ...]) -> None:
        self.picks.append(pick)
        self.reads.update(reads)
        self.calls = max(self.calls, _calls(len(reads), self.max_reads))


def pick(
    entries: Iterable[Entry],
    now: datetime,
    *,
    jitter: float,
    early: float,
    rescue_after: float,
    urgent: Callable[[Entry], bool],
    waiting: Callable[[Entry], bool],
    deferred: Callable[[Entry], bool] = lambda _: False,
    max_members: int,
    checked: Mapping[str, datetime] | None = None,
    max_reads: int = MAX_IDS_PER_CALL,
) -> list[list[Pick]]:
    """The checks to run now, in groups that read one repository and fit one BatchGetImage (or, with
    a check that reads more than one call holds, the calls that check needs alone).

    A check runs when it is due, when ``urgent`` says so (an owner changed, a refusal may have
    lifted), when a spec change was ``deferred`` (its namespace had its share of reconciles in flight)
    or a lost creation needs rescue; not while ``waiting`` (after a transient failure).
    ``checked`` has when this process last checked each resource (by uid).
    Where a group runs anyway and has room, checks due within ``early`` (a fraction of their
    interval) join it: they would need a call of their own otherwise.
    """
    runs: dict[Group, list[Pick]] = {}
    soon: dict[Group, list[tuple[datetime, Entry]]] = {}
    checked = checked or {}
    # Synced after this (per interval), a check is neither due nor soon, whatever its jitter: one
    # comparison instead of due_time's arithmetic for most entries of a tick.
    cuts: dict[timedelta, datetime] = {}
    for entry in entries:
        if waiting(entry):
            continue
        if deferred(entry):  # a spec change its namespace had no slot for: the scheduler's until done
            runs.setdefault(entry.group, []).append(Pick(entry, "spec"))
            continue
        if entry.generation != entry.observed_generation:
            if lost_creation(entry, now, rescue_after):
                runs.setdefault(entry.group, []).append(Pick(entry, "rescue"))
            continue  # the spec handler has a change to handle first
        if urgent(entry):
            runs.setdefault(entry.group, []).append(Pick(entry, "drift"))
            continue
        last, seen = entry.last_sync, checked.get(entry.uid)
        if last is not None:
            if seen is not None and seen > last:
                last = seen
            cut = cuts.get(entry.interval)
            if cut is None:
                cut = cuts[entry.interval] = now - entry.interval * (1 - early)
            if last > cut:
                continue
        due = due_time(entry, jitter, seen)
        if due is not None and due <= now:
            runs.setdefault(entry.group, []).append(Pick(entry, "drift"))
        elif due is not None and due - entry.interval * early <= now:
            soon.setdefault(entry.group, []).append((due, entry))
    out: list[list[Pick]] = []
    for group, picked in runs.items():
        chunks = [_Chunk(max_members, max_reads)]
        for p in picked:
            reads = p.entry.reads
            if not chunks[-1].fits(reads):
                chunks.append(_Chunk(max_members, max_reads))
            chunks[-1].add(p, reads)
        for _, entry in sorted(soon.get(group, []), key=lambda pair: pair[0]):
            reads = entry.reads
            if not chunks[-1].fits(reads):
                break
            chunks[-1].add(Pick(entry, "drift"), reads)
        out.extend(c.picks for c in chunks)
    return out
