"""The ports: what the core needs from ECR (``ecr.Boto3Ecr`` implements it with boto3, and
``batching.SharedReads`` wraps any implementation to share reads), and where a long reconcile reports
its copy while it runs (the adapters write it to the resource's status and the metrics); tests may
supply others."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from .model import (
    Failure,
    ImageId,
    Images,
    Layers,
    Mutability,
    PutOutcome,
    ReadPolicy,
    Referrer,
    Registry,
    Upload,
)

NO_POLICY = ReadPolicy()


class EcrApi(Protocol):
    """What reconcile needs from ECR; the boto3 implementation is below, tests may supply others."""

    def batch_get_image(
        self, where: Registry, repository: str, ids: Sequence[ImageId], policy: ReadPolicy = NO_POLICY
    ) -> Images: ...

    def check_layers(
        self, where: Registry, repository: str, digests: Sequence[str], policy: ReadPolicy = NO_POLICY
    ) -> Layers: ...

    def put_image(
        self, where: Registry, repository: str, tag: str, manifest: str, media_type: str, digest: str
    ) -> PutOutcome: ...

    def delete_tags(self, where: Registry, repository: str, tags: Sequence[str]) -> tuple[Failure, ...]: ...

    def describe_mutability(self, where: Registry, repository: str, policy: ReadPolicy = NO_POLICY) -> Mutability: ...

    def image_status(self, where: Registry, repository: str, image: ImageId) -> str | None:
        """ACTIVE, ARCHIVED or ACTIVATING (DescribeImages with imageStatus ANY); None when not known."""
        ...

    # Copying blobs and manifests into another repository, account or region (ECR's API has no mount).

    def download_url(self, where: Registry, repository: str, digest: str) -> str:
        """GetDownloadUrlForLayer: a pre-signed URL for a blob, valid for a limited time."""
        ...

    def open_blob(self, url: str, first_byte: int = 0) -> Iterator[bytes]:
        """The blob behind a pre-signed URL from ``first_byte`` on, in chunks; raises
        model.DownloadError (an expired URL: 403; a broken connection: status 0)."""
        ...

    def initiate_upload(self, where: Registry, repository: str) -> Upload: ...

    def upload_part(
        self, where: Registry, repository: str, upload_id: str, first_byte: int, last_byte: int, data: bytes | bytearray
    ) -> int:
        """UploadLayerPart; returns lastByteReceived."""
        ...

    def complete_upload(self, where: Registry, repository: str, upload_id: str, digest: str) -> str:
        """CompleteLayerUpload; returns the layer digest (LayerAlreadyExistsException counts as done)."""
        ...

    def put_manifest(self, where: Registry, repository: str, manifest: str, media_type: str, digest: str) -> None:
        """PutImage without a tag (an index's child, a referrer); ImageAlreadyExistsException is success."""
        ...

    def list_referrers(
        self, where: Registry, repository: str, subject_digest: str, artifact_types: Sequence[str] = ()
    ) -> tuple[Referrer, ...]:
        """ListImageReferrers, every page; ``artifact_types`` filters (at most 5 per call)."""
        ...


class CopyProgress(Protocol):
    """Where one reconcile reports a copy while it runs, at most every ``copy_progress_interval``
    seconds, from the thread the copy runs on; the adapters patch the resource's status with it."""

    def status(self, patch: Mapping[str, Any]) -> bool:
        """Merge-patch part of the resource's status (lists replaced whole), written before it returns;
        False when it was not written (the object changed meanwhile, or the API is unreachable)."""
        ...

    def moved(self, blobs: int, size: int) -> None:
        """Blobs completed and bytes uploaded since the last call, for the metrics."""
        ...
