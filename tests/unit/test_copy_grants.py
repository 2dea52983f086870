"""A copy's grants: the source is read in its own region (spec.source.region), with the role the
policies name for that registry; examples/dev-to-prod is a pair the operator accepts and allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_tag_operator import authz
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.spec import SpecError, parse_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dev-to-prod"
OWN, REGION = "999988887777", "eu-west-1"  # the operator's own account is neither dev nor prod


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLE / name).read_text())
    return doc


def _grants(namespace: str = "web-prod") -> Any:
    policy = _load("policy.yaml")
    return authz.namespace_grants(
        [parse_policy(policy["metadata"]["name"], policy["spec"], OWN)], namespace, {}, OWN, REGION
    )


def test_the_dev_to_prod_example_is_allowed_with_a_role_per_account() -> None:
    raw = _load("ecrimagetag.yaml")
    spec = parse_spec(raw["spec"])
    assert spec.copy_mode == "IfMissing"
    assert spec.referrers == "All"
    assert spec.source_region(REGION) == "us-east-1"
    allowed = authz.permission(spec, raw["metadata"]["namespace"], _grants())
    assert allowed.refused is None, allowed.refused
    assert allowed.role_arn == "arn:aws:iam::444455556666:role/ecr-tags-team-a"
    assert allowed.source_role_arn == "arn:aws:iam::111122223333:role/ecr-tags-read-dev"


def test_the_source_region_is_what_the_grants_are_asked_about() -> None:
    raw = _load("ecrimagetag.yaml")["spec"]
    elsewhere = raw | {"source": raw["source"] | {"region": "ap-south-1"}}
    refused = authz.permission(parse_spec(elsewhere), "web-prod", _grants())
    assert refused.refused is not None
    assert "ap-south-1" in refused.refused
    # Without source.region the source is looked for in the target's region, where dev is not granted.
    same_region = raw | {"source": {k: v for k, v in raw["source"].items() if k != "region"}}
    assert authz.permission(parse_spec(same_region), "web-prod", _grants()).refused is not None


def test_referrers_lists_mean_all_none_or_types() -> None:
    base = {"repositoryName": "team-a/web", "source": {"tag": "b", "repositoryName": "dev/web"}, "tags": ["p"]}
    assert parse_spec(base | {"referrers": ["None"]}).referrers == "None"
    assert parse_spec(base | {"referrers": "All"}).referrers == "All"
    assert parse_spec(base | {"referrers": ["application/spdx+json"]}).referrers == ("application/spdx+json",)
    for bad in ([], ["All", "application/spdx+json"]):
        with pytest.raises(SpecError, match="referrers"):
            parse_spec(base | {"referrers": bad})
