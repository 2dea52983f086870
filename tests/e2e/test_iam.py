"""IAM as ECR enforces it, on a control plane and ECR emulator of this module's own: the least policy
in docs/iam-policy.json is enough, a policy without PutImage is reported as AccessDenied, and the role
an EcrTagPolicy names for a registry is assumed through STS for the namespaces it grants (a namespace
cannot choose one)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import ControlPlane, ensure_binaries, repo_root
from ecr_tag_localenv.ecr_launcher import REGION, RunningEmulator, client_env, start_emulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from tests.plugins.ecr_server import aws_client
from tests.plugins.operator_process import policy_yaml

from .helpers import condition, eit, get, unique

pytestmark = pytest.mark.e2e

# The own-account policy is written for one account and region: this emulator's.
POLICY = json.loads(
    (repo_root() / "docs" / "iam-policy.json")
    .read_text()
    .replace(":REGION:", f":{REGION}:")
    .replace(":ACCOUNT:", ":123456789012:")
)
ROLE_ARN = "arn:aws:iam::123456789012:role/promoter"
ASSUME_ONLY = json.loads((repo_root() / "docs" / "iam-policy-assume-only.json").read_text())


def assume_only(role_arn: str) -> dict[str, Any]:
    """docs/iam-policy-assume-only.json for one role: STS only, no ECR action at all."""
    statements = [{**s, "Resource": [role_arn]} for s in ASSUME_ONLY["Statement"]]
    assert all(a.startswith("sts:") for s in statements for a in s["Action"]), statements
    return {**ASSUME_ONLY, "Statement": statements}


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

    def namespace(self, *registries: dict[str, Any]) -> str:
        """A new namespace, and an EcrTagPolicy of its own granting it ``registries`` (none: no policy)."""
        name = unique("iam")
        self.cluster.kubectl("create", "namespace", name)
        if registries:
            spec = {"namespaces": [name], "registries": list(registries)}
            self.cluster.kubectl("apply", "-f", "-", input=policy_yaml(name, spec))
        return name

    def assumed_sessions(self) -> list[dict[str, Any]]:
        """The AssumeRole calls moto's STS answered (its model data: role ARN and session name)."""
        with urllib.request.urlopen(f"{self.server.endpoint_url}/moto-api/data.json", timeout=10) as resp:  # noqa: S310 - loopback only
            data = json.loads(resp.read())
        return list(data.get("sts", {}).get("AssumedRole", []))


def write_grant(repository: str, **entry: Any) -> dict[str, Any]:
    """A registry entry of the operator's own account and region granting write on ``repository``."""
    return {**entry, "write": [{"repositories": [repository]}]}


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
            "assume-only": assume_only(ROLE_ARN),
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
                    "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                }
            ],
        }
        iam.create_role(RoleName="promoter", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="promoter", PolicyName="ecr", PolicyDocument=json.dumps(POLICY))
        for crd in ("ecrimagetags.ecrtag.dev.yaml", "ecrtagpolicies.ecrtag.dev.yaml"):
            cluster.install_crds(repo_root() / "crds" / crd)
        yield IamWorld(server, cluster, aws_client(server.endpoint_url, "ecr", 3, *admin), keys, tmp)


def ready_reason(world: IamWorld, ns: str, name: str) -> str | None:
    obj = get(world.cluster, ns, name)
    cond = condition(obj, "Ready")
    return f"{cond['status']}/{cond['reason']}" if cond else None


def wait_reason(world: IamWorld, op: OperatorProcess, ns: str, name: str, want: str, timeout: float = 90) -> None:
    """Until the resource's Ready is ``want`` (status/reason); a timeout shows its status and the log."""
    try:
        wait_for(f"{ns}/{name} {want}", lambda: ready_reason(world, ns, name) == want, timeout=timeout)
    except TimeoutError as exc:
        obj = get(world.cluster, ns, name) or {}
        raise AssertionError(f"{exc}\nstatus: {obj.get('status')}\noperator log:\n{op.log_tail(40)}") from None


