"""Push real images into ECR (the emulator, or a real registry) through the ECR API, for tests and the demo.

Blobs are random bytes, deterministic from a seed, uploaded with InitiateLayerUpload / UploadLayerPart /
CompleteLayerUpload; the manifest is then pushed with PutImage. Not operator code: it may use boto3.

    python -m ecr_tag_localenv.ecr_seed --endpoint-url URL --repository NAME --tag TAG --kind index
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ecr_tag_localenv.ecr_media import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V2,
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    manifest_digest,
    sha256_digest,
)

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

Kind = Literal["docker", "oci", "index"]


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str

    def to_json(self) -> dict[str, str]:
        return {"architecture": self.architecture, "os": self.os}


TWO_PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64"))


@dataclass(frozen=True)
class PushedImage:
    repository: str
    digest: str
    manifest: str
    """Exactly the string given to PutImage."""
    media_type: str
    tag: str | None
    config_digest: str | None = None
    layer_digests: tuple[str, ...] = ()
    children: tuple[PushedImage, ...] = ()
    """For an index: the child images, pushed (untagged) before it."""
    platform: Platform | None = None
    blobs: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    """Bytes of the config and layer blobs this helper uploaded, by digest (used to copy them)."""

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Config then layers; empty for an index."""
        return ((self.config_digest,) if self.config_digest else ()) + self.layer_digests

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def ensure_repository(client: ECRClient, repository: str, immutable: bool = False) -> None:
    with contextlib.suppress(client.exceptions.RepositoryAlreadyExistsException):
        client.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE" if immutable else "MUTABLE")


def upload_blob(client: ECRClient, repository: str, data: bytes) -> str:
    """Make ``data`` a blob of ``repository``; returns its digest. A blob already there is left alone."""
    digest = sha256_digest(data)
    if not data:
        raise ValueError("ECR refuses an empty blob upload")
    available = client.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
    if any(layer.get("layerAvailability") == "AVAILABLE" for layer in available.get("layers", [])):
        return digest
    upload_id = client.initiate_layer_upload(repositoryName=repository)["uploadId"]
    client.upload_layer_part(
        repositoryName=repository,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    try:
        completed = client.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])
    except client.exceptions.LayerAlreadyExistsException:
        return digest  # uploaded concurrently by someone else: present is present
    if completed["layerDigest"] != digest:
        raise RuntimeError(f"registry computed {completed['layerDigest']} for a blob with digest {digest}")
    return digest


def put_manifest(
    client: ECRClient,
    repository: str,
    manifest: str,
    tag: str | None = None,
    media_type: str | None = None,
    check_digest: bool = True,
) -> str:
    """PutImage of ``manifest`` verbatim; returns the digest ECR reports (checked against the bytes)."""
    kwargs: dict[str, Any] = {"repositoryName": repository, "imageManifest": manifest}
    if tag is not None:
        kwargs["imageTag"] = tag
    if media_type is not None:
        kwargs["imageManifestMediaType"] = media_type
    if check_digest:
        kwargs["imageDigest"] = manifest_digest(manifest)
    digest: str = client.put_image(**kwargs)["image"]["imageId"]["imageDigest"]
    return digest


def _random_blob(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _push_single(
    client: ECRClient,
    repository: str,
    tag: str | None,
    seed: int | str,
    layers: int,
    platform: Platform,
    oci: bool,
) -> PushedImage:
    rng = random.Random(f"{seed}/{platform.os}/{platform.architecture}/{'oci' if oci else 'docker'}")  # noqa: S311
    layer_blobs = [_random_blob(rng, rng.randint(64, 512)) for _ in range(layers)]
    config_blob = json.dumps(
        {
            **platform.to_json(),
            "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": {"seed": str(seed)}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b) for b in layer_blobs]},
        },
        sort_keys=True,
    ).encode()
    blobs = {upload_blob(client, repository, b): b for b in [config_blob, *layer_blobs]}
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST_V2
    config_digest = sha256_digest(config_blob)
    layer_digests = tuple(sha256_digest(b) for b in layer_blobs)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                "size": len(config_blob),
                "digest": config_digest,
            },
            "layers": [
                {"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": len(b), "digest": d}
                for b, d in zip(layer_blobs, layer_digests, strict=True)
            ],
        },
        indent=3,
    )
    digest = put_manifest(client, repository, manifest, tag, media_type)
    return PushedImage(
        repository=repository,
        digest=digest,
        manifest=manifest,
        media_type=media_type,
        tag=tag,
        config_digest=config_digest,
        layer_digests=layer_digests,
        platform=platform,
        blobs=blobs,
    )


