"""Correction 1: the image digest is the sha256 of the manifest bytes exactly as pushed, everywhere."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ecr_tag_localenv.ecr_media import ALL_MODERN_MANIFEST_TYPES, manifest_digest
from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image, push_verbatim

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

REPO = "digests"


def _spellings(manifest: str) -> dict[str, str]:
    """The same JSON document written five ways; each must be a different image."""
    compact = json.dumps(json.loads(manifest), separators=(",", ":"))
    annotated = json.loads(manifest)
    annotated["annotations"] = {"note": "café"}  # non-ASCII: digest over UTF-8 bytes
    return {
        "as-pushed": manifest,
        "crlf": manifest.replace("\n", "\r\n"),
        "trailing-newline": manifest + "\n",
        "compact-no-newline": compact,
        "odd-whitespace": json.dumps(json.loads(manifest), separators=(" ,  ", " :\t")),
        "utf8": json.dumps(annotated, ensure_ascii=False),
    }


def test_digest_is_sha256_of_exact_manifest_bytes_in_every_api(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    base = push_docker_image(ecr_client, REPO, tag="base", seed=1)
    spellings = _spellings(base.manifest)
    digests: dict[str, str] = {}
    for name, text in spellings.items():
        if name == "as-pushed":
            digests[name] = base.digest
            continue
        # check_digest=False: the server's own digest is what is under test here.
        pushed = push_verbatim(ecr_client, REPO, text, tag=name, check_digest=False)
        digests[name] = pushed.digest
    for name, text in spellings.items():
        assert digests[name] == manifest_digest(text), name
    assert len(set(digests.values())) == len(spellings)

    # BatchGetImage: byte-for-byte manifest and the same digest, by tag and by digest.
    got = ecr_client.batch_get_image(
        repositoryName=REPO,
        imageIds=[{"imageTag": t} for t in [*(n for n in spellings if n != "as-pushed"), "base"]],
        acceptedMediaTypes=list(ALL_MODERN_MANIFEST_TYPES),
    )
    assert got["failures"] == []
    by_tag = {img["imageId"]["imageTag"]: img for img in got["images"]}
    for name, text in spellings.items():
        image = by_tag["base" if name == "as-pushed" else name]
        assert image["imageManifest"] == text
        assert image["imageId"]["imageDigest"] == digests[name]
    by_digest = ecr_client.batch_get_image(repositoryName=REPO, imageIds=[{"imageDigest": digests["crlf"]}])["images"]
    assert [i["imageManifest"] for i in by_digest] == [spellings["crlf"]]

    # DescribeImages and ListImages report the same digests.
    details = ecr_client.describe_images(repositoryName=REPO)["imageDetails"]
    assert {d["imageDigest"] for d in details} == set(digests.values())
    listed = ecr_client.list_images(repositoryName=REPO)["imageIds"]
    assert {(i["imageDigest"], i.get("imageTag")) for i in listed} == {
        (digests[name], "base" if name == "as-pushed" else name) for name in spellings
    }

    # BatchDeleteImage reports the digest of what it removed.
    deleted = ecr_client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "trailing-newline"}])
    assert deleted["imageIds"] == [{"imageDigest": digests["trailing-newline"], "imageTag": "trailing-newline"}]


def test_put_image_response_digest_matches_bytes(ecr_client: ECRClient) -> None:
    ensure_repository(ecr_client, REPO)
    base = push_docker_image(ecr_client, REPO, seed=2)
    response = ecr_client.put_image(repositoryName=REPO, imageManifest=base.manifest + "\r\n", imageTag="x")
    assert response["image"]["imageId"]["imageDigest"] == manifest_digest(base.manifest + "\r\n")
    assert response["image"]["imageManifest"] == base.manifest + "\r\n"
