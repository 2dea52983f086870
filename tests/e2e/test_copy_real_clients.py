"""The real OCI clients read what the operator copied into another account and region: crane builds a
two-platform index in account A's registry (us-east-1), cosign signs it with a key and oras attaches an
SBOM there; one EcrImageTag promotes it into account B's registry in eu-west-1; then crane validates
every child's blobs, cosign verifies the copied signature with the key that signed it in the source,
and cosign and oras list the referrers carried, all against the TARGET registry.

The target's registry name, ``<account>.dkr.ecr.<region>.localhost:PORT``, does not resolve: the clients
reach it through the emulator as an HTTP proxy, which serves a request by its Host, as ECR serves
``<account>.dkr.ecr.<region>.amazonaws.com`` (ECR user guide, "Amazon ECR private registry": a registry
per account and region; authentication with the token of GetAuthorizationToken, whose proxyEndpoint
names it). Signatures and SBOMs are OCI 1.1 referrers (manifests whose ``subject`` is the image), listed
by ListImageReferrers and the registry's referrers API (distribution spec, "Listing Referrers").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_ecr.client import ECRClient

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_accounts import DEFAULT_ACCOUNT, assume_role
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.operator_process import OperatorProcess
from tests.plugins.control_plane import fresh_namespace
from tests.plugins.operator_process import OPERATED_PREFIX, policy_yaml

from .helpers import eit, get, promotion_grants, promotion_spec, unique
from .oci_cli import OciClients, OciCommandError, login
from .test_copy_promotion import DEV_REGION, PROD_REGION, wait_ready
from .test_real_clients import COSIGN_BUNDLE_TYPE, SBOM_TYPE, push_two_platform_index, sha256

pytestmark = pytest.mark.e2e

ACCOUNT_B = "444455556666"
HTTP = ("--allow-http-registry", "--allow-insecure-registry")


def build_signed_index(clients: OciClients, ref: str, tmp: Path, keys: Path) -> tuple[str, dict[str, str], str]:
    """crane pushes a two-platform index as ``ref:build-1``; cosign signs it by key (no Fulcio, no Rekor:
    no network) and oras attaches an SBOM to it. Returns the index digest, each platform's child digest,
    and the SBOM manifest's digest."""
    files = {arch: f"{arch} of {ref}\n".encode() for arch in ("amd64", "arm64")}
    index, children = push_two_platform_index(clients, ref, tmp, b"NAME=copied\n", files)
    clients.cosign("generate-key-pair", cwd=keys)
    clients.cosign(
        "sign", "--key", str(keys / "cosign.key"), "--tlog-upload=false", "--use-signing-config=false", "-y", *HTTP,
        f"{ref}@{index}",
    )  # fmt: skip
    sbom = tmp / "sbom.spdx.json"
    sbom.write_bytes(json.dumps({"spdxVersion": "SPDX-2.3", "name": ref, "packages": []}).encode())
    attached = clients.oras(
        "attach", "--artifact-type", SBOM_TYPE, "--format", "json", f"{ref}@{index}", f"{sbom.name}:{SBOM_TYPE}",
        cwd=tmp,
    )  # fmt: skip
    return index, children, json.loads(attached)["digest"]


def referrers(clients: OciClients, ref: str) -> set[tuple[str, str]]:
    """(artifactType, digest) of every referrer oras discovers for ``ref``."""
    found = json.loads(clients.oras("discover", "--format", "json", ref))
    return {(r["artifactType"], r["digest"]) for r in found.get("referrers") or found.get("manifests") or []}


