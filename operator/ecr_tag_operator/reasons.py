"""Every condition reason the operator writes, in one place: whether it clears by itself (transient),
the health Argo CD's check shows for it as a Ready reason, and what README's troubleshooting table
says. Tests check that the Lua health check, README's table and the benchmarks agree with this table.

Reasons are CamelCase words: ECR's own code without ``Exception`` where ECR gave one
(:func:`reason_for`), else one of the operator's own. ECR may answer a code this table does not know;
such a reason is permanent and Degraded, like any refusal the operator cannot fix by waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Health = Literal["Healthy", "Progressing", "Degraded"]


@dataclass(frozen=True)
class About:
    transient: bool
    health: Health
    meaning: str
    remedy: str


class Reason(StrEnum):
    # The operator's own.
    IN_SYNC = "InSync"
    RESOLVED = "Resolved"
    LAYERS_AVAILABLE = "LayersAvailable"
    INVALID_SPEC = "InvalidSpec"
    FORBIDDEN = "Forbidden"
    TAG_CONFLICT = "TagConflict"
    TOO_MANY_CLAIMS = "TooManyClaims"
    DRIFTED = "Drifted"
    NOT_IN_SYNC = "NotInSync"
    SOURCE_NOT_RESOLVED = "SourceNotResolved"
    UNSUPPORTED_MANIFEST = "UnsupportedManifest"
    LAYERS_UNAVAILABLE = "LayersUnavailable"
    LAYERS_ARCHIVED = "LayersArchived"
    NO_CREDENTIALS = "NoCredentials"
    IMAGE_ARCHIVED = "ImageArchived"
    IMAGE_RESTORING = "ImageRestoring"
    COPYING = "Copying"
    BLOB_TOO_LARGE = "BlobTooLarge"
    # ECR's codes (BatchGetImage failure codes, PutImage/BatchDeleteImage errors).
    IMAGE_NOT_FOUND = "ImageNotFound"
    IMAGE_TAG_DOES_NOT_MATCH_DIGEST = "ImageTagDoesNotMatchDigest"
    INVALID_IMAGE_TAG = "InvalidImageTag"
    INVALID_IMAGE_DIGEST = "InvalidImageDigest"
    MISSING_DIGEST_AND_TAG = "MissingDigestAndTag"
    KMS_ERROR = "KmsError"
    KMS = "Kms"
    IMAGE_INACCESSIBLE = "ImageInaccessible"
    UPSTREAM_ACCESS_DENIED = "UpstreamAccessDenied"
    UPSTREAM_TOO_MANY_REQUESTS = "UpstreamTooManyRequests"
    UPSTREAM_UNAVAILABLE = "UpstreamUnavailable"
    UNABLE_TO_GET_UPSTREAM_IMAGE = "UnableToGetUpstreamImage"
    LAYERS_NOT_FOUND = "LayersNotFound"
    REFERENCED_IMAGES_NOT_FOUND = "ReferencedImagesNotFound"
    INVALID_LAYER = "InvalidLayer"
    IMAGE_TAG_ALREADY_EXISTS = "ImageTagAlreadyExists"
    IMAGE_DIGEST_DOES_NOT_MATCH = "ImageDigestDoesNotMatch"
    IMAGE_REFERENCED_BY_MANIFEST_LIST = "ImageReferencedByManifestList"
    LIMIT_EXCEEDED = "LimitExceeded"
    REPOSITORY_NOT_FOUND = "RepositoryNotFound"
    ACCESS_DENIED = "AccessDenied"
    INVALID_PARAMETER = "InvalidParameter"
    # Transient: AWS's throttling and server-side names, and botocore's for a call never answered.
    THROTTLING = "Throttling"
    TOO_MANY_REQUESTS = "TooManyRequests"
    REQUEST_LIMIT_EXCEEDED = "RequestLimitExceeded"
    SERVER_ERROR = "ServerError"
    INTERNAL_FAILURE = "InternalFailure"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    REQUEST_TIMEOUT = "RequestTimeout"
    ENDPOINT_CONNECTION_ERROR = "EndpointConnectionError"
    CONNECT_TIMEOUT = "ConnectTimeout"
    READ_TIMEOUT = "ReadTimeout"

    @property
    def about(self) -> About:
        return ABOUT[self]

    @property
    def transient(self) -> bool:
        return ABOUT[self].transient


_RETRY = "nothing, unless it persists (check ECR quotas and network)"


def _bad(meaning: str, remedy: str) -> About:
    return About(False, "Degraded", meaning, remedy)


def _wait(meaning: str, remedy: str = _RETRY) -> About:
    return About(True, "Progressing", meaning, remedy)


ABOUT: dict[Reason, About] = {
    Reason.IN_SYNC: About(False, "Healthy", "every tag points at the source image", "—"),
    Reason.RESOLVED: About(False, "Healthy", "(SourceResolved) the source image was read", "—"),
    Reason.LAYERS_AVAILABLE: About(
        False, "Healthy", "(LayersAvailable) every blob is AVAILABLE in the target repository", "—"
    ),
    Reason.INVALID_SPEC: _bad(
        "the spec failed validation the CRD could not express", "fix the field the message names"
    ),
    Reason.FORBIDDEN: _bad("the namespace may not use that repository or role", "ask a cluster admin for a grant"),
    Reason.TAG_CONFLICT: _bad(
        "an older EcrImageTag owns the tag for another image",
        "see `status.tags[].owner`; remove the tag from one of them",
    ),
    Reason.TOO_MANY_CLAIMS: _bad(
        "a tag already has as many older claims as the cap per tag, or this resource's claims would take its "
        "namespace past the cap per namespace (the message says which); nothing is written",
        "drop tags or EcrImageTags you no longer need (older claims keep their place), or ask for the cap "
        "(`maxClaimsPerTag`, `maxClaimsPerNamespace`) to be raised",
    ),
    Reason.DRIFTED: _bad(
        "Observe mode: tags do not point at the source", "expected in Observe mode; switch to Enforce to correct"
    ),
    Reason.NOT_IN_SYNC: _wait("(on tags) not yet written", "wait for the next reconcile"),
    Reason.SOURCE_NOT_RESOLVED: _bad(
        "(on tags and conditions) the source could not be read, so no tag is known to be in sync",
        "see the Ready reason",
    ),
    Reason.UNSUPPORTED_MANIFEST: _bad("the source is a schema 1 or unknown manifest", "rebuild it as Docker v2 or OCI"),
    Reason.LAYERS_UNAVAILABLE: _bad("ECR reports blobs `UNAVAILABLE`", "finish the upload"),
    Reason.LAYERS_ARCHIVED: _bad(
        "ECR reports blobs `ARCHIVED` in the target: only archived images there hold them",
        "restore an image that holds them (`aws ecr update-image-storage-class ... --target-storage-class STANDARD`)",
    ),
    Reason.IMAGE_ARCHIVED: _bad(
        "the source image is in ECR's archive storage class: it cannot be pulled or promoted",
        "restore it (the message gives the `aws ecr update-image-storage-class` command); the operator never "
        "restores by itself: a restore takes up to 20 minutes and its cost is the owner's decision",
    ),
    Reason.IMAGE_RESTORING: _wait("the source image is being restored from archive (ACTIVATING)", "wait"),
    Reason.COPYING: _wait(
        "blobs, child manifests or referrers the target lacks are being copied from the source "
        "(`status.copy` shows progress)",
        "wait; a cut download or an expired URL is retried",
    ),
    Reason.BLOB_TOO_LARGE: _bad(
        "a blob is larger than the operator's copy size cap", "raise ECR_TAG_OPERATOR_COPY_MAX_BLOB_BYTES, or push it"
    ),
    Reason.NO_CREDENTIALS: _bad("the operator found no AWS credentials", "set up IRSA / Pod Identity (see above)"),
    Reason.IMAGE_NOT_FOUND: _bad("the source tag or digest does not exist (ECR's code)", "push it, or fix `source`"),
    Reason.IMAGE_TAG_DOES_NOT_MATCH_DIGEST: _bad(
        "the guard tripped: `source.tag` points elsewhere", "promote the digest you meant"
    ),
    Reason.INVALID_IMAGE_TAG: _bad("ECR refused the source's tag", "fix `source`"),
    Reason.INVALID_IMAGE_DIGEST: _bad("ECR refused the source's digest", "fix `source`"),
    Reason.MISSING_DIGEST_AND_TAG: _bad("ECR was asked for an image with neither tag nor digest", "fix `source`"),
    Reason.KMS_ERROR: _bad("ECR could not use the repository's KMS key", "fix the key policy"),
    Reason.KMS: _bad("ECR could not use the repository's KMS key", "fix the key policy"),
    Reason.IMAGE_INACCESSIBLE: _bad("ECR cannot serve the image", "check the repository's encryption and upstream"),
    Reason.UPSTREAM_ACCESS_DENIED: _bad(
        "a pull-through cache's upstream refused ECR's credentials", "fix the cache rule's credentials"
    ),
    Reason.UPSTREAM_TOO_MANY_REQUESTS: _wait("a pull-through cache's upstream throttles ECR"),
    Reason.UPSTREAM_UNAVAILABLE: _wait("a pull-through cache's upstream is unavailable"),
    Reason.UNABLE_TO_GET_UPSTREAM_IMAGE: _bad(
        "a pull-through cache could not pull the image from its upstream", "check the cache rule and its credentials"
    ),
    Reason.LAYERS_NOT_FOUND: _bad(
        "blobs the image needs are missing from the target repository (message lists them)",
        "set `copy: IfMissing` (the default), or push the image into the target first",
    ),
    Reason.INVALID_LAYER: _bad(
        "a copied blob's bytes did not hash to its digest: the upload was abandoned, never completed",
        "check the source repository's blob (re-push it)",
    ),
    Reason.REFERENCED_IMAGES_NOT_FOUND: _bad(
        "an index's child manifests are missing from the target", "push the children into the target"
    ),
    Reason.IMAGE_TAG_ALREADY_EXISTS: _bad(
        "the repository is immutable and the tag points elsewhere", "use a new tag, or a mutability exclusion"
    ),
    Reason.IMAGE_DIGEST_DOES_NOT_MATCH: _bad(
        "ECR computed another digest for the manifest", "report a bug: the manifest is passed untouched"
    ),
    Reason.IMAGE_REFERENCED_BY_MANIFEST_LIST: _bad(
        "ECR will not remove a tag whose image an index references", "remove the index first, or keep the tag"
    ),
    Reason.LIMIT_EXCEEDED: _bad("an ECR limit (e.g. 1,000 tags per image)", "fewer tags, or ask AWS"),
    Reason.REPOSITORY_NOT_FOUND: _bad(
        "the target (or source) repository does not exist", "create it; the next drift check restores the tags"
    ),
    Reason.ACCESS_DENIED: _bad(
        "IAM refused a call; `status.failures` names the action", "grant it (see docs/iam-policy.json)"
    ),
    Reason.INVALID_PARAMETER: _bad(
        "ECR refused a request's parameters (message says which)", "report a bug with the resource's spec"
    ),
    Reason.THROTTLING: _wait("ECR throttled the call beyond botocore's retries; retried later"),
    Reason.TOO_MANY_REQUESTS: _wait("throttled; retried later"),
    Reason.REQUEST_LIMIT_EXCEEDED: _wait("throttled; retried later"),
    Reason.SERVER_ERROR: _wait("ECR answered with a server error; retried later"),
    Reason.INTERNAL_FAILURE: _wait("AWS answered with an internal failure; retried later"),
    Reason.SERVICE_UNAVAILABLE: _wait("ECR was unavailable; retried later"),
    Reason.REQUEST_TIMEOUT: _wait("the request timed out; retried later"),
    Reason.ENDPOINT_CONNECTION_ERROR: _wait("ECR's endpoint could not be reached; retried later"),
    Reason.CONNECT_TIMEOUT: _wait("connecting to ECR timed out; retried later"),
    Reason.READ_TIMEOUT: _wait("ECR did not answer in time; retried later"),
}

# ECR codes whose reason differs from the code without "Exception".
_RENAMED = {"ServerException": Reason.SERVER_ERROR, "ServiceUnavailableException": Reason.SERVICE_UNAVAILABLE}


def reason_for(code: str) -> str:
    """A condition reason from ECR's code: one CamelCase word, ECR's name without 'Exception'."""
    if code in _RENAMED:
        return _RENAMED[code]
    if code.endswith("Exception") and len(code) > len("Exception"):
        return code[: -len("Exception")]
    return code


def is_transient(reason: str) -> bool:
    """Whether a reason (known or not) clears by itself; unknown reasons do not."""
    try:
        return Reason(reason).transient
    except ValueError:
        return False


def code_is_transient(code: str) -> bool:
    """Whether an ECR (or botocore) code is worth retrying later."""
    return is_transient(reason_for(code))


def health(reason: str) -> Health:
    try:
        return Reason(reason).about.health
    except ValueError:
        return "Degraded"


TRANSIENT: frozenset[str] = frozenset(r.value for r in Reason if r.transient)


def troubleshooting_table() -> str:
    """README's "Troubleshooting by reason" table, rendered from this module (a test keeps README equal)."""
    rows = ["| reason | Argo CD health | meaning | what to do |", "|---|---|---|---|"]
    rows += [f"| `{r.value}` | {r.about.health} | {r.about.meaning} | {r.about.remedy} |" for r in Reason]
    return "\n".join(rows)
