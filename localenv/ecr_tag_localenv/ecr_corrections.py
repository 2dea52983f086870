"""Corrections to moto 5.2.5's ECR backend where it differs from Amazon ECR.

Imported only inside the emulator process, after the environment moto reads at import time is set.
Each patch replaces one moto method and says which ECR behaviour it restores. The backend classes are
patched (not instances), so backends moto recreates on ``/moto-api/reset`` are corrected too.

BatchDeleteImage keeps moto's semantics (by tag removes only that tag and deletes the image with its last
tag; by digest it removes the image and every tag; an imageId with both a tag and a digest removes the
whole image: ECR's documentation does not say, and the harsher reading is the safer one to test a
deleter against) and adds ECR's refusal to delete an image an index still references.

Lifecycle and limits (archive storage class, index children, tag counts, batch sizes, tag mutability
exclusion filters) follow ECR's API reference and botocore's service model; each function says where.
Storage-class state lives in :mod:`.ecr_lifecycle`.

Also corrected outside this module: moto's IAM denials are XML, unreadable for ECR's JSON protocol;
the emulator middleware (:mod:`.ecr_faults`) rewrites them into ECR's JSON errors.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import weakref
from collections.abc import Iterable
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    ImageAlreadyExistsException,
    ImageNotFoundException,
    InvalidParameterException,
    LimitExceededException,
    UploadNotFoundException,
)
from moto.ecr.models import ECRBackend, Image, Repository, RepoTagMutability
from moto.ecr.responses import ECRResponse

from ecr_tag_localenv import ecr_blobs, ecr_lifecycle
from ecr_tag_localenv.ecr_lifecycle import ACTIVE, IMAGE_STATUS_FILTERS, ArchiveState
from ecr_tag_localenv.ecr_media import (
    DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V2,
    INDEX_TYPES,
    NONDISTRIBUTABLE_LAYER_TYPES,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
    manifest_digest,
    sha256_digest,
)

_DIGEST_RE: Final = re.compile(r"sha256:[a-f0-9]{64}")
# BatchGetImage without acceptedMediaTypes: the model documents exactly these valid values, so the
# emulator treats them as the default. An index read by tag without asking for index types then fails
# loudly instead of passing in tests and surprising in production.
_DEFAULT_ACCEPTED: Final = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V2, OCI_MANIFEST})
# The schema 1 conversion reads the image config from the blob store; configs are a few KiB.
_CONFIG_BYTES_UP_TO: Final = 256 * 1024
# Storage-class state of images that were ever archived; an image missing here is ACTIVE.
_archive: weakref.WeakKeyDictionary[Image, ArchiveState] = weakref.WeakKeyDictionary()

# Service model: ImageIdentifierList and BatchedOperationLayerDigestList hold 1-100 members,
# ImageManifest is 1-4,194,304 characters, ImageTag 1-300 characters.
_MAX_IDS_PER_CALL: Final = 100
_MAX_MANIFEST_CHARS: Final = 4_194_304
_MAX_TAG_CHARS: Final = 300
# The model gives ImageTag no pattern; ECR's server answers PutImage with this one (its error text is
# quoted in carvel-dev/kbld's docs: "must satisfy regular expression '[a-zA-Z0-9-_.]+'").
_TAG_PATTERN_AS_ECR_SPELLS_IT: Final = "[a-zA-Z0-9-_.]+"
_TAG_RE: Final = re.compile(r"[a-zA-Z0-9_.-]+")
# 1,000 tags per image: ECR Public's user guide, and the limit ECR's own LimitExceededException names.
_MAX_TAGS_PER_IMAGE: Final = 1000
# Service model: ImageTagMutabilityExclusionFilters 1-5 members; filter ^[0-9a-zA-Z._*-]{1,128}$;
# filterType WILDCARD only.
_MAX_EXCLUSION_FILTERS: Final = 5
_EXCLUSION_FILTER_RE: Final = re.compile(r"[0-9a-zA-Z._*-]{1,128}")
_EXCLUSION_VARIANTS: Final = frozenset(
    {RepoTagMutability.MUTABLE_WITH_EXCLUSION, RepoTagMutability.IMMUTABLE_WITH_EXCLUSION}
)
_TAG_STATUSES: Final = frozenset({"TAGGED", "UNTAGGED", "ANY"})
_STORAGE_CLASSES: Final = frozenset({"STANDARD", "ARCHIVE"})
# BatchDeleteImage accepts any algorithm name before the hex, as moto already did.
_DELETE_DIGEST_RE: Final = re.compile(r"[0-9a-zA-Z_+.-]+:[0-9a-fA-F]{64}")


class LayersNotFoundException(ServiceException):
    code = "LayersNotFoundException"


class ReferencedImagesNotFoundException(ServiceException):
    code = "ReferencedImagesNotFoundException"


class ImageDigestDoesNotMatchException(ServiceException):
    code = "ImageDigestDoesNotMatchException"


class ImageTagAlreadyExistsException(ServiceException):
    code = "ImageTagAlreadyExistsException"


class InvalidLayerException(ServiceException):
    code = "InvalidLayerException"


class LayerAlreadyExistsException(ServiceException):
    code = "LayerAlreadyExistsException"


class EmptyUploadException(ServiceException):
    code = "EmptyUploadException"


class ImageStorageClassUpdateNotSupportedException(ServiceException):
    code = "ImageStorageClassUpdateNotSupportedException"


def clear_state() -> None:
    """Forget the emulator's own bookkeeping (called after moto's reset)."""
    ecr_blobs.store().clear()
    _archive.clear()
    ecr_lifecycle.SETTINGS.reset()


def _constraint(parameter: str, text: str) -> InvalidParameterException:
    # ECR's wording, e.g. "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must
    # have length less than or equal to 100'" (quoted in awslabs/ecr-cleanup-lambda#11, fujiwara/ecrm#3).
    return InvalidParameterException(f"Invalid parameter at '{parameter}' failed to satisfy constraint: '{text}'")


def _check_length(parameter: str, value: object, minimum: int, maximum: int) -> None:
    """A list's member count or a string's length against the model's min/max."""
    if not isinstance(value, list | str) or len(value) < minimum:
        raise _constraint(parameter, f"Member must have length greater than or equal to {minimum}")
    if len(value) > maximum:
        raise _constraint(parameter, f"Member must have length less than or equal to {maximum}")


