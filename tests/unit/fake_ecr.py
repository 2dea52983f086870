"""An in-memory ECR behind the port, for the core's tests: repositories of manifests, tags and blobs,
calls counted, and failures a test can arrange. Only what ECR documents is modelled; the emulator
process (tests/ecr) is where ECR's behaviour itself is checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ecr_tag_operator.manifests import digest_of, parse_manifest
from ecr_tag_operator.model import (
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
    Registry,
)
from ecr_tag_operator.ports import NO_POLICY


@dataclass
class Repo:
    manifests: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    blobs: set[str] = field(default_factory=set)
    mutability: Mutability = field(default_factory=Mutability)


@dataclass
class FakeEcr:
    repos: dict[str, Repo] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_calls: dict[str, Failure] = field(default_factory=dict)  # operation -> whole-call failure
    refuse_puts: dict[str, Failure] = field(default_factory=dict)  # tag -> PutImage refusal
    archived: set[str] = field(default_factory=set)  # digests in the archive storage class

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
        repo.tags[tag] = digest
        return PutOutcome(tag, "put")

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
