"""The OCI distribution-spec conformance test (opencontainers/distribution-spec, ``conformance``) against the
emulator's registry face, on a fresh emulator of its own.

Built by ``hack/build-oci-conformance.sh`` (``make oci-conformance``). Two runs:

1. every API and data test but sha512: all must pass except what ECR itself does not do (``EXPECTED``);
2. the sha512 ones: all must fail, because ECR's digests are sha256 only.

The pull/push/content-discovery/content-management groups are the suite's API results grouped as its
older releases grouped them into workflows.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from ecr_tag_localenv.ecr_launcher import RunningEmulator, start_emulator
from tests.plugins.ecr_server import aws_client

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-oci-conformance.sh"
REPO1, REPO2 = "conformance/repo1", "conformance/repo2"

PULL = ("Ping", "Blob get", "Blob get range", "Blob head", "Manifest get by digest", "Manifest get by tag")
PULL += ("Manifest head by digest", "Manifest head by tag")
PUSH = ("Blob push", "Blob post only", "Blob post put", "Blob chunked", "Blob streaming", "Blob mount")
PUSH += ("Manifest put by digest", "Manifest put by tag", "Manifest put with subject")
CONTENT_DISCOVERY = ("Tag listing", "Referrers")
CONTENT_MANAGEMENT = ("Tag delete", "Tag delete atomic", "Manifest delete", "Manifest delete atomic")
CONTENT_MANAGEMENT += ("Blob upload cancel", "Blob delete", "Blob delete atomic")

# Results that are not Pass, each because ECR does not do what the suite asks.
EXPECTED: Mapping[str, tuple[str, str]] = {
    # ECR API reference: no operation deletes a layer; BatchDeleteImage deletes images and their layers
    # go with them. The registry face answers 405, which the suite records as unsupported.
    "Blob delete": ("Skip", "ECR API: no layer delete, only BatchDeleteImage"),
    "Blob delete atomic": ("Skip", "ECR API: no layer delete, only BatchDeleteImage"),
    # ECR user guide, "Blob mounting in Amazon ECR": "Amazon ECR attempts mounting only when these
    # parameters are present" (mount and from): a mount without `from` is a new upload (202).
    "Blob anonymous mount": ("Skip", "ECR guide, Blob mounting: only with mount and from"),
    # Off in the suite's defaults (a distribution-spec 1.2 draft feature): ECR's registry takes tags only
    # in the manifest path (ECR guide, "Pushing an image").
    "Manifest put with tag params": ("Disabled", "suite default: draft ?tag= parameters"),
}
EXPECTED_DATA: Mapping[str, tuple[str, str]] = {
    # Run 1 leaves sha512 out; run 2 shows it fails. ECR API (service model): ImageIdentifier.imageDigest
    # "The sha256 digest of the image manifest"; CompleteLayerUpload.layerDigests "The sha256 digest of
    # the image layer".
    "Blobs sha512": ("Disabled", "ECR API: digests are sha256"),
    "Digest Algorithm sha512": ("Disabled", "ECR API: digests are sha256"),
    "Tag Param sha512": ("Disabled", "suite default"),
    # Off in the suite's defaults.
    "Sparse Manifests": ("Disabled", "suite default: manifests naming blobs never pushed"),
    "Tag Param": ("Disabled", "suite default: draft ?tag= parameters"),
}
# Individual tests that skip (the suite's answer to "unsupported") for the reasons above.
EXPECTED_SKIPPED_TESTS = frozenset({"blob-delete", "blob-mount-anonymous"})


def conformance_binary() -> Path:
    script = BUILD_SCRIPT.read_text()
    match = re.search(r'^CONFORMANCE_VERSION="\$\{CONFORMANCE_VERSION:-([^}]+)\}"', script, re.MULTILINE)
    assert match is not None, f"no CONFORMANCE_VERSION default in {BUILD_SCRIPT}"
    version = os.environ.get("CONFORMANCE_VERSION") or match.group(1)
    explicit = os.environ.get("ECR_TAG_OPERATOR_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(explicit) if explicit else (Path(xdg) if xdg else Path.home() / ".cache") / "ecr-tag-operator"
    binary = cache / "bin" / f"oci-conformance-{version}" / "oci-conformance"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run hack/build-oci-conformance.sh (or make oci-conformance)", pytrace=False)
    return binary


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    apis: Mapping[str, str]
    data: Mapping[str, str]
    tests: list[tuple[str, str]]
    """(test name, passed/failure/skipped) from junit.xml."""

    def table(self) -> str:
        lines = [f"{name:32} {status}" for name, status in sorted(self.apis.items())]
        lines += [f"data: {name:26} {status}" for name, status in sorted(self.data.items())]
        return "\n".join(lines)


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with start_emulator() as running:
        yield running


def _run(emulator: RunningEmulator, results: Path, **settings: str) -> Run:
    client: ECRClient = aws_client(emulator.endpoint_url, "ecr")
    emulator.control.reset_all()
    for repository in (REPO1, REPO2):
        client.create_repository(repositoryName=repository)
    client.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")  # so "Blob mount" can pass
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/"),
        "OCI_REGISTRY": emulator.registry,
        "OCI_TLS": "disabled",
        "OCI_REPO1": REPO1,
        "OCI_REPO2": REPO2,
        "OCI_USERNAME": user,
        "OCI_PASSWORD": password,
        "OCI_RESULTS_DIR": str(results),
        "OCI_API_BLOBS_UPLOAD_CANCEL": "true",  # off by default; the face implements it
        **settings,
    }
    done = subprocess.run(
        [str(conformance_binary())], env=env, cwd=results.parent, capture_output=True, text=True, timeout=600
    )
    report = results / "results.yaml"
    assert report.exists(), f"no results.yaml; exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    parsed = yaml.safe_load(report.read_text())
    # The report is written by the suite we just ran, on this machine.
    cases = ET.parse(results / "junit.xml").getroot().iter("testcase")  # noqa: S314
    tests = [(str(case.get("name")), str(case.get("status"))) for case in cases]
    return Run(done.returncode, done.stdout, parsed["apis"], parsed["data"], tests)


@pytest.fixture(scope="module")
def without_sha512(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(emulator, tmp_path_factory.mktemp("conformance") / "results", OCI_DATA_SHA512="false")


def test_pull_and_push_pass_completely(without_sha512: Run) -> None:
    """OCI spec "Pull" and "Push" conformance: every pull and push API the suite has passes."""
    table = without_sha512.table()
    assert {name: without_sha512.apis[name] for name in PULL} == dict.fromkeys(PULL, "Pass"), table
    assert {name: without_sha512.apis[name] for name in PUSH} == dict.fromkeys(PUSH, "Pass"), table


def test_content_discovery_and_management_match_ecr(without_sha512: Run) -> None:
    """OCI spec "Content Discovery" and "Content Management": Pass, except where ECR does not do it (EXPECTED,
    each with the ECR document that says so)."""
    table = without_sha512.table()
    for name in CONTENT_DISCOVERY + CONTENT_MANAGEMENT:
        assert without_sha512.apis[name] == EXPECTED.get(name, ("Pass", ""))[0], f"{name}\n{table}"


def test_every_other_result_passes_and_nothing_else_is_skipped(without_sha512: Run) -> None:
    """The whole table: Pass everywhere but EXPECTED / EXPECTED_DATA; no test fails; skipped tests are only
    the unsupported ones named in EXPECTED_SKIPPED_TESTS; the suite's exit code says pass."""
    table = without_sha512.table()
    want_apis = {name: EXPECTED.get(name, ("Pass", ""))[0] for name in without_sha512.apis}
    assert dict(without_sha512.apis) == want_apis, table
    want_data = {name: EXPECTED_DATA.get(name, ("Pass", ""))[0] for name in without_sha512.data}
    assert dict(without_sha512.data) == want_data, table
    failed = [name for name, status in without_sha512.tests if status == "failure"]
    assert failed == [], table
    skipped = {name.rsplit("/", 1)[-1] for name, status in without_sha512.tests if status == "skipped"}
    assert skipped <= EXPECTED_SKIPPED_TESTS, skipped
    assert sum(status == "passed" for _, status in without_sha512.tests) > 400
    assert without_sha512.returncode == 0, without_sha512.stdout[-3000:]
    print("\n" + table)


def test_sha512_content_is_refused_as_ecr_does(emulator: RunningEmulator, tmp_path: Path) -> None:
    """ECR API (service model): "The sha256 digest of the image manifest" / "of the image layer": with sha512
    data on, exactly the sha512 tests fail, and the rest still pass."""
    run = _run(emulator, tmp_path / "results")
    failed = [name for name, status in run.tests if status == "failure"]
    assert failed, "sha512 content was accepted; ECR's digests are sha256"
    assert [name for name in failed if "sha512" not in name] == []
    assert run.data["Blobs sha512"] == "FAIL"
    assert run.data["Digest Algorithm sha512"] == "FAIL"
    assert run.data["Blobs sha256"] == "Pass"
