"""Waiting for a condition: poll it until a deadline, never sleep for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0, every: float = 0.25) -> T:
    """Poll ``probe`` every ``every`` seconds until it returns something truthy, and return that.

    After ``timeout`` seconds it raises ``TimeoutError`` naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        time.sleep(every)  # poll interval
