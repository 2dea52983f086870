"""Tag mutability with exclusion filters: the four settings, the filters' limits, and what PutImage does.

Where ECR says so:
- botocore's ECR model: ImageTagMutability is MUTABLE | IMMUTABLE | IMMUTABLE_WITH_EXCLUSION |
  MUTABLE_WITH_EXCLUSION; ImageTagMutabilityExclusionFilters holds 1-5 filters, each with required members
  filterType (WILDCARD only) and filter (``^[0-9a-zA-Z._*-]{1,128}$``); CreateRepository and
  PutImageTagMutability take both, PutImageTagMutabilityResponse and Repository (DescribeRepositories)
  return both.
- ECR user guide, "Preventing image tags from being overwritten": with immutability an overwrite is
  ImageTagAlreadyExistsException; the *_WITH_EXCLUSION settings exempt the tags the wildcard filters match
  ("use wildcards (*) to match multiple similar tags"); AWS CDK's TagMutability documents
  IMMUTABLE_WITH_EXCLUSION as "all image tags ... immutable, while allowing you to define some filters for
  tags that can be changed" and MUTABLE_WITH_EXCLUSION as the reverse.
- Filters go with, and only with, the *_WITH_EXCLUSION values: moto's rule for CreateRepository, applied by
  the emulator to PutImageTagMutability too. The limit messages follow ECR's "Invalid parameter at '...'
  failed to satisfy constraint: '...'" form; ECR's exact words for these are not documented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_seed import push_docker_image, put_manifest
from tests.ecr.unvalidated import unvalidated_ecr_client

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient
    from mypy_boto3_ecr.type_defs import ImageTagMutabilityExclusionFilterTypeDef

REPO = "mutability"


def _wildcards(*patterns: str) -> list[ImageTagMutabilityExclusionFilterTypeDef]:
    return [{"filterType": "WILDCARD", "filter": p} for p in patterns]


def _settings(client: ECRClient) -> tuple[str, list[Any]]:
    repository = client.describe_repositories(repositoryNames=[REPO])["repositories"][0]
    return repository["imageTagMutability"], list(repository.get("imageTagMutabilityExclusionFilters", []))


def _can_move(client: ECRClient, tag: str, to: str) -> bool | str:
    """True if PutImage moved ``tag``; False if refused as immutable; any other error's code."""
    try:
        put_manifest(client, REPO, to, tag)
    except ClientError as exc:
        code = str(exc.response["Error"]["Code"])
        return False if code == "ImageTagAlreadyExistsException" else code
    return True


@pytest.mark.parametrize(
    ("mutability", "patterns", "movable"),
    [
        ("MUTABLE", None, {"latest": True, "dev-1": True, "v1.0": True}),
        ("IMMUTABLE", None, {"latest": False, "dev-1": False, "v1.0": False}),
        ("IMMUTABLE_WITH_EXCLUSION", ["dev-*", "latest"], {"latest": True, "dev-1": True, "v1.0": False}),
        ("MUTABLE_WITH_EXCLUSION", ["v*.*"], {"latest": True, "dev-1": True, "v1.0": False}),
    ],
)
def test_each_setting_decides_which_tags_move(
    ecr_client: ECRClient, mutability: Any, patterns: list[str] | None, movable: dict[str, bool]
) -> None:
    kwargs: dict[str, Any] = {"imageTagMutabilityExclusionFilters": _wildcards(*patterns)} if patterns else {}
    ecr_client.create_repository(repositoryName=REPO, imageTagMutability=mutability, **kwargs)
    assert _settings(ecr_client) == (mutability, _wildcards(*patterns) if patterns else [])
    first = push_docker_image(ecr_client, REPO, seed=1)
    second = push_docker_image(ecr_client, REPO, seed=2)
    for tag in movable:
        put_manifest(ecr_client, REPO, first.manifest, tag)
    assert {tag: _can_move(ecr_client, tag, second.manifest) for tag in movable} == movable


