"""OCI 1.1 referrers: manifests with ``subject`` / ``artifactType``, ListImageReferrers, and what DescribeImages shows.

Service model (botocore ``ecr/2015-09-21``): ListImageReferrers "Lists the artifacts associated with a
specified subject image" (subjectId.imageDigest; filter.artifactTypes, at most 5; filter.artifactStatus,
ACTIVE when not given; maxResults 1-50, 20 by default, with nextToken), answering ImageReferrer items
(digest, mediaType, artifactType, size, annotations, artifactStatus); ImageDetail.subjectManifestDigest ("The
digest of the subject manifest for images that are referrers") and ImageDetail.artifactMediaType ("The
artifact media type of the image"). moto implements none of it.

The relation is read from the stored manifest bytes, so PutImage records it by storing them. As in the
OCI image spec 1.1 (manifest ``artifactType``; "if the artifactType is empty or missing, the config
descriptor's mediaType is used") and the distribution spec's referrers API, an artifact's type is its
``artifactType`` or else its config's media type, and its size is the manifest's length in bytes. A subject
that is not (yet) in the repository is allowed, as the distribution spec allows; its list is then what
refers to it. An artifact's status is its image's storage-class status (ACTIVE, ARCHIVED or ACTIVATING,
:func:`ecr_tag_localenv.ecr_corrections.image_status`), as ArtifactStatus and DescribeImages' imageStatus
share their values.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

from moto.core.responses import ActionResult
from moto.ecr.exceptions import InvalidParameterException, ValidationException
from moto.ecr.models import Image
from moto.ecr.responses import ECRResponse

from ecr_tag_localenv.ecr_corrections import image_status

_DEFAULT_PAGE: Final = 20
_MAX_PAGE: Final = 50
_MAX_ARTIFACT_TYPES: Final = 5


def _manifest(image: Image) -> dict[str, Any]:
    try:
        parsed = json.loads(image.image_manifest)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def artifact_type(image: Image) -> str | None:
    manifest = _manifest(image)
    declared = manifest.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        return str(config["mediaType"])
    return None


def subject_digest(image: Image) -> str | None:
    subject = _manifest(image).get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
        return str(subject["digest"])
    return None


def _referrer(image: Image) -> dict[str, Any]:
    manifest = _manifest(image)
    item: dict[str, Any] = {
        "digest": image.get_image_digest(),
        "mediaType": image.image_manifest_media_type or manifest.get("mediaType") or "",
        "size": len(image.image_manifest.encode()),
        "artifactStatus": image_status(image),
    }
    kind = artifact_type(image)
    if kind is not None:
        item["artifactType"] = kind
    annotations = manifest.get("annotations")
    if isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values()):
        item["annotations"] = dict(annotations)
    return item


def _list_image_referrers(self: ECRResponse) -> ActionResult:
    repository = self.ecr_backend._get_repository(self._get_param("repositoryName"), self._get_param("registryId"))
    subject = (self._get_param("subjectId") or {}).get("imageDigest")
    filters = self._get_param("filter") or {}
    types = filters.get("artifactTypes")
    if types is not None and len(types) > _MAX_ARTIFACT_TYPES:
        raise ValidationException(
            f"filter.artifactTypes: at most {_MAX_ARTIFACT_TYPES} artifact types, got {len(types)}"
        )
    status = filters.get("artifactStatus") or "ACTIVE"
    page = self._get_param("maxResults") or _DEFAULT_PAGE
    if not isinstance(page, int) or not 1 <= page <= _MAX_PAGE:
        raise InvalidParameterException(f"maxResults must be between 1 and {_MAX_PAGE}, got {page!r}")
    referrers = [
        _referrer(image)
        for image in repository.images
        if subject_digest(image) == subject
        and (types is None or artifact_type(image) in types)
        and status in (image_status(image), "ANY")
    ]
    token = self._get_param("nextToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise InvalidParameterException("Invalid parameter at 'nextToken': not a token this call handed out") from None
    result: dict[str, Any] = {"referrers": referrers[start : start + page]}
    if start + page < len(referrers):
        result["nextToken"] = base64.urlsafe_b64encode(str(start + page).encode()).decode()
    return ActionResult(result)


_applied = False


def apply() -> None:
    """Serve ListImageReferrers and show the referrer fields in DescribeImages (idempotent)."""
    global _applied
    if _applied:
        return
    ECRResponse.list_image_referrers = _list_image_referrers  # type: ignore[attr-defined]
    # moto's serializer reads ImageDetail members from same-named (snake_case) attributes.
    Image.artifact_media_type = property(artifact_type)  # type: ignore[attr-defined]
    Image.subject_manifest_digest = property(subject_digest)  # type: ignore[attr-defined]
    _applied = True
