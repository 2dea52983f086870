"""Image manifests: media types, digests, and the parts the operator needs (config, layers, children).

Parsing is for reading only: what PutImage writes is always the string ECR returned, untouched, because
re-serialising a manifest changes its digest and so makes a different image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# Always sent as acceptedMediaTypes: ECR converts a manifest read by tag into a type the client accepts,
# and a converted manifest has another digest. Schema 1 is left out on purpose: it is never promoted.
ACCEPTED_MEDIA_TYPES: tuple[str, ...] = (DOCKER_MANIFEST_V2, OCI_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX)
INDEX_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_V2, OCI_MANIFEST})


class ManifestError(ValueError):
    """The manifest is not one the operator can promote."""


@dataclass(frozen=True)
class Platform:
    os: str | None = None
    architecture: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class Descriptor:
    digest: str
    media_type: str | None = None
    size: int | None = None
    platform: Platform | None = None


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """The config blob and the layers: what must exist in a repository before PutImage."""
        return ((self.config,) if self.config else ()) + self.layers


def digest_of(manifest: str) -> str:
    """ECR's image digest: sha256 of the exact manifest bytes."""
    return "sha256:" + hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _descriptor(raw: Any) -> Descriptor:
    if not isinstance(raw, dict) or not isinstance(raw.get("digest"), str):
        raise ManifestError("a descriptor has no digest")
    platform = raw.get("platform")
    return Descriptor(
        digest=raw["digest"],
        media_type=raw.get("mediaType"),
        size=raw.get("size") if isinstance(raw.get("size"), int) else None,
        platform=Platform(platform.get("os"), platform.get("architecture"), platform.get("variant"))
        if isinstance(platform, dict)
        else None,
    )


def parse_manifest(manifest: str, declared_media_type: str | None = None) -> Manifest:
    """Read a manifest's media type, config, layers and children; ``declared_media_type`` is what ECR
    reported (imageManifestMediaType), used when the manifest has no ``mediaType`` field of its own."""
    try:
        doc = json.loads(manifest)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"the manifest is not JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise ManifestError("the manifest is not a JSON object")
    media_type = doc.get("mediaType") or declared_media_type
    if media_type is None:
        # An OCI manifest may omit mediaType; its shape tells which it is.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in INDEX_MEDIA_TYPES:
        children = tuple(_descriptor(m) for m in doc.get("manifests") or [])
        return Manifest(media_type, digest_of(manifest), None, (), children)
    if media_type in IMAGE_MEDIA_TYPES:
        config = _descriptor(doc["config"]) if "config" in doc else None
        layers = tuple(_descriptor(layer) for layer in doc.get("layers") or [])
        return Manifest(media_type, digest_of(manifest), config, layers, ())
    raise ManifestError(f"media type {media_type} is not one the operator promotes")
