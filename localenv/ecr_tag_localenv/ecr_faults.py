"""Fault injection, call accounting and the ``/_emulator/`` control API of the ECR emulator.

Everything here is plain WSGI and standard library; nothing imports moto, so the typed rule classes
can be shared with :mod:`ecr_tag_localenv.ecr_control` (the client side).
"""

from __future__ import annotations

import html
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from io import BytesIO
from typing import Any, Final, Literal
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

ECR_TARGET_PREFIX: Final = "AmazonEC2ContainerRegistry_V20150921"
CONTROL_PREFIX: Final = "/_emulator/"
# ECR's documented default quota for PutImage (per account and region); the only one that bites a retagger.
PUT_IMAGE_QUOTA_PER_SECOND: Final = 10.0
_AMZ_JSON: Final = "application/x-amz-json-1.1"


class RuleError(ValueError):
    """A fault configuration the control API refuses (answered with HTTP 400)."""


def known_ecr_operations() -> frozenset[str]:
    # Validate operation names against botocore's model so a typo ("PutImages") is an error,
    # not a rule that silently never fires.
    import botocore.loaders

    model = botocore.loaders.Loader().load_service_model("ecr", "service-2")
    return frozenset(model["operations"])


@dataclass(frozen=True)
class FaultRule:
    """One rule; ``None`` means "not set here" so an operation rule can override the default field by field.

    ``latency_ms``: delay added before answering. ``throttle_rate`` / ``error_rate``: fraction (0..1) of
    requests answered ThrottlingException (HTTP 400) / ServerException (HTTP 500).
    ``quota_per_second`` + ``burst``: a token bucket per operation; a request without a token is
    answered ThrottlingException, like ECR's own rate limits.
    """

    latency_ms: float | None = None
    throttle_rate: float | None = None
    error_rate: float | None = None
    quota_per_second: float | None = None
    burst: int | None = None

    @classmethod
    def from_json(cls, data: object, where: str = "rule") -> FaultRule:
        if not isinstance(data, Mapping):
            raise RuleError(f"{where}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuleError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
        values: dict[str, Any] = {}
        for name in ("latency_ms", "throttle_rate", "error_rate", "quota_per_second"):
            raw = data.get(name)
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
                raise RuleError(f"{where}.{name}: expected a non-negative number, got {raw!r}")
            if name.endswith("_rate") and raw > 1:
                raise RuleError(f"{where}.{name}: a rate is a fraction between 0 and 1, got {raw!r}")
            values[name] = float(raw)
        burst = data.get("burst")
        if burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
                raise RuleError(f"{where}.burst: expected a positive integer, got {burst!r}")
            values["burst"] = burst
        return cls(**values)

    def to_json(self) -> dict[str, float | int]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def over(self, base: FaultRule) -> FaultRule:
        """This rule with unset fields taken from ``base``."""
        return FaultRule(
            **{f.name: v if (v := getattr(self, f.name)) is not None else getattr(base, f.name) for f in fields(self)}
        )


@dataclass(frozen=True)
class FaultConfig:
    default: FaultRule = field(default_factory=FaultRule)
    operations: Mapping[str, FaultRule] = field(default_factory=dict)
    seed: int | None = None

    @classmethod
    def from_json(cls, data: object, known_operations: frozenset[str] | None = None) -> FaultConfig:
        if not isinstance(data, Mapping):
            raise RuleError("expected a JSON object with 'default', 'operations' and 'seed'")
        unknown = sorted(set(data) - {"default", "operations", "seed"})
        if unknown:
            raise RuleError(f"unknown keys {unknown}")
        default = FaultRule.from_json(data.get("default") or {}, "default")
        raw_ops = data.get("operations") or {}
        if not isinstance(raw_ops, Mapping):
            raise RuleError("operations: expected an object keyed by ECR operation name")
        if known_operations is not None:
            bad = sorted(set(raw_ops) - known_operations)
            if bad:
                raise RuleError(f"operations: not ECR operations: {bad}")
        operations = {str(op): FaultRule.from_json(rule, f"operations.{op}") for op, rule in raw_ops.items()}
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RuleError(f"seed: expected an integer, got {seed!r}")
        return cls(default=default, operations=operations, seed=seed)

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default.to_json(),
            "operations": {op: rule.to_json() for op, rule in sorted(self.operations.items())},
            "seed": self.seed,
        }

    def rule_for(self, operation: str) -> FaultRule:
        return self.operations.get(operation, FaultRule()).over(self.default)

    @classmethod
    def startup_defaults(cls, ecr_quotas: bool) -> FaultConfig:
        if not ecr_quotas:
            return cls()
        quota = PUT_IMAGE_QUOTA_PER_SECOND
        return cls(operations={"PutImage": FaultRule(quota_per_second=quota, burst=int(quota))})


