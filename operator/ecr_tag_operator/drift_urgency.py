"""Which resources a drift tick checks though they are not due: a grant was given or lifted, or a
tag's owner changed. Pure: the adapters pass the entries and a view of the grants.

The answer is kept between ticks. Each tick compares the entries with the last tick's (kopf's index
keeps an unchanged entry's object, so a new object is a change), moves the claims of the resources
that changed, and asks again only about those resources and the ones whose owners moved. New grants
(a policy or a namespace's labels changed) are asked of every claim's key and resource, not of
every claim.

Who owns a tag for one claim (as :func:`ownership.contested` says: the oldest granted claim of
another resource with another source, if older) depends on two claims of the key only: the oldest
granted claim (``first``) and the oldest granted claim whose source is not first's (``second``).
When those change, only claims up to the oldest of them, old and new, can see another answer: every
later claim had an older rival before and still has one.

Each key keeps its claims sorted as :class:`Row` tuples (one per resource, shared by all its keys),
so that sorting and bisecting compare in C. A few moves are bisected into place; many at once (the
first tick, a big batch) are appended and sorted once: the arrivals are sorted once for all keys,
so each key's sort only merges runs.

Many arrivals at once (the first tick after a start: every entry is new) are integrated over a few
updates, oldest first (in ownership's order), as many as fit a budget of claims per update, so that no
tick's scan takes long. The rest are not in the answer yet: the next update sees them as new again, and
they are not urgent meanwhile. Oldest first makes each partial answer exact for the entries it holds:
a claim's owner is always an older claim, so every rival that can own an integrated entry's tags is
integrated already (this holds for a start; when arrivals older than integrated entries wait, such as
a big batch of changed sources, those entries' answers are exact again once the batch is in).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .drift_schedule import Entry, claim_prefix
from .ownership import Claim, ClaimKey

# A claim in ownership's order (created, namespace, name, source), then its entry's uid.
Row = tuple[str, str, str, tuple[str, str, str, str, str], str]
Leaders = tuple[Row | None, Row | None]  # (first, second) of one key's granted claims
Prefix = tuple[str, str, str]  # (effective account, region, repository): a claim key without its tag
_NONE: Leaders = (None, None)
_FEW = 8  # moves of one key bisected into place; more are appended and the key sorted once
# Claims integrated per update. At 10,000 resources of 100 shared tags (1M claims, benchmarks.tenancy)
# the first tick's scan took ~180 ms integrating them all at once; 200,000 per update, 46-77 ms a tick
# for 5 ticks, and the rest of the tick (drift_schedule.pick) brought it near 100 ms. 100,000: ~32 ms
# a scan for 10 ticks (~20 ms of it is per update whatever the budget: the arrivals sorted, the rest of
# the scan). Steady ticks are unaffected: their arrivals are few.
ARRIVALS_PER_UPDATE = 100_000


class GrantView(Protocol):
    def may_claim(self, key: ClaimKey, namespace: str) -> bool:
        """Whether claims of ``namespace`` count for ``key`` (asked once per namespace and key)."""
        ...

    def allows(self, entry: Entry) -> bool: ...


@dataclass(slots=True)
class _Key:
    claims: list[Row] = field(default_factory=list)  # all of the key's claims, granted or not, oldest first
    leaders: Leaders = _NONE
    observers: set[str] = field(default_factory=set)  # uids of Observe-mode entries naming the key


# Claims filtered out of a key's list in one update: (the list before, after), by the runs that left.
Filtered = dict[tuple[int, ...], tuple[list[Row], list[Row]]]


@dataclass(slots=True)
class _Moves:
    """One key's claims leaving and arriving in this update, applied together."""

    # Runs of rows leaving: one list per (prefix, tags) of the resources gone, shared by all its keys.
    gone: list[list[Row]] = field(default_factory=list)
    new: list[Row] = field(default_factory=list)
    runs: int = 0  # sorted runs that make up ``new``

    def arrive(self, rows: list[Row]) -> None:
        self.new.extend(rows)
        self.runs += 1

    def apply(self, claims: list[Row], filtered: Filtered) -> None:
        new = self.new
        if sum(map(len, self.gone)) + len(new) <= max(_FEW, len(claims) >> 6):
            for rows in self.gone:
                for row in rows:
                    at = bisect.bisect_left(claims, row)
                    if at < len(claims) and claims[at] == row:
                        del claims[at]
            for row in new:
                bisect.insort(claims, row)
            return
        if self.gone:
            # Keys of resources that want the same tags hold equal lists and lose the same runs: the
            # first is filtered, the others compared with it (identical rows: a pass in C) and copied.
            # A tenth of 10,000 resources of 100 shared tags replaced: ~55 ms of filtering, now ~1.
            runs = tuple(map(id, self.gone))
            seen = filtered.get(runs)
            if seen is not None and seen[0] == claims:
                claims[:] = seen[1]
            else:
                before = claims[:]
                leaving = {row[4] for rows in self.gone for row in rows}
                claims[:] = [row for row in claims if row[4] not in leaving]
                filtered[runs] = (before, claims[:])
        ordered = self.runs <= 1 and (not claims or not new or claims[-1] < new[0])
        claims.extend(new)
        if not ordered:
            claims.sort()  # a few sorted runs: merged


