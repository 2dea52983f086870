"""Tunable ECR figures of the emulator (``/_emulator/settings``): ECR's own values by default, smaller for tests.

Standard library only, shared by the emulator process and the control client (:mod:`.ecr_control`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

MIB: Final = 1024 * 1024
# Service model: LayerPartBlob is a blob of at most 20971520 bytes; no setting may allow more.
LAYER_PART_BLOB_MAX: Final = 20 * MIB


class SettingsError(ValueError):
    """Settings the control API refuses (answered with HTTP 400)."""


@dataclass(frozen=True)
class EmulatorSettings:
    """``download_url_seconds``: how long a GetDownloadUrlForLayer URL is valid. ECR's documentation gives no
    figure for its pre-signed layer URLs; an hour is the default here.

    ``min_layer_part_bytes`` / ``max_layer_part_bytes`` / ``max_layer_parts``: ECR service quotas "Minimum layer
    part size" 5 MiB (every part but the last), "Maximum layer part size" 10 MiB, "Layer parts" 4,200 (not
    adjustable; "only applicable if you are using Amazon ECR API actions directly to initiate multipart
    uploads"). InitiateLayerUpload answers ``partSize`` = the maximum.
    """

    download_url_seconds: float = 3600.0
    min_layer_part_bytes: int = 5 * MIB
    max_layer_part_bytes: int = 10 * MIB
    max_layer_parts: int = 4200

    def updated(self, data: object) -> EmulatorSettings:
        """These settings with the keys of ``data`` changed; unknown keys and bad values are refused."""
        if not isinstance(data, Mapping):
            raise SettingsError("expected a JSON object of settings")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown settings {unknown}; known settings are {sorted(known)}")
        values: dict[str, Any] = {}
        for name, raw in data.items():
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
                raise SettingsError(f"{name}: expected a non-negative number, got {raw!r}")
            if name != "download_url_seconds" and (not isinstance(raw, int) or raw < 1):
                raise SettingsError(f"{name}: expected a positive integer, got {raw!r}")
            values[name] = float(raw) if name == "download_url_seconds" else raw
        result = replace(self, **values)
        if result.min_layer_part_bytes > result.max_layer_part_bytes:
            raise SettingsError("min_layer_part_bytes must not exceed max_layer_part_bytes")
        if result.max_layer_part_bytes > LAYER_PART_BLOB_MAX:
            raise SettingsError(f"max_layer_part_bytes: the service model caps a layer part at {LAYER_PART_BLOB_MAX}")
        return result

    def to_json(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: object) -> EmulatorSettings:
        return cls().updated(data)


class SettingsHolder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings = EmulatorSettings()

    def get(self) -> EmulatorSettings:
        with self._lock:
            return self._settings

    def update(self, data: object) -> EmulatorSettings:
        with self._lock:
            self._settings = self._settings.updated(data)
            return self._settings

    def reset(self) -> EmulatorSettings:
        with self._lock:
            self._settings = EmulatorSettings()
            return self._settings


HOLDER: Final = SettingsHolder()
"""The emulator process's settings (one process, one emulator)."""


def current() -> EmulatorSettings:
    return HOLDER.get()
