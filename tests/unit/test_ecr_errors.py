"""ECR's errors as the boto3 client maps them, with botocore's Stubber standing in for ECR."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES, DOCKER_MANIFEST_V2
from ecr_tag_operator.model import EcrCallError, ImageId, Registry
from ecr_tag_operator.reasons import code_is_transient
from ecr_tag_operator.settings import Settings

WHERE = Registry("us-east-1", None)
MANIFEST = '{"schemaVersion":2}'
DIGEST = "sha256:" + "a" * 64
PUT_IMAGE_EXCEPTIONS = [
    "InvalidParameterException",
    "RepositoryNotFoundException",
    "ImageTagAlreadyExistsException",
    "LayersNotFoundException",
    "ReferencedImagesNotFoundException",
    "LimitExceededException",
    "ImageDigestDoesNotMatchException",
    "KmsException",
]
IMAGE_FAILURE_CODES = [
    "InvalidImageDigest",
    "InvalidImageTag",
    "ImageTagDoesNotMatchDigest",
    "ImageNotFound",
    "MissingDigestAndTag",
    "ImageReferencedByManifestList",
    "KmsError",
    "UpstreamAccessDenied",
    "UpstreamTooManyRequests",
    "UpstreamUnavailable",
    "ImageInaccessible",
]


@pytest.fixture
def ecr(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Boto3Ecr, Stubber]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = Boto3Ecr(Settings(max_attempts=1))
    stub = Stubber(client._client(WHERE))
    with stub:
        yield client, stub
    stub.assert_no_pending_responses()


def put_params(tag: str = "prod") -> dict[str, Any]:
    return {
        "repositoryName": "team/app",
        "imageManifest": MANIFEST,
        "imageManifestMediaType": DOCKER_MANIFEST_V2,
        "imageTag": tag,
        "imageDigest": DIGEST,
    }


def test_service_model_lists_the_exceptions_we_test() -> None:
    """If botocore's model gains a PutImage error, this list (and the mapping) must be looked at."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("ecr")
    errors = {e.name for e in model.operation_model("PutImage").error_shapes}
    assert set(PUT_IMAGE_EXCEPTIONS) | {"ServerException", "ImageAlreadyExistsException"} == errors
    codes = set(model.shape_for("ImageFailureCode").enum)
    assert codes == set(IMAGE_FAILURE_CODES)


def test_put_image_sends_manifest_untouched_with_type_and_digest(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    client, stub = ecr
    stub.add_response("put_image", {"image": {}}, put_params())
    assert client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST).result == "put"


def already(digest: str) -> str:
    return f"Image with digest '{digest}' and tag 'prod' already exists in the repository with name 'team/app'"


def test_image_already_exists_naming_our_digest_is_unchanged(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    client, stub = ecr
    stub.add_client_error("put_image", "ImageAlreadyExistsException", already(DIGEST), expected_params=put_params())
    assert client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST).result == "unchanged"


def test_image_already_exists_naming_another_digest_is_a_refused_tag(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    """Public reports (moto #8717) say ECR can answer a moved tag in an immutable repository with
    ImageAlreadyExistsException naming the other image: that tag is not in sync."""
    client, stub = ecr
    other = "sha256:" + "e" * 64
    stub.add_client_error("put_image", "ImageAlreadyExistsException", already(other), expected_params=put_params())
    out = client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST)
    assert out.result == "failed"
    assert out.failure is not None
    assert (out.failure.code, out.failure.tag) == ("ImageTagAlreadyExistsException", "prod")
    assert other in out.failure.message


@pytest.mark.parametrize(("now", "result"), [(DIGEST, "unchanged"), ("sha256:" + "f" * 64, "failed")])
def test_image_already_exists_naming_no_digest_is_confirmed_by_a_read(
    ecr: tuple[Boto3Ecr, Stubber], now: str, result: str
) -> None:
    client, stub = ecr
    stub.add_client_error("put_image", "ImageAlreadyExistsException", "exists", expected_params=put_params())
    stub.add_response(
        "batch_get_image",
        {"images": [{"imageId": {"imageTag": "prod", "imageDigest": now}, "imageManifest": MANIFEST}], "failures": []},
    )
    assert client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST).result == result


@pytest.mark.parametrize("code", PUT_IMAGE_EXCEPTIONS)
def test_put_image_exceptions_are_per_tag_failures_with_ecr_code(ecr: tuple[Boto3Ecr, Stubber], code: str) -> None:
    client, stub = ecr
    stub.add_client_error("put_image", code, f"ECR says {code}", expected_params=put_params())
    out = client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST)
    assert out.result == "failed"
    assert out.failure is not None
    assert (out.failure.code, out.failure.tag, out.failure.message) == (code, "prod", f"ECR says {code}")
    assert not out.failure.transient


