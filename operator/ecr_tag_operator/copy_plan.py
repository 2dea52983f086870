"""What a copy into the target must move, as pure functions: the blobs the target lacks, the index's
children it lacks, and the part sizes ECR accepts. The I/O is :mod:`.copier`'s.

ECR's limits (service model ``ecr/2015-09-21`` and ECR's service quotas page): ``LayerPartBlob`` is at
most 20,971,520 bytes; every part but the last is at least 5 MiB ("Minimum layer part size"); an upload
has at most 4,200 parts ("Layer parts"); InitiateLayerUpload answers ``partSize``, "the size, in bytes,
that Amazon ECR expects future layer part uploads to be".
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Observation
from .spec import EcrImageTagSpec

MIB = 1024 * 1024
MIN_PART_BYTES = 5 * MIB
MAX_PART_BYTES = 20 * MIB
MAX_PARTS = 4200
MAX_BLOB_BYTES = MAX_PARTS * MAX_PART_BYTES  # the largest blob the layer-part API can carry


@dataclass(frozen=True)
class BlobToCopy:
    digest: str
    size: int | None  # from the manifest's descriptor (None: not stated)
    owner: str  # the manifest it belongs to


@dataclass(frozen=True)
class ChildToPut:
    digest: str
    manifest: str  # verbatim, as the source returned it
    media_type: str


@dataclass(frozen=True)
class CopyPlan:
    blobs: tuple[BlobToCopy, ...] = ()  # not AVAILABLE in the target: to transfer
    skipped: tuple[BlobToCopy, ...] = ()  # AVAILABLE in the target: never transferred
    children: tuple[ChildToPut, ...] = ()  # an index's children the target lacks, in index order
    too_large: tuple[BlobToCopy, ...] = ()  # over the size cap (or what 4,200 parts of 20 MiB can carry)

    @property
    def bytes_total(self) -> int:
        return sum(b.size or 0 for b in (*self.blobs, *self.skipped, *self.too_large))


def copies(spec: EcrImageTagSpec) -> bool:
    """Whether this spec copies what the target lacks: Enforce, copy IfMissing, another repository."""
    return spec.mode == "Enforce" and spec.copy_mode == "IfMissing" and not spec.same_repository


def plan_copy(spec: EcrImageTagSpec, obs: Observation, max_blob_bytes: int | None = None) -> CopyPlan | None:
    """The copy a reconcile makes before its tags, or None when this spec copies nothing.

    Blobs ARCHIVED in the target are left to the planner (LayersArchived): an upload is no restore."""
    src = obs.source
    if src is None or not copies(spec):
        return None
    cap = min(max_blob_bytes or MAX_BLOB_BYTES, MAX_BLOB_BYTES)
    blobs: list[BlobToCopy] = []
    skipped: list[BlobToCopy] = []
    too_large: list[BlobToCopy] = []
    for blob, owner in src.blobs():
        item = BlobToCopy(blob.digest, blob.size, owner)
        info = obs.layers.get(blob.digest)
        if info is not None and info.availability in ("AVAILABLE", "ARCHIVED"):
            skipped.append(item)
        elif blob.size is not None and blob.size > cap:
            too_large.append(item)
        else:
            blobs.append(item)
    texts = {digest: (text, media_type) for digest, text, media_type in src.child_texts}
    children = tuple(
        ChildToPut(c.digest, *texts[c.digest])
        for c in src.parsed.children
        if obs.children_present.get(c.digest) is False and c.digest in texts
    )
    return CopyPlan(tuple(blobs), tuple(skipped), children, tuple(too_large))


def part_size(offered: int, blob_size: int | None, wanted: int = MIN_PART_BYTES) -> int:
    """The part size to upload with: ``wanted`` (the operator's setting; ECR's 5 MiB minimum by default,
    as a part costs about four times its size in memory while botocore sends it), no larger than ECR's
    ``partSize`` answer and within [5 MiB, 20 MiB]; grown when the blob would otherwise need more than
    4,200 parts."""
    size = max(MIN_PART_BYTES, min(wanted, offered or MAX_PART_BYTES, MAX_PART_BYTES))
    if blob_size is not None and -(-blob_size // size) > MAX_PARTS:
        size = min(MAX_PART_BYTES, -(-blob_size // MAX_PARTS))
    return size


def cosign_tags(subject_digest: str) -> tuple[str, ...]:
    """Cosign's tag scheme for a subject's signature, attestation and SBOM: ``sha256-<hex>.sig`` etc."""
    base = subject_digest.replace(":", "-", 1)
    return tuple(f"{base}.{suffix}" for suffix in ("sig", "att", "sbom"))
