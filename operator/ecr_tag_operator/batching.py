"""Reads shared across resources: concurrent reconciles that read the same repository share one
BatchGetImage (up to 100 imageIds) and one BatchCheckLayerAvailability (up to 100 digests), and
what never changes (a manifest read by digest) or rarely does (a layer's availability) is cached.

Each caller says, in the ReadPolicy it passes, how long it may wait for company (its *patience*): a
spec change waits a few milliseconds, a drift check up to a second, so that drift checks of one
repository travel together. No boto3 here: this wraps any EcrApi.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .manifests import digest_of
from .model import (
    MAX_IDS_PER_CALL,
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
from .ports import NO_POLICY, EcrApi

K = TypeVar("K")
R = TypeVar("R")


@dataclass
class _Batch(Generic[K, R]):
    deadline: float
    keys: list[K] = field(default_factory=list)
    seen: set[K] = field(default_factory=set)
    closed: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None


class _Coalescer(Generic[K, R]):
    """Gathers keys for one (operation, registry, repository) until the batch is full or the most
    impatient member's deadline passes; the first caller of a batch leads: it makes the call."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._lock = threading.Condition()
        self._open: dict[Hashable, _Batch[K, R]] = {}

    def submit(self, group: Hashable, keys: Sequence[K], patience: float, call: Callable[[list[K]], R]) -> list[R]:
        """Run ``call`` over batches holding ``keys``; return the results of every batch they went to."""
        batches: list[tuple[_Batch[K, R], bool]] = []
        pending = list(dict.fromkeys(keys))
        with self._lock:
            while pending:
                batch = self._open.get(group)
                leader = batch is None
                if batch is None:
                    batch = self._open[group] = _Batch(deadline=self._clock() + patience)
                batch.deadline = min(batch.deadline, self._clock() + patience)
                while pending and len(batch.keys) < self._limit:
                    key = pending.pop(0)
                    if key not in batch.seen:
                        batch.seen.add(key)
                        batch.keys.append(key)
                if len(batch.keys) >= self._limit:
                    self._close(group, batch)
                batches.append((batch, leader))
            self._lock.notify_all()
        for batch, leader in batches:
            if leader:  # lead our own batches before waiting on others', so no one waits on us
                self._lead(group, batch, call)
        results: list[R] = []
        for batch, _ in batches:
            batch.done.wait()
            if batch.error is not None:
                raise batch.error
            assert batch.result is not None  # noqa: S101 - set with done unless error is
            results.append(batch.result)
        return results

    def _close(self, group: Hashable, batch: _Batch[K, R]) -> None:
        batch.closed = True
        if self._open.get(group) is batch:
            del self._open[group]

    def _lead(self, group: Hashable, batch: _Batch[K, R], call: Callable[[list[K]], R]) -> None:
        with self._lock:
            while not batch.closed:
                left = batch.deadline - self._clock()
                if left <= 0:
                    self._close(group, batch)
                    break
                self._lock.wait(timeout=left)
        try:
            batch.result = call(batch.keys)
        except BaseException as exc:  # handed to every member of the batch, re-raised there
            batch.error = exc
        finally:
            batch.done.set()


@dataclass
class _Cached:
    value: Any
    at: float


