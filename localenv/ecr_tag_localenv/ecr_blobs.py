"""The ECR emulator's blob store: layer and config bytes on disk, shared by every face of the emulator.

Bytes are content-addressed (``<root>/sha256/<hex>``) and written while hashing, so memory use does not
depend on a blob's size. Which repository holds which blob is kept apart from the bytes, per
(account id, region, repository name), because ECR's layers belong to a repository: a blob pushed to
one repository is not readable from another until it is pushed (or mounted) there too.

Writers: moto's CompleteLayerUpload (through :func:`ecr_tag_localenv.ecr_corrections._complete_layer_upload`)
and the OCI distribution face's uploads. Readers: the OCI face, GetDownloadUrlForLayer, the schema 1
conversion. The store has a lock of its own; callers that also touch moto's backend hold the
emulator's moto lock for that, not for reading or writing bytes.

The emulator process owns one store (:func:`store`), in a temporary directory made on first use and
removed at exit; ``/moto-api/reset`` clears it (:func:`ecr_tag_localenv.ecr_corrections.clear_state`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

DIGEST_RE: Final = re.compile(r"sha256:([a-f0-9]{64})")


class BlobError(ValueError):
    """A digest the store cannot name, or a blob or upload it does not hold."""


RepoKey = tuple[str, str, str]
"""(account id, region, repository name)."""


@dataclass
class Upload:
    """A blob being written in several pieces (the OCI face's chunked upload): bytes go to a file as they
    arrive and into a running sha256, so finishing it needs no second pass over the bytes."""

    upload_id: str
    repo: RepoKey
    path: Path
    size: int = 0
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def append(self, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` at the end; returns the new size. One writer at a time per upload."""
        with self._lock, self.path.open("ab") as out:
            for chunk in chunks:
                if chunk:
                    out.write(chunk)
                    self._hash.update(chunk)
                    self.size += len(chunk)
            return self.size

    @property
    def digest(self) -> str:
        with self._lock:
            return "sha256:" + self._hash.copy().hexdigest()


def _hex(digest: str) -> str:
    match = DIGEST_RE.fullmatch(digest)
    if match is None:
        raise BlobError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "sha256"
        self._partial = root / "partial"
        self._lock = threading.Lock()
        self._members: dict[RepoKey, set[str]] = {}
        self._uploads: dict[str, Upload] = {}
        self._make_dirs()

    def _make_dirs(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._partial.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self._blobs / _hex(digest)

    # bytes

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store the bytes of ``chunks``; returns (digest, size). Writing a blob the store has is harmless."""
        upload = self._new_upload(("", "", ""))
        try:
            upload.append(chunks)
            return self._commit(upload), upload.size
        finally:
            upload.path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self.put_stream([data])

    def exists(self, digest: str) -> bool:
        return DIGEST_RE.fullmatch(digest) is not None and self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """The blob's bytes, for reading; the caller closes it. Raises BlobError if the store lacks it."""
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is not in the store") from None

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is not in the store") from None

    def read_small(self, digest: str, limit: int) -> bytes | None:
        """The whole blob if the store has it and it is at most ``limit`` bytes (image configs), else None."""
        try:
            with self.path(digest).open("rb") as f:
                data = f.read(limit + 1)
        except (FileNotFoundError, BlobError):
            return None
        return data if len(data) <= limit else None

    # membership

    def has(self, account: str, region: str, repo: str, digest: str) -> bool:
        """The repository holds the blob and its bytes are readable."""
        with self._lock:
            member = digest in self._members.get((account, region, repo), ())
        return member and self.exists(digest)

    def add(self, account: str, region: str, repo: str, digest: str) -> None:
        if not self.exists(digest):
            raise BlobError(f"blob {digest} is not in the store")
        with self._lock:
            self._members.setdefault((account, region, repo), set()).add(digest)

    def forget_repository(self, account: str, region: str, repo: str) -> None:
        """A deleted repository's layers go with it (a repository made again under that name starts empty)."""
        with self._lock:
            self._members.pop((account, region, repo), None)
            for upload_id in [u.upload_id for u in self._uploads.values() if u.repo == (account, region, repo)]:
                self._uploads.pop(upload_id).path.unlink(missing_ok=True)

    # uploads in several pieces

    def _new_upload(self, repo: RepoKey) -> Upload:
        upload_id = str(uuid.uuid4())
        path = self._partial / upload_id
        path.touch()
        return Upload(upload_id, repo, path)

    def begin_upload(self, account: str, region: str, repo: str) -> Upload:
        upload = self._new_upload((account, region, repo))
        with self._lock:
            self._uploads[upload.upload_id] = upload
        return upload

    def upload(self, upload_id: str, account: str, region: str, repo: str) -> Upload:
        """An upload begun for this repository; BlobError if there is none (or it belongs elsewhere)."""
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or upload.repo != (account, region, repo):
            raise BlobError(f"no upload {upload_id!r} for repository {repo!r}")
        return upload

    def cancel_upload(self, upload_id: str) -> None:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            upload.path.unlink(missing_ok=True)

    def finish_upload(self, upload_id: str) -> tuple[str, int]:
        """Move the upload's bytes into the store; returns (digest, size). Membership is the caller's."""
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
        if upload is None:
            raise BlobError(f"no upload {upload_id!r}")
        try:
            return self._commit(upload), upload.size
        finally:
            upload.path.unlink(missing_ok=True)

    def _commit(self, upload: Upload) -> str:
        digest = upload.digest
        target = self.path(digest)
        if not target.exists():
            os.replace(upload.path, target)  # atomic: readers never see a half-written blob
        return digest

    def clear(self) -> None:
        """Forget every blob, membership and upload (moto's reset)."""
        with self._lock:
            self._members.clear()
            self._uploads.clear()
            shutil.rmtree(self._blobs, ignore_errors=True)
            shutil.rmtree(self._partial, ignore_errors=True)
            self._make_dirs()


_store: BlobStore | None = None
_store_lock = threading.Lock()


def store() -> BlobStore:
    """The emulator process's store, made on first use in a temporary directory removed at exit."""
    global _store
    with _store_lock:
        if _store is None:
            root = Path(tempfile.mkdtemp(prefix="ecr-emulator-blobs-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _store = BlobStore(root)
        return _store
