"""Server options that need a process of their own: --ecr-quotas, --iam-enforce, and start-up failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ecr_tag_localenv.ecr_control import FaultRule
from ecr_tag_localenv.ecr_launcher import EmulatorStartError, start_emulator
from ecr_tag_localenv.ecr_seed import ensure_repository, push_docker_image
from tests.plugins.ecr_server import aws_client


def test_ecr_quotas_throttle_put_image_at_ten_per_second(tmp_path: Path) -> None:
    with start_emulator(["--ecr-quotas"], log_dir=tmp_path) as server:
        startup = server.control.faults()
        assert startup.operations == {"PutImage": FaultRule(quota_per_second=10.0, burst=10)}
        client: Any = aws_client(server.endpoint_url, "ecr")
        ensure_repository(client, "quota")
        image = push_docker_image(client, "quota", tag="t0", seed=1)  # one token
        codes = []
        for i in range(1, 16):
            try:
                client.put_image(repositoryName="quota", imageManifest=image.manifest, imageTag=f"t{i}")
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        # 10 tokens at start plus at most a few refilled while 15 calls run; the rest are throttled.
        assert codes.count("ThrottlingException") >= 3, codes
        assert set(codes) == {"ok", "ThrottlingException"}
        assert server.control.calls().faulted["PutImage"] == codes.count("ThrottlingException")
        # Clearing faults goes back to the start-up rules, quota included; other reads are unlimited.
        server.control.set_faults()
        assert server.control.clear_faults() == startup
        for _ in range(30):
            client.describe_repositories()


def test_iam_enforcement_denies_put_image_without_permission(tmp_path: Path) -> None:
    setup_requests = 3  # create_user, put_user_policy, create_access_key
    with start_emulator(["--iam-enforce", str(setup_requests)], log_dir=tmp_path) as server:
        iam: Any = aws_client(server.endpoint_url, "iam")
        iam.create_user(UserName="pusher")
        iam.put_user_policy(
            UserName="pusher",
            PolicyName="no-put",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["ecr:CreateRepository", "ecr:DescribeRepositories"],
                            "Resource": "*",
                        }
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName="pusher")["AccessKey"]
        ecr: Any = aws_client(
            server.endpoint_url,
            "ecr",
            access_key_id=key["AccessKeyId"],
            secret_access_key=key["SecretAccessKey"],
        )
        ecr.create_repository(repositoryName="guarded")
        assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["guarded"]
        with pytest.raises(ClientError) as exc:
            ecr.put_image(repositoryName="guarded", imageManifest="{}", imageTag="t")
        # The JSON error ECR sends (moto's XML one would reach botocore as code "403").
        assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "ecr:PutImage" in exc.value.response["Error"]["Message"]


def test_refuses_to_bind_a_non_loopback_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ecr_tag_localenv.ecr_emulator", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_a_failed_start_reports_the_servers_output(tmp_path: Path) -> None:
    with (
        pytest.raises(EmulatorStartError, match="--iam-enforce must be >= 0"),
        start_emulator(["--iam-enforce", "-1"], log_dir=tmp_path),
    ):
        pass
