"""Manifest and blob media types shared by the ECR emulator and the seeding helper."""

from __future__ import annotations

import hashlib
from typing import Final

DOCKER_MANIFEST_V2: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"

DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar+gzip"

# Layers a manifest names but that no client pushes (OCI image spec, "Non-distributable layers").
NONDISTRIBUTABLE_LAYER_TYPES: Final = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
INDEX_TYPES: Final = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SCHEMA1_TYPES: Final = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})

# What a careful client (the operator) sends as acceptedMediaTypes: every modern type, no schema 1.
ALL_MODERN_MANIFEST_TYPES: Final = (DOCKER_MANIFEST_V2, OCI_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX)


def sha256_digest(data: bytes) -> str:
    """The content digest ECR and OCI registries use: ``sha256:`` + hex of the exact bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_digest(manifest: str) -> str:
    """ECR's image digest: the sha256 of the manifest string's UTF-8 bytes, exactly as pushed."""
    return sha256_digest(manifest.encode("utf-8"))
