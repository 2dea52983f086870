"""The control API: fault injection, call accounting, resets."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_control import ControlError, FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image, upload_blob
from ecr_tag_localenv.waiting import wait_for
from tests.plugins.ecr_server import AwsClientFactory

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "faulty"


def _code(client: ECRClient, **kwargs: str) -> str:
    try:
        client.describe_repositories(**kwargs)  # type: ignore[arg-type]
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_throttle_rate_answers_throttling_exception_for_that_operation_only(
    ecr: RunningEmulator, ecr_client: ECRClient
) -> None:
    ensure_repository(ecr_client, REPO)
    image = push_docker_image(ecr_client, REPO, tag="v1", seed=1)
    ecr.control.reset_calls()
    ecr.control.set_faults(operations={"PutImage": FaultRule(throttle_rate=1.0)})
    with pytest.raises(ClientError) as exc:
        ecr_client.put_image(repositoryName=REPO, imageManifest=image.manifest, imageTag="v2")
    assert exc.value.response["Error"]["Code"] == "ThrottlingException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert _code(ecr_client) == "ok"
    calls = ecr.control.calls()
    assert calls.total == {"PutImage": 1, "DescribeRepositories": 1}
    assert calls.faulted == {"PutImage": 1}
    assert calls.of("PutImage", REPO) == 1
    # Nothing reached moto: the tag was not moved.
    assert ecr_client.list_images(repositoryName=REPO)["imageIds"] == [{"imageDigest": image.digest, "imageTag": "v1"}]


def test_error_rate_answers_server_exception(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ecr.control.set_faults(default=FaultRule(error_rate=1.0))
    with pytest.raises(ClientError) as exc:
        ecr_client.describe_repositories()
    assert exc.value.response["Error"]["Code"] == "ServerException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_botocore_retries_injected_throttles(ecr: RunningEmulator, aws_client_factory: AwsClientFactory) -> None:
    ecr.control.set_faults(default=FaultRule(throttle_rate=1.0))
    client = aws_client_factory("ecr", total_max_attempts=2)  # one retry keeps the backoff under a second
    with pytest.raises(ClientError) as exc:
        client.describe_repositories()
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert ecr.control.calls().faulted == {"DescribeRepositories": 2}


def test_operation_rule_overrides_default_field_by_field(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ecr.control.set_faults(
        default=FaultRule(throttle_rate=1.0), operations={"DescribeRepositories": FaultRule(throttle_rate=0.0)}
    )
    assert _code(ecr_client) == "ok"
    with pytest.raises(ClientError):
        ecr_client.describe_registry()
    ecr.control.clear_faults()
    ecr_client.describe_registry()


def test_token_bucket_quota(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ecr.control.set_faults(operations={"DescribeRepositories": FaultRule(quota_per_second=1.0, burst=2)})
    codes = [_code(ecr_client) for _ in range(3)]
    assert codes == ["ok", "ok", "ThrottlingException"]
    # A token comes back within a second.
    wait_for("the token bucket to refill", lambda: _code(ecr_client) == "ok", timeout=5, every=0.1)


def test_same_seed_same_faults(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    def pattern(seed: int) -> list[str]:
        ecr.control.set_faults(default=FaultRule(throttle_rate=0.5), seed=seed)
        return [_code(ecr_client) for _ in range(16)]

    first = pattern(7)
    assert pattern(7) == first
    assert set(first) == {"ok", "ThrottlingException"}  # probability of a uniform run: 2 * 2**-16


def test_latency_is_added_and_requests_are_served_concurrently(
    ecr: RunningEmulator, aws_client_factory: AwsClientFactory
) -> None:
    ecr.control.set_faults(operations={"DescribeRepositories": FaultRule(latency_ms=400)})
    clients = [aws_client_factory("ecr") for _ in range(4)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: c.describe_repositories()["repositories"], clients))
    elapsed = time.monotonic() - started
    assert results == [[], [], [], []]
    assert 0.4 <= elapsed < 1.2, elapsed  # one at a time would take 1.6 s


def test_calls_count_by_repository_and_reset(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    for name in ("repo-a", "repo-b"):
        ensure_repository(ecr_client, name)
    ecr_client.list_images(repositoryName="repo-a")
    ecr_client.list_images(repositoryName="repo-a")
    ecr_client.list_images(repositoryName="repo-b")
    calls = ecr.control.calls()
    assert calls.total["ListImages"] == 3
    assert calls.by_repository["ListImages"] == {"repo-a": 2, "repo-b": 1}
    assert calls.faulted == {}
    ecr.control.reset_calls()
    assert ecr.control.calls().total == {}


def test_control_api_refuses_bad_rules(ecr: RunningEmulator) -> None:
    with pytest.raises(ControlError, match="PutImages"):
        ecr.control.set_faults(operations={"PutImages": FaultRule(throttle_rate=1.0)})
    with pytest.raises(ControlError, match="between 0 and 1"):
        ecr.control.set_faults(default=FaultRule(error_rate=2.0))
    assert ecr.control.faults().to_json() == {"default": {}, "operations": {}, "seed": None}


def test_moto_reset_clears_repositories_and_uploaded_blobs(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    digest = upload_blob(ecr_client, REPO, b"blob before reset")
    ecr.control.reset_moto()
    assert ecr_client.describe_repositories()["repositories"] == []
    ensure_repository(ecr_client, REPO)
    check = ecr_client.batch_check_layer_availability(repositoryName=REPO, layerDigests=[digest])
    assert [f["failureCode"] for f in check["failures"]] == ["MissingLayerDigest"]