def _checked_list(parameter: str, value: object, minimum: int, maximum: int) -> list[Any]:
    _check_length(parameter, value, minimum, maximum)
    if not isinstance(value, list):
        raise _constraint(parameter, "Member must be a list")
    return value


def _checked_ids(parameter: str, value: object) -> list[Any]:
    return _checked_list(parameter, value, 1, _MAX_IDS_PER_CALL)


def _check_enum(parameter: str, value: object, allowed: Iterable[str]) -> None:
    choices = sorted(allowed)
    if value not in choices:
        raise _constraint(parameter, f"Member must satisfy enum value set: [{', '.join(choices)}]")


def image_status(image: Image) -> str:
    """ACTIVE, ARCHIVED or ACTIVATING (the service model's ImageStatus)."""
    state = _archive.get(image)
    return ACTIVE if state is None else state.status()


def _is_index(image: Image, parsed: dict[str, Any] | None = None) -> bool:
    if image.image_manifest_media_type in INDEX_TYPES:
        return True
    manifest = parsed if parsed is not None else _parse(image.image_manifest)
    return "manifests" in manifest


def _parse(manifest: str) -> dict[str, Any]:
    try:
        parsed = json.loads(manifest)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _child_digests(manifest: dict[str, Any]) -> set[str]:
    children = manifest.get("manifests")
    if not isinstance(children, list):
        return set()
    return {c["digest"] for c in children if isinstance(c, dict) and isinstance(c.get("digest"), str)}


def _blob_digests(manifest: dict[str, Any]) -> set[str]:
    """The config and layer blobs a manifest names (fsLayers for schema 1); none for an index."""
    found: set[str] = set()
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        found.add(config["digest"])
    for key, field in (("layers", "digest"), ("fsLayers", "blobSum")):
        items = manifest.get(key)
        if isinstance(items, list):
            found.update(i[field] for i in items if isinstance(i, dict) and isinstance(i.get(field), str))
    return found


def _referencing_indexes(repository: Repository, image: Image) -> list[str]:
    """Digests of the indexes in this repository whose manifests[] name ``image``."""
    digest = image.get_image_digest()
    found = []
    for other in repository.images:
        if other is image:
            continue
        parsed = _parse(other.image_manifest)
        if _is_index(other, parsed) and digest in _child_digests(parsed):
            found.append(other.get_image_digest())
    return found


def _image_digest(self: Image) -> str:
    # ECR: the digest is the sha256 of the manifest bytes exactly as pushed. moto hashes the layer
    # digests (or a random number for an index), so a CRLF or a trailing newline would not change it.
    return manifest_digest(self.image_manifest)


def _digests_of(items: object, key: str, what: str) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get(key), str) for i in items):
        raise InvalidParameterException(
            f"Invalid parameter at 'imageManifest' failed to satisfy constraint: '{what} must be a list of "
            f"objects with a '{key}'"
        )
    return [i[key] for i in items]


