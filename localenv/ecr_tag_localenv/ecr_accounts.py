"""Identities in other accounts of the ECR emulator, for tests and the demo: credentials and clients.

The emulator (moto) tells accounts apart by credentials: STS AssumeRole of a role ARN in account B hands
out keys that belong to B, and every request signed with them acts in B (its own registry, its own IAM).
That is also how an operator in one account reaches another's registry in AWS, so :func:`assume_role`
does what a real set-up does: it makes a role in B that trusts the source account, then assumes it.

    other = assume_role(endpoint_url, "222222222222")
    ecr_b = other.client("ecr", endpoint_url)

Not operator code: it may use boto3.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Final

import boto3
from botocore.config import Config

DEFAULT_ACCOUNT: Final = "123456789012"
"""moto's account for credentials it does not know (the emulator's "testing" keys)."""
# Every AWS Organizations member account has a role of this name that the management account may assume;
# moto lets any role ARN be assumed, which is how the set-up gets into the new account in the first place.
_BOOTSTRAP_ROLE: Final = "OrganizationAccountAccessRole"
_ALL_ECR: Final = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    region: str = "us-east-1"

    def session(self, region: str | None = None) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            region_name=region or self.region,
        )

    def client(self, service: str, endpoint_url: str, region: str | None = None, total_max_attempts: int = 1) -> Any:
        """A boto3 client on the emulator; ``total_max_attempts=1`` means no retries, so faults are seen."""
        return self.session(region).client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "total_max_attempts": total_max_attempts}),
        )


DUMMY: Final = Credentials("testing", "testing")  # moto's conventional dummy credentials


@dataclass(frozen=True)
class AssumedRole(Credentials):
    account_id: str = DEFAULT_ACCOUNT
    role_arn: str = ""
    arn: str = ""
    """The session's ARN (arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION), as an access denial names it."""


def _assume(sts: Any, role_arn: str, session_name: str, region: str) -> AssumedRole:
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)
    creds = answer["Credentials"]
    return AssumedRole(
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
        region=region,
        account_id=role_arn.split(":")[4],
        role_arn=role_arn,
        arn=answer["AssumedRoleUser"]["Arn"],
    )


def assume_role(
    endpoint_url: str,
    account_id: str,
    role_name: str = "ecr-tag-test",
    policy: dict[str, Any] | None = None,
    source: Credentials = DUMMY,
    region: str = "us-east-1",
    session_name: str = "test",
) -> AssumedRole:
    """Credentials of role ``role_name`` in ``account_id``, assumed with ``source``'s credentials.

    The role is made (once) with a trust policy for the source's account and the inline ``policy``
    (default: every ECR action on every resource), which matters when the emulator enforces IAM.
    """
    if len(account_id) != 12 or not account_id.isdigit():
        raise ValueError(f"an AWS account id is 12 digits, got {account_id!r}")
    sts = source.client("sts", endpoint_url, region)
    source_account = str(sts.get_caller_identity()["Account"])
    admin = _assume(sts, f"arn:aws:iam::{account_id}:role/{_BOOTSTRAP_ROLE}", "setup", region)
    iam = admin.client("iam", endpoint_url, region)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{source_account}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=role_name, PolicyName="ecr", PolicyDocument=json.dumps(policy or _ALL_ECR))
    role_arn = str(iam.get_role(RoleName=role_name)["Role"]["Arn"])
    return _assume(sts, role_arn, session_name, region)


def repository_policy(*principals: str, actions: tuple[str, ...]) -> str:
    """A repository policy text allowing ``principals`` (account ids or ARNs) the ECR ``actions``."""
    statement = {
        "Sid": "CrossAccount",
        "Effect": "Allow",
        "Principal": {"AWS": list(principals)},
        "Action": list(actions),
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


PULL_ACTIONS: Final = ("ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer")
PUSH_ACTIONS: Final = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
)
