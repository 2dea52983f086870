"""Assumed roles are attributable: the session is named after the namespace, which is its
SourceIdentity and a session tag (STS stubbed with botocore's Stubber); clients are bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from prometheus_client import REGISTRY

from ecr_tag_operator import ecr
from ecr_tag_operator.model import Registry
from ecr_tag_operator.settings import Settings

ROLE = "arn:aws:iam::444455556666:role/ecr-tags-team-a"


class StubbedSts(botocore.session.Session):
    """A botocore session whose STS clients answer from a Stubber: what AssumeRole was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.set_credentials("AKIDEXAMPLE", "secret")
        self.stubbers: list[Stubber] = []

    def create_client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = super().create_client(service_name, *args, **{"region_name": "us-east-1", **kwargs})
        if service_name == "sts":
            stub = Stubber(client)
            stub.add_response(
                "assume_role",
                {
                    "Credentials": {
                        "AccessKeyId": "ASIAEXAMPLEEXAMPLE",
                        "SecretAccessKey": "s" * 40,
                        "SessionToken": "token",
                        "Expiration": datetime.now(UTC) + timedelta(hours=1),
                    }
                },
                {
                    "RoleArn": ROLE,
                    "RoleSessionName": "eit.team-a",
                    "SourceIdentity": "team-a",
                    "Tags": [{"Key": "ecrtag.dev/namespace", "Value": "team-a"}],
                },
            )
            stub.activate()
            self.stubbers.append(stub)
        return client


def test_an_assumed_role_session_names_the_namespace_in_name_identity_and_tags() -> None:
    base = StubbedSts()
    session = ecr._assuming(base, ROLE, "team-a")
    frozen = session.get_credentials().get_frozen_credentials()  # makes the AssumeRole call
    assert frozen.access_key == "ASIAEXAMPLEEXAMPLE"
    assert len(base.stubbers) == 1
    base.stubbers[0].assert_no_pending_responses()  # asked exactly with the expected parameters


def test_assume_role_arguments_fit_sts_limits() -> None:
    args = ecr.assume_role_args("n" * 63)
    assert len(args["RoleSessionName"]) <= 64
    assert 2 <= len(args["SourceIdentity"]) <= 64
    assert ecr.assume_role_args(None) == {"RoleSessionName": "ecr-tag-operator"}


def test_clients_are_bounded_and_shared_per_region_role_and_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = ecr.Boto3Ecr(Settings(max_clients=3))
    first = client._client(Registry("us-east-1", None))
    assert client._client(Registry("us-east-1", "111122223333")) is first  # the own credentials: one client
    assert client._client(Registry.of("us-east-1", None, None, "team-a")) is first  # no role: no session
    for n in range(5):
        client._client(Registry(f"eu-west-{n + 1}", None))
    assert client.client_count == 3
    assert REGISTRY.get_sample_value("ecr_tag_operator_ecr_clients") == 3  # what /metrics shows