class TokenBucket:
    """Refills continuously at ``rate`` tokens per second up to ``capacity``; not thread-safe on its own."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


FaultKind = Literal["throttle", "error"]


@dataclass(frozen=True)
class Decision:
    latency_s: float
    fault: FaultKind | None
    reason: str = ""


class FaultInjector:
    def __init__(self, startup: FaultConfig, known_operations: frozenset[str] | None = None) -> None:
        self._startup = startup
        self._known = known_operations
        self._lock = threading.Lock()
        self._config = startup
        self._rng = random.Random(startup.seed)  # noqa: S311 - fault dice, not security
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def configure(self, data: object) -> FaultConfig:
        config = FaultConfig.from_json(data, self._known)
        self._install(config)
        return config

    def restore_startup(self) -> None:
        self._install(self._startup)

    def refill(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _install(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)  # noqa: S311
            self._buckets.clear()

    def decide(self, operation: str) -> Decision:
        with self._lock:
            rule = self._config.rule_for(operation)
            latency = (rule.latency_ms or 0.0) / 1000.0
            if rule.quota_per_second is not None:
                bucket = self._buckets.get(operation)
                if bucket is None:
                    capacity = rule.burst if rule.burst is not None else max(1, math.ceil(rule.quota_per_second))
                    bucket = self._buckets[operation] = TokenBucket(rule.quota_per_second, capacity)
                if not bucket.take():
                    return Decision(latency, "throttle", "Rate exceeded")
            # Draw both numbers every time so one rate does not shift the other's sequence for a seed.
            throttle_draw, error_draw = self._rng.random(), self._rng.random()
            if throttle_draw < (rule.throttle_rate or 0.0):
                return Decision(latency, "throttle", "Rate exceeded")
            if error_draw < (rule.error_rate or 0.0):
                return Decision(latency, "error", "Injected internal server error")
            return Decision(latency, None)


class CallLedger:
    """Counts of ECR requests received, by operation and repository, and how many were faulted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: Counter[str] = Counter()
        self._by_repo: dict[str, Counter[str]] = {}
        self._faulted: Counter[str] = Counter()

    def record(self, operation: str, repository: str | None) -> None:
        with self._lock:
            self._total[operation] += 1
            if repository is not None:
                self._by_repo.setdefault(operation, Counter())[repository] += 1

    def record_fault(self, operation: str) -> None:
        with self._lock:
            self._faulted[operation] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": dict(self._total),
                "by_repository": {op: dict(c) for op, c in self._by_repo.items()},
                "faulted": dict(self._faulted),
            }

    def reset(self) -> None:
        with self._lock:
            self._total.clear()
            self._by_repo.clear()
            self._faulted.clear()


def _read_body(environ: WSGIEnvironment) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    # Put it back for moto, which reads the body again.
    environ["wsgi.input"] = BytesIO(body)
    return body


# moto's IAM enforcement answers every protocol in the XML (query) error format, which botocore cannot
# read for ECR's JSON protocol (the error code becomes "403"). ECR, like other JSON services, answers
# HTTP 400 with these codes.
_AUTH_ERROR_CODES: Final = {
    "AccessDenied": "AccessDeniedException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "AuthFailure": "UnrecognizedClientException",
}
_XML_CODE: Final = re.compile(rb"<Code>([^<]*)</Code>")
_XML_MESSAGE: Final = re.compile(rb"<Message>([^<]*)</Message>")


def _json_auth_error(status: str, body: bytes) -> dict[str, str] | None:
    if not status.startswith(("401", "403")) or not body.lstrip().startswith(b"<"):
        return None
    code = _XML_CODE.search(body)
    message = _XML_MESSAGE.search(body)
    if code is None:
        return None
    xml_code = code.group(1).decode(errors="replace")
    text = html.unescape(message.group(1).decode(errors="replace")) if message else xml_code
    return {"__type": _AUTH_ERROR_CODES.get(xml_code, xml_code), "message": text}