def _check_references(repository: Repository, manifest: dict[str, Any], media_type: str) -> None:
    """ECR refuses a manifest whose blobs (or, for an index, child images) are not in this repository."""
    if media_type in INDEX_TYPES or "manifests" in manifest:
        children = _digests_of(manifest.get("manifests", []), "digest", "manifests")
        present = {image.get_image_digest() for image in repository.images}
        missing = [d for d in dict.fromkeys(children) if d not in present]
        if missing:
            raise ReferencedImagesNotFoundException(
                f"The following manifests referenced by the manifest list or image index could not be found "
                f"in the repository with name '{repository.name}' in the registry with id "
                f"'{repository.registry_id}': {missing}"
            )
        return
    if media_type in SCHEMA1_TYPES:
        blobs = _digests_of(manifest.get("fsLayers", []), "blobSum", "fsLayers")
    else:
        config = manifest.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise InvalidParameterException(
                "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'config digest missing'"
            )
        layers = manifest.get("layers", [])
        _digests_of(layers, "digest", "layers")
        # Foreign (Windows base) and non-distributable layers are fetched from their ``urls``, never pushed:
        # docker and containerd skip them, so a registry that demanded them could not take a Windows image.
        pushed = [layer for layer in layers if layer.get("mediaType") not in NONDISTRIBUTABLE_LAYER_TYPES]
        blobs = [config["digest"], *(layer["digest"] for layer in pushed)]
    missing = [d for d in dict.fromkeys(blobs) if d not in repository.layers]
    if missing:
        raise LayersNotFoundException(
            f"Layers with digests {missing} required for pushing image into repository with name "
            f"'{repository.name}' in the registry with id '{repository.registry_id}' do not exist"
        )


def _wildcard_matches(pattern: str, tag: str) -> bool:
    # filterType WILDCARD: '*' matches any run of characters, everything else is literal (the model's
    # filter pattern allows no other metacharacter). moto matches the filter as a regular expression.
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), tag) is not None


def _tag_is_immutable(repository: Repository, tag: str) -> bool:
    filters = [f["filter"] for f in repository.image_tag_mutability_exclusion_filters or []]
    excluded = any(_wildcard_matches(pattern, tag) for pattern in filters)
    mutability = repository.image_tag_mutability
    if mutability == RepoTagMutability.IMMUTABLE:
        return True
    if mutability == RepoTagMutability.IMMUTABLE_WITH_EXCLUSION:
        return not excluded
    if mutability == RepoTagMutability.MUTABLE_WITH_EXCLUSION:
        return excluded
    return False


def _untag(image: Image, tag: str) -> None:
    image.image_tags.remove(tag)
    # moto keeps a "current tag" that it reports in imageId; do not leave it naming a tag that moved.
    image.image_tag = image.image_tags[-1] if image.image_tags else None  # type: ignore[assignment]


def _check_put_image_parameters(image_manifest: object, image_tag: object) -> None:
    """PutImage's limits (model and API reference: imageManifest 1-4,194,304 characters, imageTag 1-300),
    and the tag pattern ECR's server enforces, checked before anything else as ECR does."""
    _check_length("imageManifest", image_manifest, 1, _MAX_MANIFEST_CHARS)
    if image_tag is None:
        return
    _check_length("imageTag", image_tag, 1, _MAX_TAG_CHARS)
    if not isinstance(image_tag, str) or not _TAG_RE.fullmatch(image_tag):
        # Exactly ECR's text, quotes included.
        raise InvalidParameterException(
            "Invalid parameter at 'imageTag' failed to satisfy constraint: 'must satisfy regular expression "
            f"'{_TAG_PATTERN_AS_ECR_SPELLS_IT}'"
        )