def push_docker_image(
    client: ECRClient,
    repository: str,
    tag: str | None = None,
    seed: int | str = 0,
    layers: int = 2,
    platform: Platform = TWO_PLATFORMS[0],
) -> PushedImage:
    """A Docker v2 schema 2 image."""
    return _push_single(client, repository, tag, seed, layers, platform, oci=False)


def push_oci_image(
    client: ECRClient,
    repository: str,
    tag: str | None = None,
    seed: int | str = 0,
    layers: int = 2,
    platform: Platform = TWO_PLATFORMS[0],
) -> PushedImage:
    """An OCI image manifest."""
    return _push_single(client, repository, tag, seed, layers, platform, oci=True)


def push_index(
    client: ECRClient,
    repository: str,
    tag: str | None = None,
    seed: int | str = 0,
    platforms: Sequence[Platform] = TWO_PLATFORMS,
    media_type: str = OCI_INDEX,
) -> PushedImage:
    """A multi-platform index: each child a real image pushed (untagged) first.

    ``media_type`` OCI_INDEX gives OCI children; DOCKER_MANIFEST_LIST gives Docker v2 schema 2 children.
    """
    if media_type not in INDEX_TYPES:
        raise ValueError(f"not an index media type: {media_type}")
    oci = media_type == OCI_INDEX
    children = tuple(_push_single(client, repository, None, seed, 2, p, oci=oci) for p in platforms)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child.media_type,
                    "size": len(child.manifest.encode()),
                    "digest": child.digest,
                    "platform": child.platform.to_json() if child.platform else {},
                }
                for child in children
            ],
        },
        indent=3,
    )
    digest = put_manifest(client, repository, manifest, tag, media_type)
    return PushedImage(
        repository=repository,
        digest=digest,
        manifest=manifest,
        media_type=media_type,
        tag=tag,
        children=children,
    )


_ARCHITECTURES = ("amd64", "arm64", "ppc64le", "s390x", "riscv64", "386")


def push_wide_index(
    client: ECRClient, repository: str, tag: str | None, children: int, seed: int | str = 0
) -> PushedImage:
    """An OCI index of ``children`` entries, for tests of large indexes: the children share one config
    and one layer (two blob uploads in all) and differ by an annotation, so each is one PutImage.

    OCI image-spec (manifest.md, image-index.md): ``annotations`` is an optional map in both.
    """
    ensure_repository(client, repository)
    rng = random.Random(f"{seed}/wide")  # noqa: S311
    layer = _random_blob(rng, 64)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
    blobs = {upload_blob(client, repository, b): b for b in (config, layer)}
    config_digest, layer_digest = sha256_digest(config), sha256_digest(layer)
    pushed: list[PushedImage] = []
    for i in range(children):
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
                "layers": [{"mediaType": OCI_LAYER, "size": len(layer), "digest": layer_digest}],
                "annotations": {"dev.ecrtag.seed": f"{seed}/{i}"},
            }
        )
        platform = Platform("linux", _ARCHITECTURES[i % len(_ARCHITECTURES)])
        digest = put_manifest(client, repository, manifest, None, OCI_MANIFEST)
        pushed.append(
            PushedImage(
                repository=repository,
                digest=digest,
                manifest=manifest,
                media_type=OCI_MANIFEST,
                tag=None,
                config_digest=config_digest,
                layer_digests=(layer_digest,),
                platform=platform,
                blobs=blobs,
            )
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "size": len(child.manifest.encode()),
                    "digest": child.digest,
                    "platform": child.platform.to_json() if child.platform else {},
                }
                for child in pushed
            ],
        }
    )
    digest = put_manifest(client, repository, index, tag, OCI_INDEX)
    return PushedImage(
        repository=repository, digest=digest, manifest=index, media_type=OCI_INDEX, tag=tag, children=tuple(pushed)
    )


def push_oci_index(client: ECRClient, repository: str, tag: str | None = None, seed: int | str = 0) -> PushedImage:
    """An OCI index for linux/amd64 and linux/arm64."""
    return push_index(client, repository, tag, seed, TWO_PLATFORMS, OCI_INDEX)