def _respond(
    start_response: StartResponse, status: int, payload: object, content_type: str = "application/json"
) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [body]


class EmulatorMiddleware:
    """WSGI app in front of moto: the control API, fault injection and call accounting for ECR requests,
    and ``/v2/`` to the OCI distribution face (``registry``) when there is one.

    ``ecr_lock`` serialises moto's ECR handling: moto's backend mutates plain lists and dicts with no
    locking, and the server is threaded. Injected latency is spent before taking the lock, so slow
    concurrent requests still overlap.
    """

    def __init__(
        self,
        app: WSGIApplication,
        injector: FaultInjector,
        ledger: CallLedger,
        ecr_lock: threading.Lock,
        on_moto_reset: Callable[[], None],
        registry: WSGIApplication | None = None,
    ) -> None:
        self.app = app
        self.registry = registry
        self.injector = injector
        self.ledger = ledger
        self.ecr_lock = ecr_lock
        self.on_moto_reset = on_moto_reset

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        method: str = environ.get("REQUEST_METHOD", "GET")
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path[len(CONTROL_PREFIX) :].rstrip("/"), environ, start_response)
        if self.registry is not None and (path == "/v2" or path.startswith("/v2/")):
            # The OCI distribution face takes the lock itself, and not while it streams blob bytes.
            return self.registry(environ, start_response)
        if path.rstrip("/") == "/moto-api/reset" and method == "POST":
            with self.ecr_lock:
                out = self._call_moto(environ, start_response)
                self.on_moto_reset()
                self.injector.refill()
            return out
        target: str = environ.get("HTTP_X_AMZ_TARGET", "")
        prefix, _, operation = target.partition(".")
        if prefix != ECR_TARGET_PREFIX or not operation:
            return self.app(environ, start_response)
        return self._ecr(operation, environ, start_response)

    def _call_moto(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        # Run moto to completion (body included) while the caller holds the lock.
        result = self.app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _ecr(self, operation: str, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        repository: str | None = None
        try:
            parsed = json.loads(body) if body else {}
            if isinstance(parsed, dict) and isinstance(parsed.get("repositoryName"), str):
                repository = parsed["repositoryName"]
        except ValueError:
            pass
        self.ledger.record(operation, repository)
        decision = self.injector.decide(operation)
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)  # the injected latency itself, not a wait for a condition
        if decision.fault == "throttle":
            self.ledger.record_fault(operation)
            return _respond(
                start_response, 400, {"__type": "ThrottlingException", "message": decision.reason}, _AMZ_JSON
            )
        if decision.fault == "error":
            self.ledger.record_fault(operation)
            return _respond(start_response, 500, {"__type": "ServerException", "message": decision.reason}, _AMZ_JSON)
        captured: list[tuple[str, list[tuple[str, str]]]] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
            captured.append((status, headers))
            return lambda data: None  # moto's Flask app never uses the legacy write() callable

        with self.ecr_lock:
            out = self._call_moto(environ, capture)
        status, headers = captured[-1]
        rewritten = _json_auth_error(status, out[0])
        if rewritten is not None:
            return _respond(start_response, 400, rewritten, _AMZ_JSON)
        start_response(status, headers)
        return out

    def _control(self, method: str, route: str, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if route == "healthz" and method == "GET":
            return _respond(start_response, 200, {"status": "ok"})
        if route == "faults":
            if method == "GET":
                return _respond(start_response, 200, self.injector.config.to_json())
            if method == "DELETE":
                self.injector.restore_startup()
                return _respond(start_response, 200, self.injector.config.to_json())
            if method == "POST":
                try:
                    config = self.injector.configure(json.loads(_read_body(environ) or b"{}"))
                except (ValueError, RuleError) as exc:  # JSONDecodeError is a ValueError
                    return _respond(start_response, 400, {"error": str(exc)})
                log.info("fault rules set: %s", config.to_json())
                return _respond(start_response, 200, config.to_json())
        if route == "calls" and method == "GET":
            return _respond(start_response, 200, self.ledger.snapshot())
        if route == "calls/reset" and method == "POST":
            self.ledger.reset()
            return _respond(start_response, 200, self.ledger.snapshot())
        return _respond(start_response, 404, {"error": f"no control route {method} {CONTROL_PREFIX}{route}"})
