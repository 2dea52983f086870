"""Client for the ECR emulator's ``/_emulator/`` control API (standard library only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ecr_tag_localenv.ecr_faults import FaultConfig, FaultRule

__all__ = ["CallCounts", "ControlError", "EmulatorControl", "FaultConfig", "FaultRule"]


class ControlError(RuntimeError):
    """The control API refused a request or could not be reached."""


@dataclass(frozen=True)
class CallCounts:
    """ECR requests received (faulted ones included in ``total``), by operation name."""

    total: Mapping[str, int] = field(default_factory=dict)
    by_repository: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    faulted: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallCounts:
        return cls(
            total=dict(data.get("total", {})),
            by_repository={op: dict(repos) for op, repos in data.get("by_repository", {}).items()},
            faulted=dict(data.get("faulted", {})),
        )

    def of(self, operation: str, repository: str | None = None) -> int:
        if repository is None:
            return self.total.get(operation, 0)
        return self.by_repository.get(operation, {}).get(repository, 0)


class EmulatorControl:
    """``EmulatorControl("http://127.0.0.1:PORT")``: set faults, read and reset call counts, reset moto."""

    def __init__(self, endpoint_url: str, timeout: float = 10.0) -> None:
        if not endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url must be an http(s) URL, got {endpoint_url!r}")
        self.endpoint_url = endpoint_url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, payload: object = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.endpoint_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ControlError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ControlError(f"{method} {path}: {exc}") from exc
        return json.loads(body) if body else None

    def healthy(self) -> bool:
        try:
            self._request("GET", "/_emulator/healthz")
        except ControlError:
            return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Poll ``/_emulator/healthz`` until it answers or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ControlError(f"emulator at {self.endpoint_url} not healthy after {timeout}s")
            time.sleep(0.05)  # poll interval

    def set_faults(
        self,
        default: FaultRule | None = None,
        operations: Mapping[str, FaultRule] | None = None,
        seed: int | None = None,
    ) -> FaultConfig:
        """Replace all fault rules. Operation rules override ``default`` field by field."""
        config = FaultConfig(default=default or FaultRule(), operations=dict(operations or {}), seed=seed)
        return FaultConfig.from_json(self._request("POST", "/_emulator/faults", config.to_json()))

    def faults(self) -> FaultConfig:
        return FaultConfig.from_json(self._request("GET", "/_emulator/faults"))

    def clear_faults(self) -> FaultConfig:
        """Back to the start-up rules: none, or only ECR's PutImage quota when started with --ecr-quotas."""
        return FaultConfig.from_json(self._request("DELETE", "/_emulator/faults"))

    def lifecycle(self) -> dict[str, float]:
        """The archive restore delay: ``{"restore_seconds": N}``."""
        settings: dict[str, float] = self._request("GET", "/_emulator/lifecycle")
        return settings

    def set_restore_seconds(self, seconds: float) -> dict[str, float]:
        """How long UpdateImageStorageClass ARCHIVE -> STANDARD stays ACTIVATING (also for images already
        restoring: a large value holds them there, 0 lets them finish). Back to the default on reset."""
        settings: dict[str, float] = self._request("POST", "/_emulator/lifecycle", {"restore_seconds": seconds})
        return settings

    def calls(self) -> CallCounts:
        return CallCounts.from_json(self._request("GET", "/_emulator/calls"))

    def reset_calls(self) -> None:
        self._request("POST", "/_emulator/calls/reset", {})

    def reset_moto(self) -> None:
        """moto's own reset (every service's state) plus the emulator's ECR bookkeeping (archive state and
        the restore delay included)."""
        self._request("POST", "/moto-api/reset", {})

    def reset_all(self) -> None:
        self.reset_moto()
        self.clear_faults()
        self.reset_calls()
