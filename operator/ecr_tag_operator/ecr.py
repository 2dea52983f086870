"""The ECR client: the one module that imports boto3's botocore.

Calls return typed results carrying ECR's own failure codes; a call that fails as a whole raises
EcrCallError, marked transient when retrying later may help. Throttling and 5xx are first retried by
botocore's retry mode (configured here), never by a loop of our own.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session
import urllib3
from botocore.retries import quota, standard

from . import grants, metrics
from .manifests import ACCEPTED_MEDIA_TYPES
from .model import (
    MAX_IDS_PER_CALL,
    DownloadError,
    EcrCallError,
    Failure,
    Image,
    ImageId,
    Images,
    LayerInfo,
    Layers,
    Mutability,
    PutOutcome,
    ReadPolicy,
    Referrer,
    Registry,
    Upload,
)
from .ports import NO_POLICY
from .ratelimit import FAIR_OPERATIONS, RateLimits
from .reasons import code_is_transient
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient


def _chunks(items: Sequence[Any], size: int = MAX_IDS_PER_CALL) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _registry_kwargs(where: Registry) -> dict[str, str]:
    return {"registryId": where.registry_id} if where.registry_id else {}


class Boto3Ecr:
    """ECR through botocore. One botocore session (its loaded service models shared by every client),
    a client per (region, assumed role, namespace of the role's session), at most ``max_clients`` of
    them (least recently used dropped): a spec can only name registries its grants allow, so clients
    are bounded by the policies, and the cap bounds them anyway."""

    def __init__(
        self, settings: Settings, base: botocore.session.Session | None = None, limits: RateLimits | None = None
    ) -> None:
        self._settings = settings
        self._base = base or botocore.session.Session()
        self._clients: OrderedDict[tuple[str, str | None, str | None], ECRClient] = OrderedDict()
        self._lock = threading.Lock()
        self._limits = limits or RateLimits(settings.rates, fair=settings.fair_writes)
        # Pre-signed blob URLs are plain HTTPS GETs (S3's): urllib3, botocore's own HTTP library, with
        # no retries of its own (the copier resumes a cut download from the last part it uploaded).
        self._http = urllib3.PoolManager(
            num_pools=8,
            maxsize=max(1, settings.copy_parallel_blobs),
            retries=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
        )
        self._config = botocore.config.Config(
            retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=settings.max_workers,
            user_agent_extra="ecr-tag-operator",
        )

    def _client(self, where: Registry) -> ECRClient:
        key = (where.region, where.role_arn, where.session if where.role_arn else None)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            session = _assuming(self._base, where.role_arn, where.session) if where.role_arn else self._base
            client = cast(
                "ECRClient",
                session.create_client(
                    "ecr", region_name=where.region, endpoint_url=self._settings.endpoint_url, config=self._config
                ),
            )
            # Every attempt waits for a token, botocore's retries included: pacing only first
            # attempts lets retries of throttled calls burst past the quota and throttle more.
            client.meta.events.register("before-send.ecr", self._pacer(where.region, where.role_arn))
            if self._settings.retry_mode in ("standard", "adaptive"):
                _retry_all_but_limits(client)
            self._clients[key] = client
            while len(self._clients) > self._settings.max_clients:
                self._clients.popitem(last=False)  # in-flight calls keep their reference
            metrics.ECR_CLIENTS.set(len(self._clients))
            return client

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def caller_account(self) -> str | None:
        """The account of the operator's own credentials (STS GetCallerIdentity), None when unknown."""
        try:
            sts: Any = self._base.create_client("sts", region_name=self._settings.region, config=self._config)
            return str(sts.get_caller_identity()["Account"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, KeyError):
            return None

    def _pacer(self, region: str, role_arn: str | None) -> Any:
        """A before-send hook that takes a token of the registry the request names (its body's
        registryId; the credentials' own account when it names none)."""

        own = role_arn.split(":")[4] if role_arn and role_arn.count(":") >= 5 else None  # the role's account

        def pace(event_name: str, request: Any = None, **_: Any) -> None:
            registry = _registry_of(getattr(request, "body", None)) or own
            operation = event_name.rsplit(".", 1)[-1]
            if operation not in FAIR_OPERATIONS:
                self._limits.acquire(registry, region, operation)
            elif _attempt(request) > 1:  # the first attempt took its token in its tenant's turn
                self._limits.acquire_fair(registry, region, operation, _RETRIES)

        return pace

    def _take_turn(self, where: Registry, operation: str) -> None:
        """A write's first token, in its namespace's turn (see ratelimit.FairBucket)."""
        own = where.role_arn.split(":")[4] if where.role_arn and where.role_arn.count(":") >= 5 else None
        self._limits.acquire_fair(where.registry_id or own, where.region, operation, where.session or "")

    def _call(self, operation: str, where: Registry, **kwargs: Any) -> Any:
        client = self._client(where)
        method = getattr(client, _SNAKE[operation])
        started = time.monotonic()
        code = ""
        try:
            return method(**kwargs)
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if not code_is_transient(code) and status >= 500:
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
            metrics.ECR_CALLS.labels(operation, code).inc()
            metrics.ECR_LATENCY.labels(operation).observe(time.monotonic() - started)

    def batch_get_image(
        self, where: Registry, repository: str, ids: Sequence[ImageId], policy: ReadPolicy = NO_POLICY
    ) -> Images:
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
                        _image_id(raw.get("imageId")),
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
                        image_id=_image_id(raw.get("imageId")),
                    )
                )
        return Images(tuple(images), tuple(failures))

    def check_layers(
        self, where: Registry, repository: str, digests: Sequence[str], policy: ReadPolicy = NO_POLICY
    ) -> Layers:
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
        self._take_turn(where, "PutImage")
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
                # Usually: the tag already points at exactly this manifest. Confirm it: ECR has been
                # seen answering a moved tag in an immutable repository this way, naming another digest.
                return self._confirm_unchanged(where, repository, tag, digest, exc.failure)
            if exc.transient:
                raise
            return PutOutcome(tag, "failed", _with_tag(exc.failure, tag))
        return PutOutcome(tag, "put")

    def _confirm_unchanged(
        self, where: Registry, repository: str, tag: str, digest: str, failure: Failure
    ) -> PutOutcome:
        named = _DIGEST.findall(failure.message)
        if named:
            now: str | None = named[0]
        else:
            got = self.batch_get_image(where, repository, [ImageId(tag=tag)])
            now = got.images[0].digest if got.images else None
        if now == digest:
            return PutOutcome(tag, "unchanged")
        said = f"ECR answered ImageAlreadyExists, but {tag} points at {now or 'no image'}: {failure.message}"
        return PutOutcome(tag, "failed", Failure("PutImage", "ImageTagAlreadyExistsException", said, tag=tag))

    def describe_mutability(self, where: Registry, repository: str, policy: ReadPolicy = NO_POLICY) -> Mutability:
        resp = self._call("DescribeRepositories", where, repositoryNames=[repository], **_registry_kwargs(where))
        repo = (resp.get("repositories") or [{}])[0]
        filters = repo.get("imageTagMutabilityExclusionFilters") or []
        return Mutability(
            repo.get("imageTagMutability", "MUTABLE"),
            tuple(f["filter"] for f in filters if f.get("filterType", "WILDCARD") == "WILDCARD"),
        )

    def image_status(self, where: Registry, repository: str, image: ImageId) -> str | None:
        try:
            resp = self._call(
                "DescribeImages",
                where,
                repositoryName=repository,
                imageIds=[image.to_api()],
                filter={"imageStatus": "ANY"},
                **_registry_kwargs(where),
            )
        except EcrCallError:
            return None  # not allowed, or not there at all: the read's own failure says enough
        details = resp.get("imageDetails") or []
        return str(details[0].get("imageStatus") or "ACTIVE") if details else None

    def delete_tags(self, where: Registry, repository: str, tags: Sequence[str]) -> tuple[Failure, ...]:
        failures: list[Failure] = []
        for chunk in _chunks(tags):
            self._take_turn(where, "BatchDeleteImage")
            resp = self._call(
                "BatchDeleteImage",
                where,
                repositoryName=repository,
                imageIds=[{"imageTag": t} for t in chunk],
                **_registry_kwargs(where),
            )
            for raw in resp.get("failures", []):
                image_id = _image_id(raw.get("imageId"))
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

    def download_url(self, where: Registry, repository: str, digest: str) -> str:
        resp = self._call(
            "GetDownloadUrlForLayer", where, repositoryName=repository, layerDigest=digest, **_registry_kwargs(where)
        )
        return str(resp["downloadUrl"])

    def open_blob(self, url: str, first_byte: int = 0) -> Iterator[bytes]:
        headers = {"Range": f"bytes={first_byte}-"} if first_byte else {}
        try:
            resp = self._http.request("GET", url, headers=headers, preload_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise DownloadError(0, type(exc).__name__, str(exc)) from exc
        try:
            if resp.status >= 400:
                body = resp.read(4096).decode("utf-8", "replace")
                code = _S3_CODE.search(body)
                raise DownloadError(resp.status, code.group(1) if code else str(resp.status), body[:300])
            skip = first_byte if first_byte and resp.status == 200 else 0  # Range ignored: skip ahead
            for chunk in resp.stream(_DOWNLOAD_CHUNK):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if chunk:
                    yield chunk
        except urllib3.exceptions.HTTPError as exc:  # cut mid-stream, short body, read timeout
            raise DownloadError(0, type(exc).__name__, str(exc)) from exc
        finally:
            resp.release_conn()

    def initiate_upload(self, where: Registry, repository: str) -> Upload:
        resp = self._call("InitiateLayerUpload", where, repositoryName=repository, **_registry_kwargs(where))
        return Upload(str(resp["uploadId"]), int(resp.get("partSize") or 0))

    def upload_part(
        self, where: Registry, repository: str, upload_id: str, first_byte: int, last_byte: int, data: bytes | bytearray
    ) -> int:
        # registryId first: botocore serializes in this order, so the pacer finds it without a scan of the part.
        resp = self._call(
            "UploadLayerPart",
            where,
            **_registry_kwargs(where),
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=first_byte,
            partLastByte=last_byte,
            layerPartBlob=data,
        )
        return int(resp.get("lastByteReceived", last_byte))

    def complete_upload(self, where: Registry, repository: str, upload_id: str, digest: str) -> str:
        try:
            resp = self._call(
                "CompleteLayerUpload",
                where,
                repositoryName=repository,
                uploadId=upload_id,
                layerDigests=[digest],
                **_registry_kwargs(where),
            )
        except EcrCallError as exc:
            if exc.failure.code == "LayerAlreadyExistsException":
                return digest  # another copy (or a push) finished it first: the same bytes
            raise
        return str(resp.get("layerDigest") or digest)

    def put_manifest(self, where: Registry, repository: str, manifest: str, media_type: str, digest: str) -> None:
        self._take_turn(where, "PutImage")
        try:
            self._call(
                "PutImage",
                where,
                repositoryName=repository,
                imageManifest=manifest,
                imageManifestMediaType=media_type,
                imageDigest=digest,
                **_registry_kwargs(where),
            )
        except EcrCallError as exc:
            if exc.failure.code != "ImageAlreadyExistsException":
                raise

    def list_referrers(
        self, where: Registry, repository: str, subject_digest: str, artifact_types: Sequence[str] = ()
    ) -> tuple[Referrer, ...]:
        found: list[Referrer] = []
        # The service model caps filter.artifactTypes at 5: more types are asked in groups of 5.
        groups: list[Sequence[str]] = list(_chunks(list(artifact_types), 5)) if artifact_types else [()]
        for group in groups:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"filter": {"artifactTypes": list(group)}} if group else {}
                if token:
                    kwargs["nextToken"] = token
                resp = self._call(
                    "ListImageReferrers",
                    where,
                    repositoryName=repository,
                    subjectId={"imageDigest": subject_digest},
                    maxResults=50,
                    **kwargs,
                    **_registry_kwargs(where),
                )
                for raw in resp.get("referrers", []):
                    found.append(Referrer(raw["digest"], raw.get("artifactType"), raw.get("mediaType", "")))
                token = resp.get("nextToken")
                if not token:
                    break
        return tuple(dict.fromkeys(found))


