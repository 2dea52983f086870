"""The emulator's OCI distribution face (``/v2/``): each behaviour pushed through one face, read through the other.

Citations: "OCI spec" is the OCI distribution specification v1.1 (spec.md); "ECR API" is botocore's
ECR service model / the ECR API reference; "ECR guide" is the Amazon ECR user guide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_launcher import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    RunningEmulator,
    start_emulator,
)
from ecr_tag_localenv.ecr_media import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256_digest
from ecr_tag_localenv.ecr_seed import ensure_repository, push_oci_image, push_oci_index
from tests.ecr.oci_http import Registry, login
from tests.plugins.ecr_server import aws_client

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "team/app"


@pytest.fixture
def registry(ecr: RunningEmulator, ecr_client: ECRClient) -> Registry:
    ensure_repository(ecr_client, REPO)
    return Registry(ecr.registry, login(ecr_client))


def _image(registry: Registry, repository: str, layer: bytes, **extra: object) -> tuple[bytes, str]:
    """Push a config and one layer through the OCI face; returns (manifest bytes, manifest digest), unpushed."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    config_digest = registry.push_blob(repository, config)
    layer_digest = registry.push_blob(repository, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        **extra,
    }
    data = json.dumps(manifest, indent=2).encode()
    return data, sha256_digest(data)


