"""The ECR client: the one module that imports boto3.

Calls return typed results carrying ECR's own failure codes; a call that fails as a whole raises
EcrCallError, marked transient when retrying later may help. Throttling and 5xx are first retried by
botocore's retry mode (configured here), never by a loop of our own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session

from . import metrics
from .manifests import ACCEPTED_MEDIA_TYPES
from .ratelimit import RateLimits
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

MAX_IDS_PER_CALL = 100

# Codes worth retrying later: ECR's own, botocore's for a call that never got an answer, and AWS's
# generic throttling names.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ServerException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "EndpointConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
    }
)


@dataclass(frozen=True)
class ImageId:
    tag: str | None = None
    digest: str | None = None

    def to_api(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.tag is not None:
            out["imageTag"] = self.tag
        if self.digest is not None:
            out["imageDigest"] = self.digest
        return out

    @classmethod
    def from_api(cls, raw: Any) -> ImageId:
        raw = raw or {}
        tag = raw.get("imageTag")
        return cls(tag=tag if tag not in (None, "null") else None, digest=raw.get("imageDigest"))


@dataclass(frozen=True)
class Failure:
    """One thing ECR refused or could not find, as ECR said it."""

    operation: str
    code: str
    message: str
    image_id: ImageId | None = None
    tag: str | None = None
    layer_digest: str | None = None

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES


@dataclass(frozen=True)
class Image:
    image_id: ImageId
    manifest: str
    media_type: str | None

    @property
    def digest(self) -> str | None:
        return self.image_id.digest


@dataclass(frozen=True)
class LayerInfo:
    digest: str
    availability: str
    size: int | None


@dataclass(frozen=True)
class Images:
    images: tuple[Image, ...]
    failures: tuple[Failure, ...]


@dataclass(frozen=True)
class Layers:
    layers: tuple[LayerInfo, ...]
    failures: tuple[Failure, ...]


@dataclass(frozen=True)
class PutOutcome:
    tag: str
    result: Literal["put", "unchanged", "failed"]
    failure: Failure | None = None


@dataclass(frozen=True)
class Registry:
    """Where a repository lives: region and account (None = the credentials' own account), and the
    IAM role to assume for it (None = the operator's own credentials)."""

    region: str
    registry_id: str | None
    role_arn: str | None = None


class EcrCallError(Exception):
    """A whole call failed (after botocore's retries)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.operation}: {failure.code}: {failure.message}")
        self.failure = failure

    @property
    def transient(self) -> bool:
        return self.failure.transient


class EcrApi(Protocol):
    """What reconcile needs from ECR; the boto3 implementation is below, tests may supply others."""

    def batch_get_image(self, where: Registry, repository: str, ids: Sequence[ImageId]) -> Images: ...

    def check_layers(self, where: Registry, repository: str, digests: Sequence[str]) -> Layers: ...

    def put_image(
        self, where: Registry, repository: str, tag: str, manifest: str, media_type: str, digest: str
    ) -> PutOutcome: ...

    def delete_tags(self, where: Registry, repository: str, tags: Sequence[str]) -> tuple[Failure, ...]: ...


def _chunks(items: Sequence[Any], size: int = MAX_IDS_PER_CALL) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _registry_kwargs(where: Registry) -> dict[str, str]:
    return {"registryId": where.registry_id} if where.registry_id else {}


class Boto3Ecr:
    """ECR through boto3, one client per region (boto3 clients are thread-safe; sessions are not)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[tuple[str, str | None], ECRClient] = {}
        self._lock = threading.Lock()
        self._limits = RateLimits(settings.rates)
        self._calling = threading.local()  # the Registry of the call this thread is making
        self._config = botocore.config.Config(
            retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=settings.max_workers,
            user_agent_extra="ecr-tag-operator",
        )

    def _client(self, region: str, role_arn: str | None = None) -> ECRClient:
        with self._lock:
            client = self._clients.get((region, role_arn))
            if client is None:
                session = boto3.session.Session(botocore_session=_assuming(role_arn) if role_arn else None)
                client = session.client(
                    "ecr", region_name=region, endpoint_url=self._settings.endpoint_url, config=self._config
                )
                # Every attempt waits for a token, botocore's retries included: pacing only first
                # attempts lets retries of throttled calls burst past the quota and throttle more.
                client.meta.events.register("before-send.ecr", self._pace)
                self._clients[(region, role_arn)] = client
            return client

    def _pace(self, event_name: str, **_: Any) -> None:
        where: Registry | None = getattr(self._calling, "where", None)
        if where is not None:
            self._limits.acquire(where.registry_id, where.region, event_name.rsplit(".", 1)[-1])

    def _call(self, operation: str, where: Registry, **kwargs: Any) -> Any:
        client = self._client(where.region, where.role_arn)
        method = getattr(client, _SNAKE[operation])
        self._calling.where = where
        started = time.monotonic()
        code = ""
        try:
            return method(**kwargs)
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code not in TRANSIENT_CODES and status >= 500:
                code = "ServerException"
            raise EcrCallError(Failure(operation, code, str(err.get("Message") or exc))) from exc
        except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError) as exc:
            code = "ConnectTimeout" if isinstance(exc, botocore.exceptions.ConnectTimeoutError) else "ReadTimeout"
            raise EcrCallError(Failure(operation, code, str(exc))) from exc
        except botocore.exceptions.EndpointConnectionError as exc:
            code = "EndpointConnectionError"
            raise EcrCallError(Failure(operation, code, str(exc))) from exc
        except botocore.exceptions.ParamValidationError as exc:
            # botocore refused the request before sending it: a value ECR would refuse as well.
            code = "InvalidParameterException"
            raise EcrCallError(Failure(operation, code, str(exc))) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            code = "NoCredentials"
            raise EcrCallError(Failure(operation, code, str(exc))) from exc
        finally:
            self._calling.where = None
            metrics.ECR_CALLS.labels(operation, code).inc()
            metrics.ECR_LATENCY.labels(operation).observe(time.monotonic() - started)

    def batch_get_image(self, where: Registry, repository: str, ids: Sequence[ImageId]) -> Images:
        images: list[Image] = []
        failures: list[Failure] = []
        for chunk in _chunks(ids):
            resp = self._call(
                "BatchGetImage",
                where,
                repositoryName=repository,
                imageIds=[i.to_api() for i in chunk],
                acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES),
                **_registry_kwargs(where),
            )
            for raw in resp.get("images", []):
                images.append(
                    Image(
                        ImageId.from_api(raw.get("imageId")),
                        raw["imageManifest"],
                        raw.get("imageManifestMediaType"),
                    )
                )
            for raw in resp.get("failures", []):
                failures.append(
                    Failure(
                        "BatchGetImage",
                        raw.get("failureCode", "Unknown"),
                        raw.get("failureReason", ""),
                        image_id=ImageId.from_api(raw.get("imageId")),
                    )
                )
        return Images(tuple(images), tuple(failures))

    def check_layers(self, where: Registry, repository: str, digests: Sequence[str]) -> Layers:
        layers: list[LayerInfo] = []
        failures: list[Failure] = []
        for chunk in _chunks(digests):
            resp = self._call(
                "BatchCheckLayerAvailability",
                where,
                repositoryName=repository,
                layerDigests=list(chunk),
                **_registry_kwargs(where),
            )
            for raw in resp.get("layers", []):
                layers.append(
                    LayerInfo(
                        raw.get("layerDigest", ""),
                        raw.get("layerAvailability", "UNAVAILABLE"),
                        raw.get("layerSize"),
                    )
                )
            for raw in resp.get("failures", []):
                failures.append(
                    Failure(
                        "BatchCheckLayerAvailability",
                        raw.get("failureCode", "Unknown"),
                        raw.get("failureReason", ""),
                        layer_digest=raw.get("layerDigest"),
                    )
                )
        return Layers(tuple(layers), tuple(failures))

    def put_image(
        self, where: Registry, repository: str, tag: str, manifest: str, media_type: str, digest: str
    ) -> PutOutcome:
        try:
            self._call(
                "PutImage",
                where,
                repositoryName=repository,
                imageManifest=manifest,
                imageManifestMediaType=media_type,
                imageTag=tag,
                imageDigest=digest,
                **_registry_kwargs(where),
            )
        except EcrCallError as exc:
            if exc.failure.code == "ImageAlreadyExistsException":
                # ECR's way of saying the tag already points at exactly this manifest.
                return PutOutcome(tag, "unchanged")
            if exc.transient:
                raise
            return PutOutcome(tag, "failed", _with_tag(exc.failure, tag))
        return PutOutcome(tag, "put")

    def delete_tags(self, where: Registry, repository: str, tags: Sequence[str]) -> tuple[Failure, ...]:
        failures: list[Failure] = []
        for chunk in _chunks(tags):
            resp = self._call(
                "BatchDeleteImage",
                where,
                repositoryName=repository,
                imageIds=[{"imageTag": t} for t in chunk],
                **_registry_kwargs(where),
            )
            for raw in resp.get("failures", []):
                image_id = ImageId.from_api(raw.get("imageId"))
                failures.append(
                    Failure(
                        "BatchDeleteImage",
                        raw.get("failureCode", "Unknown"),
                        raw.get("failureReason", ""),
                        image_id=image_id,
                        tag=image_id.tag,
                    )
                )
        return tuple(failures)


