"""IAM as ECR enforces it, on a control plane and ECR emulator of this module's own: the least policy
in docs/iam-policy.json is enough, a policy without PutImage is reported as AccessDenied, and a
namespace's cross-account role is assumed through STS (and only when the operator allows it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import ControlPlane, ensure_binaries, repo_root
from ecr_tag_localenv.ecr_launcher import RunningEmulator, client_env, start_emulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from tests.plugins.ecr_server import aws_client

from .helpers import condition, eit, get, unique

pytestmark = pytest.mark.e2e

POLICY = json.loads((repo_root() / "docs" / "iam-policy.json").read_text())
ROLE_ARN = "arn:aws:iam::123456789012:role/promoter"


def without_put(policy: dict[str, Any]) -> dict[str, Any]:
    statements = [{**s, "Action": [a for a in s["Action"] if a != "ecr:PutImage"]} for s in policy["Statement"]]
    return {**policy, "Statement": statements}


@dataclass
class IamWorld:
    server: RunningEmulator
    cluster: ControlPlane
    admin_ecr: Any
    keys: dict[str, tuple[str, str]]
    tmp: Path

    def operator(self, user: str, **env: str) -> OperatorProcess:
        key_id, secret = self.keys[user]
        base = {**client_env(self.server.endpoint_url), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
        return OperatorProcess(
            self.cluster.kubeconfig_path,
            {**base, "ECR_TAG_OPERATOR_MAX_ATTEMPTS": "2", **env},
            log_path=self.tmp / f"operator-{user}.log",
        )

    def namespace(self, **annotations: str) -> str:
        name = unique("iam")
        self.cluster.kubectl("create", "namespace", name)
        if annotations:
            self.cluster.kubectl("annotate", "namespace", name, *[f"{k}={v}" for k, v in annotations.items()])
        return name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamWorld]:
    tmp = tmp_path_factory.mktemp("iam")
    # The first three requests are not checked: they create the administrator that sets up the rest.
    with start_emulator(["--iam-enforce", "3"], log_dir=tmp) as server, ControlPlane(ensure_binaries()) as cluster:
        iam: Any = aws_client(server.endpoint_url, "iam")
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = (admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
        iam = aws_client(server.endpoint_url, "iam", 1, *admin)
        policies = {
            "least": POLICY,
            "no-put": without_put(POLICY),
            "assume-only": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE_ARN}],
            },
        }
        keys = {"admin": admin}
        for user, policy in policies.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:user/assume-only"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.create_role(RoleName="promoter", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="promoter", PolicyName="ecr", PolicyDocument=json.dumps(POLICY))
        cluster.install_crds(repo_root() / "crds" / "ecrimagetags.ecrtag.dev.yaml")
        yield IamWorld(server, cluster, aws_client(server.endpoint_url, "ecr", 3, *admin), keys, tmp)


def ready_reason(world: IamWorld, ns: str, name: str) -> str | None:
    obj = get(world.cluster, ns, name)
    cond = condition(obj, "Ready")
    return f"{cond['status']}/{cond['reason']}" if cond else None


def test_least_policy_is_enough(world: IamWorld) -> None:
    repo = unique("iam/least")
    img = ecr_seed.push(world.admin_ecr, repo, "build-1", "oci", seed=repo)
    ns = world.namespace()
    with world.operator("least"):
        world.cluster.kubectl(
            "apply", "-f", "-", input=eit("web", ns, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"])
        )
        wait_for("Ready", lambda: ready_reason(world, ns, "web") == "True/InSync")
    assert tag_digest(world.admin_ecr, repo, "prod") == img.digest


def test_policy_without_put_image_reports_access_denied(world: IamWorld) -> None:
    repo = unique("iam/noput")
    ecr_seed.push(world.admin_ecr, repo, "build-1", "docker", seed=repo)
    ns = world.namespace()
    with world.operator("no-put") as op:
        world.cluster.kubectl(
            "apply", "-f", "-", input=eit("web", ns, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"])
        )
        wait_for("AccessDenied", lambda: ready_reason(world, ns, "web") == "False/AccessDenied", timeout=90)
        log = op.log_text()
    obj = get(world.cluster, ns, "web")
    assert obj is not None
    tag = obj["status"]["tags"][0]
    assert (tag["tag"], tag["inSync"], tag["reason"]) == ("prod", False, "AccessDenied")
    failure = obj["status"]["failures"][0]
    assert (failure["operation"], failure["code"], failure["tag"]) == ("PutImage", "AccessDeniedException", "prod")
    assert "ecr:PutImage" in failure["reason"]
    assert "ecr:PutImage" in condition(obj, "Ready")["message"]
    assert world.keys["no-put"][1] not in log  # the secret never reaches the log
    assert tag_digest(world.admin_ecr, repo, "prod") is None


def test_namespace_role_is_assumed_only_when_the_operator_allows_it(world: IamWorld) -> None:
    repo = unique("iam/role")
    img = ecr_seed.push(world.admin_ecr, repo, "build-1", "docker", seed=repo)
    with_role = world.namespace(**{"ecrtag.dev/assume-role-arn": ROLE_ARN})
    without_role = world.namespace()
    spec = {"repositoryName": repo, "source": {"tag": "build-1"}}
    with world.operator("assume-only", ECR_TAG_OPERATOR_ALLOWED_ROLE_ARNS="arn:aws:iam::123456789012:role/*"):
        world.cluster.kubectl("apply", "-f", "-", input=eit("web", with_role, **spec, tags=["prod"]))
        world.cluster.kubectl("apply", "-f", "-", input=eit("web", without_role, **spec, tags=["other"]))
        wait_for("Ready through the role", lambda: ready_reason(world, with_role, "web") == "True/InSync")
        # The operator's own identity may only assume the role: it cannot read ECR itself.
        wait_for("AccessDenied", lambda: ready_reason(world, without_role, "web") == "False/AccessDenied", timeout=90)
    assert tag_digest(world.admin_ecr, repo, "prod") == img.digest
    refused = world.namespace(**{"ecrtag.dev/assume-role-arn": ROLE_ARN})
    with world.operator("assume-only"):  # no allowed role ARNs configured
        world.cluster.kubectl("apply", "-f", "-", input=eit("web", refused, **spec, tags=["third"]))
        wait_for("Forbidden", lambda: ready_reason(world, refused, "web") == "False/Forbidden")
    message = condition(get(world.cluster, refused, "web"), "Ready")["message"]
    assert ROLE_ARN in message
    assert tag_digest(world.admin_ecr, repo, "third") is None
