"""Bare boto3 clients for local tooling (seeding the ECR emulator, the demo). The operator's own ECR
access goes through ``ecr_tag_operator.ecr``; this package is not part of the operator."""

from __future__ import annotations

from typing import Any

import boto3


def plain_client(service: str, *, endpoint_url: str, region: str, access_key_id: str, secret_access_key: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
    )
    return session.client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]