_DOWNLOAD_CHUNK = 256 * 1024
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>")


class _AssumedRole(botocore.credentials.CredentialProvider):
    METHOD = "assume-role"

    def __init__(self, fetcher: botocore.credentials.AssumeRoleCredentialFetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def load(self) -> botocore.credentials.DeferredRefreshableCredentials:
        return botocore.credentials.DeferredRefreshableCredentials(
            refresh_using=self._fetcher.fetch_credentials, method=self.METHOD
        )


def assume_role_args(namespace: str | None) -> dict[str, Any]:
    """AssumeRole's arguments besides the role: the session is named after the namespace, which is
    also its SourceIdentity and a session tag, so the target account's CloudTrail attributes every
    call and its trust policy can require them."""
    if namespace is None:
        return {"RoleSessionName": "ecr-tag-operator"}
    return {
        "RoleSessionName": grants.namespace_session_name(namespace),
        "SourceIdentity": grants.source_identity(namespace),
        "Tags": [{"Key": grants.NAMESPACE_TAG, "Value": namespace}],
    }


def _assuming(base: botocore.session.Session, role_arn: str, namespace: str | None) -> botocore.session.Session:
    """A botocore session whose credentials come from STS AssumeRole on the operator's own
    credentials, cached and refreshed by botocore before they expire; it shares the base session's
    loaded service models."""
    fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
        client_creator=base.create_client,
        source_credentials=base.get_credentials(),
        role_arn=role_arn,
        extra_args=assume_role_args(namespace),
    )
    session = botocore.session.Session()
    session.register_component("data_loader", base.get_component("data_loader"))
    session.get_component("credential_provider").insert_before("env", _AssumedRole(fetcher))
    return session


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _image_id(raw: Any) -> ImageId:
    raw = raw or {}
    return ImageId(tag=raw.get("imageTag"), digest=raw.get("imageDigest"))