def test_ping_needs_basic_auth_with_the_token_of_get_authorization_token(
    ecr: RunningEmulator, ecr_client: ECRClient
) -> None:
    """ECR guide, "Private registry authentication": ``docker login --username AWS`` with the password of
    GetAuthorizationToken; ECR API, AuthorizationData: the token decodes to ``user:password``, "valid for
    12 hours", proxyEndpoint is the registry URL."""
    anonymous = Registry(ecr.registry, None).request("GET", "/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    data = ecr_client.get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == f"http://{ecr.registry}"
    remaining = data["expiresAt"] - datetime.now(UTC)
    assert timedelta(hours=11, minutes=59) < remaining <= timedelta(hours=12)
    user, password = login(ecr_client)
    assert user == "AWS"
    assert Registry(ecr.registry, (user, password)).request("GET", "/v2/").status_code == 200
    assert Registry(ecr.registry, (user, password + "x")).request("GET", "/v2/").status_code == 401
    assert Registry(ecr.registry, ("someone", password)).request("GET", "/v2/").status_code == 401


@pytest.fixture(scope="module")
def expiring_emulator() -> Iterator[RunningEmulator]:
    with start_emulator(extra_args=["--auth-token-ttl", "0"]) as emulator:
        yield emulator


def test_an_expired_token_is_refused_with_401(expiring_emulator: RunningEmulator) -> None:
    """ECR API, GetAuthorizationToken: "The authorization token is valid for 12 hours"; after that ECR
    answers "Your authorization token has expired. Reauthenticate and try again." (the emulator's
    ``--auth-token-ttl 0`` makes tokens expire at once)."""
    client: ECRClient = aws_client(expiring_emulator.endpoint_url, "ecr")
    data = client.get_authorization_token()["authorizationData"][0]
    assert data["expiresAt"] <= datetime.now(UTC)
    response = Registry(expiring_emulator.registry, login(client)).request("GET", "/v2/")
    assert response.status_code == 401
    assert "expired" in response.json()["errors"][0]["message"]


def test_an_image_pushed_through_the_ecr_api_is_read_byte_for_byte_through_oci(
    registry: Registry, ecr_client: ECRClient
) -> None:
    """One state, two faces (ECR guide, "Pushing an image": the ECR API's layer upload calls are what the
    registry endpoint uses): manifest bytes, media type, digest and every blob come back as pushed."""
    pushed = push_oci_image(ecr_client, REPO, tag="v1", seed=3)
    got = registry.get_manifest(REPO, "v1", [OCI_MANIFEST])
    assert got.status_code == 200
    assert got.content == pushed.manifest.encode()
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == pushed.digest
    for digest, data in pushed.blobs.items():
        blob = registry.request("GET", f"/v2/{REPO}/blobs/{digest}")
        assert blob.status_code == 200
        assert blob.content == data
        assert blob.headers["Docker-Content-Digest"] == digest
        head = registry.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(data)
    index = push_oci_index(ecr_client, REPO, tag="multi", seed=4)
    assert registry.get_manifest(REPO, "multi", [OCI_INDEX]).content == index.manifest.encode()
    by_digest = registry.get_manifest(REPO, index.digest, [OCI_INDEX])
    assert by_digest.content == index.manifest.encode()


def test_an_image_pushed_through_oci_is_read_byte_for_byte_through_the_ecr_api(
    registry: Registry, ecr_client: ECRClient
) -> None:
    """OCI spec, "Pushing Manifests": the registry answers 201 with the digest of the bytes; ECR API,
    BatchGetImage / DescribeImages / BatchCheckLayerAvailability see the same image and layers."""
    layer = os.urandom(3000)
    manifest, digest = _image(registry, REPO, layer)
    put = registry.put_manifest(REPO, "v2", manifest, OCI_MANIFEST)
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == digest
    assert put.headers["Location"].endswith(f"/manifests/{digest}")
    images = ecr_client.batch_get_image(
        repositoryName=REPO, imageIds=[{"imageTag": "v2"}], acceptedMediaTypes=[OCI_MANIFEST]
    )["images"]
    assert images[0]["imageManifest"].encode() == manifest
    assert images[0]["imageId"]["imageDigest"] == digest
    described = ecr_client.describe_images(repositoryName=REPO)["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in described] == [(digest, ["v2"])]
    layers = ecr_client.batch_check_layer_availability(repositoryName=REPO, layerDigests=[sha256_digest(layer)])
    assert [(entry["layerAvailability"], entry["layerSize"]) for entry in layers["layers"]] == [("AVAILABLE", 3000)]


def test_the_manifest_digest_is_computed_from_the_bytes(registry: Registry, ecr_client: ECRClient) -> None:
    """ECR API, PutImage / ImageDigestDoesNotMatchException: the digest is what ECR calculates from the
    manifest; OCI spec: a PUT by digest whose bytes hash otherwise is DIGEST_INVALID."""
    manifest, digest = _image(registry, REPO, b"layer")
    spaced = manifest + b"\n\n"
    wrong = registry.put_manifest(REPO, digest, spaced, OCI_MANIFEST)
    assert wrong.status_code == 400
    assert registry.error_code(wrong) == "DIGEST_INVALID"
    right = registry.put_manifest(REPO, sha256_digest(spaced), spaced, OCI_MANIFEST)
    assert right.status_code == 201
    assert ecr_client.list_images(repositoryName=REPO)["imageIds"] == [{"imageDigest": sha256_digest(spaced)}]


def test_a_manifest_naming_a_missing_layer_is_refused_and_leaves_nothing(
    registry: Registry, ecr_client: ECRClient
) -> None:
    """ECR API, PutImage: LayersNotFoundException ("the specified layers could not be found"); on the
    registry face it is MANIFEST_BLOB_UNKNOWN (OCI spec, error codes)."""
    manifest, _ = _image(registry, REPO, b"present")
    missing = json.loads(manifest)
    missing["layers"][0]["digest"] = sha256_digest(b"never pushed")
    response = registry.put_manifest(REPO, "broken", json.dumps(missing).encode(), OCI_MANIFEST)
    assert response.status_code == 400
    assert registry.error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert ecr_client.list_images(repositoryName=REPO)["imageIds"] == []


def test_an_immutable_tag_is_refused_as_tag_invalid(registry: Registry, ecr_client: ECRClient) -> None:
    """ECR API, PutImage: ImageTagAlreadyExistsException when the repository's tags are immutable; the
    registry face answers 400 TAG_INVALID."""
    ensure_repository(ecr_client, "locked", immutable=True)
    first, _ = _image(registry, "locked", b"one")
    second, _ = _image(registry, "locked", b"two")
    assert registry.put_manifest("locked", "v1", first, OCI_MANIFEST).status_code == 201
    assert registry.put_manifest("locked", "v1", first, OCI_MANIFEST).status_code == 201  # same bytes again
    refused = registry.put_manifest("locked", "v1", second, OCI_MANIFEST)
    assert refused.status_code == 400
    assert registry.error_code(refused) == "TAG_INVALID"


def test_a_repository_must_exist_before_a_push(registry: Registry) -> None:
    """Service model: InitiateLayerUpload and PutImage raise RepositoryNotFoundException; a push does not
    create the repository, so the registry face answers NAME_UNKNOWN."""
    response = registry.request("POST", "/v2/nowhere/blobs/uploads/")
    assert response.status_code == 404
    assert registry.error_code(response) == "NAME_UNKNOWN"


def test_blob_range_requests(registry: Registry) -> None:
    """OCI spec, "Pulling blobs": a registry MAY support Range; 206 with Content-Range, 416 if unsatisfiable."""
    data = bytes(range(256)) * 8
    digest = registry.push_blob(REPO, data)
    url = f"/v2/{REPO}/blobs/{digest}"
    middle = registry.request("GET", url, headers={"Range": "bytes=500-1499"})
    assert (middle.status_code, middle.content) == (206, data[500:1500])
    assert middle.headers["Content-Range"] == f"bytes 500-1499/{len(data)}"
    tail = registry.request("GET", url, headers={"Range": "bytes=-100"})
    assert (tail.status_code, tail.content) == (206, data[-100:])
    past = registry.request("GET", url, headers={"Range": "bytes=5000-6000"})
    assert past.status_code == 416
    assert registry.request("GET", f"/v2/{REPO}/blobs/{sha256_digest(b'absent')}").status_code == 404


def test_chunked_upload_in_order_only(registry: Registry, ecr_client: ECRClient) -> None:
    """OCI spec, "Pushing a blob in chunks": PATCH with Content-Range; an out-of-order chunk is 416 and
    the upload goes on; GET on the upload reports its Range; the final PUT checks the digest."""
    data = os.urandom(3 * 1024)
    started = registry.request("POST", f"/v2/{REPO}/blobs/uploads/")
    location = started.headers["Location"]
    first = registry.request("PATCH", location, data=data[:1024], headers={"Content-Range": "0-1023"})
    assert (first.status_code, first.headers["Range"]) == (202, "0-1023")
    skipped = registry.request("PATCH", location, data=data[2048:], headers={"Content-Range": "2048-3071"})
    assert skipped.status_code == 416
    status = registry.request("GET", location)
    assert (status.status_code, status.headers["Range"]) == (204, "0-1023")
    registry.request("PATCH", location, data=data[1024:2048], headers={"Content-Range": "1024-2047"})
    bad = registry.request("PUT", location, params={"digest": sha256_digest(b"other")}, data=data[2048:])
    assert bad.status_code == 400
    assert registry.error_code(bad) == "DIGEST_INVALID"
    again = registry.request("POST", f"/v2/{REPO}/blobs/uploads/").headers["Location"]
    registry.request("PATCH", again, data=data[:2048])
    done = registry.request("PUT", again, params={"digest": sha256_digest(data)}, data=data[2048:])
    assert done.status_code == 201
    layers = ecr_client.batch_check_layer_availability(repositoryName=REPO, layerDigests=[sha256_digest(data)])
    assert layers["layers"][0]["layerSize"] == len(data)


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1])


