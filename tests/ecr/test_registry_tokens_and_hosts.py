"""Registry passwords (GetAuthorizationToken) and registry host names, without an emulator process."""

from __future__ import annotations

import base64
import json

from ecr_tag_localenv import ecr_auth
from ecr_tag_localenv.oci_address import DEFAULT_ACCOUNT, DEFAULT_REGION, registry_host, registry_of_host

NOW = 1_800_000_000.0


def test_a_password_carries_its_account_and_lasts_twelve_hours() -> None:
    """ECR API, GetAuthorizationToken: "The authorization token is valid for 12 hours"."""
    password, expires_at = ecr_auth.issue_password("210987654321", now=NOW)
    assert expires_at == NOW + 12 * 3600
    token = ecr_auth.check_password(password, now=NOW + 12 * 3600 - 1)
    assert token == ecr_auth.Token("210987654321", expires_at)
    assert ecr_auth.check_password(password, now=expires_at) is None


def test_a_forged_or_altered_password_is_refused() -> None:
    password, _ = ecr_auth.issue_password("210987654321", now=NOW)
    encoded, _, signature = password.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(encoded))
    claims["account"] = "123456789012"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode() + "." + signature
    assert ecr_auth.check_password(forged, now=NOW) is None
    assert ecr_auth.check_password("not-a-token", now=NOW) is None
    assert ecr_auth.check_password(password[:-1] + ("0" if password[-1] != "0" else "1"), now=NOW) is None


def test_hosts_name_registries_by_account_and_region() -> None:
    """ECR's registry host is ``<account>.dkr.ecr.<region>.amazonaws.com`` (ECR guide, "Private registry
    concepts"); the emulator's is ``<account>.dkr.ecr.<region>.localhost:PORT``, and any other host is the
    default account's registry in the default region."""
    assert registry_of_host("127.0.0.1:5000") == (DEFAULT_ACCOUNT, DEFAULT_REGION)
    assert registry_of_host("210987654321.dkr.ecr.eu-west-1.localhost:5000") == ("210987654321", "eu-west-1")
    assert registry_of_host("21098765432.dkr.ecr.eu-west-1.localhost:5000") == (DEFAULT_ACCOUNT, DEFAULT_REGION)
    assert registry_host(DEFAULT_ACCOUNT, DEFAULT_REGION, "127.0.0.1:5000") == "127.0.0.1:5000"
    west = registry_host(DEFAULT_ACCOUNT, "eu-west-1", "127.0.0.1:5000")
    assert west == f"{DEFAULT_ACCOUNT}.dkr.ecr.eu-west-1.localhost:5000"
    assert registry_of_host(west) == (DEFAULT_ACCOUNT, "eu-west-1")