class _NoRetryOnLimits(standard.StandardRetryConditions):
    """botocore's standard retry conditions, except that an ECR limit (LimitExceededException: e.g.
    1,000 tags per image) is not retried: botocore counts it as throttling, but waiting never lifts it."""

    def is_retryable(self, context: standard.RetryContext) -> bool:
        if str(context.get_error_code()) == "LimitExceededException":
            return False
        return bool(super().is_retryable(context))


def _retry_all_but_limits(client: Any) -> None:
    """Replace the client's standard retry handler with one built from the same botocore parts but
    :class:`_NoRetryOnLimits` (botocore registers it under this unique id; adaptive mode adds its rate
    limiter on top, which stays)."""
    events = client.meta.events
    # botocore turns the config's max_attempts (retries) into total_max_attempts (first try included).
    max_attempts = client.meta.config.retries.get("total_max_attempts", standard.DEFAULT_MAX_ATTEMPTS)
    events.unregister("needs-retry.ecr", unique_id="retry-config-ecr")
    adapter = standard.RetryEventAdapter()
    detector = standard.ThrottlingErrorDetector(adapter)
    retry_quota = standard.RetryQuotaChecker(quota.RetryQuota(), detector)
    handler = standard.RetryHandler(
        retry_policy=standard.RetryPolicy(
            retry_checker=_NoRetryOnLimits(max_attempts=max_attempts),
            retry_backoff=standard.ExponentialBackoff(service_name="ecr", throttling_detector=detector),
        ),
        retry_event_adapter=adapter,
        retry_quota=retry_quota,  # type: ignore[arg-type]  # botocore passes the checker; the stub says otherwise
        service_name="ecr",
    )
    events.register("after-call.ecr", retry_quota.release_retry_quota)
    events.register("needs-retry.ecr", handler.needs_retry, unique_id="retry-config-ecr")