@pytest.mark.parametrize(("code", "status"), [("ServerException", 500), ("ThrottlingException", 400)])
def test_transient_put_image_errors_raise(ecr: tuple[Boto3Ecr, Stubber], code: str, status: int) -> None:
    client, stub = ecr
    stub.add_client_error("put_image", code, "later", http_status_code=status, expected_params=put_params())
    with pytest.raises(EcrCallError) as err:
        client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST)
    assert err.value.transient
    assert code_is_transient(err.value.failure.code)


def test_unknown_5xx_is_transient(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    client, stub = ecr
    stub.add_client_error("put_image", "Whatever", "boom", http_status_code=503, expected_params=put_params())
    with pytest.raises(EcrCallError) as err:
        client.put_image(WHERE, "team/app", "prod", MANIFEST, DOCKER_MANIFEST_V2, DIGEST)
    assert err.value.transient


def test_access_denied_is_a_permanent_call_error(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    client, stub = ecr
    stub.add_client_error("batch_get_image", "AccessDeniedException", "no", http_status_code=403)
    with pytest.raises(EcrCallError) as err:
        client.batch_get_image(WHERE, "team/app", [ImageId("prod")])
    assert err.value.failure.code == "AccessDeniedException"
    assert not err.value.transient


@pytest.mark.parametrize("code", IMAGE_FAILURE_CODES)
def test_batch_get_image_failure_codes_are_kept(ecr: tuple[Boto3Ecr, Stubber], code: str) -> None:
    client, stub = ecr
    stub.add_response(
        "batch_get_image",
        {"images": [], "failures": [{"imageId": {"imageTag": "v1"}, "failureCode": code, "failureReason": "why"}]},
        {
            "repositoryName": "team/app",
            "imageIds": [{"imageTag": "v1"}],
            "acceptedMediaTypes": list(ACCEPTED_MEDIA_TYPES),
        },
    )
    got = client.batch_get_image(WHERE, "team/app", [ImageId("v1")])
    assert [(f.code, f.image_id) for f in got.failures] == [(code, ImageId("v1"))]


def test_batch_get_image_chunks_by_100(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    client, stub = ecr
    ids = [ImageId(f"t{i}") for i in range(150)]
    for chunk in (ids[:100], ids[100:]):
        stub.add_response(
            "batch_get_image",
            {"images": [{"imageId": i.to_api(), "imageManifest": MANIFEST} for i in chunk]},
            {
                "repositoryName": "team/app",
                "imageIds": [i.to_api() for i in chunk],
                "acceptedMediaTypes": list(ACCEPTED_MEDIA_TYPES),
            },
        )
    assert len(client.batch_get_image(WHERE, "team/app", ids).images) == 150


@pytest.mark.parametrize("code", ["InvalidLayerDigest", "MissingLayerDigest"])
def test_layer_failure_codes_are_kept(ecr: tuple[Boto3Ecr, Stubber], code: str) -> None:
    client, stub = ecr
    stub.add_response(
        "batch_check_layer_availability",
        {
            "layers": [{"layerDigest": DIGEST, "layerAvailability": "ARCHIVED", "layerSize": 5}],
            "failures": [{"layerDigest": "sha256:" + "b" * 64, "failureCode": code, "failureReason": "r"}],
        },
        {"repositoryName": "team/app", "layerDigests": [DIGEST, "sha256:" + "b" * 64]},
    )
    got = client.check_layers(WHERE, "team/app", [DIGEST, "sha256:" + "b" * 64])
    assert got.layers[0].availability == "ARCHIVED"
    assert got.failures[0].code == code
    assert got.failures[0].layer_digest == "sha256:" + "b" * 64


def test_delete_by_tag_only(ecr: tuple[Boto3Ecr, Stubber]) -> None:
    client, stub = ecr
    stub.add_response(
        "batch_delete_image",
        {
            "imageIds": [{"imageTag": "a"}],
            "failures": [
                {"imageId": {"imageTag": "b"}, "failureCode": "ImageReferencedByManifestList", "failureReason": "x"}
            ],
        },
        {
            "repositoryName": "team/app",
            "imageIds": [{"imageTag": "a"}, {"imageTag": "b"}],
            "registryId": "123456789012",
        },
    )
    fails = client.delete_tags(Registry("us-east-1", "123456789012"), "team/app", ["a", "b"])
    assert [(f.tag, f.code) for f in fails] == [("b", "ImageReferencedByManifestList")]
    assert [(f.operation, f.message) for f in fails] == [("BatchDeleteImage", "x")]  # ECR's words, kept
