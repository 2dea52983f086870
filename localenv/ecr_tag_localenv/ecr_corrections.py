"""Corrections to moto 5.2.5's ECR backend where it differs from Amazon ECR.

Imported only inside the emulator process, after the environment moto reads at import time is set.
Each patch replaces one moto method and says which ECR behaviour it restores. The backend classes are
patched (not instances), so backends moto recreates on ``/moto-api/reset`` are corrected too.

Deliberately *not* changed (moto already matches ECR): BatchDeleteImage by tag removes only that tag
and deletes the image with its last tag; by digest it removes the image and every tag. An imageId with
both a tag and a digest is left as moto has it (the whole image goes): ECR's documentation does not say,
and the harsher reading is the safer one to test a deleter against.

Also corrected outside this module: moto's IAM denials are XML, unreadable for ECR's JSON protocol;
the emulator middleware (:mod:`.ecr_faults`) rewrites them into ECR's JSON errors.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    ImageAlreadyExistsException,
    InvalidParameterException,
    UploadNotFoundException,
)
from moto.ecr.models import ECRBackend, Image, Repository, RepoTagMutability
from moto.ecr.responses import ECRResponse

from ecr_tag_localenv import ecr_blobs
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


def clear_state() -> None:
    """Forget the emulator's own bookkeeping (called after moto's reset)."""
    ecr_blobs.store().clear()


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


def _tag_is_immutable(repository: Repository, tag: str) -> bool:
    # ECR exclusion filters are wildcard patterns ('*' only); moto matches them as regular expressions.
    filters = [f["filter"] for f in repository.image_tag_mutability_exclusion_filters or []]
    excluded = any(fnmatch.fnmatchcase(tag, pattern) for pattern in filters)
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


def _put_image(
    self: ECRBackend,
    repository_name: str,
    image_manifest: str,
    image_tag: str,
    image_manifest_mediatype: str | None = None,
    digest: str | None = None,
) -> Image:
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
    if existing is not None and holder is existing:
        raise ImageAlreadyExistsException(
            repository_name=repository.name,
            registry_id=repository.registry_id,
            digest=computed,
            image_tag=image_tag,
        )
    if holder is not None:
        # moto answers an immutable tag with ImageAlreadyExistsException, which callers rightly treat
        # as "already done"; ECR answers ImageTagAlreadyExistsException.
        if _tag_is_immutable(repository, image_tag):
            raise ImageTagAlreadyExistsException(
                f"The image tag '{image_tag}' already exists in the '{repository.name}' repository and cannot "
                "be overwritten because the tag is immutable."
            )
        # ECR leaves the image the tag moved away from in the repository, untagged; moto deletes it.
        _untag(holder, image_tag)
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
    repository = backend._get_repository(repository_name, registry_id)
    if not image_ids:
        raise InvalidParameterException("Invalid parameter at 'imageIds' failed to satisfy constraint: 'not empty'")
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
    _applied = True
