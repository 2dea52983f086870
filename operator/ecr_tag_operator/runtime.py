"""What every handler shares, built once at start-up and carried on kopf's memo."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .batching import SharedReads
from .ecr import Boto3Ecr, EcrApi
from .settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    ecr: EcrApi
    clock: Callable[[], datetime] = utcnow
    # What kopf hands its handlers that the drift scheduler, outside kopf's handlers, needs too: the
    # credentials kopf logged in with, and a handler's context (kopf.info posts events through it).
    credentials: Any = None
    kopf_context: contextvars.Context | None = None
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        return cls(settings=settings, ecr=SharedReads(Boto3Ecr(settings)))

    def adopt_kopf_context(self) -> None:
        if self.kopf_context is None:
            self.kopf_context = contextvars.copy_context()

    def lock_for(self, uid: str) -> threading.Lock:
        """One lock per resource, so a drift check never races a spec change of the same resource."""
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def forget(self, uid: str) -> None:
        with self._guard:
            self._locks.pop(uid, None)

    def keep_only(self, uids: set[str]) -> None:
        """Drop what is kept for resources that are gone (most leave without a delete handler)."""
        with self._guard:
            for uid in [u for u in self._locks if u not in uids]:
                del self._locks[uid]


def runtime_of(memo: Any) -> Runtime:
    runtime = memo.get("runtime") if hasattr(memo, "get") else None
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the operator's runtime is missing from memo: the startup handler did not run")
    return runtime