def _put_image(
    self: ECRBackend,
    repository_name: str,
    image_manifest: str,
    image_tag: str,
    image_manifest_mediatype: str | None = None,
    digest: str | None = None,
) -> Image:
    _check_put_image_parameters(image_manifest, image_tag)
    # moto raises a bare Exception here (HTTP 500); ECR answers RepositoryNotFoundException.
    repository = self._get_repository(repository_name)
    try:
        parsed = json.loads(image_manifest)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidParameterException(
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
        )
    media_type = image_manifest_mediatype or parsed.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidParameterException("image manifest mediatype not provided in manifest or parameter")
    computed = manifest_digest(image_manifest)
    # moto stores whatever digest it is given; ECR checks it against the bytes.
    if digest is not None and digest != computed:
        raise ImageDigestDoesNotMatchException(
            f"Provided digest '{digest}' does not match the digest '{computed}' calculated by Amazon ECR "
            "for the image manifest"
        )
    _check_references(repository, parsed, media_type)

    existing = next((i for i in repository.images if i.image_manifest == image_manifest), None)
    holder = next((i for i in repository.images if image_tag in i.image_tags), None) if image_tag is not None else None
    if existing is not None and image_status(existing) != ACTIVE and (holder is existing or image_tag is None):
        # ECR user guide ("Pushing an image"): pushing an image that is archived restores it at once.
        _archive[existing].restore_now()
        return existing
    if existing is not None and holder is existing:
        raise ImageAlreadyExistsException(
            repository_name=repository.name,
            registry_id=repository.registry_id,
            digest=computed,
            image_tag=image_tag,
        )
    # moto answers an immutable tag with ImageAlreadyExistsException, which callers rightly treat as
    # "already done"; ECR answers ImageTagAlreadyExistsException.
    if holder is not None and _tag_is_immutable(repository, image_tag):
        raise ImageTagAlreadyExistsException(
            f"The image tag '{image_tag}' already exists in the '{repository.name}' repository and cannot "
            "be overwritten because the tag is immutable."
        )
    if existing is not None and image_tag is not None and len(existing.image_tags) >= _MAX_TAGS_PER_IMAGE:
        # The message is ECR's, as CloudTrail records it (gist gurchik/e75cb1aa1575b2a4439fe32477019745).
        raise LimitExceededException(
            f"Adding tag '{image_tag}' to an image in the repository with name '{repository.name}' in registry "
            f"with id '{repository.registry_id}' exceeds the maximum allowed number of tags per image which is "
            f"'{_MAX_TAGS_PER_IMAGE}'"
        )
    if holder is not None:
        # ECR leaves the image the tag moved away from in the repository, untagged; moto deletes it.
        _untag(holder, image_tag)
    if existing is not None and image_status(existing) != ACTIVE:
        _archive[existing].restore_now()  # a push of an archived image under a new tag restores it too
    if existing is None:
        existing = Image(
            self.account_id,
            image_tag,
            image_manifest,
            repository.name,
            media_type,
            computed,
            repository.registry_id,
        )
        repository.images.append(existing)
    elif image_tag is not None:
        existing.update_tag(image_tag)
    return existing


_original_complete_layer_upload: Final = ECRBackend.complete_layer_upload