def push_docker_manifest_list(
    client: ECRClient, repository: str, tag: str | None = None, seed: int | str = 0
) -> PushedImage:
    """A Docker manifest list for linux/amd64 and linux/arm64."""
    return push_index(client, repository, tag, seed, TWO_PLATFORMS, DOCKER_MANIFEST_LIST)


def push_verbatim(
    client: ECRClient,
    repository: str,
    manifest: str,
    tag: str | None = None,
    media_type: str | None = None,
    blobs: Mapping[str, bytes] | None = None,
    check_digest: bool = True,
) -> PushedImage:
    """Push ``manifest`` exactly as given (CRLF, odd whitespace, no trailing newline are all kept).

    ``blobs`` (digest -> bytes) are uploaded first, e.g. ``other.blobs`` of an image whose manifest text
    this one re-spells.
    """
    for data in (blobs or {}).values():
        upload_blob(client, repository, data)
    parsed = json.loads(manifest)
    effective_type = media_type or parsed.get("mediaType") or DOCKER_MANIFEST_V2
    digest = put_manifest(client, repository, manifest, tag, media_type, check_digest)
    config = parsed.get("config") if isinstance(parsed.get("config"), dict) else None
    return PushedImage(
        repository=repository,
        digest=digest,
        manifest=manifest,
        media_type=effective_type,
        tag=tag,
        config_digest=config.get("digest") if config else None,
        layer_digests=tuple(layer["digest"] for layer in parsed.get("layers", [])),
        blobs=dict(blobs or {}),
    )


def copy_blobs(client: ECRClient, image: PushedImage, target_repository: str, skip: Collection[str] = ()) -> list[str]:
    """Upload ``image``'s blobs (its children's, for an index) into ``target_repository``, except ``skip``.

    Returns the digests now present there. Needs the bytes, so ``image`` must come from this module.
    """
    copied: list[str] = []
    for child in image.children:
        copied.extend(copy_blobs(client, child, target_repository, skip))
    for digest in image.blob_digests:
        if digest in skip:
            continue
        if digest not in image.blobs:
            raise ValueError(f"no bytes for blob {digest}: push the image with this module first")
        copied.append(upload_blob(client, target_repository, image.blobs[digest]))
    return copied


def copy_image(
    client: ECRClient,
    image: PushedImage,
    target_repository: str,
    tag: str | None = None,
    skip_blobs: Collection[str] = (),
    skip_children: Collection[str] = (),
) -> PushedImage:
    """Copy blobs, children (untagged) and then the manifest itself; ``skip_*`` leave parts out on purpose."""
    copy_blobs(client, image, target_repository, skip_blobs)
    for child in image.children:
        if child.digest not in skip_children:
            put_manifest(client, target_repository, child.manifest, None, child.media_type)
    digest = put_manifest(client, target_repository, image.manifest, tag, image.media_type)
    return PushedImage(
        repository=target_repository,
        digest=digest,
        manifest=image.manifest,
        media_type=image.media_type,
        tag=tag,
        config_digest=image.config_digest,
        layer_digests=image.layer_digests,
        children=image.children,
        platform=image.platform,
        blobs=image.blobs,
    )


def push(client: ECRClient, repository: str, tag: str | None, kind: Kind, seed: int | str = 0) -> PushedImage:
    ensure_repository(client, repository)
    if kind == "docker":
        return push_docker_image(client, repository, tag, seed)
    if kind == "oci":
        return push_oci_image(client, repository, tag, seed)
    return push_oci_index(client, repository, tag, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecr_seed", description="Push a real image into ECR; print its digest.")
    parser.add_argument("--endpoint-url", required=True, help="ECR endpoint, e.g. the emulator's URL")
    parser.add_argument("--repository", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--kind", choices=["docker", "oci", "index"], default="docker")
    parser.add_argument("--seed", default="0", help="blobs are deterministic from this (default 0)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    args = parser.parse_args(argv)

    from ecr_tag_localenv.clients import plain_client

    client = plain_client(
        "ecr",
        endpoint_url=args.endpoint_url,
        region=args.region,
        # The emulator accepts any credentials; use the environment's when set.
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    image = push(client, args.repository, args.tag, args.kind, args.seed)
    print(image.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