def test_a_large_blob_streams_through_without_being_held_in_memory(ecr: RunningEmulator, registry: Registry) -> None:
    """Layers up to ECR's "Maximum layer size" of 52,000 MiB (ECR guide, "Amazon ECR service quotas") must
    not pass through memory:
    the emulator's peak resident size grows by far less than a 256 MiB blob pushed and pulled."""
    size, chunk = 256 << 20, os.urandom(1 << 20)
    expected = hashlib.sha256()
    for _ in range(size // len(chunk)):
        expected.update(chunk)
    digest = "sha256:" + expected.hexdigest()
    before = _peak_rss_kib(ecr.process.pid)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    location = registry.request("POST", f"/v2/{REPO}/blobs/uploads/").headers["Location"]
    streamed = registry.request("PATCH", location, data=body())  # chunked transfer encoding
    assert streamed.status_code == 202
    assert streamed.headers["Range"] == f"0-{size - 1}"
    assert registry.request("PUT", streamed.headers["Location"], params={"digest": digest}).status_code == 201
    pulled = hashlib.sha256()
    with registry.request("GET", f"/v2/{REPO}/blobs/{digest}", stream=True) as response:
        assert int(response.headers["Content-Length"]) == size
        for part in response.iter_content(1 << 20):
            pulled.update(part)
    assert "sha256:" + pulled.hexdigest() == digest
    grown_mib = (_peak_rss_kib(ecr.process.pid) - before) / 1024
    assert grown_mib < 64, f"emulator peak memory grew by {grown_mib:.0f} MiB for a 256 MiB blob"


def test_cross_repository_mount_only_with_blob_mounting_enabled(registry: Registry, ecr_client: ECRClient) -> None:
    """ECR guide, "Blob mounting in Amazon ECR": mounting works only when the registry's BLOB_MOUNTING
    account setting is ENABLED (PutAccountSetting), only within the same registry, only between
    repositories with identical encryption; otherwise the OCI spec's answer: 202 and a new upload."""
    ensure_repository(ecr_client, "source")
    digest = registry.push_blob("source", b"shared layer")
    mount = f"/v2/{REPO}/blobs/uploads/?mount={digest}&from=source"
    assert ecr_client.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
    refused = registry.request("POST", mount)
    assert refused.status_code == 202
    assert "/blobs/uploads/" in refused.headers["Location"]
    assert registry.request("HEAD", f"/v2/{REPO}/blobs/{digest}").status_code == 404

    assert ecr_client.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")["value"] == "ENABLED"
    assert ecr_client.get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    mounted = registry.request("POST", mount)
    assert mounted.status_code == 201
    assert mounted.headers["Docker-Content-Digest"] == digest
    assert registry.request("GET", f"/v2/{REPO}/blobs/{digest}").content == b"shared layer"
    available = ecr_client.batch_check_layer_availability(repositoryName=REPO, layerDigests=[digest])
    assert available["layers"][0]["layerAvailability"] == "AVAILABLE"

    anonymous = registry.request("POST", f"/v2/other/blobs/uploads/?mount={digest}")
    assert anonymous.status_code in (202, 404)  # "only when these parameters are present": no `from`, no mount
    ecr_client.create_repository(repositoryName="kms", encryptionConfiguration={"encryptionType": "KMS"})
    assert registry.request("POST", f"/v2/kms/blobs/uploads/?mount={digest}&from=source").status_code == 202
    with pytest.raises(ClientError):
        ecr_client.put_account_setting(name="BLOB_MOUNTING", value="SOMETIMES")


def test_manifest_delete_by_tag_and_by_digest(registry: Registry, ecr_client: ECRClient) -> None:
    """OCI spec, "Deleting tags" / "Deleting Manifests": 202; ECR API, BatchDeleteImage: by tag removes
    the tag (and the image with its last tag), by digest the image and its tags."""
    pushed = push_oci_image(ecr_client, REPO, tag="a", seed=5)
    ecr_client.put_image(repositoryName=REPO, imageManifest=pushed.manifest, imageTag="b")
    assert registry.request("DELETE", f"/v2/{REPO}/manifests/a").status_code == 202
    ids = ecr_client.list_images(repositoryName=REPO)["imageIds"]
    assert ids == [{"imageDigest": pushed.digest, "imageTag": "b"}]
    assert registry.request("DELETE", f"/v2/{REPO}/manifests/{pushed.digest}").status_code == 202
    assert ecr_client.list_images(repositoryName=REPO)["imageIds"] == []
    gone = registry.request("GET", f"/v2/{REPO}/manifests/{pushed.digest}")
    assert (gone.status_code, registry.error_code(gone)) == (404, "MANIFEST_UNKNOWN")


def test_blobs_cannot_be_deleted(registry: Registry) -> None:
    """ECR API: no operation deletes a layer (BatchDeleteImage deletes images); the registry face answers
    405 UNSUPPORTED, which the OCI spec allows ("Deleting Blobs": 405 if deletion is disabled)."""
    digest = registry.push_blob(REPO, b"kept")
    assert registry.request("DELETE", f"/v2/{REPO}/blobs/{digest}").status_code == 405
    assert registry.request("GET", f"/v2/{REPO}/blobs/{digest}").content == b"kept"


def test_tag_listing_pages_with_n_last_and_link(registry: Registry, ecr_client: ECRClient) -> None:
    """OCI spec, "Listing Tags": lexical order, ``n`` and ``last``, a Link header to the next page."""
    pushed = push_oci_image(ecr_client, REPO, tag="t3", seed=6)
    for tag in ("t1", "t5", "t2", "t4"):
        ecr_client.put_image(repositoryName=REPO, imageManifest=pushed.manifest, imageTag=tag)
    everything = registry.request("GET", f"/v2/{REPO}/tags/list").json()
    assert everything == {"name": REPO, "tags": ["t1", "t2", "t3", "t4", "t5"]}
    first = registry.request("GET", f"/v2/{REPO}/tags/list", params={"n": 2})
    assert first.json()["tags"] == ["t1", "t2"]
    assert first.headers["Link"] == f'</v2/{REPO}/tags/list?n=2&last=t2>; rel="next"'
    second = registry.request("GET", f"/v2/{REPO}/tags/list", params={"n": 2, "last": "t2"})
    assert second.json()["tags"] == ["t3", "t4"]
    last = registry.request("GET", f"/v2/{REPO}/tags/list", params={"n": 2, "last": "t4"})
    assert last.json()["tags"] == ["t5"]
    assert "Link" not in last.headers


def test_referrers_with_artifact_type_filter(registry: Registry, ecr_client: ECRClient) -> None:
    """OCI spec, "Listing Referrers": an OCI index of the manifests whose ``subject`` is the digest, with
    artifactType (the config's mediaType when the manifest has none), filtered by ``artifactType`` with
    OCI-Filters-Applied; the ECR API's twin of it is ListImageReferrers (service model)."""
    subject = push_oci_image(ecr_client, REPO, tag="app", seed=7)
    descriptor = {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)}
    sbom, sbom_digest = _image(registry, REPO, b"sbom", artifactType="application/spdx+json", subject=descriptor)
    sig, sig_digest = _image(registry, REPO, b"sig", artifactType="application/vnd.dev.cosign", subject=descriptor)
    for data in (sbom, sig):
        put = registry.put_manifest(REPO, sha256_digest(data), data, OCI_MANIFEST)
        assert put.status_code == 201
        assert put.headers["OCI-Subject"] == subject.digest
    listed = registry.request("GET", f"/v2/{REPO}/referrers/{subject.digest}")
    assert listed.headers["Content-Type"] == OCI_INDEX
    index = listed.json()
    assert (index["schemaVersion"], index["mediaType"]) == (2, OCI_INDEX)
    assert {(m["digest"], m["artifactType"], m["size"]) for m in index["manifests"]} == {
        (sbom_digest, "application/spdx+json", len(sbom)),
        (sig_digest, "application/vnd.dev.cosign", len(sig)),
    }
    filtered = registry.request(
        "GET", f"/v2/{REPO}/referrers/{subject.digest}", params={"artifactType": "application/spdx+json"}
    )
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom_digest]
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    none = registry.request("GET", f"/v2/{REPO}/referrers/{sbom_digest}").json()
    assert none["manifests"] == []


