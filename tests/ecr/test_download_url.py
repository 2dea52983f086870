"""GetDownloadUrlForLayer: a pre-signed, time-limited URL that the emulator serves itself.

Service model (botocore ecr/2015-09-21) GetDownloadUrlForLayer: "Retrieves the pre-signed Amazon S3 download
URL corresponding to an image layer. You can only get URLs for image layers that are referenced in an
image." (LayersNotFoundException, LayerInaccessibleException "not associated with an image"). The URL acts
like an S3 pre-signed GET (S3 user guide, "Sharing objects with presigned URLs": valid until it expires, then
403 AccessDenied "Request has expired"; byte ranges per RFC 9110 as S3's GetObject Range).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, PULL_ACTIONS, assume_role, repository_policy
from ecr_tag_localenv.ecr_control import FaultRule
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_media import sha256_digest

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "team-a/web"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the emulator's own loopback URL
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def image(ecr_client: ECRClient) -> ecr_seed.PushedImage:
    return ecr_seed.push(ecr_client, REPO, "v1", "docker", seed="download")


def _url(client: ECRClient, digest: str, **kwargs: Any) -> str:
    answer = client.get_download_url_for_layer(repositoryName=REPO, layerDigest=digest, **kwargs)
    assert answer["layerDigest"] == digest
    return str(answer["downloadUrl"])


def test_url_serves_the_layer_bytes_from_the_emulator(
    ecr: RunningEmulator, ecr_client: ECRClient, image: ecr_seed.PushedImage
) -> None:
    for digest in image.blob_digests:
        url = _url(ecr_client, digest)
        assert url.startswith(ecr.endpoint_url + "/")
        status, headers, body = _get(url)
        assert status == 200
        assert sha256_digest(body) == digest
        assert body == image.blobs[digest]
        assert headers["Accept-Ranges"] == "bytes"
    assert ecr.control.calls().downloads == len(image.blob_digests)


def test_range_requests(ecr_client: ECRClient, image: ecr_seed.PushedImage) -> None:
    digest = image.layer_digests[0]
    data, url = image.blobs[digest], _url(ecr_client, digest)
    size = len(data)
    status, headers, body = _get(url, {"Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 10-19/{size}", data[10:20])
    status, headers, body = _get(url, {"Range": "bytes=20-"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 20-{size - 1}/{size}", data[20:])
    status, _, body = _get(url, {"Range": "bytes=-5"})
    assert (status, body) == (206, data[-5:])
    status, headers, _ = _get(url, {"Range": f"bytes={size}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{size}")
    status, _, body = _get(url, {"Range": "bytes=0-1,5-6"})  # several ranges: a server may send it all
    assert (status, body) == (200, data)


def test_url_expires_and_cannot_be_altered(
    ecr: RunningEmulator, ecr_client: ECRClient, image: ecr_seed.PushedImage
) -> None:
    digest = image.layer_digests[0]
    ecr.control.set_settings(download_url_seconds=0)
    status, _, body = _get(_url(ecr_client, digest))
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert b"Request has expired" in body
    ecr.control.reset_settings()
    url = _url(ecr_client, digest)
    assert _get(url)[0] == 200
    # Another layer's path with this URL's signature, or a later expiry, is refused.
    other = url.replace(digest.split(":")[1], image.layer_digests[1].split(":")[1])
    assert other != url
    assert _get(other)[0] == 403
    parsed = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    query["expires"] = str(int(query["expires"]) + 1000)
    status, _, body = _get(parsed._replace(query=urllib.parse.urlencode(query)).geturl())
    assert (status, b"SignatureDoesNotMatch" in body) == (403, True)


def test_only_layers_of_an_image_get_a_url(ecr_client: ECRClient, image: ecr_seed.PushedImage) -> None:
    loose = ecr_seed.upload_blob(ecr_client, REPO, b"a blob no manifest refers to")
    with pytest.raises(ClientError) as exc:
        _url(ecr_client, loose)
    assert exc.value.response["Error"]["Code"] == "LayerInaccessibleException"
    with pytest.raises(ClientError) as exc:
        _url(ecr_client, sha256_digest(b"never pushed"))
    assert exc.value.response["Error"]["Code"] == "LayersNotFoundException"
    with pytest.raises(ClientError) as exc:
        _url(ecr_client, "sha256:nothex")
    assert exc.value.response["Error"]["Code"] == "InvalidParameterException"


def test_other_account_needs_the_repository_policy(
    ecr: RunningEmulator, ecr_client: ECRClient, image: ecr_seed.PushedImage
) -> None:
    other: ECRClient = assume_role(ecr.endpoint_url, "222222222222").client("ecr", ecr.endpoint_url)
    digest = image.layer_digests[0]
    with pytest.raises(ClientError) as exc:
        _url(other, digest, registryId=DEFAULT_ACCOUNT)
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
    ecr_client.set_repository_policy(
        repositoryName=REPO, policyText=repository_policy("222222222222", actions=PULL_ACTIONS)
    )
    status, _, body = _get(_url(other, digest, registryId=DEFAULT_ACCOUNT))
    assert (status, body) == (200, image.blobs[digest])


def test_fault_rule_cuts_downloads_mid_stream(
    ecr: RunningEmulator, ecr_client: ECRClient, image: ecr_seed.PushedImage
) -> None:
    digest = image.layer_digests[0]
    data = image.blobs[digest]
    ecr.control.set_faults(operations={"GetDownloadUrlForLayer": FaultRule(cut_after_bytes=50, cut_downloads=1)})
    url = _url(ecr_client, digest)
    with pytest.raises(http.client.IncompleteRead) as exc:
        _get(url)
    assert exc.value.partial == data[:50]
    assert exc.value.expected == len(data) - 50
    # Only the first download was to be cut: a retry, and a ranged resume, get their bytes.
    assert _get(url)[2] == data
    assert _get(url, {"Range": "bytes=50-"})[2] == data[50:]
    calls = ecr.control.calls()
    assert (calls.downloads, calls.downloaded_bytes) == (3, 50 + len(data) + len(data) - 50)


def test_large_layer_streams_in_parts(ecr: RunningEmulator, ecr_client: ECRClient) -> None:
    """A 24 MiB layer pushed in parts (5 MiB minimum, 10 MiB maximum) downloads whole and by ranges."""
    import random

    mib = 1024 * 1024
    data = random.Random(3).randbytes(24 * mib)  # noqa: S311
    ecr_seed.ensure_repository(ecr_client, REPO)
    upload_id = ecr_client.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    for first in range(0, len(data), 10 * mib):
        part = data[first : first + 10 * mib]
        ecr_client.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    digest = sha256_digest(data)
    ecr_client.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[digest])
    config = ecr_seed.upload_blob(ecr_client, REPO, b'{"architecture":"amd64","os":"linux"}')
    manifest = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":'
        f'"application/vnd.oci.image.config.v1+json","size":37,"digest":"{config}"}},"layers":[{{"mediaType":'
        f'"application/vnd.oci.image.layer.v1.tar+gzip","size":{len(data)},"digest":"{digest}"}}]}}'
    )
    ecr_seed.put_manifest(ecr_client, REPO, manifest, "big")
    url = _url(ecr_client, digest)
    status, headers, body = _get(url)
    assert (status, int(headers["Content-Length"]), sha256_digest(body)) == (200, len(data), digest)
    status, _, body = _get(url, {"Range": f"bytes={20 * mib}-{20 * mib + 9}"})
    assert (status, body) == (206, data[20 * mib : 20 * mib + 10])
