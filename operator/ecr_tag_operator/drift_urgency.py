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
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .drift_schedule import Entry, claim_prefix
from .ownership import Claim, ClaimKey

Leaders = tuple[Claim | None, Claim | None]  # (first, second) of one key's granted claims
_NONE: Leaders = (None, None)


class GrantView(Protocol):
    def grants_claim(self, key: ClaimKey, claim: Claim) -> bool: ...

    def allows(self, entry: Entry) -> bool: ...


@dataclass(slots=True)
class _Key:
    claims: list[Claim] = field(default_factory=list)  # all of the key's claims, granted or not, oldest first
    leaders: Leaders = _NONE
    observers: set[str] = field(default_factory=set)  # uids of Observe-mode entries naming the key


Prefix = tuple[str, str, str]  # (effective account, region, repository): a claim key without its tag


def contested(me: Claim, leaders: Leaders) -> bool:
    """Whether an older granted claim of another resource with another source owns the key."""
    first, second = leaders
    owner = first if first is not None and first.source != me.source else second
    return owner is not None and owner < me and (owner.namespace, owner.name) != (me.namespace, me.name)


class Urgency:
    """The urgent checks, kept up to date by :meth:`update` once per tick."""

    def __init__(self, default_region: str, own_account: str) -> None:
        self._region = default_region
        self._account = own_account
        self._entries: dict[str, Entry] = {}
        self._keys: dict[Prefix, dict[str, _Key]] = {}
        self._writer: dict[Claim, Entry] = {}  # the entry of each claim in _keys
        self._allowed: dict[str, bool] = {}
        self._mismatched: dict[str, int] = {}  # tags whose owner differs from what the status says
        self._urgent: set[str] = set()
        self._view: GrantView | None = None
        self.asked = 0  # resources asked about in the last update (a figure for the benchmark)

    def update(self, entries: Iterable[Entry], view: GrantView) -> Callable[[Entry], bool]:
        """Bring the answer up to date with ``entries`` (the whole index, as it is now) and ``view``
        (a new object when the grants changed); return the test for urgent checks."""
        fresh = view is not self._view
        self._view = view
        now = {e.uid: e for e in entries}
        dirty: set[str] = set()  # entries asked about from scratch
        touched: set[tuple[Prefix, str]] = set()  # keys whose claims changed
        for gone in [e for uid, e in self._entries.items() if uid not in now]:
            self._drop(gone, touched)
        for uid, entry in now.items():
            last = self._entries.get(uid)
            if last is entry:
                continue
            dirty.add(uid)
            if last is not None and not self._claims_moved(last, entry):
                self._entries[uid] = entry  # a status change: the same claims (equal, not identical)
                if entry.claims:
                    self._writer[entry.claim] = entry
                continue
            if last is not None:
                self._drop(last, touched)
            self._add(entry, touched)
        shifted: set[str] = set()  # entries whose count of mismatched tags changed
        keys = [(p, t) for p, tags in self._keys.items() for t in tags] if fresh else touched
        for prefix, tag in keys:
            self._relead(view, prefix, tag, dirty, shifted)
        for prefix, tag in touched:
            tags = self._keys.get(prefix)
            found = tags.get(tag) if tags else None
            if tags is not None and found is not None and not found.claims and not found.observers:
                del tags[tag]
                if not tags:
                    del self._keys[prefix]
        asked: Iterable[str] = self._entries.keys() if fresh else dirty
        for uid in asked:
            entry = self._entries[uid]
            self._allowed[uid] = view.allows(entry)
            if uid in dirty:
                self._mismatched[uid] = self._mismatches(entry)
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

    def claims_of(self, key: ClaimKey) -> list[Claim]:
        """The key's claims, granted or not, oldest first, as of the last update."""
        found = self._keys.get(key[:3], {}).get(key[3])
        return found.claims if found is not None else []

    # -- claims --------------------------------------------------------------------------------------

    def _prefix(self, entry: Entry) -> Prefix:
        return claim_prefix(entry, self._region, self._account)

    @staticmethod
    def _claims_moved(old: Entry, new: Entry) -> bool:
        return old.claims != new.claims or old.claim != new.claim or old.ask[0] != new.ask[0]

    def _add(self, entry: Entry, touched: set[tuple[Prefix, str]]) -> None:
        self._entries[entry.uid] = entry
        if not entry.tags:
            return
        prefix = self._prefix(entry)
        tags = self._keys.setdefault(prefix, {})
        for tag in entry.tags:
            found = tags.get(tag)
            if found is None:
                found = tags[tag] = _Key()
            if entry.claims:
                bisect.insort(found.claims, entry.claim)
            else:
                found.observers.add(entry.uid)
            touched.add((prefix, tag))
        if entry.claims:
            self._writer[entry.claim] = entry

    def _drop(self, entry: Entry, touched: set[tuple[Prefix, str]]) -> None:
        del self._entries[entry.uid]
        self._allowed.pop(entry.uid, None)
        self._mismatched.pop(entry.uid, None)
        self._urgent.discard(entry.uid)
        if not entry.tags:
            return
        prefix = self._prefix(entry)
        tags = self._keys[prefix]
        for tag in entry.tags:
            found = tags[tag]
            if entry.claims:
                claims = found.claims
                at = bisect.bisect_left(claims, entry.claim)
                if at < len(claims) and claims[at] == entry.claim:
                    del claims[at]
            else:
                found.observers.discard(entry.uid)
            touched.add((prefix, tag))
        if entry.claims and self._writer.get(entry.claim) is entry:
            del self._writer[entry.claim]

    # -- owners --------------------------------------------------------------------------------------

    @staticmethod
    def _leaders(key: ClaimKey, claims: list[Claim], view: GrantView) -> Leaders:
        first = None
        for claim in claims:
            if not view.grants_claim(key, claim):
                continue
            if first is None:
                first = claim
            elif claim.source != first.source:
                return first, claim
        return first, None

    def _relead(self, view: GrantView, prefix: Prefix, tag: str, dirty: set[str], shifted: set[str]) -> None:
        """New leaders for a key; the count of mismatched tags moved for every entry they change."""
        found = self._keys.get(prefix, {}).get(tag)
        if found is None:
            return
        before, after = found.leaders, self._leaders((*prefix, tag), found.claims, view)
        found.leaders = after
        if before[0] is after[0] and before[1] is after[1]:
            return
        (f0, s0), (f1, s1) = before, after
        bounded = (None not in (f0, s0, f1, s1)) or (
            s0 is None and s1 is None and f0 is not None and f1 is not None and f0.source == f1.source
        )
        limit = max(c for c in (f0, s0, f1, s1) if c is not None) if bounded else None
        readers: list[Entry] = []
        for claim in found.claims:
            if limit is not None and limit < claim:
                break
            writer = self._writer.get(claim)
            if writer is not None:
                readers.append(writer)
        readers.extend(self._entries[uid] for uid in found.observers)
        for entry in readers:
            if entry.uid in dirty:
                continue  # asked about from scratch below
            was, now = contested(entry.claim, before), contested(entry.claim, after)
            if was != now:
                said = tag in entry.conflicts
                self._mismatched[entry.uid] += (now != said) - (was != said)
                shifted.add(entry.uid)

    def _mismatches(self, entry: Entry) -> int:
        """Tags whose owner (another resource's or none) is not what the entry's status says."""
        conflicts = entry.conflicts
        count = len(conflicts - set(entry.tags)) if conflicts else 0
        tags = self._keys.get(self._prefix(entry), {})
        seen: dict[tuple[int, int], bool] = {}  # most keys of one resource share their leaders
        for tag in entry.tags:
            found = tags.get(tag)
            leaders = found.leaders if found else _NONE
            pair = (id(leaders[0]), id(leaders[1]))
            answer = seen.get(pair)
            if answer is None:
                answer = seen[pair] = contested(entry.claim, leaders)
            count += answer != (tag in conflicts)
        return count
