"""What every handler shares, built once at start-up and carried on kopf's memo."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .batching import SharedReads
from .ecr import Boto3Ecr
from .ports import EcrApi
from .settings import Settings

if TYPE_CHECKING:
    import kopf

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    ecr: EcrApi
    clock: Callable[[], datetime] = utcnow
    # The credentials kopf logged in with: the drift scheduler's own API session follows them.
    credentials: kopf.ConnectionInfo | None = None
    # The operator's own account: grants and claims that name no registryId mean this one.
    own_account: str = ""
    # Set once kopf calls a handler: its indexes are complete from then on.
    handling: threading.Event = field(default_factory=threading.Event)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    # Fair sharing between namespaces: reconciles in flight per namespace, and the resources whose
    # spec change found its namespace at its cap (the drift scheduler takes them over, in turn).
    _in_flight: dict[str, int] = field(default_factory=dict)
    _deferred: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        ecr = Boto3Ecr(settings)
        account = settings.account_id or ecr.caller_account()
        if account is None:
            log.warning("the operator's own account is unknown (STS GetCallerIdentity failed): set account_id")
        return cls(settings=settings, ecr=SharedReads(ecr), own_account=account or "")

    def lock_for(self, uid: str) -> threading.Lock:
        """One lock per resource, so a drift check never races a spec change of the same resource."""
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def enter(self, namespace: str) -> bool:
        """A reconcile slot of the namespace, without waiting: False when it has its share in flight."""
        with self._guard:
            busy = self._in_flight.get(namespace, 0)
            if busy >= self.settings.namespace_in_flight:
                return False
            self._in_flight[namespace] = busy + 1
            return True

    def leave(self, namespace: str) -> None:
        with self._guard:
            left = self._in_flight.get(namespace, 1) - 1
            if left > 0:
                self._in_flight[namespace] = left
            else:
                self._in_flight.pop(namespace, None)

    def defer(self, uid: str) -> None:
        with self._guard:
            self._deferred.add(uid)

    def undefer(self, uid: str) -> None:
        with self._guard:
            self._deferred.discard(uid)

    def deferred(self, uid: str) -> bool:
        with self._guard:
            return uid in self._deferred

    def deferred_count(self) -> int:
        with self._guard:
            return len(self._deferred)

    def forget(self, uid: str) -> None:
        with self._guard:
            self._locks.pop(uid, None)
            self._deferred.discard(uid)

    def keep_only(self, uids: set[str]) -> None:
        """Drop what is kept for resources that are gone (most leave without a delete handler)."""
        with self._guard:
            for uid in [u for u in self._locks if u not in uids]:
                del self._locks[uid]
            self._deferred &= uids


def runtime_of(memo: Any) -> Runtime:
    """The one way to the runtime: the one the CLI (or a test) put on kopf's memo, else one built from
    the environment at the first call (kopf calls the startup handlers first) and kept there."""
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        runtime = Runtime.build(Settings())
        memo["runtime"] = runtime
    return runtime
