"""Images made, signed and read by real OCI clients (crane, oras, cosign) through the emulator's registry
face, promoted by the operator on the real API server: nothing of ours writes or reads the images.

The retag is in the same repository: cosign signatures and oras attachments are stored by the subject's
digest (OCI distribution spec, "Listing Referrers"), so they follow a tag the operator moves to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_operator.manifests import OCI_INDEX, OCI_MANIFEST

from .helpers import eit, unique
from .oci_cli import OciClients, OciCommandError, login

pytestmark = pytest.mark.e2e

SBOM_TYPE = "application/spdx+json"
# What cosign 3 stores a signature as: a Sigstore bundle manifest whose subject is the image.
COSIGN_BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tarball(path: Path, files: dict[str, bytes]) -> Path:
    """An uncompressed tarball layer (crane compresses it when pushing) holding ``files``."""
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def exported_files(tar_bytes: bytes) -> dict[str, bytes]:
    """The regular files of a flattened filesystem as `crane export` writes it."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        out: dict[str, bytes] = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                out[member.name.removeprefix("./")] = extracted.read()
        return out


def push_two_platform_index(
    clients: OciClients, ref: str, tmp: Path, os_release: bytes, files: dict[str, bytes]
) -> tuple[str, dict[str, str]]:
    """crane pushes an index of two platforms as ``ref:build-1``: a shared base layer (``os_release``)
    and, per platform of ``files`` (amd64, arm64), a layer holding ``app/arch.txt``. Returns the
    index digest and each platform's child digest."""
    base = layer_tarball(tmp / "base.tar", {"etc/os-release": os_release})
    clients.crane("append", "--oci-empty-base", "-f", str(base), "-t", f"{ref}:base")
    children: dict[str, str] = {}
    for arch, content in files.items():
        layer = layer_tarball(tmp / f"{arch}.tar", {"app/arch.txt": content})
        pushed = clients.crane(
            "mutate", f"{ref}:base", "--append", str(layer), "--set-platform", f"linux/{arch}", "--repo", ref
        )
        children[arch] = pushed.rsplit("@", 1)[1]
    manifests = [arg for arch in files for arg in ("-m", f"{ref}@{children[arch]}")]
    index = clients.crane("index", "append", *manifests, "-t", f"{ref}:build-1").rsplit("@", 1)[1]
    return index, children


def promote(cluster: KubeCluster, namespace: str, name: str, repo: str, source_tag: str, tags: list[str]) -> None:
    cluster.kubectl(
        "apply", "-f", "-", input=eit(name, namespace, repositoryName=repo, source={"tag": source_tag}, tags=tags)
    )
    cluster.kubectl(
        "wait", "--for=condition=Ready", f"ecrimagetag/{name}", "-n", namespace, "--timeout=90s", timeout=100
    )


def test_crane_multi_platform_image_is_retagged_byte_for_byte(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_session_client: Any,
    oci_clients: OciClients,
    tmp_path: Path,
) -> None:
    """crane builds and pushes an OCI index of two platforms; after the operator retags it, crane reads the
    same index and children, byte for byte, by the new tag.

    ECR's image digest is the sha256 of the manifest exactly as pushed, and a tag names that manifest
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-retag.html: retagging puts the same
    manifest under another tag, so its digest does not change).
    """
    repo = unique("e2e/crane")
    ecr_session_client.create_repository(repositoryName=repo)
    registry = login(oci_clients, ecr_session_client)
    ref = f"{registry}/{repo}"

    files = {arch: f"built for {arch} in {repo}\n".encode() for arch in ("amd64", "arm64")}
    index_digest, children = push_two_platform_index(oci_clients, ref, tmp_path, b"NAME=e2e\n", files)
    source_bytes = oci_clients.run("crane", "--insecure", "manifest", f"{ref}:build-1")
    assert sha256(source_bytes) == index_digest
    # The login is what lets crane in: with no credentials the registry answers 401, as ECR does.
    anonymous = OciClients(tmp_path / "anonymous")
    with pytest.raises(OciCommandError, match=r"UNAUTHORIZED|401"):
        anonymous.crane("digest", f"{ref}:build-1")

    promote(control_plane, operated_namespace, "crane", repo, "build-1", ["prod"])

    # The ECR API and the registry face agree on where the tag points.
    assert tag_digest(ecr_session_client, repo, "prod") == index_digest
    assert oci_clients.crane("digest", f"{ref}:prod") == index_digest
    target_bytes = oci_clients.run("crane", "--insecure", "manifest", f"{ref}:prod")
    assert target_bytes == source_bytes
    index = json.loads(target_bytes)
    assert index["mediaType"] == OCI_INDEX
    assert {(m["platform"]["architecture"], m["digest"]) for m in index["manifests"]} == {
        ("amd64", children["amd64"]),
        ("arm64", children["arm64"]),
    }
    for arch, child in children.items():
        assert oci_clients.crane("digest", "--platform", f"linux/{arch}", f"{ref}:prod") == child
        child_bytes = oci_clients.run("crane", "--insecure", "manifest", f"{ref}@{child}")
        assert sha256(child_bytes) == child
        assert json.loads(child_bytes)["mediaType"] == OCI_MANIFEST
        # Every layer and config blob is read back and checked against its digest...
        oci_clients.crane("validate", "--remote", f"{ref}@{child}")
        # ...and the platform's own file is in its filesystem.
        exported = exported_files(oci_clients.run("crane", "--insecure", "export", f"{ref}@{child}", "-"))
        assert exported["app/arch.txt"] == files[arch]
        assert exported["etc/os-release"] == b"NAME=e2e\n"