def test_the_host_header_picks_the_account_and_region(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    """ECR's registry is per account and region (``<account>.dkr.ecr.<region>.amazonaws.com``, ECR guide,
    "Private registry concepts"); here ``<account>.dkr.ecr.<region>.localhost``. A token opens its own
    account's registries only."""
    west: ECRClient = boto3.session.Session().client(
        "ecr",
        endpoint_url=ecr.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )
    west.create_repository(repositoryName="regional")
    west_host = ecr.registry_for("123456789012", "eu-west-1")
    assert west.get_authorization_token()["authorizationData"][0]["proxyEndpoint"] == f"http://{west_host}"
    west_registry = Registry(ecr.registry, login(west), host=west_host)
    digest = west_registry.push_blob("regional", b"in eu-west-1")
    assert west.batch_check_layer_availability(repositoryName="regional", layerDigests=[digest])["layers"]
    default = Registry(ecr.registry, login(ecr_client))
    assert default.request("POST", "/v2/regional/blobs/uploads/").status_code == 404  # not in us-east-1
    other_account = Registry(ecr.registry, login(ecr_client), host=ecr.registry_for("210987654321", "us-east-1"))
    assert other_account.request("GET", "/v2/").status_code == 403


def test_deleting_or_resetting_forgets_blobs(ecr: RunningEmulator, registry: Registry, ecr_client: ECRClient) -> None:
    """ECR API, DeleteRepository: the repository goes with its images and layers; a repository made again
    under the name starts empty. The emulator's /moto-api/reset clears the blob store too."""
    digest = registry.push_blob(REPO, b"short-lived")
    ecr_client.delete_repository(repositoryName=REPO, force=True)
    ensure_repository(ecr_client, REPO)
    assert registry.request("HEAD", f"/v2/{REPO}/blobs/{digest}").status_code == 404
    digest = registry.push_blob(REPO, b"until reset")
    ecr.control.reset_all()
    ensure_repository(ecr_client, REPO)
    fresh = Registry(ecr.registry, login(ecr_client))
    assert fresh.request("HEAD", f"/v2/{REPO}/blobs/{digest}").status_code == 404


def test_basic_auth_header_decodes_like_docker_login(registry: Registry) -> None:
    """The Authorization header is ``Basic base64(AWS:password)`` (ECR guide, "Private registry authentication")."""
    assert registry.session.auth is not None
    user, password = registry.session.auth  # type: ignore[misc]
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    bare = Registry(registry.base.removeprefix("http://"), None)
    assert bare.request("GET", "/v2/", headers={"Authorization": header}).status_code == 200
