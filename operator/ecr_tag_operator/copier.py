"""Copying into the target what it lacks, through the ECR port only: blobs (GetDownloadUrlForLayer on
the source, the pre-signed URL streamed into InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload
on the target), an index's children (PutImage by digest, bytes verbatim), and referrers.

Streaming and verified: one part buffer per blob in flight, reused for every part, and at most
``copy_blobs_in_flight`` blobs streaming in the whole process; the sha256 computed over the bytes as they
are uploaded and compared with the blob's digest before CompleteLayerUpload (a mismatch abandons the
upload: ECR never completes a wrong digest). Memory is bounded by parts, not blobs: botocore's JSON
protocol base64-encodes ``layerPartBlob`` into a str, dumps it into a JSON str and encodes that to bytes,
so a part costs about four times its size while it is sent (measured with tracemalloc: 40 MiB for a
10 MiB part); parts are therefore ECR's minimum size by default (``copy_part_bytes``). A download cut
mid-stream resumes from the last part uploaded (a Range request); an expired URL (403) is asked for
again; both within ``copy_attempts``. A failed part or a restarted operator starts the blob's upload
anew: uploads never completed are dropped by ECR. What to copy is decided in :mod:`.copy_plan` (pure).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from .copy_plan import BlobToCopy, CopyPlan, cosign_tags, part_size, plan_copy
from .copy_progress import Counted, Tally
from .manifests import ManifestError, digest_of, parse_manifest
from .model import (
    CopyReport,
    DownloadError,
    EcrCallError,
    Failure,
    ImageId,
    LayerInfo,
    Observation,
    Referrer,
    Registry,
)
from .ports import EcrApi
from .settings import Settings
from .spec import EcrImageTagSpec

Log = logging.Logger | logging.LoggerAdapter[Any]

# Reconciles copying at once, across resources: one semaphore per configured figure.
_resource_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _slots(n: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _resource_slots.setdefault(n, threading.BoundedSemaphore(n))


# Blobs streaming at once in the process, across reconciles and resources: each holds a part buffer.
_stream_slots: dict[int, threading.BoundedSemaphore] = {}


def _streams(n: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _stream_slots.setdefault(n, threading.BoundedSemaphore(n))


class _Abandoned(Exception):
    def __init__(self, failure: Failure, retryable: bool) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.retryable = retryable


@dataclass(frozen=True)
class Route:
    """Where a copy reads and writes."""

    source: Registry
    source_repository: str
    target: Registry
    target_repository: str


@dataclass(frozen=True)
class BlobCopied:
    digest: str
    size: int
    parts: int


class _Upload:
    """One InitiateLayerUpload of one blob: parts sent in order, hashed as they are sent."""

    def __init__(self, ecr: EcrApi, route: Route, blob: BlobToCopy, wanted_part: int) -> None:
        self._ecr = ecr
        self._route = route
        self._blob = blob
        upload = _ecr(lambda: ecr.initiate_upload(route.target, route.target_repository), blob)
        self.upload_id: str = upload.upload_id
        self.part_size = part_size(upload.part_size, blob.size, wanted_part)
        self.hasher = hashlib.sha256()
        self.sent = 0
        self.parts = 0

    def send(self, data: bytes | bytearray) -> None:
        self.hasher.update(data)
        first = self.sent
        self._ecr.upload_part(
            self._route.target, self._route.target_repository, self.upload_id, first, first + len(data) - 1, data
        )
        self.sent += len(data)
        self.parts += 1

    def complete(self) -> None:
        computed = "sha256:" + self.hasher.hexdigest()
        if computed != self._blob.digest:
            # Never completed: ECR drops an upload that is not completed.
            raise _Abandoned(
                Failure(
                    "CompleteLayerUpload",
                    "InvalidLayerException",
                    f"the bytes downloaded hash to {computed}, not {self._blob.digest}: upload abandoned",
                    layer_digest=self._blob.digest,
                ),
                False,
            )
        route, upload_id, digest = self._route, self.upload_id, self._blob.digest
        _ecr(lambda: self._ecr.complete_upload(route.target, route.target_repository, upload_id, digest), self._blob)


def copy_blob(ecr: EcrApi, route: Route, blob: BlobToCopy, settings: Settings, log: Log) -> BlobCopied:
    """Stream one blob from the source into the target; raises _Abandoned when it cannot. Waits for one
    of the process's ``copy_blobs_in_flight`` streams first."""
    with _streams(settings.copy_blobs_in_flight):
        return _copy_blob(ecr, route, blob, settings, log)


