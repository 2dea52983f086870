"""The emulator's blob store on its own (no emulator process): content addressing, membership, uploads."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecr_tag_localenv.ecr_blobs import BlobError, BlobStore

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def test_put_stream_names_the_blob_by_the_sha256_of_its_bytes(blobs: BlobStore) -> None:
    digest, size = blobs.put_stream([b"hello ", b"", b"world"])
    assert digest == "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert size == 11
    assert blobs.size(digest) == 11
    with blobs.open(digest) as f:
        assert f.read() == b"hello world"
    assert blobs.put_bytes(b"hello world") == (digest, 11)  # writing it again is harmless


def _chunks(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = bytes(range(256)) * (chunk // 256)
    for _ in range(total // chunk):
        yield block


def test_put_stream_memory_does_not_grow_with_the_blob(blobs: BlobStore) -> None:
    """64 MiB written in 1 MiB chunks: peak Python allocation stays near one chunk."""
    tracemalloc.start()
    try:
        digest, size = blobs.put_stream(_chunks(64 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 64 << 20
    assert blobs.size(digest) == size
    assert peak < 8 << 20, f"peak {peak} bytes for a 64 MiB blob"


def test_membership_is_per_account_region_and_repository(blobs: BlobStore) -> None:
    digest, _ = blobs.put_bytes(b"layer")
    assert not blobs.has(ACCOUNT, REGION, "app", digest)
    blobs.add(ACCOUNT, REGION, "app", digest)
    assert blobs.has(ACCOUNT, REGION, "app", digest)
    assert not blobs.has(ACCOUNT, REGION, "other", digest)
    assert not blobs.has(ACCOUNT, "eu-west-1", "app", digest)
    assert not blobs.has("210987654321", REGION, "app", digest)
    blobs.forget_repository(ACCOUNT, REGION, "app")
    assert not blobs.has(ACCOUNT, REGION, "app", digest)
    assert blobs.exists(digest)  # the bytes stay for any other repository holding them


def test_add_refuses_a_blob_the_store_lacks(blobs: BlobStore) -> None:
    with pytest.raises(BlobError):
        blobs.add(ACCOUNT, REGION, "app", "sha256:" + "0" * 64)
    with pytest.raises(BlobError):
        blobs.open("sha256:" + "0" * 64)
    with pytest.raises(BlobError):
        blobs.size("sha256:" + "0" * 64)
    with pytest.raises(BlobError):
        blobs.path("md5:abc")
    assert not blobs.exists("sha256:../../etc")


def test_upload_in_pieces_hashes_as_it_goes(blobs: BlobStore) -> None:
    upload = blobs.begin_upload(ACCOUNT, REGION, "app")
    assert upload.append([b"abc"]) == 3
    assert upload.append([b"def", b"g"]) == 7
    found = blobs.upload(upload.upload_id, ACCOUNT, REGION, "app")
    assert found is upload
    assert upload.digest == "sha256:" + hashlib.sha256(b"abcdefg").hexdigest()
    with pytest.raises(BlobError):
        blobs.upload(upload.upload_id, ACCOUNT, REGION, "other")  # an upload belongs to its repository
    digest, size = blobs.finish_upload(upload.upload_id)
    assert (digest, size) == (upload.digest, 7)
    with blobs.open(digest) as f:
        assert f.read() == b"abcdefg"
    with pytest.raises(BlobError):
        blobs.finish_upload(upload.upload_id)


def test_cancel_and_forget_drop_partial_uploads(blobs: BlobStore) -> None:
    first = blobs.begin_upload(ACCOUNT, REGION, "app")
    first.append([b"x"])
    blobs.cancel_upload(first.upload_id)
    assert not first.path.exists()
    second = blobs.begin_upload(ACCOUNT, REGION, "app")
    blobs.forget_repository(ACCOUNT, REGION, "app")
    assert not second.path.exists()
    with pytest.raises(BlobError):
        blobs.upload(second.upload_id, ACCOUNT, REGION, "app")


def test_read_small_returns_only_small_blobs(blobs: BlobStore) -> None:
    digest, _ = blobs.put_bytes(b"x" * 100)
    assert blobs.read_small(digest, 100) == b"x" * 100
    assert blobs.read_small(digest, 99) is None
    assert blobs.read_small("sha256:" + "1" * 64, 100) is None


def test_clear_forgets_everything(blobs: BlobStore) -> None:
    digest, _ = blobs.put_bytes(b"layer")
    blobs.add(ACCOUNT, REGION, "app", digest)
    upload = blobs.begin_upload(ACCOUNT, REGION, "app")
    blobs.clear()
    assert not blobs.exists(digest)
    assert not blobs.has(ACCOUNT, REGION, "app", digest)
    with pytest.raises(BlobError):
        blobs.upload(upload.upload_id, ACCOUNT, REGION, "app")
    assert blobs.put_bytes(b"again")[1] == 5  # still usable after