def test_real_clients_validate_verify_and_discover_what_was_copied_into_another_account_and_region(
    control_plane: KubeCluster,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: ECRClient,
    tmp_path: Path,
) -> None:
    clients = OciClients(tmp_path / "home", proxy=ecr_server.endpoint_url)
    dev_repo, prod_repo = f"dev/{unique('signed')}", f"prod/{unique('signed')}"
    ecr_session_client.create_repository(repositoryName=dev_repo)
    role = assume_role(ecr_server.endpoint_url, ACCOUNT_B, role_name="prod-promoter", region=PROD_REGION)
    prod: Any = role.client("ecr", ecr_server.endpoint_url, PROD_REGION, total_max_attempts=3)
    prod.create_repository(repositoryName=prod_repo)

    source_registry = login(clients, ecr_session_client)
    source = f"{source_registry}/{dev_repo}"
    keys, other = tmp_path / "keys", tmp_path / "other-keys"
    keys.mkdir()
    other.mkdir()
    index, children, sbom = build_signed_index(clients, source, tmp_path, keys)
    carried_in_source = referrers(clients, f"{source}@{index}")
    signatures = {d for t, d in carried_in_source if t == COSIGN_BUNDLE_TYPE}
    assert len(signatures) == 1, f"cosign left {carried_in_source} in the source"
    assert (SBOM_TYPE, sbom) in carried_in_source

    with fresh_namespace(control_plane, OPERATED_PREFIX) as namespace:
        policy = f"copy-clients-{namespace}"
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=policy_yaml(policy, promotion_grants(namespace, ACCOUNT_B, PROD_REGION, role.role_arn, DEV_REGION)),
        )
        try:
            spec = promotion_spec((DEFAULT_ACCOUNT, DEV_REGION, dev_repo), (ACCOUNT_B, PROD_REGION, prod_repo))
            control_plane.kubectl("apply", "-f", "-", input=eit("signed", namespace, **spec))
            try:
                status = wait_ready(control_plane, namespace, "signed", 1, timeout=60)["status"]
            except TimeoutError:
                pytest.fail(f"not Ready: {json.dumps((get(control_plane, namespace, 'signed') or {}).get('status'))}")
        finally:
            control_plane.kubectl("delete", "ecrtagpolicy", policy, "--ignore-not-found", check=False)
    assert status["copy"]["finished"] is True

    target_registry = login(clients, prod)
    assert target_registry.startswith(f"{ACCOUNT_B}.dkr.ecr.{PROD_REGION}."), target_registry
    target = f"{target_registry}/{prod_repo}"
    # The index, byte for byte, under the tag; each child with every blob read back and checked.
    assert clients.crane("digest", f"{target}:v1") == index
    assert clients.run("crane", "--insecure", "manifest", f"{target}:v1") == clients.run(
        "crane", "--insecure", "manifest", f"{source}@{index}"
    )
    for arch, child in children.items():
        assert clients.crane("digest", "--platform", f"linux/{arch}", f"{target}:v1") == child
        assert sha256(clients.run("crane", "--insecure", "manifest", f"{target}@{child}")) == child
        clients.crane("validate", "--remote", f"{target}@{child}")

    # The signature made in the source verifies in the target with the same key, and with no other.
    verify = ("verify", "--insecure-ignore-tlog=true", *HTTP)
    verified = json.loads(clients.cosign(*verify, "--key", str(keys / "cosign.pub"), f"{target}:v1"))
    assert [v["critical"]["image"]["docker-manifest-digest"] for v in verified] == [index]
    clients.cosign("generate-key-pair", cwd=other)
    with pytest.raises(OciCommandError, match=r"no matching (attestations|signatures)"):
        clients.cosign(*verify, "--key", str(other / "cosign.pub"), f"{target}:v1")

    # The referrers carried: what oras discovers in the target is what it discovered in the source, and
    # cosign's tree of the target lists them too.
    carried = referrers(clients, f"{target}@{index}")
    assert carried == carried_in_source
    tree = clients.cosign("tree", *HTTP, f"{target}@{index}")
    for _, digest in carried:
        assert digest in tree, f"cosign tree of the target does not list {digest}:\n{tree}"
    print(f"\n# oras discover {target}@{index}\n{carried}\n# cosign tree\n{tree}")
