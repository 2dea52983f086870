"""Small builders of manifests, specs and observations for the pure-code tests."""

from __future__ import annotations

import json
from typing import Any

from ecr_tag_operator.manifests import DOCKER_MANIFEST_V2, OCI_INDEX, OCI_MANIFEST, digest_of, parse_manifest
from ecr_tag_operator.model import LayerInfo, Observation, SourceImage
from ecr_tag_operator.spec import EcrImageTagSpec, parse_spec


def sha(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def image_manifest(config: int, *layers: int, media_type: str = DOCKER_MANIFEST_V2) -> str:
    layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 10,
                "digest": sha(config),
            },
            "layers": [{"mediaType": layer_type, "size": 100 + n, "digest": sha(n)} for n in layers],
        },
        indent=3,
    )


def index_manifest(*children: str) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "size": len(c),
                    "digest": digest_of(c),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for c, arch in zip(children, ("amd64", "arm64", "s390x"), strict=False)
            ],
        }
    )


def spec(**overrides: Any) -> EcrImageTagSpec:
    raw: dict[str, Any] = {"repositoryName": "team-a/web", "source": {"tag": "build-1"}, "tags": ["staging", "prod"]}
    raw.update(overrides)
    return parse_spec(raw)


def source(manifest: str, *children: str) -> SourceImage:
    parsed = parse_manifest(manifest)
    return SourceImage(manifest, parsed.media_type, parsed, tuple(parse_manifest(c) for c in children))


def available(src: SourceImage, state: str = "AVAILABLE") -> dict[str, LayerInfo]:
    return {blob.digest: LayerInfo(blob.digest, state, blob.size) for blob, _ in src.blobs()}


def observed(src: SourceImage | None, tags: dict[str, str | None], **kwargs: Any) -> Observation:
    layers = kwargs.pop("layers", available(src) if src else {})
    return Observation(src, layers=layers, tag_digests=tags, **kwargs)
