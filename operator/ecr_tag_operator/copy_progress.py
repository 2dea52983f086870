"""A copy's progress while it runs: what each blob has uploaded so far, counted as its parts land, and
the throttle that reports it at most once every ``interval`` seconds.

The copier counts through :class:`Counted`, a wrapper of the ECR port that sees each UploadLayerPart
succeed, so the streaming code knows nothing of progress. Reports are made on the thread of the part
that was just sent, one at a time (a report that is still being written is never overtaken), and
never hold the other blobs' threads while they are written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .model import CopyReport, Registry
from .ports import EcrApi

log = logging.getLogger(__name__)


class Tally:
    """The bytes, parts and blobs one reconcile's copy has moved so far, over ``base`` (the plan's totals
    and what was skipped); ``report`` is called with the whole CopyReport when ``interval`` has passed."""

    def __init__(
        self,
        base: CopyReport,
        report: Callable[[CopyReport], None],
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._base = base
        self._report = report
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._uploading: dict[str, tuple[int, int]] = {}  # blob -> (bytes, parts) of its current upload
        self._blobs = self._bytes = self._parts = 0  # of the blobs completed
        self._last = clock()  # a copy quicker than one interval reports nothing: its reconcile's status will
        self._reporting = False

    def part(self, digest: str, first_byte: int, received: int) -> None:
        """A part of ``digest`` was uploaded; ``received`` bytes of it are in the target's upload now (a
        part at byte 0 is a new upload: a blob started anew counts from its first part again)."""
        with self._lock:
            parts = 1 if first_byte == 0 else self._uploading.get(digest, (0, 0))[1] + 1
            self._uploading[digest] = (received, parts)
        self._tick()

    def completed(self, digest: str, size: int, parts: int) -> None:
        with self._lock:
            self._uploading.pop(digest, None)
            self._blobs += 1
            self._bytes += size
            self._parts += parts
        self._tick()

    def abandoned(self, digest: str) -> None:
        """A blob that stopped short: its upload is dropped by ECR, its bytes are not in the target."""
        with self._lock:
            self._uploading.pop(digest, None)

    def snapshot(self) -> CopyReport:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> CopyReport:
        return replace(
            self._base,
            blobs_copied=self._blobs,
            bytes_copied=self._bytes + sum(b for b, _ in self._uploading.values()),
            parts=self._parts + sum(p for _, p in self._uploading.values()),
            in_flight=next(iter(self._uploading), None),
            finished=False,
        )

    def _tick(self) -> None:
        with self._lock:
            if self._reporting or self._clock() - self._last < self._interval:
                return
            self._reporting = True
            report = self._snapshot()
        try:
            self._report(report)
        except Exception:  # a report is worth a log line, never a failed part: the copy goes on
            log.exception("copy progress not reported")
        finally:
            with self._lock:
                self._reporting = False
                self._last = self._clock()


class Counted:
    """The ECR port for one blob's copy, telling ``tally`` of each part ECR accepted; every other call
    goes to the port as it is."""

    def __init__(self, ecr: EcrApi, tally: Tally, digest: str) -> None:
        self._ecr = ecr
        self._tally = tally
        self._digest = digest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ecr, name)

    def upload_part(
        self, where: Registry, repository: str, upload_id: str, first_byte: int, last_byte: int, data: bytes | bytearray
    ) -> int:
        received = self._ecr.upload_part(where, repository, upload_id, first_byte, last_byte, data)
        self._tally.part(self._digest, first_byte, last_byte + 1)
        return received
