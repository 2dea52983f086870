"""Layer uploads in parts through the ECR API: ordering, part sizes, part count, and memory.

Service model (botocore ecr/2015-09-21): UploadLayerPart (partFirstByte / partLastByte, LayerPartBlob at most
20971520 bytes; errors InvalidLayerPartException "The layer part size is not valid, or the first byte
specified is not consecutive to the last byte of a previous layer part upload", with lastValidByteReceived,
and LimitExceededException), CompleteLayerUpload (LayerPartTooSmallException "Layer parts must be at least
5 MiB in size", LayerAlreadyExistsException, EmptyUploadException), InitiateLayerUpload.partSize. ECR service
quotas: minimum layer part size 5 MiB, maximum layer part size 10 MiB, 4,200 layer parts.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_launcher import RunningEmulator, start_emulator
from ecr_tag_localenv.ecr_seed import ensure_repository
from ecr_tag_localenv.ecr_settings import MIB
from tests.plugins.ecr_server import aws_client

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "uploads"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    return dict(exc.value.response["Error"]) | {"body": exc.value.response}


def _part(client: ECRClient, upload_id: str, first: int, data: bytes, last: int | None = None) -> dict[str, Any]:
    return dict(
        client.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(data) - 1 if last is None else last,
            layerPartBlob=data,
        )
    )


def _upload(client: ECRClient, chunks: list[bytes]) -> str:
    upload_id = client.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    offset = 0
    for chunk in chunks:
        _part(client, upload_id, offset, chunk)
        offset += len(chunk)
    done = client.complete_layer_upload(
        repositoryName=REPO, uploadId=upload_id, layerDigests=[_digest(b"".join(chunks))]
    )
    return str(done["layerDigest"])


@pytest.fixture
def repo(ecr_client: ECRClient) -> ECRClient:
    ensure_repository(ecr_client, REPO)
    return ecr_client


def test_initiate_answers_the_part_size_ecr_expects(ecr: RunningEmulator, repo: ECRClient) -> None:
    assert repo.initiate_layer_upload(repositoryName=REPO)["partSize"] == 10 * MIB
    ecr.control.set_settings(max_layer_part_bytes=4096, min_layer_part_bytes=1024)
    assert repo.initiate_layer_upload(repositoryName=REPO)["partSize"] == 4096


def test_parts_in_order_make_one_layer(ecr: RunningEmulator, repo: ECRClient) -> None:
    ecr.control.set_settings(min_layer_part_bytes=1024)
    chunks = [random.Random(i).randbytes(n) for i, n in enumerate([1024, 2048, 100])]  # noqa: S311
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    assert _part(repo, upload_id, 0, chunks[0])["lastByteReceived"] == 1023
    assert _part(repo, upload_id, 1024, chunks[1])["lastByteReceived"] == 3071
    assert _part(repo, upload_id, 3072, chunks[2])["lastByteReceived"] == 3171
    whole = b"".join(chunks)
    done = repo.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[_digest(whole)])
    assert done["layerDigest"] == _digest(whole)
    layers = repo.batch_check_layer_availability(repositoryName=REPO, layerDigests=[_digest(whole)])["layers"]
    assert [(layer["layerAvailability"], layer["layerSize"]) for layer in layers] == [("AVAILABLE", len(whole))]


@pytest.mark.parametrize(
    ("first", "last", "why"),
    [
        (2048, None, "gap: starts after the next byte"),
        (512, None, "overlap: starts inside the part already received"),
        (0, None, "restart: the first part again"),
        (1024, 1024 + 99, "partLastByte not the part's last byte"),
    ],
)
def test_part_not_following_the_last_is_refused(
    ecr: RunningEmulator, repo: ECRClient, first: int, last: int | None, why: str
) -> None:
    ecr.control.set_settings(min_layer_part_bytes=1024)
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    _part(repo, upload_id, 0, b"a" * 1024)
    with pytest.raises(ClientError) as exc:
        _part(repo, upload_id, first, b"b" * 1024, last)
    error = _error(exc)
    assert error["Code"] == "InvalidLayerPartException", why
    assert exc.value.response["lastValidByteReceived"] == 1023  # type: ignore[typeddict-item]
    assert exc.value.response["uploadId"] == upload_id  # type: ignore[typeddict-item]
    # The refused part left nothing behind: the next byte expected is still 1024.
    assert _part(repo, upload_id, 1024, b"c" * 10)["lastByteReceived"] == 1033


def test_empty_part_is_refused(repo: ECRClient) -> None:
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ClientError) as exc:
        _part(repo, upload_id, 0, b"", last=0)
    assert _error(exc)["Code"] == "InvalidLayerPartException"


def test_non_final_part_below_the_minimum_is_too_small(repo: ECRClient) -> None:
    """ECR's default minimum, 5 MiB: two 1 MiB parts fail at CompleteLayerUpload, one 1 MiB part does not."""
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    _part(repo, upload_id, 0, b"x" * MIB)
    _part(repo, upload_id, MIB, b"y" * MIB)
    with pytest.raises(ClientError) as exc:
        repo.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[_digest(b"x" * MIB + b"y" * MIB)]
        )
    assert _error(exc)["Code"] == "LayerPartTooSmallException"
    assert _upload(repo, [b"z" * MIB]) == _digest(b"z" * MIB)
    assert _upload(repo, [b"w" * (5 * MIB), b"v"]) == _digest(b"w" * (5 * MIB) + b"v")