def row_of(entry: Entry) -> Row:
    return (*entry.claim, entry.uid)


def contested(me: Row, leaders: Leaders) -> bool:
    """Whether an older granted claim of another resource with another source owns the key."""
    first, second = leaders
    owner = first if first is not None and first[3] != me[3] else second
    return owner is not None and owner < me and (owner[1] != me[1] or owner[2] != me[2])


class Urgency:
    """The urgent checks, kept up to date by :meth:`update` once per tick."""

    def __init__(self, default_region: str, own_account: str, arrivals_per_update: int = ARRIVALS_PER_UPDATE) -> None:
        self._region = default_region
        self._budget = arrivals_per_update  # claims integrated per update (at least one entry)
        self._account = own_account
        self._entries: dict[str, Entry] = {}
        self._rows: dict[str, Row] = {}  # the row of each entry, as its keys hold it
        self._keys: dict[Prefix, dict[str, _Key]] = {}
        self._allowed: dict[str, bool] = {}
        self._mismatched: dict[str, int] = {}  # tags whose owner differs from what the status says
        self._urgent: set[str] = set()
        self._view: GrantView | None = None
        self.asked = 0  # resources asked about in the last update (a figure for the benchmark)
        self.pending = 0  # entries of the last update not integrated yet: 0 when the answer is complete

    def update(self, entries: Iterable[Entry], view: GrantView) -> Callable[[Entry], bool]:
        """Bring the answer up to date with ``entries`` (the whole index, as it is now) and ``view``
        (a new object when the grants changed); return the test for urgent checks."""
        fresh = view is not self._view
        self._view = view
        now = {e.uid: e for e in entries}
        dirty: set[str] = set()  # entries asked about from scratch
        moves: dict[Prefix, dict[str, _Moves]] = {}  # claims moved, per key
        leaving: dict[tuple[Prefix, tuple[str, ...]], list[Row]] = {}  # rows gone, per (prefix, tags)
        touched: set[tuple[Prefix, str]] = set()  # keys whose observers changed
        for gone in [e for uid, e in self._entries.items() if uid not in now]:
            self._drop(gone, moves, touched, leaving)
        arrived: list[Entry] = []
        for uid, entry in now.items():
            last = self._entries.get(uid)
            if last is entry:
                continue
            dirty.add(uid)
            if last is not None and not self._claims_moved(last, entry):
                self._entries[uid] = entry  # a status change: the same claims (equal, not identical)
                continue
            if last is not None:
                self._drop(last, moves, touched, leaving)
            arrived.append(entry)
        rows = sorted(row_of(entry) for entry in arrived)
        taken = self._within_budget(rows, now)
        self.pending = len(rows) - taken
        if self.pending:
            dirty.difference_update(row[4] for row in rows[taken:])  # new again at the next update
            del rows[taken:]
        self._arrive(rows, now, moves, touched)
        filtered: Filtered = {}
        for prefix, moved in moves.items():
            keys_of = self._keys[prefix]
            for tag, tag_moves in moved.items():
                tag_moves.apply(keys_of[tag].claims, filtered)
                touched.add((prefix, tag))
        shifted: set[str] = set()  # entries whose count of mismatched tags changed
        keys = [(p, t) for p, tags in self._keys.items() for t in tags] if fresh else touched
        every = len(dirty) == len(self._entries)  # nothing to shift: every entry is asked from scratch
        for prefix, tag in keys:
            self._relead(view, prefix, tag, None if every else dirty, shifted)
        for prefix, tag in touched:
            tags = self._keys.get(prefix)
            found = tags.get(tag) if tags else None
            if tags is not None and found is not None and not found.claims and not found.observers:
                del tags[tag]
                if not tags:
                    del self._keys[prefix]
        asked: Iterable[str] = self._entries.keys() if fresh else dirty
        shapes: dict[tuple[Prefix, tuple[str, ...]], _Shape] = {}  # kept for this update only
        for uid in asked:
            entry = self._entries[uid]
            self._allowed[uid] = view.allows(entry)
            if uid in dirty:
                self._mismatched[uid] = self._mismatches(entry, shapes)
        for uid in self._entries.keys() if fresh else dirty | shifted:
            entry = self._entries[uid]
            allowed = self._allowed[uid]
            if allowed == (entry.ready_reason == "Forbidden") or (allowed and self._mismatched[uid]):
                self._urgent.add(uid)
            else:
                self._urgent.discard(uid)
        self.asked = len(self._entries) if fresh else len(dirty | shifted)
        urgent = self._urgent
        return lambda entry: entry.uid in urgent

    def integrated(self, uid: str) -> bool:
        """Whether the entry is in the answer (an arrival waits for an update that has room for it)."""
        return uid in self._entries

    def claims_of(self, key: ClaimKey) -> list[Claim]:
        """The key's claims, granted or not, oldest first, as of the last update."""
        found = self._keys.get(key[:3], {}).get(key[3])
        return [row[:4] for row in found.claims] if found is not None else []

    # -- claims --------------------------------------------------------------------------------------

    def _prefix(self, entry: Entry) -> Prefix:
        return claim_prefix(entry, self._region, self._account)

    @staticmethod
    def _claims_moved(old: Entry, new: Entry) -> bool:
        return old.claims != new.claims or old.claim != new.claim or old.ask[0] != new.ask[0]

    def _within_budget(self, rows: list[Row], now: dict[str, Entry]) -> int:
        """How many of the oldest ``rows`` fit this update's budget of claims (one at least)."""
        left = self._budget
        for taken, row in enumerate(rows):
            left -= len(now[row[4]].tags) or 1
            if left < 0:
                return max(taken, 1)
        return len(rows)

    def _arrive(
        self,
        rows: list[Row],
        now: dict[str, Entry],
        moves: dict[Prefix, dict[str, _Moves]],
        touched: set[tuple[Prefix, str]],
    ) -> None:
        """Index new entries (``rows``: theirs, sorted): their rows join each key's arrivals in order,
        one list per distinct (prefix, tags) (resources that want the same tags share one, however
        many they are)."""
        writers: dict[tuple[Prefix, tuple[str, ...]], list[Row]] = {}
        for row in rows:
            entry = self._entries[row[4]] = now[row[4]]
            self._rows[entry.uid] = row
            if not entry.tags:
                continue
            prefix = self._prefix(entry)
            if entry.claims:
                found = writers.get((prefix, entry.tags))
                if found is None:
                    found = writers[prefix, entry.tags] = []
                found.append(row)
            else:
                tags = self._keys.setdefault(prefix, {})
                for tag in entry.tags:
                    key = tags.get(tag)
                    if key is None:
                        key = tags[tag] = _Key()
                    key.observers.add(entry.uid)
                    touched.add((prefix, tag))
        for (prefix, wanted), group in writers.items():
            tags = self._keys.setdefault(prefix, {})
            moved = moves.setdefault(prefix, {})
            for tag in wanted:
                if tag not in tags:
                    tags[tag] = _Key()
                found_moves = moved.get(tag)
                if found_moves is None:
                    found_moves = moved[tag] = _Moves()
                found_moves.arrive(group)

    def _drop(
        self,
        entry: Entry,
        moves: dict[Prefix, dict[str, _Moves]],
        touched: set[tuple[Prefix, str]],
        leaving: dict[tuple[Prefix, tuple[str, ...]], list[Row]],
    ) -> None:
        """Take the entry out of the answer; its row leaves each of its keys with this update's moves
        (one run per distinct (prefix, tags), as arrivals share one)."""
        uid = entry.uid
        del self._entries[uid]
        row = self._rows.pop(uid)
        self._allowed.pop(uid, None)
        self._mismatched.pop(uid, None)
        self._urgent.discard(uid)
        if not entry.tags:
            return
        prefix = self._prefix(entry)
        if entry.claims:
            run = leaving.get((prefix, entry.tags))
            if run is None:
                run = leaving[prefix, entry.tags] = []
                moved = moves.setdefault(prefix, {})
                for tag in entry.tags:
                    found = moved.get(tag)
                    if found is None:
                        found = moved[tag] = _Moves()
                    found.gone.append(run)
            run.append(row)
            return
        tags = self._keys[prefix]
        for tag in entry.tags:
            tags[tag].observers.discard(uid)
            touched.add((prefix, tag))

    # -- owners --------------------------------------------------------------------------------------

    def _leaders(self, key: ClaimKey, claims: list[Row], view: GrantView) -> Leaders:
        granted: dict[str, bool] = {}  # by namespace: a key has claims of a few namespaces, many of each
        first = None
        for row in claims:
            namespace = row[1]
            allowed = granted.get(namespace)
            if allowed is None:
                allowed = granted[namespace] = view.may_claim(key, namespace)
            if not allowed:
                continue
            if first is None:
                first = row
            elif row[3] != first[3]:
                return first, row
        return first, None

    def _relead(self, view: GrantView, prefix: Prefix, tag: str, dirty: set[str] | None, shifted: set[str]) -> None:
        """New leaders for a key; the count of mismatched tags moved for every entry they change
        (none to move when ``dirty`` is None: every entry is asked from scratch)."""
        found = self._keys.get(prefix, {}).get(tag)
        if found is None:
            return
        before, after = found.leaders, self._leaders((*prefix, tag), found.claims, view)
        found.leaders = after
        if (before[0] is after[0] and before[1] is after[1]) or dirty is None:
            return
        (f0, s0), (f1, s1) = before, after
        bounded = (None not in (f0, s0, f1, s1)) or (
            s0 is None and s1 is None and f0 is not None and f1 is not None and f0[3] == f1[3]
        )
        limit = max(c for c in (f0, s0, f1, s1) if c is not None) if bounded else None
        readers: list[str] = []
        for row in found.claims:
            if limit is not None and limit < row:
                break
            readers.append(row[4])
        readers.extend(found.observers)
        for uid in readers:
            if uid in dirty:
                continue  # asked about from scratch below
            me = self._rows[uid]
            was, now = contested(me, before), contested(me, after)
            if was != now:
                said = tag in self._entries[uid].conflicts
                self._mismatched[uid] += (now != said) - (was != said)
                shifted.add(uid)

    def _mismatches(self, entry: Entry, shapes: dict[tuple[Prefix, tuple[str, ...]], _Shape]) -> int:
        """Tags whose owner (another resource's or none) is not what the entry's status says."""
        prefix, wanted = self._prefix(entry), entry.tags
        shape = shapes.get((prefix, wanted))
        if shape is None:
            shape = shapes[prefix, wanted] = self._shape(prefix, wanted)
        conflicts = entry.conflicts
        me = self._rows[entry.uid]
        if not conflicts:
            return sum(len(tags) for leaders, tags in shape.groups if contested(me, leaders))
        count = len(conflicts) - len(shape.tags.intersection(conflicts))
        for leaders, tags in shape.groups:
            said = len(tags.intersection(conflicts))
            count += len(tags) - said if contested(me, leaders) else said
        return count

    def _shape(self, prefix: Prefix, wanted: tuple[str, ...]) -> _Shape:
        """The tags of ``wanted`` grouped by their keys' leaders (most keys of one resource share them)."""
        keys = self._keys.get(prefix, {})
        groups: dict[tuple[int, int], tuple[Leaders, set[str]]] = {}
        for tag in wanted:
            found = keys.get(tag)
            leaders = found.leaders if found else _NONE
            pair = (id(leaders[0]), id(leaders[1]))
            group = groups.get(pair)
            if group is None:
                group = groups[pair] = (leaders, set())
            group[1].add(tag)
        return _Shape(frozenset(wanted), [(leaders, frozenset(tags)) for leaders, tags in groups.values()])


@dataclass(slots=True)
class _Shape:
    """One update's answer for every entry of a prefix and tags: which tags share which leaders."""

    tags: frozenset[str]
    groups: list[tuple[Leaders, frozenset[str]]]