def _copy_blob(ecr: EcrApi, route: Route, blob: BlobToCopy, settings: Settings, log: Log) -> BlobCopied:
    attempts = settings.copy_attempts
    tries = 0
    url = _download_url(ecr, route, blob)
    while True:  # one upload per pass: a failed part starts the blob anew
        upload = _Upload(ecr, route, blob, settings.copy_part_bytes)
        try:
            url = _stream(ecr, route, blob, upload, url, attempts - tries, log)
        except EcrCallError as exc:
            tries += 1
            if tries >= attempts or (exc.failure.code not in _RESTARTABLE and not exc.transient):
                raise _Abandoned(_on(exc.failure, blob.digest), exc.transient) from exc
            log.info("upload of %s failed (%s); starting the blob anew", blob.digest, exc.failure.code)
            continue
        upload.complete()
        return BlobCopied(blob.digest, upload.sent, upload.parts)


def _stream(ecr: EcrApi, route: Route, blob: BlobToCopy, upload: _Upload, url: str, attempts: int, log: Log) -> str:
    """Download into the upload through one part buffer, filled in place and sent whole (no copy of a
    part is made); a cut download resumes from the last part sent, an expired URL is asked for again.
    Returns the URL last used."""
    size = upload.part_size
    buffer = bytearray(size)
    filled = 0
    tries = 0
    with memoryview(buffer) as view:
        while True:
            filled = 0  # after a cut, the bytes of the part not yet sent are read again
            try:
                for chunk in ecr.open_blob(url, upload.sent):
                    if blob.size is not None and upload.sent + filled + len(chunk) > blob.size:
                        raise _Abandoned(
                            Failure(
                                "CompleteLayerUpload",
                                "InvalidLayerException",
                                f"the download of {blob.digest} is longer than its descriptor's {blob.size} bytes",
                                layer_digest=blob.digest,
                            ),
                            False,
                        )
                    with memoryview(chunk) as rest:
                        while rest:
                            take = min(len(rest), size - filled)
                            view[filled : filled + take] = rest[:take]
                            filled += take
                            rest = rest[take:]
                            if filled == size:
                                upload.send(buffer)
                                filled = 0
                break
            except DownloadError as exc:
                tries += 1
                if tries >= attempts or exc.status == 404:
                    failure = Failure("DownloadLayer", exc.code, exc.message, layer_digest=blob.digest)
                    raise _Abandoned(failure, exc.status in (0, 403, 500, 503)) from exc
                log.info("download of %s stopped at byte %d (%s); resuming", blob.digest, upload.sent, exc)
                if exc.expired:
                    url = _download_url(ecr, route, blob)
    if filled or not upload.parts:
        del buffer[filled:]  # the last part: the buffer shrunk in place, not copied
        upload.send(buffer)
    return url


# A part ECR refused because of the upload's state (not the operator's bytes): start the blob anew.
_RESTARTABLE = frozenset({"UploadNotFoundException", "InvalidLayerPartException"})


def _on(failure: Failure, digest: str) -> Failure:
    return replace(failure, layer_digest=digest)


def _ecr(call: Callable[[], Any], blob: BlobToCopy) -> Any:
    try:
        return call()
    except EcrCallError as exc:
        raise _Abandoned(_on(exc.failure, blob.digest), exc.transient) from exc


def _download_url(ecr: EcrApi, route: Route, blob: BlobToCopy) -> str:
    return str(_ecr(lambda: ecr.download_url(route.source, route.source_repository, blob.digest), blob))


