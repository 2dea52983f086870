"""An in-memory ECR behind the port, for the core's tests: repositories of manifests, tags and blobs,
calls counted, and failures a test can arrange. Only what ECR documents is modelled; the emulator
process (tests/ecr) is where ECR's behaviour itself is checked."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecr_tag_operator.manifests import digest_of, parse_manifest
from ecr_tag_operator.model import (
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
from ecr_tag_operator.ports import NO_POLICY


@dataclass
class Repo:
    manifests: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    blobs: set[str] = field(default_factory=set)
    mutability: Mutability = field(default_factory=Mutability)
    blob_bytes: dict[str, bytes] = field(default_factory=dict)  # what a download serves
    media_types: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeUpload:
    repository: str
    data: bytearray = field(default_factory=bytearray)  # kept only when the fake retains uploads
    parts: list[int] = field(default_factory=list)
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)


@dataclass
class FakeEcr:
    repos: dict[str, Repo] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_calls: dict[str, Failure] = field(default_factory=dict)  # operation -> whole-call failure
    refuse_puts: dict[str, Failure] = field(default_factory=dict)  # tag -> PutImage refusal
    archived: set[str] = field(default_factory=set)  # digests in the archive storage class
    # Copies: ECR's partSize answer and minimum part size; the next downloads' faults, in order
    # ("expire": 403 AccessDenied; an int: the connection breaks after that many bytes).
    part_size: int = 5 * 1024 * 1024
    min_part: int = 5 * 1024 * 1024
    download_faults: list[str | int] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)  # blobs whose download serves other bytes
    uploads: dict[str, FakeUpload] = field(default_factory=dict)
    completed: list[tuple[str, str, list[int]]] = field(default_factory=list)  # (repository, digest, part sizes)
    downloaded_bytes: int = 0
    complete_asked: list[str] = field(default_factory=list)  # digests CompleteLayerUpload was called with
    chunk: int = 1024 * 1024
    retain_uploads: bool = True  # False: uploads are hashed, not kept (memory measurements)

    def repo(self, name: str) -> Repo:
        return self.repos.setdefault(name, Repo())

    def push(self, name: str, manifest: str, *tags: str) -> str:
        repo = self.repo(name)
        digest = digest_of(manifest)
        repo.manifests[digest] = manifest
        parsed = parse_manifest(manifest)
        repo.blobs |= {b.digest for b in parsed.blobs}
        for tag in tags:
            repo.tags[tag] = digest
        return digest

    def push_blob(self, name: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        repo = self.repo(name)
        repo.blobs.add(digest)
        repo.blob_bytes[digest] = data
        return digest

    def delete_image(self, name: str, digest: str) -> None:
        repo = self.repo(name)
        repo.manifests.pop(digest, None)
        repo.tags = {t: d for t, d in repo.tags.items() if d != digest}

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.fail_calls:
            raise EcrCallError(self.fail_calls[operation])

    def _existing(self, repository: str, operation: str) -> Repo:
        if repository not in self.repos:
            raise EcrCallError(Failure(operation, "RepositoryNotFoundException", f"{repository} does not exist"))
        return self.repos[repository]

    def batch_get_image(
        self, where: Registry, repository: str, ids: Sequence[ImageId], policy: ReadPolicy = NO_POLICY
    ) -> Images:
        self._enter("BatchGetImage")
        repo = self._existing(repository, "BatchGetImage")
        images: list[Image] = []
        failures: list[Failure] = []
        for asked in ids:
            digest = repo.tags.get(asked.tag) if asked.tag else asked.digest
            if asked.tag and asked.digest and digest != asked.digest:
                failures.append(Failure("BatchGetImage", "ImageTagDoesNotMatchDigest", "no match", image_id=asked))
            elif digest is None or digest not in repo.manifests:
                failures.append(Failure("BatchGetImage", "ImageNotFound", "Requested image not found", image_id=asked))
            else:
                images.append(Image(ImageId(asked.tag, digest), repo.manifests[digest], None))
        return Images(tuple(images), tuple(failures))

    def check_layers(
        self, where: Registry, repository: str, digests: Sequence[str], policy: ReadPolicy = NO_POLICY
    ) -> Layers:
        self._enter("BatchCheckLayerAvailability")
        repo = self._existing(repository, "BatchCheckLayerAvailability")
        found = tuple(LayerInfo(d, "AVAILABLE", 1) for d in digests if d in repo.blobs)
        missing = tuple(
            Failure("BatchCheckLayerAvailability", "MissingLayerDigest", "missing", layer_digest=d)
            for d in digests
            if d not in repo.blobs
        )
        return Layers(found, missing)

    def put_image(
        self, where: Registry, repository: str, tag: str, manifest: str, media_type: str, digest: str
    ) -> PutOutcome:
        self._enter("PutImage")
        repo = self._existing(repository, "PutImage")
        if tag in self.refuse_puts:
            return PutOutcome(tag, "failed", self.refuse_puts[tag])
        if repo.tags.get(tag) == digest:
            return PutOutcome(tag, "unchanged")
        if tag in repo.tags and repo.mutability.immutable(tag):
            return PutOutcome(
                tag, "failed", Failure("PutImage", "ImageTagAlreadyExistsException", "immutable", tag=tag)
            )
        repo.manifests[digest] = manifest
        repo.media_types[digest] = media_type
        repo.tags[tag] = digest
        return PutOutcome(tag, "put")

    def download_url(self, where: Registry, repository: str, digest: str) -> str:
        self._enter("GetDownloadUrlForLayer")
        repo = self._existing(repository, "GetDownloadUrlForLayer")
        if digest not in repo.blob_bytes:
            raise EcrCallError(Failure("GetDownloadUrlForLayer", "LayersNotFoundException", f"{digest} not found"))
        return f"fake://{repository}/{digest}/{self.calls.count('GetDownloadUrlForLayer')}"

    def open_blob(self, url: str, first_byte: int = 0) -> Iterator[bytes]:
        self.calls.append("Download")
        _, rest = url.split("://", 1)
        repository, digest, _n = rest.rsplit("/", 2)
        fault = self.download_faults.pop(0) if self.download_faults else None
        if fault == "expire":
            raise DownloadError(403, "AccessDenied", "Request has expired")
        data = self.repos[repository].blob_bytes[digest]
        if digest in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        sent = 0
        for start in range(first_byte, len(data), self.chunk):
            chunk = data[start : start + self.chunk]
            if isinstance(fault, int) and sent + len(chunk) > fault:
                self.downloaded_bytes += fault - sent
                yield chunk[: fault - sent]
                raise DownloadError(0, "ProtocolError", "Connection broken: IncompleteRead")
            sent += len(chunk)
            self.downloaded_bytes += len(chunk)
            yield chunk

    def initiate_upload(self, where: Registry, repository: str) -> Upload:
        self._enter("InitiateLayerUpload")
        self._existing(repository, "InitiateLayerUpload")
        upload_id = f"00000000-0000-0000-0000-{self.calls.count('InitiateLayerUpload'):012d}"  # never reused
        self.uploads[upload_id] = FakeUpload(repository)
        return Upload(upload_id, self.part_size)

    def upload_part(
        self, where: Registry, repository: str, upload_id: str, first_byte: int, last_byte: int, data: bytes | bytearray
    ) -> int:
        self._enter("UploadLayerPart")
        up = self.uploads[upload_id]
        if first_byte != up.received or last_byte != first_byte + len(data) - 1 or len(data) > 20 * 1024 * 1024:
            raise EcrCallError(Failure("UploadLayerPart", "InvalidLayerPartException", "bad part"))
        if self.retain_uploads:
            up.data += data
        up.hasher.update(data)
        up.received += len(data)
        up.parts.append(len(data))
        return last_byte

    def complete_upload(self, where: Registry, repository: str, upload_id: str, digest: str) -> str:
        self._enter("CompleteLayerUpload")
        self.complete_asked.append(digest)
        up = self.uploads.pop(upload_id)
        if any(size < self.min_part for size in up.parts[:-1]):
            raise EcrCallError(Failure("CompleteLayerUpload", "LayerPartTooSmallException", "too small"))
        computed = "sha256:" + up.hasher.hexdigest()
        if computed != digest:
            raise EcrCallError(Failure("CompleteLayerUpload", "InvalidLayerException", "digest mismatch"))
        repo = self.repo(repository)
        repo.blobs.add(digest)
        if self.retain_uploads:
            repo.blob_bytes[digest] = bytes(up.data)
        self.completed.append((repository, digest, up.parts))
        return digest

    def put_manifest(self, where: Registry, repository: str, manifest: str, media_type: str, digest: str) -> None:
        self._enter("PutImage")
        repo = self._existing(repository, "PutImage")
        missing = [b.digest for b in parse_manifest(manifest, media_type).blobs if b.digest not in repo.blobs]
        if missing:
            raise EcrCallError(Failure("PutImage", "LayersNotFoundException", f"missing {missing}"))
        repo.manifests[digest] = manifest
        repo.media_types[digest] = media_type

    def list_referrers(
        self, where: Registry, repository: str, subject_digest: str, artifact_types: Sequence[str] = ()
    ) -> tuple[Referrer, ...]:
        self._enter("ListImageReferrers")
        repo = self._existing(repository, "ListImageReferrers")
        found = []
        for digest, text in repo.manifests.items():
            doc = json.loads(text)
            if (doc.get("subject") or {}).get("digest") != subject_digest:
                continue
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact_types and kind not in artifact_types:
                continue
            found.append(Referrer(digest, kind, doc.get("mediaType", "")))
        return tuple(found)

    def image_status(self, where: Registry, repository: str, image: ImageId) -> str | None:
        self._enter("DescribeImages")
        return "ARCHIVED" if image.digest in self.archived else None

    def describe_mutability(self, where: Registry, repository: str, policy: ReadPolicy = NO_POLICY) -> Mutability:
        self._enter("DescribeRepositories")
        return self._existing(repository, "DescribeRepositories").mutability

    def delete_tags(self, where: Registry, repository: str, tags: Sequence[str]) -> tuple[Failure, ...]:
        self._enter("BatchDeleteImage")
        repo = self._existing(repository, "BatchDeleteImage")
        failures = []
        for tag in tags:
            if repo.tags.pop(tag, None) is None:
                failures.append(Failure("BatchDeleteImage", "ImageNotFound", "gone", ImageId(tag=tag), tag=tag))
        return tuple(failures)
