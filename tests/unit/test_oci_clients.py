"""Finding the OCI clients hack/build-oci-clients.sh builds: the pinned versions and a missing binary."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_tag_localenv import oci_clients


def test_directory_follows_the_script_pins_and_cache_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ECR_TAG_OPERATOR_CACHE", str(tmp_path))
    monkeypatch.setenv("ORAS_VERSION", "v9.9.9")
    versions = oci_clients.pinned_versions()
    assert versions["oras"] == "v9.9.9"
    assert versions["crane"].startswith("v")
    assert versions["cosign"].startswith("v")
    assert oci_clients.expected_bin_dir() == (
        tmp_path / "bin" / f"crane-{versions['crane']}_oras-v9.9.9_cosign-{versions['cosign']}"
    )


def test_a_missing_client_says_how_to_build_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ECR_TAG_OPERATOR_CACHE", str(tmp_path / "empty"))
    with pytest.raises(oci_clients.OciClientsError, match=r"cosign is not built .*run hack/build-oci-clients\.sh"):
        oci_clients.find_client("cosign")


def test_a_built_client_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ECR_TAG_OPERATOR_CACHE", str(tmp_path))
    bin_dir = oci_clients.expected_bin_dir()
    bin_dir.mkdir(parents=True)
    crane = bin_dir / "crane"
    crane.write_text("#!/bin/sh\n")
    crane.chmod(0o755)
    assert oci_clients.find_client("crane") == crane