class _AssumedRole(botocore.credentials.CredentialProvider):
    METHOD = "assume-role"

    def __init__(self, fetcher: botocore.credentials.AssumeRoleCredentialFetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def load(self) -> botocore.credentials.DeferredRefreshableCredentials:
        return botocore.credentials.DeferredRefreshableCredentials(
            refresh_using=self._fetcher.fetch_credentials, method=self.METHOD
        )


def _assuming(role_arn: str) -> botocore.session.Session:
    """A botocore session whose credentials come from STS AssumeRole on the operator's own
    credentials, cached and refreshed by botocore before they expire."""
    base = botocore.session.Session()
    fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
        client_creator=base.create_client,
        source_credentials=base.get_credentials(),
        role_arn=role_arn,
        extra_args={"RoleSessionName": "ecr-tag-operator"},
    )
    session = botocore.session.Session()
    session.get_component("credential_provider").insert_before("env", _AssumedRole(fetcher))
    return session


def _with_tag(failure: Failure, tag: str) -> Failure:
    return Failure(failure.operation, failure.code, failure.message, failure.image_id, tag, failure.layer_digest)


_SNAKE = {
    "BatchGetImage": "batch_get_image",
    "BatchCheckLayerAvailability": "batch_check_layer_availability",
    "PutImage": "put_image",
    "BatchDeleteImage": "batch_delete_image",
}