def test_cosign_signature_and_oras_sbom_follow_the_retagged_image(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_session_client: Any,
    oci_clients: OciClients,
    tmp_path: Path,
) -> None:
    """cosign signs and oras attaches an SBOM to the source image by digest; after the operator moves a tag
    to it, cosign verifies and oras discovers them through the target tag.

    Signatures and attachments are manifests whose `subject` is the image's digest, listed by the
    referrers API, which ECR supports for "signatures, Software Bill of Materials (SBoMs) [...] and
    attestations" (https://docs.aws.amazon.com/AmazonECR/latest/userguide/images.html;
    https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers).
    """
    repo = unique("e2e/signed")
    ecr_session_client.create_repository(repositoryName=repo)
    registry = login(oci_clients, ecr_session_client)
    ref = f"{registry}/{repo}"
    layer = layer_tarball(tmp_path / "app.tar", {"app/hello.txt": repo.encode()})
    digest = oci_clients.crane("append", "--oci-empty-base", "-f", str(layer), "-t", f"{ref}:build-1").rsplit("@", 1)[1]

    keys = tmp_path / "keys"
    other = tmp_path / "other-keys"
    for d in (keys, other):
        d.mkdir()
        oci_clients.cosign("generate-key-pair", cwd=d)
    http = ("--allow-http-registry", "--allow-insecure-registry")
    # Signed by key alone: no Fulcio certificate, no Rekor entry, no TUF signing config (all network).
    oci_clients.cosign(
        "sign", "--key", str(keys / "cosign.key"), "--tlog-upload=false", "--use-signing-config=false", "-y", *http,
        f"{ref}@{digest}",
    )  # fmt: skip
    sbom = tmp_path / "sbom.spdx.json"
    sbom_bytes = json.dumps({"spdxVersion": "SPDX-2.3", "name": repo, "packages": []}).encode()
    sbom.write_bytes(sbom_bytes)
    attached = json.loads(
        oci_clients.oras(
            "attach", "--artifact-type", SBOM_TYPE, "--format", "json", f"{ref}@{digest}", f"{sbom.name}:{SBOM_TYPE}",
            cwd=tmp_path,
        )
    )  # fmt: skip
    sbom_manifest = attached["digest"]

    promote(control_plane, operated_namespace, "signed", repo, "build-1", ["prod"])
    assert tag_digest(ecr_session_client, repo, "prod") == digest

    verify = ("verify", "--insecure-ignore-tlog=true", *http)
    verified = json.loads(oci_clients.cosign(*verify, "--key", str(keys / "cosign.pub"), f"{ref}:prod"))
    claims = [
        (v["critical"]["identity"]["docker-reference"], v["critical"]["image"]["docker-manifest-digest"])
        for v in verified
    ]
    assert claims == [(f"{ref}:prod", digest)]
    with pytest.raises(OciCommandError, match=r"no matching (attestations|signatures)"):
        oci_clients.cosign(*verify, "--key", str(other / "cosign.pub"), f"{ref}:prod")

    discovered = json.loads(oci_clients.oras("discover", "--format", "json", f"{ref}:prod"))
    assert discovered["digest"] == digest
    by_type = {r.get("artifactType"): r["digest"] for r in discovered["referrers"]}
    assert by_type.keys() == {SBOM_TYPE, COSIGN_BUNDLE_TYPE}, discovered
    assert by_type[SBOM_TYPE] == sbom_manifest
    pulled = tmp_path / "pulled"
    oci_clients.oras("pull", "-o", str(pulled), f"{ref}@{sbom_manifest}")
    assert (pulled / sbom.name).read_bytes() == sbom_bytes