def test_wildcards_are_not_regular_expressions(ecr_client: ECRClient) -> None:
    ecr_client.create_repository(
        repositoryName=REPO,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=_wildcards("v1.*", "*-rc"),
    )
    first = push_docker_image(ecr_client, REPO, seed=3)
    second = push_docker_image(ecr_client, REPO, seed=4)
    tags = {"v1.2": True, "v1x2": False, "v1.": True, "2.0-rc": True, "rc": False, "xv1.2": False}
    for tag in tags:
        put_manifest(ecr_client, REPO, first.manifest, tag)
    assert {tag: _can_move(ecr_client, tag, second.manifest) for tag in tags} == tags


def test_put_image_tag_mutability_answers_and_stores_the_filters(ecr_client: ECRClient) -> None:
    ecr_client.create_repository(repositoryName=REPO, imageTagMutability="IMMUTABLE")
    answer = ecr_client.put_image_tag_mutability(
        repositoryName=REPO,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=_wildcards("release-*", "prod"),
    )
    assert answer["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert answer["imageTagMutabilityExclusionFilters"] == _wildcards("release-*", "prod")
    assert _settings(ecr_client) == ("MUTABLE_WITH_EXCLUSION", _wildcards("release-*", "prod"))
    back = ecr_client.put_image_tag_mutability(repositoryName=REPO, imageTagMutability="MUTABLE")
    assert "imageTagMutabilityExclusionFilters" not in back
    assert _settings(ecr_client) == ("MUTABLE", [])


_REFUSED: list[tuple[str, Any, Any, str]] = [
    ("no filters for an exclusion setting", "IMMUTABLE_WITH_EXCLUSION", None, "can't be null"),
    ("filters for a plain setting", "IMMUTABLE", _wildcards("dev-*"), "must be null"),
    ("an empty list", "MUTABLE_WITH_EXCLUSION", [], "greater than or equal to 1"),
    ("six filters", "MUTABLE_WITH_EXCLUSION", _wildcards(*(f"f{i}-*" for i in range(6))), "less than or equal to 5"),
    (
        "a filter type other than WILDCARD",
        "MUTABLE_WITH_EXCLUSION",
        [{"filterType": "REGEX", "filter": "x"}],
        "WILDCARD",
    ),
    ("a character outside the pattern", "MUTABLE_WITH_EXCLUSION", _wildcards("dev-?"), "regular expression"),
    ("a filter of 129 characters", "MUTABLE_WITH_EXCLUSION", _wildcards("a" * 129), "regular expression"),
    ("a filter without filterType", "MUTABLE_WITH_EXCLUSION", [{"filter": "dev-*"}], "'filterType' and 'filter'"),
    ("an unknown setting", "SOMETIMES", None, "enum value set"),
]


@pytest.mark.parametrize(("what", "mutability", "filters", "says"), _REFUSED, ids=[r[0] for r in _REFUSED])
@pytest.mark.parametrize("operation", ["CreateRepository", "PutImageTagMutability"])
def test_invalid_settings_are_invalid_parameter(
    ecr: RunningEmulator, ecr_client: ECRClient, operation: str, what: str, mutability: str, filters: Any, says: str
) -> None:
    raw = unvalidated_ecr_client(ecr)  # botocore itself refuses some of these before sending
    kwargs: dict[str, Any] = {"repositoryName": REPO, "imageTagMutability": mutability}
    if filters is not None:
        kwargs["imageTagMutabilityExclusionFilters"] = filters
    if operation == "PutImageTagMutability":
        ecr_client.create_repository(repositoryName=REPO, imageTagMutability="IMMUTABLE")
    with pytest.raises(ClientError) as exc:
        (raw.create_repository if operation == "CreateRepository" else raw.put_image_tag_mutability)(**kwargs)
    error = exc.value.response["Error"]
    assert error["Code"] == "InvalidParameterException", what
    assert says in error["Message"]
    if operation == "PutImageTagMutability":
        assert _settings(ecr_client) == ("IMMUTABLE", [])  # unchanged
    else:
        assert ecr_client.describe_repositories()["repositories"] == []