def _complete_layer_upload(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    # moto ignores the digest the client names and re-uploads of a present blob; ECR refuses both.
    repository = self._get_repository(repository_name, registry_id)
    upload = repository.uploads.get(upload_id)
    if upload is None:
        raise UploadNotFoundException(upload_id, repository_name, repository.registry_id)
    data = bytes(upload.layer_parts)
    if not data:
        raise EmptyUploadException(f"The layer upload with id '{upload_id}' does not contain any layer parts")
    computed = sha256_digest(data)
    if layer_digests and computed not in layer_digests:
        raise InvalidLayerException(
            f"The layer digest calculated for the upload with id '{upload_id}' is '{computed}', which does "
            f"not match the digests given: {layer_digests}"
        )
    if computed in repository.layers:
        raise LayerAlreadyExistsException(
            f"The layer with digest '{computed}' already exists in the repository with name "
            f"'{repository.name}' in the registry with id '{repository.registry_id}'"
        )
    result: dict[str, Any] = _original_complete_layer_upload(
        self, repository_name, upload_id, layer_digests, registry_id
    )
    # The same bytes for every face: the OCI distribution API and GetDownloadUrlForLayer read them here.
    blobs = ecr_blobs.store()
    blobs.put_bytes(data)
    blobs.add(repository.registry_id, self.region_name, repository.name, computed)
    return result


_original_delete_repository: Final = ECRBackend.delete_repository


def _delete_repository(
    self: ECRBackend, repository_name: str, registry_id: str | None = None, force: bool = False
) -> Repository:
    # A repository made again under the same name starts without the old one's layers, as in ECR.
    deleted: Repository = _original_delete_repository(self, repository_name, registry_id, force)
    ecr_blobs.store().forget_repository(deleted.registry_id, self.region_name, deleted.name)
    return deleted


def _to_schema1(repository: Repository, image: Image, tag: str) -> str:
    """Docker v2 schema 2 -> unsigned schema 1, roughly as registries derive it from the image config."""
    manifest = json.loads(image.image_manifest)
    config: dict[str, Any] = {}
    config_bytes = ecr_blobs.store().read_small(manifest["config"]["digest"], _CONFIG_BYTES_UP_TO)
    if config_bytes is not None:
        try:
            loaded = json.loads(config_bytes)
            config = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            config = {}
    layer_digests = [layer["digest"] for layer in manifest.get("layers", [])]
    history: list[dict[str, Any]] = []
    parent = ""
    for layer_digest in layer_digests:
        layer_id = hashlib.sha256(f"{parent} {layer_digest}".encode()).hexdigest()
        entry: dict[str, Any] = {"id": layer_id}
        if parent:
            entry["parent"] = parent
        history.append(entry)
        parent = layer_id
    if history:
        for key in ("architecture", "os", "config", "created"):
            if key in config:
                history[-1][key] = config[key]
    converted = {
        "schemaVersion": 1,
        "name": repository.name,
        "tag": tag,
        "architecture": config.get("architecture", "amd64"),
        "fsLayers": [{"blobSum": d} for d in reversed(layer_digests)],
        "history": [{"v1Compatibility": json.dumps(h, separators=(",", ":"))} for h in reversed(history)],
    }
    return json.dumps(converted, indent=3)


def _failure(image_id: dict[str, Any], code: str, reason: str) -> dict[str, Any]:
    # ECR echoes the imageId exactly as asked; moto writes imageTag "null" for a digest lookup.
    return {"imageId": dict(image_id), "failureCode": code, "failureReason": reason}


def batch_get_image(
    backend: ECRBackend,
    repository_name: str,
    registry_id: str | None,
    image_ids: list[dict[str, Any]] | None,
    accepted_media_types: list[str] | None,
) -> dict[str, Any]:
    """BatchGetImage as ECR answers it (moto ignores acceptedMediaTypes and tag/digest disagreement)."""
    image_ids = _checked_ids("imageIds", image_ids)
    repository = backend._get_repository(repository_name, registry_id)
    accepted = frozenset(accepted_media_types) if accepted_media_types else _DEFAULT_ACCEPTED
    by_digest = {image.get_image_digest(): image for image in repository.images}
    images: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for image_id in image_ids:
        tag = image_id.get("imageTag")
        digest = image_id.get("imageDigest")
        if not tag and not digest:
            failures.append(
                _failure(
                    image_id,
                    "MissingDigestAndTag",
                    "Invalid request parameters: both tag and digest cannot be null",
                )
            )
            continue
        if digest and not _DIGEST_RE.fullmatch(digest):
            failures.append(_failure(image_id, "InvalidImageDigest", f"Invalid image digest '{digest}'"))
            continue
        tagged = next((i for i in repository.images if tag in i.image_tags), None) if tag else None
        image = by_digest.get(digest) if digest else tagged
        if tag and digest and tagged is not None and tagged.get_image_digest() != digest:
            failures.append(
                _failure(image_id, "ImageTagDoesNotMatchDigest", f"Tag '{tag}' does not point at digest '{digest}'")
            )
            continue
        if image is None or (tag and tagged is None):
            failures.append(_failure(image_id, "ImageNotFound", "Requested image not found"))
            continue
        status = image_status(image)
        if status != ACTIVE:
            # ECR user guide: archived images cannot be pulled ("fail with a 404 error"), nor while a
            # restore is ACTIVATING. The BatchGetImage code is undocumented; a 404 is "not found", so
            # ImageNotFound, with a reason that names the status and the way back.
            failures.append(
                _failure(
                    image_id,
                    "ImageNotFound",
                    f"Requested image is {status}: an archived image cannot be pulled until it is restored to "
                    "the STANDARD storage class (UpdateImageStorageClass) and ACTIVE again",
                )
            )
            continue
        manifest = image.image_manifest
        media_type = image.image_manifest_media_type or ""
        # By digest ECR never converts: the caller named exact bytes, and anything else would not hash to
        # that digest, so the stored manifest is returned whatever was accepted. By tag it converts a
        # Docker v2 schema 2 manifest to schema 1 when only schema 1 is accepted; any other mismatch is a
        # failure. The model has no "unsupported type" code, so ImageNotFound (what a registry answers:
        # no manifest for this reference in an acceptable type) with a reason that says why.
        if not digest and media_type not in accepted:
            schema1 = sorted(accepted & {DOCKER_MANIFEST_V1})
            if media_type == DOCKER_MANIFEST_V2 and schema1:
                manifest = _to_schema1(repository, image, str(tag))
                media_type = schema1[0]
            else:
                failures.append(
                    _failure(
                        image_id,
                        "ImageNotFound",
                        f"Requested image not found: stored as '{media_type}', which is not among "
                        f"acceptedMediaTypes {sorted(accepted)}",
                    )
                )
                continue
        found_id: dict[str, str] = {"imageDigest": image.get_image_digest()}
        if tag:
            found_id["imageTag"] = tag
        images.append(
            {
                "registryId": repository.registry_id,
                "repositoryName": repository.name,
                "imageId": found_id,
                "imageManifest": manifest,
                "imageManifestMediaType": media_type,
            }
        )
    return {"images": images, "failures": failures}


def _batch_get_image_response(self: ECRResponse) -> ActionResult:
    return ActionResult(
        batch_get_image(
            self.ecr_backend,
            self._get_param("repositoryName"),
            self._get_param("registryId"),
            self._get_param("imageIds"),
            self._get_param("acceptedMediaTypes"),
        )
    )


def _backend_batch_get_image(
    self: ECRBackend,
    repository_name: str,
    registry_id: str | None = None,
    image_ids: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return batch_get_image(self, repository_name, registry_id, image_ids, None)


def _determine_resource(self: ECRResponse) -> str:
    """The repository ARN a request acts on, for IAM policy evaluation. ECR's IAM actions are
    resource-level (arn:aws:ecr:REGION:ACCOUNT:repository/NAME); moto checks every ECR request
    against Resource "*", so a policy scoped to repository ARNs would deny everything."""
    try:
        body = json.loads(self.body or "{}")
    except ValueError:
        return "*"
    repository = body.get("repositoryName") if isinstance(body, dict) else None
    if not isinstance(repository, str):
        return "*"  # account-level calls (GetAuthorizationToken, DescribeRepositories without a name)
    account = body.get("registryId") or self.current_account
    return f"arn:aws:ecr:{self.region}:{account}:repository/{repository}"


def _batch_delete_image(
    self: ECRBackend,
    repository_name: str,
    registry_id: str | None = None,
    image_ids: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """BatchDeleteImage with ECR's ImageReferencedByManifestList: an image an index in this repository
    names in its manifests[] is not deleted, neither by its last tag nor by digest (model: ImageFailureCode;
    the failureReason is the one ECR answers, as quoted in public reports). The ids are handled in the order
    given, so an index listed before its child frees the child in the same call."""
    image_ids = _checked_ids("imageIds", image_ids)
    repository = self._get_repository(repository_name, registry_id)
    deleted: list[dict[str, str]] = []
    failures: list[dict[str, Any]] = []
    for image_id in image_ids:
        tag = image_id.get("imageTag")
        digest = image_id.get("imageDigest")
        if not tag and not digest:
            failures.append(
                _failure(
                    image_id, "MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null"
                )
            )
            continue
        if digest and not _DELETE_DIGEST_RE.match(digest):
            failures.append(
                _failure(
                    image_id,
                    "InvalidImageDigest",
                    "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
                )
            )
            continue
        image = next(
            (
                i
                for i in repository.images
                if (not digest or i.get_image_digest() == digest) and (not tag or tag in i.image_tags)
            ),
            None,
        )
        if image is None:
            failures.append(_failure(image_id, "ImageNotFound", "Requested image not found"))
            continue
        whole = bool(digest) or image.image_tags == [tag]
        if whole and _referencing_indexes(repository, image):
            failures.append(
                _failure(image_id, "ImageReferencedByManifestList", "Requested image referenced by manifest list")
            )
            continue
        image_digest = image.get_image_digest()
        if not whole:
            deleted.append({"imageDigest": image_digest, "imageTag": str(tag)})
            _untag(image, str(tag))
            continue
        gone = [{"imageDigest": image_digest, "imageTag": t} for t in reversed(image.image_tags)]
        deleted.extend(gone or [{"imageDigest": image_digest}])
        repository.images.remove(image)
        _archive.pop(image, None)
    return {"imageIds": deleted, "failures": failures}


_original_batch_check_layer_availability: Final = ECRBackend.batch_check_layer_availability


def _batch_check_layer_availability(
    self: ECRBackend,
    repository_name: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    """layerDigests 1-100 (model: BatchedOperationLayerDigestList), and ``ARCHIVED`` (model:
    LayerAvailability) for a blob that only archived images of this repository use."""
    _checked_ids("layerDigests", layer_digests)
    result: dict[str, Any] = _original_batch_check_layer_availability(self, repository_name, layer_digests, registry_id)
    repository = self._get_repository(repository_name, registry_id)
    archived_only = _archived_only_blobs(repository)
    for layer in result["layers"]:
        if layer["layerDigest"] in archived_only:
            layer["layerAvailability"] = "ARCHIVED"
    return result


def _archived_only_blobs(repository: Repository) -> set[str]:
    in_use: set[str] = set()
    archived: set[str] = set()
    for image in repository.images:
        blobs = _blob_digests(_parse(image.image_manifest))
        (in_use if image_status(image) == ACTIVE else archived).update(blobs)
    return archived - in_use


def _filter(response: ECRResponse) -> tuple[str, str]:
    """filter.tagStatus (default ANY) and filter.imageStatus (default ACTIVE: model, ListImagesFilter and
    DescribeImagesFilter: "If not specified, only images with ACTIVE status are returned")."""
    raw = response._get_param("filter") or {}
    tag_status = raw.get("tagStatus") or "ANY"
    wanted = raw.get("imageStatus") or ACTIVE
    _check_enum("filter.tagStatus", tag_status, _TAG_STATUSES)
    _check_enum("filter.imageStatus", wanted, IMAGE_STATUS_FILTERS)
    return tag_status, wanted


def _selected(images: Iterable[Image], tag_status: str, wanted: str) -> list[Image]:
    return [
        i
        for i in images
        if (tag_status == "ANY" or (tag_status == "TAGGED") == bool(i.image_tags))
        and (wanted == "ANY" or image_status(i) == wanted)
    ]


def _list_images_response(self: ECRResponse) -> ActionResult:
    """ListImages with the model's filter: tagStatus and imageStatus (moto ignores imageStatus)."""
    tag_status, wanted = _filter(self)
    repository = self.ecr_backend._get_repository(self._get_param("repositoryName"), self._get_param("registryId"))
    ids: list[dict[str, str]] = []
    for image in _selected(repository.images, tag_status, wanted):
        digest = image.get_image_digest()
        ids.extend([{"imageDigest": digest, "imageTag": t} for t in image.image_tags] or [{"imageDigest": digest}])
    return ActionResult({"imageIds": ids})


def _describe_images_response(self: ECRResponse) -> ActionResult:
    """DescribeImages with the model's filter (tagStatus, imageStatus; moto ignores both) and ImageDetail's
    storage-class members: imageStatus, lastArchivedAt, lastActivatedAt.

    The filter applies to named imageIds too, as the model's wording has it, so a caller that names an
    archived image must ask for it (imageStatus ARCHIVED or ANY) or get ImageNotFoundException."""
    tag_status, wanted = _filter(self)
    repository = self.ecr_backend._get_repository(self._get_param("repositoryName"), self._get_param("registryId"))
    image_ids = self._get_param("imageIds")
    if image_ids is not None:
        images: list[Image] = []
        for image_id in _checked_ids("imageIds", image_ids):
            image = repository._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
            if wanted != "ANY" and image_status(image) != wanted:
                raise ImageNotFoundException(
                    image_id=f"{{imageDigest:'{image_id.get('imageDigest', 'null')}', imageTag:'"
                    f"{image_id.get('imageTag', 'null')}'}}",
                    repository_name=repository.name,
                    registry_id=repository.registry_id,
                )
            if all(image is not seen for seen in images):
                images.append(image)
    else:
        images = _selected(repository.images, tag_status, wanted)
    details = []
    for image in images:
        detail = copy.copy(image)
        if not detail.image_tags:
            del detail.image_tags  # ECR leaves imageTags out for an untagged image
        state = _archive.get(image) or ArchiveState()
        for name, value in state.detail_fields().items():
            setattr(detail, name, value)
        details.append(detail)
    return ActionResult({"imageDetails": details})


def _update_image_storage_class_response(self: ECRResponse) -> ActionResult:
    """UpdateImageStorageClass (model and API reference): STANDARD -> ARCHIVE is immediate (ARCHIVED);
    ARCHIVE -> STANDARD answers ACTIVATING, then ACTIVE after the emulator's restore delay.

    Where the docs are silent: asking for the class an image already has (or is moving to) is a no-op
    that answers its status; archiving an image while it is ACTIVATING is
    ImageStorageClassUpdateNotSupportedException."""
    target = self._get_param("targetStorageClass")
    _check_enum("targetStorageClass", target, _STORAGE_CLASSES)
    image_id = self._get_param("imageId") or {}
    tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
    if not tag and not digest:
        raise InvalidParameterException("Invalid request parameters: both tag and digest cannot be null")
    repository = self.ecr_backend._get_repository(self._get_param("repositoryName"), self._get_param("registryId"))
    image = repository._get_image(tag, digest)
    state = _archive.setdefault(image, ArchiveState())
    status = state.status()
    if target == "ARCHIVE":
        if status == "ACTIVATING":
            raise ImageStorageClassUpdateNotSupportedException(
                f"The image with digest '{image.get_image_digest()}' is being restored (ACTIVATING) and cannot "
                "be archived until the restore completes"
            )
        if status == ACTIVE:
            state.archive()
    elif status == "ARCHIVED":
        state.start_restore()
    answered_id = {"imageDigest": image.get_image_digest()}
    if tag:
        answered_id["imageTag"] = tag
    return ActionResult(
        {
            "registryId": repository.registry_id,
            "repositoryName": repository.name,
            "imageId": answered_id,
            "imageStatus": state.status(),
        }
    )


def _check_mutability(mutability: object, filters: object) -> None:
    """imageTagMutability and imageTagMutabilityExclusionFilters as the model bounds them (1-5 filters,
    filterType WILDCARD, filter ^[0-9a-zA-Z._*-]{1,128}$) and as moto's own pairing rule has it: filters
    go with, and only with, the two _WITH_EXCLUSION values. moto leaves the counts and the pattern to
    botocore, and PutImageTagMutability skips the pairing rule."""
    _check_enum("imageTagMutability", mutability or RepoTagMutability.MUTABLE, [m.value for m in RepoTagMutability])
    parameter = "imageTagMutabilityExclusionFilters"
    if filters is not None:
        for item in _checked_list(parameter, filters, 1, _MAX_EXCLUSION_FILTERS):
            if not isinstance(item, dict) or set(item) != {"filterType", "filter"}:
                raise _constraint(parameter, "Member must have exactly the members 'filterType' and 'filter'")
            _check_enum(f"{parameter}.member.filterType", item["filterType"], ["WILDCARD"])
            if not isinstance(item["filter"], str) or not _EXCLUSION_FILTER_RE.fullmatch(item["filter"]):
                raise _constraint(
                    f"{parameter}.member.filter",
                    "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$",
                )
    with_exclusion = mutability in _EXCLUSION_VARIANTS
    if with_exclusion and filters is None:
        raise _constraint(
            parameter,
            f"ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as {mutability}",
        )
    if not with_exclusion and filters is not None:
        raise _constraint(
            parameter, f"ImageTagMutabilityExclusionFilters must be null when imageTagMutability is set as {mutability}"
        )


_original_create_repository: Final = ECRBackend.create_repository


def _create_repository(
    self: ECRBackend,
    repository_name: str,
    registry_id: str | None,
    encryption_config: dict[str, str],
    image_scan_config: Any,
    image_tag_mutability: str,
    tags: list[dict[str, str]],
    image_tag_mutability_exclusion_filters: list[Any] | None = None,
) -> Repository:
    _check_mutability(image_tag_mutability, image_tag_mutability_exclusion_filters)
    repository: Repository = _original_create_repository(
        self,
        repository_name,
        registry_id,
        encryption_config,
        image_scan_config,
        image_tag_mutability,
        tags,
        image_tag_mutability_exclusion_filters,
    )
    return repository


_original_put_image_tag_mutability: Final = ECRBackend.put_image_tag_mutability


def _put_image_tag_mutability(
    self: ECRBackend,
    registry_id: str,
    repository_name: str,
    image_tag_mutability: str,
    image_tag_mutability_exclusion_filters: list[Any] | None = None,
) -> dict[str, Any]:
    """PutImageTagMutability: validated like CreateRepository, and the response carries the filters
    (model: PutImageTagMutabilityResponse.imageTagMutabilityExclusionFilters), which moto leaves out."""
    _check_mutability(image_tag_mutability, image_tag_mutability_exclusion_filters)
    result: dict[str, Any] = _original_put_image_tag_mutability(
        self, registry_id, repository_name, image_tag_mutability, image_tag_mutability_exclusion_filters
    )
    if image_tag_mutability_exclusion_filters is not None:
        result["imageTagMutabilityExclusionFilters"] = image_tag_mutability_exclusion_filters
    return result


_applied = False


def apply() -> None:
    """Install the corrections (idempotent)."""
    global _applied
    if _applied:
        return
    Image.get_image_digest = _image_digest  # type: ignore[method-assign]
    ECRBackend.put_image = _put_image  # type: ignore[method-assign]
    ECRBackend.complete_layer_upload = _complete_layer_upload  # type: ignore[method-assign]
    ECRBackend.delete_repository = _delete_repository  # type: ignore[method-assign]
    ECRBackend.batch_get_image = _backend_batch_get_image  # type: ignore[method-assign]
    ECRResponse.batch_get_image = _batch_get_image_response  # type: ignore[method-assign]
    ECRResponse._determine_resource = _determine_resource  # type: ignore[attr-defined]
    ECRBackend.batch_delete_image = _batch_delete_image  # type: ignore[method-assign]
    ECRBackend.batch_check_layer_availability = _batch_check_layer_availability  # type: ignore[method-assign]
    ECRBackend.create_repository = _create_repository  # type: ignore[method-assign]
    ECRBackend.put_image_tag_mutability = _put_image_tag_mutability  # type: ignore[method-assign]
    ECRResponse.list_images = _list_images_response  # type: ignore[method-assign]
    ECRResponse.describe_images = _describe_images_response  # type: ignore[method-assign]
    ECRResponse.update_image_storage_class = _update_image_storage_class_response  # type: ignore[attr-defined]
    _applied = True
