"""IAM policies scoped to repository ARNs, as ECR evaluates them (moto alone checks Resource "*")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_launcher import start_emulator
from tests.plugins.ecr_server import aws_client


def test_repository_scoped_policy_allows_its_repositories_only(tmp_path: Path) -> None:
    with start_emulator(["--iam-enforce", "3"], log_dir=tmp_path) as server:
        iam: Any = aws_client(server.endpoint_url, "iam")
        iam.create_user(UserName="admin")
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(everything))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = (key["AccessKeyId"], key["SecretAccessKey"])
        iam = aws_client(server.endpoint_url, "iam", 1, *admin)
        scoped = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["ecr:BatchGetImage"],
                    "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/team-a/*",
                }
            ],
        }
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=json.dumps(scoped))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        admin_ecr: Any = aws_client(server.endpoint_url, "ecr", 1, *admin)
        for repo in ("team-a/web", "team-b/web"):
            ecr_seed.push(admin_ecr, repo, "v1", "docker", seed=repo)
        reader: Any = aws_client(server.endpoint_url, "ecr", 1, key["AccessKeyId"], key["SecretAccessKey"])
        got = reader.batch_get_image(repositoryName="team-a/web", imageIds=[{"imageTag": "v1"}])
        assert got["images"][0]["imageId"]["imageTag"] == "v1"
        with pytest.raises(ClientError) as denied:
            reader.batch_get_image(repositoryName="team-b/web", imageIds=[{"imageTag": "v1"}])
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        with pytest.raises(ClientError):
            reader.batch_get_image(
                repositoryName="team-a/web", registryId="210987654321", imageIds=[{"imageTag": "v1"}]
            )
