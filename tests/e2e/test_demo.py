"""The README's first command, as a newcomer runs it: ``ecr-tag-demo --once`` (``make demo``)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.e2e


def test_demo_once_shows_a_ready_resource_and_its_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ecr_tag_localenv.demo", "--once"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout
    print(out)  # CI's log shows what a newcomer would see
    assert done.returncode == 0, done.stderr[-3000:]
    pushed = re.search(r"pushed demo/web:build-1 = (sha256:[0-9a-f]{64})", out)
    assert pushed, out
    digest = pushed.group(1)
    table = out[out.index("NAME ") :].splitlines()
    assert table[0].split()[:7] == ["NAME", "REPOSITORY", "TAGS", "DIGEST", "READY", "REASON", "MESSAGE"]
    assert table[1].split()[:6] == ["web", "demo/web", '["staging","latest"]', digest, "True", "InSync"]
    status_text = out[out.index("==> status of default/web") :].split("\n", 1)[1].split("==>", 1)[0]
    status = yaml.safe_load(status_text)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "SourceResolved": "True",
        "LayersAvailable": "True",
        "TagsInSync": "True",
    }
    assert status["image"]["digest"] == digest
    assert [p["architecture"] for p in status["image"]["platforms"]] == ["amd64", "arm64"]
    assert status["layerSummary"]["total"] == status["layerSummary"]["available"] == len(status["layers"]) > 0
    assert {t["tag"]: t["digest"] for t in status["tags"]} == {"staging": digest, "latest": digest}
    assert f"in ECR now: staging -> {digest}, latest -> {digest}" in out
    assert "stopping the operator, kube-apiserver, etcd and the ECR emulator" in out
    registry = re.search(r"the emulator's OCI registry is at (127\.0\.0\.1:\d+)", out)
    assert registry, out
    assert f"crane auth login {registry.group(1)} -u AWS -p " in out
    assert f"crane append --insecure -f hello.tar -t {registry.group(1)}/demo/web:mine" in out
    policies = out[out.index("NAME ", out.index("NAME ") + 1) :].splitlines()
    assert policies[0].split()[:3] == ["NAME", "READY", "NAMESPACES"]
    assert policies[1].split()[:3] == ["demo", "True", "1"]