class SharedReads:
    """An EcrApi whose reads are coalesced and cached; writes pass straight through."""

    def __init__(
        self,
        inner: EcrApi,
        clock: Callable[[], float] = time.monotonic,
        max_cached: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._images: _Coalescer[ImageId, Images] = _Coalescer(MAX_IDS_PER_CALL, clock)
        self._layers: _Coalescer[str, Layers] = _Coalescer(MAX_IDS_PER_CALL, clock)
        self._cache: dict[Hashable, _Cached] = {}
        self._cache_lock = threading.Lock()
        self._max_cached = max_cached
        # Manifests are up to 4 MiB each (ECR's limit): the cache is bounded by their bytes too.
        self._max_bytes = max_bytes
        self._bytes = 0

    # -- cache --------------------------------------------------------------------------------------
    def _get(self, key: Hashable, max_age: float | None) -> Any | None:
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is None or (max_age is not None and self._clock() - hit.at > max_age):
            return None
        return hit.value

    def _put(self, key: Hashable, value: Any) -> None:
        size = len(value.manifest) if isinstance(value, Image) else 0
        with self._cache_lock:
            if len(self._cache) >= self._max_cached or self._bytes + size > self._max_bytes:
                self._cache.clear()  # crude but bounded: a rebuild costs one read per entry
                self._bytes = 0
            old = self._cache.get(key)
            if old is not None and isinstance(old.value, Image):
                self._bytes -= len(old.value.manifest)
            self._cache[key] = _Cached(value, self._clock())
            self._bytes += size

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    # -- EcrApi -------------------------------------------------------------------------------------
    def batch_get_image(
        self, where: Registry, repository: str, ids: Sequence[ImageId], policy: ReadPolicy = NO_POLICY
    ) -> Images:
        where = where.identity  # reads with the same credentials are shared, whichever namespace asks
        images: list[Image] = []
        wanted: list[ImageId] = []
        for image_id in ids:
            # A manifest read by digest never changes: served from the cache when seen before.
            by_digest = image_id.tag is None and policy.cached_manifests
            cached = self._get(("manifest", where, repository, image_id.digest), None) if by_digest else None
            if cached is not None:
                images.append(cached)
            else:
                wanted.append(image_id)
        failures: list[Failure] = []
        if wanted:
            results = self._images.submit(
                ("images", where, repository),
                wanted,
                policy.patience,
                lambda keys: self._inner.batch_get_image(where, repository, keys),
            )
            asked = set(wanted)
            for result in results:
                for image in result.images:
                    if image.digest and digest_of(image.manifest) == image.digest:
                        self._put(("manifest", where, repository, image.digest), _by_digest(image))
                    if _wanted(image.image_id, asked):
                        images.append(image)
                failures.extend(f for f in result.failures if f.image_id in asked)
        return Images(tuple(images), tuple(failures))

    def check_layers(
        self, where: Registry, repository: str, digests: Sequence[str], policy: ReadPolicy = NO_POLICY
    ) -> Layers:
        where = where.identity
        found: list[LayerInfo] = []
        wanted: list[str] = []
        for digest in digests:
            cached = (
                self._get(("layer", where, repository, digest), policy.layer_max_age) if policy.layer_max_age else None
            )
            if cached is not None:
                found.append(cached)
            else:
                wanted.append(digest)
        failures: list[Failure] = []
        if wanted:
            results = self._layers.submit(
                ("layers", where, repository),
                wanted,
                policy.patience,
                lambda keys: self._inner.check_layers(where, repository, keys),
            )
            asked = set(wanted)
            for result in results:
                for info in result.layers:
                    if info.availability == "AVAILABLE":
                        self._put(("layer", where, repository, info.digest), info)
                    if info.digest in asked:
                        found.append(info)
                failures.extend(f for f in result.failures if f.layer_digest in asked)
        return Layers(tuple(found), tuple(failures))

    def describe_mutability(self, where: Registry, repository: str, policy: ReadPolicy = NO_POLICY) -> Mutability:
        """Cached for as long as an AVAILABLE layer: a repository's mutability changes rarely."""
        where = where.identity
        key = ("mutability", where, repository)
        cached = self._get(key, policy.layer_max_age) if policy.layer_max_age else None
        if isinstance(cached, Mutability):
            return cached
        found = self._inner.describe_mutability(where, repository, policy)
        self._put(key, found)
        return found

    def image_status(self, where: Registry, repository: str, image: ImageId) -> str | None:
        return self._inner.image_status(where, repository, image)

    def put_image(
        self, where: Registry, repository: str, tag: str, manifest: str, media_type: str, digest: str
    ) -> PutOutcome:
        return self._inner.put_image(where, repository, tag, manifest, media_type, digest)

    def delete_tags(self, where: Registry, repository: str, tags: Sequence[str]) -> tuple[Failure, ...]:
        return self._inner.delete_tags(where, repository, tags)

    # Copies pass straight through: each blob and URL is one reconcile's own.
    def download_url(self, where: Registry, repository: str, digest: str) -> str:
        return self._inner.download_url(where, repository, digest)

    def open_blob(self, url: str, first_byte: int = 0) -> Iterator[bytes]:
        return self._inner.open_blob(url, first_byte)

    def initiate_upload(self, where: Registry, repository: str) -> Upload:
        return self._inner.initiate_upload(where, repository)

    def upload_part(
        self, where: Registry, repository: str, upload_id: str, first_byte: int, last_byte: int, data: bytes | bytearray
    ) -> int:
        return self._inner.upload_part(where, repository, upload_id, first_byte, last_byte, data)

    def complete_upload(self, where: Registry, repository: str, upload_id: str, digest: str) -> str:
        return self._inner.complete_upload(where, repository, upload_id, digest)

    def put_manifest(self, where: Registry, repository: str, manifest: str, media_type: str, digest: str) -> None:
        self._inner.put_manifest(where, repository, manifest, media_type, digest)

    def list_referrers(
        self, where: Registry, repository: str, subject_digest: str, artifact_types: Sequence[str] = ()
    ) -> tuple[Referrer, ...]:
        return self._inner.list_referrers(where, repository, subject_digest, artifact_types)


def _by_digest(image: Image) -> Image:
    return Image(ImageId(digest=image.digest), image.manifest, image.media_type)


def _wanted(got: ImageId, asked: set[ImageId]) -> bool:
    """Whether an image answers one of the ids asked (tags as asked; a digest-only id by digest)."""
    return got in asked or ImageId(tag=got.tag) in asked or ImageId(digest=got.digest) in asked


__all__ = ["SharedReads"]