def test_least_policy_is_enough(world: IamWorld) -> None:
    repo = unique("iam/least")
    img = ecr_seed.push(world.admin_ecr, repo, "build-1", "oci", seed=repo)
    ns = world.namespace(write_grant(repo))
    with world.operator("least") as op:
        world.cluster.kubectl(
            "apply", "-f", "-", input=eit("web", ns, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"])
        )
        wait_reason(world, op, ns, "web", "True/InSync")
    assert tag_digest(world.admin_ecr, repo, "prod") == img.digest


def test_policy_without_put_image_reports_access_denied(world: IamWorld) -> None:
    repo = unique("iam/noput")
    ecr_seed.push(world.admin_ecr, repo, "build-1", "docker", seed=repo)
    ns = world.namespace(write_grant(repo))
    with world.operator("no-put") as op:
        world.cluster.kubectl(
            "apply", "-f", "-", input=eit("web", ns, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"])
        )
        wait_reason(world, op, ns, "web", "False/AccessDenied")
        log = op.log_text()
    obj = get(world.cluster, ns, "web")
    assert obj is not None, obj
    assert obj["status"]["failures"], obj["status"]
    tag = obj["status"]["tags"][0]
    assert (tag["tag"], tag["inSync"], tag["reason"]) == ("prod", False, "AccessDenied")
    failure = obj["status"]["failures"][0]
    assert (failure["operation"], failure["code"], failure["tag"]) == ("PutImage", "AccessDeniedException", "prod")
    assert "ecr:PutImage" in failure["reason"]
    assert "ecr:PutImage" in condition(obj, "Ready")["message"]
    assert world.keys["no-put"][1] not in log  # the secret never reaches the log
    assert tag_digest(world.admin_ecr, repo, "prod") is None


def test_the_policys_role_is_assumed_for_the_namespaces_it_grants(world: IamWorld) -> None:
    """The operator's identity may only assume the role (docs/iam-policy-assume-only.json). A namespace
    whose policy names the role for the registry is served through it; one whose policy names no role
    gets the operator's own credentials, which ECR refuses; one that no policy grants is Forbidden and
    makes no STS call. Each session is named ``eit.<namespace>`` (moto's STS keeps the name, in the
    assumed-role ARN; it accepts SourceIdentity and Tags but keeps neither, so they are not asserted
    here)."""
    repo = unique("iam/role")
    img = ecr_seed.push(world.admin_ecr, repo, "build-1", "docker", seed=repo)
    with_role = world.namespace(write_grant(repo, roleArn=ROLE_ARN))
    without_role = world.namespace(write_grant(repo))
    refused = world.namespace()
    spec = {"repositoryName": repo, "source": {"tag": "build-1"}}
    before = len(world.assumed_sessions())
    with world.operator("assume-only") as op:
        world.cluster.kubectl("apply", "-f", "-", input=eit("web", with_role, **spec, tags=["prod"]))
        world.cluster.kubectl("apply", "-f", "-", input=eit("web", without_role, **spec, tags=["other"]))
        world.cluster.kubectl("apply", "-f", "-", input=eit("web", refused, **spec, tags=["third"]))
        wait_reason(world, op, with_role, "web", "True/InSync")
        # The operator's own identity may only assume the role: it cannot read ECR itself.
        wait_reason(world, op, without_role, "web", "False/AccessDenied")
        wait_reason(world, op, refused, "web", "False/Forbidden")
    assert tag_digest(world.admin_ecr, repo, "prod") == img.digest
    assert tag_digest(world.admin_ecr, repo, "other") is None
    assert tag_digest(world.admin_ecr, repo, "third") is None
    message = condition(get(world.cluster, refused, "web"), "Ready")["message"]
    assert f"no EcrTagPolicy grants namespace {refused} anything" in message
    sessions = world.assumed_sessions()[before:]
    assert {(s["role_arn"], s["session_name"]) for s in sessions} == {(ROLE_ARN, f"eit.{with_role}")}
    assert all(s["arn"] == f"arn:aws:sts::123456789012:assumed-role/promoter/eit.{with_role}" for s in sessions)
