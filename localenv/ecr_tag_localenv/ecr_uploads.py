"""Layer uploads through the ECR API as ECR takes them: part rules, and bytes spooled to the blob store.

Imported only inside the emulator process. Replaces moto's InitiateLayerUpload / UploadLayerPart /
CompleteLayerUpload, with the checks ECR makes and moto does not (empty upload, digest mismatch, layer
already there) and the part rules below. moto keeps every part in memory (``LayerUpload.layer_parts``) and
copies the whole layer again to hash it, so a 512 MiB layer costs over a GiB. Here each part is appended to
an upload of the blob store (:mod:`.ecr_blobs`, on disk, hashed as it is written) and CompleteLayerUpload
moves the file into the store without reading it again: memory per request is one part, whatever the
layer's size.

The rules, from the service model (botocore ``ecr/2015-09-21``) and ECR's service quotas page:

- UploadLayerPart: ``partFirstByte`` must be the next byte expected (bytes received so far) and
  ``partLastByte`` the part's last byte (``partFirstByte + len(layerPartBlob) - 1``); an empty part, a part
  out of order, overlapping or leaving a gap, or larger than the quota "Maximum layer part size" (10 MiB)
  is InvalidLayerPartException ("The layer part size is not valid, or the first byte specified is not
  consecutive to the last byte of a previous layer part upload"), with ``lastValidByteReceived``. A part
  over LayerPartBlob's 20971520 bytes is InvalidParameterException (the model's length constraint). More
  parts than the quota "Layer parts" (4,200) is LimitExceededException (listed for UploadLayerPart).
- CompleteLayerUpload: a part other than the last below the quota "Minimum layer part size" (5 MiB) is
  LayerPartTooSmallException ("Layer parts must be at least 5 MiB in size"; the model lists it for
  CompleteLayerUpload only: whether a part was the last is known only then). No part at all is
  EmptyUploadException; a digest other than the bytes' is InvalidLayerException; a layer the repository
  already has is LayerAlreadyExistsException.

The quotas are settings (:mod:`.ecr_settings`) so that tests can use small parts.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.ecr.exceptions import (
    InvalidLayerPartException,
    InvalidParameterException,
    LimitExceededException,
    UploadNotFoundException,
)
from moto.ecr.models import ECRBackend, LayerUpload, Repository
from moto.ecr.responses import ECRResponse

from ecr_tag_localenv import ecr_blobs, ecr_settings
from ecr_tag_localenv.ecr_corrections import (
    EmptyUploadException,
    InvalidLayerException,
    LayerAlreadyExistsException,
)


class LayerPartTooSmallException(ServiceException):
    code = "LayerPartTooSmallException"


@dataclass
class _Parts:
    """What ECR remembers of an upload besides its bytes: the sizes of the parts in order."""

    store_upload_id: str
    sizes: list[int] = field(default_factory=list)

    @property
    def received(self) -> int:
        return sum(self.sizes)


# Keyed by moto's upload object, so that moto's reset (new backends) lets these go with it.
_parts: weakref.WeakKeyDictionary[LayerUpload, _Parts] = weakref.WeakKeyDictionary()


def _invalid_part(repository: Repository, upload_id: str, parts: _Parts, why: str) -> InvalidLayerPartException:
    exc = InvalidLayerPartException(repository.registry_id, repository.name, upload_id, parts.received - 1)
    exc.message = f"{exc.message}: {why}"
    return exc


def _upload_of(backend: ECRBackend, repository: Repository, upload_id: str) -> tuple[LayerUpload, _Parts]:
    upload = repository.uploads.get(upload_id)
    parts = _parts.get(upload) if upload is not None else None
    if upload is None or parts is None:
        raise UploadNotFoundException(upload_id, repository.name, repository.registry_id)
    return upload, parts


def _initiate_layer_upload(self: ECRBackend, repository_name: str, registry_id: str | None = None) -> dict[str, Any]:
    repository = self._get_repository(repository_name, registry_id)
    upload = LayerUpload(repository.name, repository.registry_id)
    spool = ecr_blobs.store().begin_upload(repository.registry_id, self.region_name, repository.name)
    repository.uploads[upload.upload_id] = upload
    _parts[upload] = _Parts(spool.upload_id)
    # Model: partSize is "the size, in bytes, that Amazon ECR expects future layer part uploads to be".
    return {"uploadId": upload.upload_id, "partSize": ecr_settings.current().max_layer_part_bytes}


def _upload_layer_part(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    part_first_byte: int,
    part_last_byte: int,
    layer_part_blob: bytes,
    registry_id: str | None = None,
) -> dict[str, Any]:
    repository = self._get_repository(repository_name, registry_id)
    _, parts = _upload_of(self, repository, upload_id)
    settings = ecr_settings.current()
    data = layer_part_blob or b""
    if len(data) > ecr_settings.LAYER_PART_BLOB_MAX:
        raise InvalidParameterException(
            "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'Member must have length less "
            f"than or equal to {ecr_settings.LAYER_PART_BLOB_MAX}'"
        )
    if len(parts.sizes) >= settings.max_layer_parts:
        raise LimitExceededException(
            f"The upload with id '{upload_id}' already has {settings.max_layer_parts} layer parts, the most allowed"
        )
    if part_first_byte != parts.received:
        raise _invalid_part(
            repository, upload_id, parts, f"partFirstByte {part_first_byte} is not the next byte, {parts.received}"
        )
    if not data:
        raise _invalid_part(repository, upload_id, parts, "the layer part is empty")
    if part_last_byte != part_first_byte + len(data) - 1:
        raise _invalid_part(
            repository,
            upload_id,
            parts,
            f"partLastByte {part_last_byte} is not the part's last byte, {part_first_byte + len(data) - 1}",
        )
    if len(data) > settings.max_layer_part_bytes:
        raise _invalid_part(
            repository,
            upload_id,
            parts,
            f"the part has {len(data)} bytes, more than the maximum layer part size {settings.max_layer_part_bytes}",
        )
    store = ecr_blobs.store()
    store.upload(parts.store_upload_id, repository.registry_id, self.region_name, repository.name).append([data])
    parts.sizes.append(len(data))
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "uploadId": upload_id,
        "lastByteReceived": parts.received - 1,
    }


def _complete_layer_upload(
    self: ECRBackend,
    repository_name: str,
    upload_id: str,
    layer_digests: list[str],
    registry_id: str | None = None,
) -> dict[str, Any]:
    repository = self._get_repository(repository_name, registry_id)
    upload, parts = _upload_of(self, repository, upload_id)
    if not parts.sizes:
        raise EmptyUploadException(f"The layer upload with id '{upload_id}' does not contain any layer parts")
    minimum = ecr_settings.current().min_layer_part_bytes
    small = [i for i, size in enumerate(parts.sizes[:-1]) if size < minimum]
    if small:
        raise LayerPartTooSmallException(
            f"Layer parts must be at least {minimum} bytes in size, except the last: part {small[0] + 1} of the "
            f"upload with id '{upload_id}' has {parts.sizes[small[0]]} bytes"
        )
    store = ecr_blobs.store()
    spool = store.upload(parts.store_upload_id, repository.registry_id, self.region_name, repository.name)
    computed = spool.digest
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
    digest, size = store.finish_upload(parts.store_upload_id)
    store.add(repository.registry_id, self.region_name, repository.name, digest)
    repository.layers[digest] = size
    del repository.uploads[upload_id]
    _parts.pop(upload, None)
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "uploadId": upload_id,
        "layerDigest": digest,
    }


_original_get_param: Final = ECRResponse._get_param
_UNPARSED: Final = object()


def _get_param(self: ECRResponse, param_name: str, if_none: Any = None) -> Any:
    """moto's ``_get_param``, with the JSON body parsed once per request instead of once per parameter (an
    UploadLayerPart body is a 27 MiB string for a 20 MiB part, and its handler reads six parameters)."""
    if self.automated_parameter_parsing or self.body is None or self.querystring.get(param_name) is not None:
        return _original_get_param(self, param_name, if_none)
    parsed = self.__dict__.get("_parsed_body", _UNPARSED)
    if parsed is _UNPARSED:
        try:
            parsed = json.loads(self.body)
        except ValueError:
            parsed = None
        self.__dict__["_parsed_body"] = parsed
    if isinstance(parsed, dict) and param_name in parsed:
        return parsed[param_name]
    if self.uri_match and param_name in self.uri_match:
        return self.uri_match[param_name]
    return if_none


_applied = False


def apply() -> None:
    """Install the upload rules (idempotent; after :func:`ecr_tag_localenv.ecr_corrections.apply`)."""
    global _applied
    if _applied:
        return
    ECRBackend.initiate_layer_upload = _initiate_layer_upload  # type: ignore[method-assign]
    ECRBackend.upload_layer_part = _upload_layer_part  # type: ignore[method-assign]
    ECRBackend.complete_layer_upload = _complete_layer_upload  # type: ignore[method-assign]
    ECRResponse._get_param = _get_param  # type: ignore[method-assign,assignment]
    _applied = True
