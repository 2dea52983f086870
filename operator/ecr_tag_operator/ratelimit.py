"""Client-side rate limits per (account, region, ECR operation), so a burst of tag moves runs at
ECR's quota instead of into ThrottlingException. botocore's retry mode handles what still throttles.

The writes (PutImage, BatchDeleteImage) of one quota are shared fairly: tokens go round-robin to the
tenants (namespaces) that have callers waiting, so one namespace's backlog of thousands of tag moves
cannot hold another namespace's single change behind it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

FAIR_OPERATIONS = frozenset({"PutImage", "BatchDeleteImage"})


class TokenBucket:
    """A blocking token bucket: ``acquire`` waits until a token is there."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly going into debt) and say how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


class FairBucket:
    """A blocking token bucket whose tokens are handed out round-robin across tenants: each tenant
    with callers waiting takes the next token in turn, its own callers in arrival order."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._clock = clock
        self._stamp = clock()
        self._cond = threading.Condition()
        self._waiting: dict[str, deque[object]] = {}  # tenant -> its callers' tickets, oldest first
        self._turns: deque[str] = deque()  # tenants with callers waiting, next to serve first

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, tenant: str) -> float:
        """Wait for this tenant's turn and a token; return how long it waited."""
        started = self._clock()
        ticket = object()
        with self._cond:
            queue = self._waiting.setdefault(tenant, deque())
            if not queue:
                self._turns.append(tenant)
            queue.append(ticket)
            while True:
                self._refill()
                mine = self._turns[0] == tenant and queue[0] is ticket
                if mine and self._tokens >= 1:
                    self._tokens -= 1
                    queue.popleft()
                    self._turns.popleft()
                    if queue:
                        self._turns.append(tenant)  # its next caller waits for the others' turns
                    else:
                        del self._waiting[tenant]
                    self._cond.notify_all()
                    return self._clock() - started
                # The caller whose turn it is waits for the next token; the others until woken.
                self._cond.wait(timeout=(1 - self._tokens) / self.rate if mine else 1.0)

    @property
    def waiting(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._waiting.values())


class RateLimits:
    """One bucket per (account, region, operation); operations without a rate are not limited.
    ``fair`` False: the writes of every tenant share one queue, in arrival order."""

    def __init__(
        self,
        rates: Mapping[str, float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        fair: bool = True,
    ) -> None:
        self._rates = dict(rates)
        self._clock = clock
        self._sleep = sleep
        self._fair_turns = fair
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._fair: dict[tuple[str, str, str], FairBucket] = {}
        self._lock = threading.Lock()

    def acquire(self, account: str | None, region: str, operation: str) -> float:
        rate = self._rates.get(operation)
        if not rate:
            return 0.0
        key = (account or "", region, operation)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, max(1.0, rate), self._clock, self._sleep)
        return bucket.acquire()

    def acquire_fair(self, account: str | None, region: str, operation: str, tenant: str) -> float:
        """A write's first attempt: its token in the tenant's turn (retries are paced by ``acquire``)."""
        rate = self._rates.get(operation)
        if not rate:
            return 0.0
        key = (account or "", region, operation)
        with self._lock:
            bucket = self._fair.get(key)
            if bucket is None:
                bucket = self._fair[key] = FairBucket(rate, max(1.0, rate), self._clock)
        return bucket.acquire(tenant if self._fair_turns else "")
