"""The ECR port: what the core needs from ECR. ``ecr.Boto3Ecr`` implements it with boto3, and
``batching.SharedReads`` wraps any implementation to share reads; tests may supply others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .model import Failure, ImageId, Images, Layers, Mutability, PutOutcome, ReadPolicy, Registry

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