_RETRIES = "(retries)"  # botocore's retries of writes share the quota as a tenant of their own


def _attempt(request: Any) -> int:
    """Which attempt a request is, from the amz-sdk-request header botocore sets (1 when absent)."""
    header = (getattr(request, "headers", None) or {}).get("amz-sdk-request", "")
    if isinstance(header, bytes):
        header = header.decode()
    for part in str(header).split(";"):
        key, _, value = part.strip().partition("=")
        if key == "attempt" and value.isdigit():
            return int(value)
    return 1


def _registry_of(body: Any) -> str | None:
    """The registryId a JSON request body names, if any. Searched for, not parsed: an UploadLayerPart
    body is its part base64-encoded (6.7 MiB for a 5 MiB part), and json.loads of it on every attempt
    made two more copies of it. Only a top-level key matches: a key inside a JSON string (a manifest)
    has its quotes escaped, and base64 has no quotes."""
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes | bytearray):
        return None
    at = body.find(_REGISTRY_KEY)  # bytes.find: a few times faster than a regex search over a part
    while at >= 0:
        found = _REGISTRY_VALUE.match(body, at + len(_REGISTRY_KEY))
        if found:
            return found.group(1).decode()
        at = body.find(_REGISTRY_KEY, at + 1)
    return None


_REGISTRY_KEY = b'"registryId"'
_REGISTRY_VALUE = re.compile(rb'\s*:\s*"([^"\\]+)"')


def _with_tag(failure: Failure, tag: str) -> Failure:
    return Failure(failure.operation, failure.code, failure.message, failure.image_id, tag, failure.layer_digest)


_SNAKE = {
    "BatchGetImage": "batch_get_image",
    "BatchCheckLayerAvailability": "batch_check_layer_availability",
    "PutImage": "put_image",
    "BatchDeleteImage": "batch_delete_image",
    "DescribeRepositories": "describe_repositories",
    "DescribeImages": "describe_images",
    "GetDownloadUrlForLayer": "get_download_url_for_layer",
    "InitiateLayerUpload": "initiate_layer_upload",
    "UploadLayerPart": "upload_layer_part",
    "CompleteLayerUpload": "complete_layer_upload",
    "ListImageReferrers": "list_image_referrers",
}
