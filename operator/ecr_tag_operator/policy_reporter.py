"""Each EcrTagPolicy's status: valid or not, which namespaces it selects, its role conflicts. Written
by a loop of its own (every drift tick) from kopf's indexes, and only when it changed: policies are
few, and a status that says the same thing is not written again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from . import grants
from .status import timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyEntry:
    """What the policies index keeps of one EcrTagPolicy."""

    parsed: grants.Policy | grants.PolicyError
    generation: int | None
    resource_version: str
    status: Mapping[str, Any] = field(default_factory=dict)


class StatusStore(Protocol):
    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> bool: ...


def statuses(
    policies: Mapping[str, PolicyEntry],
    namespaces: Mapping[str, Mapping[str, str]],
    own_account: str,
    region: str,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """The status every policy should have now (pure)."""
    valid = [e.parsed for e in policies.values() if isinstance(e.parsed, grants.Policy)]
    conflicts = grants.find_conflicts(valid, namespaces, own_account, region)
    out: dict[str, dict[str, Any]] = {}
    for name, entry in policies.items():
        matched = grants.matched_namespaces(entry.parsed, namespaces) if isinstance(entry.parsed, grants.Policy) else []
        out[name] = grants.policy_status(
            name,
            entry.parsed,
            generation=entry.generation,
            matched=matched,
            conflicts=conflicts,
            previous_conditions=entry.status.get("conditions") or [],
            now=timestamp(now),
        )
    return out


class PolicyReporter:
    def __init__(
        self,
        *,
        policies: Callable[[], Mapping[str, PolicyEntry]],
        namespaces: Callable[[], Mapping[str, Mapping[str, str]]],
        own_account: str,
        region: str,
        store: StatusStore,
        tick: float,
        clock: Callable[[], datetime],
        ready: Callable[[], bool],
    ) -> None:
        self._policies = policies
        self._namespaces = namespaces
        self._own_account = own_account
        self._region = region
        self._store = store
        self._tick = tick
        self._clock = clock
        self._ready = ready

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            if not self._ready():
                continue
            try:
                await self.report()
            except Exception:  # a bad round must not end reporting for good
                log.exception("policy status round failed")

    async def report(self) -> int:
        """Write the statuses that changed; return how many were written."""
        policies = dict(self._policies())
        wanted = statuses(policies, self._namespaces(), self._own_account, self._region, self._clock())
        written = 0
        for name, body in wanted.items():
            entry = policies[name]
            if all(entry.status.get(key) == value for key, value in body.items()):
                continue
            if await self._store.patch_status("", name, body, entry.resource_version):
                written += 1
        return written