def test_part_above_the_maximum_is_refused(ecr: RunningEmulator, repo: ECRClient) -> None:
    ecr.control.set_settings(min_layer_part_bytes=1024, max_layer_part_bytes=2048)
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ClientError) as exc:
        _part(repo, upload_id, 0, b"q" * 2049)
    assert _error(exc)["Code"] == "InvalidLayerPartException"
    assert "more than the maximum layer part size 2048" in _error(exc)["Message"]


def test_part_above_the_model_blob_limit_is_an_invalid_parameter(repo: ECRClient) -> None:
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ClientError) as exc:
        _part(repo, upload_id, 0, b"\0" * (20 * MIB + 1))
    assert _error(exc)["Code"] == "InvalidParameterException"


def test_part_count_is_limited(ecr: RunningEmulator, repo: ECRClient) -> None:
    ecr.control.set_settings(min_layer_part_bytes=1, max_layer_parts=3)
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    for i in range(3):
        _part(repo, upload_id, i, b"p")
    with pytest.raises(ClientError) as exc:
        _part(repo, upload_id, 3, b"p")
    assert _error(exc)["Code"] == "LimitExceededException"


def test_completing_a_layer_the_repository_has_is_refused(ecr: RunningEmulator, repo: ECRClient) -> None:
    assert _upload(repo, [b"same bytes"]) == _digest(b"same bytes")
    with pytest.raises(ClientError) as exc:
        _upload(repo, [b"same bytes"])
    assert _error(exc)["Code"] == "LayerAlreadyExistsException"


def test_empty_upload_is_refused(repo: ECRClient) -> None:
    upload_id = repo.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    with pytest.raises(ClientError) as exc:
        repo.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[_digest(b"")])
    assert _error(exc)["Code"] == "EmptyUploadException"


def test_settings_are_validated_and_reset(ecr: RunningEmulator) -> None:
    from ecr_tag_localenv.ecr_control import ControlError

    with pytest.raises(ControlError, match="min_layer_part_bytes must not exceed"):
        ecr.control.set_settings(min_layer_part_bytes=11 * MIB)
    with pytest.raises(ControlError, match="caps a layer part"):
        ecr.control.set_settings(max_layer_part_bytes=21 * MIB)
    with pytest.raises(ControlError, match="unknown settings"):
        ecr.control.set_settings(part_size=1)
    assert ecr.control.set_settings(max_layer_parts=7).max_layer_parts == 7
    assert ecr.control.reset_settings().max_layer_parts == 4200


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_upload_memory_does_not_grow_with_the_layer(tmp_path: Path) -> None:
    """A 160 MiB layer in 10 MiB parts: the emulator's peak memory does not grow with the layer (moto alone
    keeps every part in memory and copies the whole layer to hash it: 320 MiB more here).

    The baseline is taken after a first layer of the same parts, so that start-up allocations do not count.
    Without the middleware's collection after large requests, each part would stay as cyclic garbage.
    """
    part = 10 * MIB
    rng = random.Random(7)  # noqa: S311
    with start_emulator(log_dir=tmp_path) as server:
        client: ECRClient = aws_client(server.endpoint_url, "ecr")
        ensure_repository(client, REPO)
        _upload(client, [rng.randbytes(part) for _ in range(2)])
        before = _peak_rss_bytes(server.process.pid)
        chunks = [rng.randbytes(part) for _ in range(16)]
        assert _upload(client, chunks) == _digest(b"".join(chunks))
        growth = _peak_rss_bytes(server.process.pid) - before
    assert growth < 64 * MIB, f"peak RSS grew {growth / MIB:.0f} MiB for a {16 * part // MIB} MiB layer"
