"""An ECR client that sends what it is given: botocore's client-side checks (required members, minimum
lengths) are off, so a test sees the emulator's own answer to a request ECR would refuse."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from ecr_tag_localenv.ecr_launcher import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, REGION, RunningEmulator

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient


def unvalidated_ecr_client(ecr: RunningEmulator) -> ECRClient:
    client: ECRClient = boto3.session.Session().client(
        "ecr",
        endpoint_url=ecr.endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        config=Config(parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    return client
