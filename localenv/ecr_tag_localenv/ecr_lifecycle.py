"""Image lifecycle state the ECR emulator keeps beside moto's models: the archive storage class.

Standard library only (no moto), so the ``/_emulator/lifecycle`` control route in :mod:`.ecr_faults`
and its client can share :class:`LifecycleSettings`; :mod:`.ecr_corrections` wires the state into moto.

ECR's archive (UpdateImageStorageClass; user guide "Archiving an image in Amazon ECR", "Restoring an
image"): STANDARD -> ARCHIVE is immediate (``imageStatus`` ARCHIVED); ARCHIVE -> STANDARD goes through
ACTIVATING ("typically up to 20 minutes") and the image cannot be pulled until it is ACTIVE again;
pushing an archived image restores it at once. The emulator's restore delay is short by default and
settable, so a test can hold an image in ACTIVATING and then let it finish.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

ACTIVE: Final = "ACTIVE"
ARCHIVED: Final = "ARCHIVED"
ACTIVATING: Final = "ACTIVATING"
ImageStatus = Literal["ACTIVE", "ARCHIVED", "ACTIVATING"]
# ImageStatusFilter in the service model: the three statuses and ANY.
IMAGE_STATUS_FILTERS: Final = frozenset({ACTIVE, ARCHIVED, ACTIVATING, "ANY"})

DEFAULT_RESTORE_SECONDS: Final = 1.0


class SettingsError(ValueError):
    """A lifecycle setting the control API refuses (answered with HTTP 400)."""


class LifecycleSettings:
    """How long a restore (ARCHIVE -> STANDARD) stays ACTIVATING; shared by the emulator's threads.

    The delay is read when an image's status is read, not fixed when the restore starts: raising it
    holds images already ACTIVATING there, setting 0 lets them finish on the next read.
    """

    def __init__(self, restore_seconds: float = DEFAULT_RESTORE_SECONDS) -> None:
        self._lock = threading.Lock()
        self._default = restore_seconds
        self._restore_seconds = restore_seconds

    @property
    def restore_seconds(self) -> float:
        with self._lock:
            return self._restore_seconds

    def configure(self, data: object) -> dict[str, float]:
        if not isinstance(data, Mapping):
            raise SettingsError("expected a JSON object with 'restore_seconds'")
        unknown = sorted(set(data) - {"restore_seconds"})
        if unknown:
            raise SettingsError(f"unknown keys {unknown}; known keys are ['restore_seconds']")
        raw = data.get("restore_seconds")
        if raw is not None:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
                raise SettingsError(f"restore_seconds: expected a non-negative number, got {raw!r}")
            with self._lock:
                self._restore_seconds = float(raw)
        return self.to_json()

    def reset(self) -> None:
        with self._lock:
            self._restore_seconds = self._default

    def to_json(self) -> dict[str, float]:
        return {"restore_seconds": self.restore_seconds}


SETTINGS: Final = LifecycleSettings()
"""The emulator process's settings (one process, one emulator)."""


@dataclass
class ArchiveState:
    """Storage-class history of one image. An image without one is ACTIVE and was never archived."""

    archived: bool = False
    last_archived_at: datetime | None = None
    last_activated_at: datetime | None = None
    restore_started: tuple[float, datetime] | None = None
    """time.monotonic() and the wall clock when a restore began; None when no restore is in progress."""

    def status(self, settings: LifecycleSettings = SETTINGS) -> ImageStatus:
        if not self.archived:
            return "ACTIVE"
        if self.restore_started is None:
            return "ARCHIVED"
        delay = settings.restore_seconds
        started, started_at = self.restore_started
        if time.monotonic() - started < delay:
            return "ACTIVATING"
        # The restore finished since the last read: record it as done when it was due.
        self._activate(min(_now(), started_at + timedelta(seconds=delay)))
        return "ACTIVE"

    def archive(self) -> None:
        self.archived = True
        self.last_archived_at = _now()
        self.restore_started = None

    def start_restore(self) -> None:
        self.restore_started = (time.monotonic(), _now())

    def restore_now(self) -> None:
        """A push of the archived image: ECR restores it at once."""
        self._activate(_now())

    def _activate(self, when: datetime) -> None:
        self.archived = False
        self.last_activated_at = when
        self.restore_started = None

    def detail_fields(self, settings: LifecycleSettings = SETTINGS) -> dict[str, Any]:
        """ImageDetail members in the service model: imageStatus, lastArchivedAt, lastActivatedAt."""
        fields: dict[str, Any] = {"image_status": self.status(settings)}
        if self.last_archived_at is not None:
            fields["last_archived_at"] = self.last_archived_at
        if self.last_activated_at is not None:
            fields["last_activated_at"] = self.last_activated_at
        return fields


def _now() -> datetime:
    return datetime.now(UTC)
