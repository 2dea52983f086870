"""The domain's types: what ECR holds and answers, as plain data. No I/O, no boto3, no kopf.

``ecr.py`` maps boto3's responses to these; the planner, the status renderer and the core work on them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .manifests import Descriptor, Manifest
from .reasons import code_is_transient

ConditionStatus = Literal["True", "False", "Unknown"]

MAX_IDS_PER_CALL = 100  # BatchGetImage imageIds, BatchCheckLayerAvailability layerDigests (service model)


@dataclass(frozen=True)
class ImageId:
    tag: str | None = None
    digest: str | None = None

    def to_api(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.tag is not None:
            out["imageTag"] = self.tag
        if self.digest is not None:
            out["imageDigest"] = self.digest
        return out


@dataclass(frozen=True)
class Failure:
    """One thing ECR refused or could not find, as ECR said it."""

    operation: str
    code: str
    message: str
    image_id: ImageId | None = None
    tag: str | None = None
    layer_digest: str | None = None

    @property
    def transient(self) -> bool:
        return code_is_transient(self.code)


@dataclass(frozen=True)
class Image:
    image_id: ImageId
    manifest: str
    media_type: str | None

    @property
    def digest(self) -> str | None:
        return self.image_id.digest


@dataclass(frozen=True)
class LayerInfo:
    digest: str
    availability: str
    size: int | None


@dataclass(frozen=True)
class Images:
    images: tuple[Image, ...]
    failures: tuple[Failure, ...]


@dataclass(frozen=True)
class Layers:
    layers: tuple[LayerInfo, ...]
    failures: tuple[Failure, ...]


@dataclass(frozen=True)
class PutOutcome:
    tag: str
    result: Literal["put", "unchanged", "failed"]
    failure: Failure | None = None


@dataclass(frozen=True)
class Registry:
    """Where a repository lives: region and account (None = the credentials' own account), and the
    IAM role to assume for it (None = the operator's own credentials)."""

    region: str
    registry_id: str | None
    role_arn: str | None = None
    # The namespace the call is for: its writes' turn in the shared quota, and with a role the assumed
    # session's name, SourceIdentity and session tag.
    session: str | None = None

    @classmethod
    def of(cls, region: str, registry_id: str | None, role_arn: str | None, namespace: str | None) -> Registry:
        return cls(region, registry_id, role_arn, namespace)

    @property
    def identity(self) -> Registry:
        """The same registry as one set of credentials sees it: the namespace matters only when a role
        is assumed for it (reads of the operator's own credentials are shared by every namespace)."""
        return self if self.role_arn else Registry(self.region, self.registry_id, None, None)


class EcrCallError(Exception):
    """A whole call failed (after botocore's retries)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.operation}: {failure.code}: {failure.message}")
        self.failure = failure

    @property
    def transient(self) -> bool:
        return self.failure.transient


@dataclass(frozen=True)
class ReadPolicy:
    """How a reconcile's reads may be served: how long a read may wait to share a call with reads of
    the same repository (``patience``, seconds), and how old a cached AVAILABLE layer may be."""

    patience: float = 0.0
    layer_max_age: float = 0.0  # 0: do not use cached layer results
    # Manifests read by digest may come from a cache (their bytes never change). Never for the source
    # image of a reconcile that may write: a deleted image must not be put back from memory.
    cached_manifests: bool = True


@dataclass(frozen=True)
class SourceImage:
    manifest: str  # exactly as ECR returned it: this string is what PutImage writes
    media_type: str
    parsed: Manifest
    children: tuple[Manifest, ...] = ()
    # (digest, manifest exactly as ECR returned it, media type) of each child read: what a copy puts.
    child_texts: tuple[tuple[str, str, str], ...] = ()

    @property
    def digest(self) -> str:
        return self.parsed.digest

    def blobs(self) -> tuple[tuple[Descriptor, str], ...]:
        """Every blob the image needs, with the manifest it belongs to, first occurrence only."""
        owners = self.children if self.parsed.is_index else (self.parsed,)
        seen: set[str] = set()
        out: list[tuple[Descriptor, str]] = []
        for owner in owners:
            for blob in owner.blobs:
                if blob.digest not in seen:
                    seen.add(blob.digest)
                    out.append((blob, owner.digest))
        return tuple(out)


@dataclass(frozen=True)
class Mutability:
    """A repository's tag mutability (DescribeRepositories): which tags ECR refuses to move."""

    setting: str = "MUTABLE"  # MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION
    exclusions: tuple[str, ...] = ()  # WILDCARD filters: '*' matches any run of characters

    def immutable(self, tag: str) -> bool:
        excluded = any(re.fullmatch(".*".join(map(re.escape, f.split("*"))), tag) for f in self.exclusions)
        if self.setting == "IMMUTABLE":
            return True
        if self.setting == "IMMUTABLE_WITH_EXCLUSION":
            return not excluded
        if self.setting == "MUTABLE_WITH_EXCLUSION":
            return excluded
        return False

    def describe(self) -> str:
        return f"{self.setting} (exclusions: {', '.join(self.exclusions)})" if self.exclusions else self.setting


@dataclass(frozen=True)
class Referrer:
    """An OCI 1.1 referrer of a subject image (ListImageReferrers): a signature, an SBOM, an attestation."""

    digest: str
    artifact_type: str | None
    media_type: str


@dataclass(frozen=True)
class Upload:
    """An InitiateLayerUpload: its id and the part size ECR expects (partSize)."""

    upload_id: str
    part_size: int


class DownloadError(Exception):
    """A blob download from a pre-signed URL failed: ``status`` is the HTTP status (0 when the connection
    broke), ``code`` S3's error code when it sent one (AccessDenied for an expired URL)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def expired(self) -> bool:
        return self.status == 403


@dataclass(frozen=True)
class CopyReport:
    """What a reconcile's copy into the target did: blobs and bytes (total, copied, skipped because the
    target had them), the child manifests and referrers put, and why it stopped short, if it did."""

    blobs_total: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0
    bytes_skipped: int = 0
    parts: int = 0
    children_put: tuple[str, ...] = ()
    referrers: tuple[Referrer, ...] = ()  # carried into the target (put now or already there)
    referrers_put: int = 0
    tags_put: tuple[str, ...] = ()  # cosign-scheme tags (sha256-<hex>.sig, .att, .sbom) written
    in_flight: str | None = None  # the blob being copied when the copy stopped
    error: Failure | None = None
    retryable: bool = True  # whether the error may clear by itself (a cut download, throttling)
    finished: bool = True


@dataclass(frozen=True)
class Observation:
    source: SourceImage | None
    source_failure: Failure | None = None
    layers: Mapping[str, LayerInfo] = field(default_factory=dict)
    layer_failures: tuple[Failure, ...] = ()
    children_present: Mapping[str, bool] = field(default_factory=dict)
    child_failures: tuple[Failure, ...] = ()
    tag_digests: Mapping[str, str | None] = field(default_factory=dict)  # None: the tag does not exist
    tag_failures: tuple[Failure, ...] = ()
    mutability: Mutability | None = None  # None: not known (DescribeRepositories not allowed)
    copy: CopyReport | None = None  # what was copied into the target before planning (None: no copy)


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class TagState:
    tag: str
    digest: str | None
    in_sync: bool
    reason: str | None = None
    owner: str | None = None  # namespace/name of the resource that owns the tag, when another does
    message: str | None = None  # ECR's words, when ECR refused the tag


@dataclass(frozen=True)
class Plan:
    puts: tuple[str, ...] = ()
    deletes: tuple[str, ...] = ()
    blocked: Condition | None = None  # why nothing may be written (layers or children missing)


@dataclass(frozen=True)
class Assessment:
    conditions: tuple[Condition, ...]
    tags: tuple[TagState, ...] = ()
    failures: tuple[Failure, ...] = ()
    moved: tuple[tuple[str, str | None, str], ...] = ()  # (tag, old digest, new digest) for each PutImage
    deleted: tuple[str, ...] = ()

    @property
    def ready(self) -> Condition:
        return next(c for c in self.conditions if c.type == "Ready")


@dataclass(frozen=True)
class Outcomes:
    puts: tuple[PutOutcome, ...] = ()
    delete_failures: tuple[Failure, ...] = ()
    deleted: tuple[str, ...] = ()
    interrupted: Failure | None = None  # a transient failure stopped the writes part-way


@dataclass(frozen=True)
class Permission:
    """What a namespace may do with one spec, decided from the grants: the roles to use for the
    target and the source registries (None: the operator's own credentials), or why not."""

    role_arn: str | None = None
    refused: str | None = None
    source_role_arn: str | None = None
    namespace: str | None = None  # whose session an assumed role is
