"""Where tags point in a registry, read the way the operator reads them: every accepted media type, so
ECR converts nothing and the digest is the stored one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ecr_tag_operator.manifests import ACCEPTED_MEDIA_TYPES

BATCH_GET_IMAGE_MAX_IDS = 100
"""BatchGetImage's ``imageIds`` takes at most 100 entries (botocore's service model: ImageIdentifierList, max 100)."""


def tag_digests(client: Any, repository: str, tags: Sequence[str]) -> dict[str, str | None]:
    """Each tag's digest now (None: the tag does not exist), read 100 tags per BatchGetImage."""
    found: dict[str, str | None] = dict.fromkeys(tags)
    for start in range(0, len(tags), BATCH_GET_IMAGE_MAX_IDS):
        got = client.batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": t} for t in tags[start : start + BATCH_GET_IMAGE_MAX_IDS]],
            acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES),
        )
        for image in got["images"]:
            found[image["imageId"]["imageTag"]] = image["imageId"]["imageDigest"]
    return found


def tag_digest(client: Any, repository: str, tag: str) -> str | None:
    """The digest ``repository:tag`` points at, or None when the tag does not exist."""
    return tag_digests(client, repository, [tag])[tag]