def _copy_blobs(
    ecr: EcrApi,
    route: Route,
    blobs: Sequence[BlobToCopy],
    settings: Settings,
    log: Log,
    clock: Callable[[], float],
    tally: Tally | None = None,
) -> tuple[list[BlobCopied], _Abandoned | None, str | None, bool]:
    """Copy blobs, a few at once; no new blob starts after the time budget. Returns the blobs copied, the
    first failure, the blob it was for, and whether every blob was tried. ``tally`` counts the parts as
    they land, for progress reports."""
    started = clock()
    done: list[BlobCopied] = []
    first: list[tuple[_Abandoned, str]] = []
    deferred: list[str] = []
    lock = threading.Lock()

    begun = [0]

    def one(blob: BlobToCopy) -> None:
        with lock:
            # The first blob always starts, so that every reconcile makes progress.
            if first or (begun[0] and clock() - started > settings.copy_budget_seconds):
                deferred.append(blob.digest)
                return
            begun[0] += 1
        port: EcrApi = Counted(ecr, tally, blob.digest) if tally else ecr
        try:
            copied = copy_blob(port, route, blob, settings, log)
        except _Abandoned as exc:
            if tally:
                tally.abandoned(blob.digest)
            with lock:
                first.append((exc, blob.digest))
            return
        if tally:
            tally.completed(copied.digest, copied.size, copied.parts)
        with lock:
            done.append(copied)

    if len(blobs) == 1 or settings.copy_parallel_blobs == 1:
        for blob in blobs:
            one(blob)
    else:
        with ThreadPoolExecutor(max_workers=min(settings.copy_parallel_blobs, len(blobs))) as pool:
            list(pool.map(one, blobs))
    failure, digest = first[0] if first else (None, None)
    return done, failure, digest or (deferred[0] if deferred else None), not deferred


def copy_image(
    ecr: EcrApi,
    spec: EcrImageTagSpec,
    route: Route,
    obs: Observation,
    settings: Settings,
    log: Log,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[CopyReport], None] | None = None,
) -> Observation:
    """Copy the blobs and the index children the target lacks; the observation, updated with what the
    target now holds and a CopyReport. Unchanged (copy None) when this spec copies nothing. ``progress``
    is given the report so far while blobs are copied, at most every ``copy_progress_interval`` seconds."""
    the_plan = plan_copy(spec, obs, settings.copy_max_blob_bytes)
    if the_plan is None:
        return obs
    report = _report(the_plan)
    if the_plan.too_large:
        big = the_plan.too_large[0]
        report = replace(
            report,
            error=Failure(
                "DownloadLayer",
                "BlobTooLarge",
                f"{big.digest} has {big.size} bytes, more than the operator copies "
                f"({settings.copy_max_blob_bytes or 'the layer-part API limit'})",
                layer_digest=big.digest,
            ),
            retryable=False,
        )
        return replace(obs, copy=report)
    layers = dict(obs.layers)
    children_present = dict(obs.children_present)
    if the_plan.blobs:
        with _slots(settings.copy_parallel_resources):
            tally = Tally(report, progress, settings.copy_progress_interval, clock) if progress else None
            copied, failure, in_flight, all_tried = _copy_blobs(ecr, route, the_plan.blobs, settings, log, clock, tally)
        for blob in copied:
            layers[blob.digest] = LayerInfo(blob.digest, "AVAILABLE", blob.size)
        report = replace(
            report,
            blobs_copied=len(copied),
            bytes_copied=sum(b.size for b in copied),
            parts=sum(b.parts for b in copied),
            in_flight=in_flight,
            error=failure.failure if failure else None,
            retryable=failure.retryable if failure else True,
            finished=failure is None and all_tried,
        )
        if copied:
            log.info(
                "copied %d blobs (%d bytes, %d parts) into %s",
                len(copied),
                report.bytes_copied,
                report.parts,
                route.target_repository,
            )
    if report.finished:
        put: list[str] = []
        for child in the_plan.children:
            try:
                ecr.put_manifest(route.target, route.target_repository, child.manifest, child.media_type, child.digest)
            except EcrCallError as exc:
                report = replace(report, error=exc.failure, retryable=exc.transient, finished=False)
                break
            put.append(child.digest)
            children_present[child.digest] = True
        report = replace(report, children_put=tuple(put))
    # A blob copied is no longer missing: its BatchCheckLayerAvailability failure goes with it.
    layer_failures = tuple(f for f in obs.layer_failures if layers.get(f.layer_digest or "") is None)
    return replace(obs, layers=layers, layer_failures=layer_failures, children_present=children_present, copy=report)


def _report(the_plan: CopyPlan) -> CopyReport:
    skipped = the_plan.skipped
    return CopyReport(
        blobs_total=len(the_plan.blobs) + len(skipped) + len(the_plan.too_large),
        blobs_skipped=len(skipped),
        bytes_total=the_plan.bytes_total,
        bytes_skipped=sum(b.size or 0 for b in skipped),
    )


