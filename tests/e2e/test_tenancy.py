"""Many tenants on one cluster: tag ownership between resources, and repository rules per namespace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for

from .helpers import condition, eit, get, unique

pytestmark = pytest.mark.e2e


def ready(cluster: KubeCluster, ns: str, name: str, status: str, reason: str) -> dict[str, Any] | None:
    obj = get(cluster, ns, name)
    cond = condition(obj, "Ready")
    ok = cond.get("status") == status and cond.get("reason") == reason
    return obj if ok and obj and obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None


def test_conflicting_claims_the_oldest_wins_and_the_next_takes_over(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    repo = unique("e2e/owned")
    one = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo + "1")
    two = ecr_seed.push(ecr_session_client, repo, "build-2", "docker", seed=repo + "2")
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=eit("first", operated_namespace, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"]),
    )
    wait_for("first Ready", lambda: ready(control_plane, operated_namespace, "first", "True", "InSync"))
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=eit("second", operated_namespace, repositoryName=repo, source={"tag": "build-2"}, tags=["prod", "mine"]),
    )
    loser = wait_for(
        "second refused", lambda: ready(control_plane, operated_namespace, "second", "False", "TagConflict")
    )
    assert f"owned by {operated_namespace}/first" in condition(loser, "Ready")["message"]
    tags = {t["tag"]: t for t in loser["status"]["tags"]}
    assert tags["prod"]["owner"] == f"{operated_namespace}/first"
    assert tags["mine"]["inSync"] is True  # an uncontested tag of the loser is still served
    assert tag_digest(ecr_session_client, repo, "prod") == one.digest
    puts = ecr_server.control.calls().of("PutImage", repo)
    events = json.loads(
        control_plane.kubectl(
            "get", "events", "-n", operated_namespace, "-o", "json", "--field-selector", "reason=TagConflict"
        ).stdout
    )
    assert [e["involvedObject"]["name"] for e in events["items"]] == ["second"]

    control_plane.kubectl("delete", "ecrimagetag", "first", "-n", operated_namespace)
    # The drift scheduler notices the owner is gone at its next tick (5 s) and the loser takes the tag over.
    wait_for(
        "second takes over", lambda: ready(control_plane, operated_namespace, "second", "True", "InSync"), timeout=120
    )
    assert tag_digest(ecr_session_client, repo, "prod") == two.digest
    assert ecr_server.control.calls().of("PutImage", repo) == puts + 1


def test_namespace_rules_forbid_other_repositories_without_any_ecr_call(
    control_plane: KubeCluster,
    operated_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    allowed, refused = unique("team-a/web"), unique("team-b/web")
    for repo in (allowed, refused):
        ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    control_plane.kubectl(
        "annotate", "namespace", operated_namespace, "ecrtag.dev/allowed-repositories=team-a/*,shared/base"
    )
    before = ecr_server.control.calls()
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=eit("theirs", operated_namespace, repositoryName=refused, source={"tag": "build-1"}, tags=["p"]),
    )
    obj = wait_for("Forbidden", lambda: ready(control_plane, operated_namespace, "theirs", "False", "Forbidden"))
    assert f"may not use target repository {refused}" in condition(obj, "Ready")["message"]
    after = ecr_server.control.calls()
    for op in ("BatchGetImage", "BatchCheckLayerAvailability", "PutImage"):
        assert after.of(op, refused) == before.of(op, refused), op
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=eit("ours", operated_namespace, repositoryName=allowed, source={"tag": "build-1"}, tags=["p"]),
    )
    wait_for("allowed Ready", lambda: ready(control_plane, operated_namespace, "ours", "True", "InSync"))
    # Widening the rule lets the refused resource through at the drift scheduler's next tick.
    control_plane.kubectl(
        "annotate", "--overwrite", "namespace", operated_namespace, "ecrtag.dev/allowed-repositories=team-a/*,team-b/*"
    )
    wait_for(
        "no longer Forbidden", lambda: ready(control_plane, operated_namespace, "theirs", "True", "InSync"), timeout=120
    )
