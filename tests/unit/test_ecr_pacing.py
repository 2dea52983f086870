"""The copy's ECR calls are paced client-side, like PutImage and BatchGetImage: every attempt of
GetDownloadUrlForLayer, InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload and ListImageReferrers
waits for a token of its (account, region, operation) bucket, at ECR's default quota (Amazon ECR user
guide, "Amazon ECR service quotas": 3,000, 100, 500 and 100 per second; ListImageReferrers has no
published rate). The operator's real botocore client is used; a before-send handler registered after
the pacer answers in ECR's JSON protocol instead of the network (botocore sends nothing when a
before-send handler returns a response)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.model import Registry
from ecr_tag_operator.ratelimit import RateLimits
from ecr_tag_operator.settings import Settings

DIGEST = "sha256:" + "b" * 64
ACCOUNT_B = "222222222222"
PROD = Registry("eu-west-1", ACCOUNT_B)
ANSWERS: dict[str, dict[str, Any]] = {
    "GetDownloadUrlForLayer": {"downloadUrl": "https://layers.example/blob", "layerDigest": DIGEST},
    "InitiateLayerUpload": {"uploadId": "u-1", "partSize": 10 * 1024 * 1024},
    "UploadLayerPart": {"uploadId": "u-1", "lastByteReceived": 0},
    "CompleteLayerUpload": {"uploadId": "u-1", "layerDigest": DIGEST},
    "ListImageReferrers": {"referrers": []},
}
COPY_OPERATIONS = tuple(ANSWERS)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class RecordingLimits(RateLimits):
    """RateLimits that also record each token taken: (account, region, operation, rate of its bucket)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken: list[tuple[str | None, str, str, float | None]] = []

    def acquire(self, account: str | None, region: str, operation: str) -> float:
        self.taken.append((account, region, operation, self._rates.get(operation)))
        return super().acquire(account, region, operation)


def answering(ecr: Boto3Ecr, where: Registry, throttle_first: set[str] | None = None) -> list[str]:
    """Answer every ECR request of ``where``'s client as ECR would (the first attempt of the operations
    in ``throttle_first`` with a ThrottlingException); returns the operations answered, in order."""
    answered: list[str] = []
    throttled = set(throttle_first or ())

    def respond(event_name: str, request: Any = None, **_: Any) -> Any:  # an AWSResponse: botocore sends nothing
        operation = event_name.rsplit(".", 1)[-1]
        answered.append(operation)
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.1"
        if operation in throttled:
            throttled.discard(operation)
            body = {"__type": "ThrottlingException", "message": "Rate exceeded"}
            return AWSResponse(request.url, 400, headers, _Raw(json.dumps(body).encode()))
        return AWSResponse(request.url, 200, headers, _Raw(json.dumps(ANSWERS[operation]).encode()))

    ecr._client(where).meta.events.register("before-send.ecr", respond)  # after the pacer: it runs first
    return answered


def calls(ecr: Boto3Ecr, where: Registry) -> dict[str, Callable[[], Any]]:
    part = bytearray(b"x" * 1024)  # the copier sends its reused part buffer
    return {
        "GetDownloadUrlForLayer": lambda: ecr.download_url(where, "prod/web", DIGEST),
        "InitiateLayerUpload": lambda: ecr.initiate_upload(where, "prod/web"),
        "UploadLayerPart": lambda: ecr.upload_part(where, "prod/web", "u-1", 0, len(part) - 1, part),
        "CompleteLayerUpload": lambda: ecr.complete_upload(where, "prod/web", "u-1", DIGEST),
        "ListImageReferrers": lambda: ecr.list_referrers(where, "prod/web", DIGEST),
    }


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_every_copy_call_takes_a_token_of_its_registry_region_and_operation_at_ecr_s_quota() -> None:
    settings = Settings(max_attempts=1)
    limits = RecordingLimits(settings.rates)
    ecr = Boto3Ecr(settings, limits=limits)
    answered = answering(ecr, PROD)
    for call in calls(ecr, PROD).values():
        call()
    assert answered == list(COPY_OPERATIONS)
    quotas = {
        "GetDownloadUrlForLayer": 3000.0,
        "InitiateLayerUpload": 100.0,
        "UploadLayerPart": 500.0,
        "CompleteLayerUpload": 100.0,
        "ListImageReferrers": 100.0,
    }
    # The target's account, named in the body (for UploadLayerPart: found ahead of the part's bytes).
    assert limits.taken == [(ACCOUNT_B, "eu-west-1", op, quotas[op]) for op in COPY_OPERATIONS]


def test_a_throttled_attempt_and_its_retry_each_take_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries are paced too: botocore's retry of a throttled part waits for a token of the same bucket."""
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None)  # botocore's own backoff
    settings = Settings(max_attempts=2)
    limits = RecordingLimits(settings.rates)
    ecr = Boto3Ecr(settings, limits=limits)
    answered = answering(ecr, PROD, throttle_first={"UploadLayerPart"})
    calls(ecr, PROD)["UploadLayerPart"]()
    assert answered == ["UploadLayerPart", "UploadLayerPart"]
    assert [t[2] for t in limits.taken] == ["UploadLayerPart", "UploadLayerPart"]


@pytest.mark.parametrize("operation", COPY_OPERATIONS)
def test_calls_beyond_the_burst_wait_at_the_configured_rate(operation: str) -> None:
    """At 10/s with a burst of 10, 30 calls: the first 10 go at once, the other 20 wait 0.1 s each."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    field = {
        "GetDownloadUrlForLayer": "download_url_rate",
        "InitiateLayerUpload": "initiate_upload_rate",
        "UploadLayerPart": "upload_part_rate",
        "CompleteLayerUpload": "complete_upload_rate",
        "ListImageReferrers": "list_referrers_rate",
    }[operation]
    settings = Settings(max_attempts=1).model_copy(update={field: 10.0})
    ecr = Boto3Ecr(settings, limits=RateLimits(settings.rates, clock=lambda: now[0], sleep=sleep))
    own = Registry("us-east-1", None)
    answering(ecr, own)
    call = calls(ecr, own)[operation]
    for _ in range(30):
        call()
    assert len(slept) == 20
    assert now[0] == pytest.approx(2.0)


def test_the_registry_of_a_body_is_its_top_level_key_only() -> None:
    from ecr_tag_operator.ecr import _registry_of

    manifest = json.dumps({"registryId": "999999999999"})
    assert _registry_of(json.dumps({"imageManifest": manifest, "registryId": ACCOUNT_B}).encode()) == ACCOUNT_B
    assert _registry_of(json.dumps({"imageManifest": manifest}).encode()) is None
    assert _registry_of(b"") is None