def copy_referrers(
    ecr: EcrApi, spec: EcrImageTagSpec, route: Route, obs: Observation, settings: Settings, log: Log
) -> CopyReport | None:
    """After the subject is in the target: carry its referrers (and its children's) that the target
    lacks, blobs first, then the manifest by digest; and cosign's ``sha256-<hex>.sig/.att/.sbom`` tags
    that exist in the source and not in the target (tagged there, never moved or deleted after)."""
    report = obs.copy
    src = obs.source
    if report is None or src is None or spec.referrers == "None" or not report.finished:
        return report
    types = () if spec.referrers == "All" else tuple(spec.referrers)
    subjects = [src.digest, *(c.digest for c in src.parsed.children)]
    carried: list[Referrer] = []
    tags_put: list[str] = []
    copied = bytes_copied = parts = put = 0
    try:
        for subject in subjects:
            for ref in ecr.list_referrers(route.source, route.source_repository, subject, types):
                new, moved = _carry(ecr, route, ImageId(digest=ref.digest), None, settings, log)
                carried.append(ref)
                put += new
                copied += moved[0]
                bytes_copied += moved[1]
                parts += moved[2]
        # Cosign's tags of every subject: one read of the source and one of the target, not one per tag.
        wanted = [ImageId(tag=t) for subject in subjects for t in cosign_tags(subject)]
        found = ecr.batch_get_image(route.source, route.source_repository, wanted)
        in_source = {i.image_id.tag: i.digest for i in found.images if i.image_id.tag and i.digest}
        if in_source:
            there = ecr.batch_get_image(route.target, route.target_repository, [ImageId(tag=t) for t in in_source])
            in_target = {i.image_id.tag for i in there.images}
            for tag, digest in in_source.items():
                if tag in in_target:
                    continue  # the target has this tag: never moved by a copy
                new, moved = _carry(ecr, route, ImageId(digest=digest), tag, settings, log)
                tags_put.append(tag)
                carried.append(Referrer(digest, f"tag:{tag.rsplit('.', 1)[-1]}", ""))
                put += new
                copied += moved[0]
                bytes_copied += moved[1]
                parts += moved[2]
    except EcrCallError as exc:
        report = replace(report, error=exc.failure, retryable=exc.transient, finished=False)
    except _Abandoned as exc:
        report = replace(report, error=exc.failure, retryable=exc.retryable, finished=False)
    return replace(
        report,
        blobs_total=report.blobs_total + copied,
        blobs_copied=report.blobs_copied + copied,
        bytes_total=report.bytes_total + bytes_copied,
        bytes_copied=report.bytes_copied + bytes_copied,
        parts=report.parts + parts,
        referrers=tuple(dict.fromkeys(carried)),
        referrers_put=put,
        tags_put=tuple(tags_put),
    )


def _carry(
    ecr: EcrApi, route: Route, image: ImageId, tag: str | None, settings: Settings, log: Log
) -> tuple[int, tuple[int, int, int]]:
    """One referrer manifest into the target unless there: (manifests put, (blobs, bytes, parts) copied)."""
    if tag is None:
        there = ecr.batch_get_image(route.target, route.target_repository, [image])
        if there.images:
            return 0, (0, 0, 0)
    got = ecr.batch_get_image(route.source, route.source_repository, [image])
    if not got.images:
        return 0, (0, 0, 0)  # gone since it was listed
    found = got.images[0]
    try:
        parsed = parse_manifest(found.manifest, found.media_type)
    except ManifestError:
        return 0, (0, 0, 0)  # not a manifest the operator can carry (its blobs are unknown)
    if digest_of(found.manifest) != image.digest:
        return 0, (0, 0, 0)
    blobs = [b for b in parsed.blobs]
    have = ecr.check_layers(route.target, route.target_repository, [b.digest for b in blobs]) if blobs else None
    present = {i.digest for i in have.layers if i.availability == "AVAILABLE"} if have else set()
    moved = [0, 0, 0]
    for blob in blobs:
        if blob.digest in present:
            continue
        done = copy_blob(ecr, route, BlobToCopy(blob.digest, blob.size, parsed.digest), settings, log)
        moved[0] += 1
        moved[1] += done.size
        moved[2] += done.parts
    media_type = found.media_type or parsed.media_type
    if tag is None:
        ecr.put_manifest(route.target, route.target_repository, found.manifest, media_type, parsed.digest)
    else:
        outcome = ecr.put_image(route.target, route.target_repository, tag, found.manifest, media_type, parsed.digest)
        if outcome.failure is not None:
            raise EcrCallError(outcome.failure)
    return 1, (moved[0], moved[1], moved[2])
