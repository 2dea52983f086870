"""Many tenants on one cluster: tag ownership between resources, and EcrTagPolicy grants per namespace.

Each test makes namespaces of its own (served by the session's operator, granted by no policy of the
session) and the policies it needs, deleted afterwards. The attacks are those of a tenant that can
only create, change and delete EcrImageTags in its own namespace (docs/tenancy.md): none of them may
move, delete or learn about another namespace's tags.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import REGION, RunningEmulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for
from tests.plugins.control_plane import fresh_namespace
from tests.plugins.operator_process import TEST_ENV

from .helpers import (
    DRIFT,
    OWN_ACCOUNT,
    SHOWN_ACCOUNT,
    WRITES,
    PolicyApply,
    apply,
    condition,
    eit,
    for_namespaces,
    get,
    ready,
    repository_calls,
    unique,
    wait_for_drift_cycles,
    write_grant,
)

pytestmark = pytest.mark.e2e

OTHER_ACCOUNT = "210987654321"


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
    apply(
        control_plane, eit("first", operated_namespace, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"])
    )
    wait_for("first Ready", lambda: ready(control_plane, operated_namespace, "first", "True", "InSync"))
    apply(
        control_plane,
        eit("second", operated_namespace, repositoryName=repo, source={"tag": "build-2"}, tags=["prod", "mine"]),
    )
    loser = wait_for(
        "second refused", lambda: ready(control_plane, operated_namespace, "second", "False", "TagConflict")
    )
    # Within one namespace the owner is named: the tenant sees its own resources anyway.
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
    # The drift scheduler notices the owner is gone at its next tick and the loser takes the tag over.
    wait_for(
        "second takes over", lambda: ready(control_plane, operated_namespace, "second", "True", "InSync"), timeout=120
    )
    assert tag_digest(ecr_session_client, repo, "prod") == two.digest
    assert ecr_server.control.calls().of("PutImage", repo) == puts + 1


def test_without_a_policy_everything_is_forbidden_without_any_ecr_call(
    control_plane: KubeCluster,
    ungranted_namespace: str,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    """Fail closed: no policy selects the namespace, so not even a read reaches ECR."""
    ns = ungranted_namespace
    repo = unique("e2e/nopolicy")
    ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    before = repository_calls(ecr_server, repo)
    specs = {
        "enforce": {"source": {"tag": "build-1"}, "tags": ["prod"]},
        "observe": {"source": {"tag": "build-1"}, "tags": ["prod"], "mode": "Observe"},
        "delete": {"source": {"tag": "build-1"}, "tags": ["stable"], "deletionPolicy": "Delete"},
    }
    for name, spec in specs.items():
        apply(control_plane, eit(name, ns, repositoryName=repo, **spec))
    for name in specs:
        obj = wait_for(f"{name} Forbidden", functools.partial(ready, control_plane, ns, name, "False", "Forbidden"))
        assert f"no EcrTagPolicy grants namespace {ns} anything" in condition(obj, "Ready")["message"]
    # A deleted resource with deletionPolicy Delete asks the grants too before touching ECR.
    control_plane.kubectl("delete", "ecrimagetag", "delete", "-n", ns, "--timeout=60s")
    assert repository_calls(ecr_server, repo) == before
    assert tag_digest(ecr_session_client, repo, "prod") is None


def test_a_read_grant_is_a_source_never_a_target(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    ns = tenants()
    shared, own = unique("e2e/shared-base"), unique("e2e/team-own")
    base = ecr_seed.push(ecr_session_client, shared, "build-1", "docker", seed=shared)
    # Cross-repository promotion copies no blobs: the target repository has the layers already.
    ecr_seed.ensure_repository(ecr_session_client, own)
    ecr_seed.copy_blobs(ecr_session_client, base, own)
    policies(
        unique("e2e-read"),
        for_namespaces(ns, registries=[{"write": [{"repositories": [own]}], "read": [{"repositories": [shared]}]}]),
    )
    before = repository_calls(ecr_server, shared)
    apply(control_plane, eit("retag-shared", ns, repositoryName=shared, source={"tag": "build-1"}, tags=["latest"]))
    refused = wait_for("target refused", lambda: ready(control_plane, ns, "retag-shared", "False", "Forbidden"))
    message = condition(refused, "Ready")["message"]
    assert f"may not write {shared}:latest in {SHOWN_ACCOUNT}/{REGION}" in message, message
    assert repository_calls(ecr_server, shared) == before  # refused before any ECR call
    apply(
        control_plane,
        eit("promote", ns, repositoryName=own, source={"repositoryName": shared, "tag": "build-1"}, tags=["prod"]),
    )
    wait_for("source served", lambda: ready(control_plane, ns, "promote", "True", "InSync"))
    assert tag_digest(ecr_session_client, own, "prod") == base.digest
    assert tag_digest(ecr_session_client, shared, "latest") is None


def test_a_grant_names_its_account_and_regions(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    """A grant for the operator's own account and region refuses another registryId and an unlisted
    region before any call, so no client is made for either."""
    ns = tenants()
    repo = unique("e2e/located")
    ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    policies(unique("e2e-own"), for_namespaces(ns, registries=[write_grant(repo)]))
    before = repository_calls(ecr_server, repo)
    spec = {"repositoryName": repo, "source": {"tag": "build-1"}, "tags": ["prod"]}
    apply(control_plane, eit("other-account", ns, **spec, registryId=OTHER_ACCOUNT))
    apply(control_plane, eit("other-region", ns, **spec, region="eu-west-3"))
    account = wait_for("account refused", lambda: ready(control_plane, ns, "other-account", "False", "Forbidden"))
    region = wait_for("region refused", lambda: ready(control_plane, ns, "other-region", "False", "Forbidden"))
    for obj, where in ((account, REGION), (region, "eu-west-3")):
        message = condition(obj, "Ready")["message"]
        assert f"no policy grants it registry {SHOWN_ACCOUNT} in {where}" in message, message
        assert OTHER_ACCOUNT not in message
        assert OWN_ACCOUNT not in message
    assert repository_calls(ecr_server, repo) == before
    # The same spec in the granted account and region is served.
    apply(control_plane, eit("own", ns, **spec, registryId=OWN_ACCOUNT, region=REGION))
    wait_for("own Ready", lambda: ready(control_plane, ns, "own", "True", "InSync"))


def test_a_star_stays_inside_one_path_segment(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_session_client: Any,
) -> None:
    ns = tenants()
    team = unique("team-a")
    deeper, sibling = f"{team}b/x", f"{team}b"
    for repo in (deeper, sibling):
        ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    policies(unique("e2e-glob"), for_namespaces(ns, registries=[write_grant(f"{team}*")]))
    spec = {"source": {"tag": "build-1"}, "tags": ["prod"]}
    apply(control_plane, eit("deeper", ns, repositoryName=deeper, **spec))
    apply(control_plane, eit("sibling", ns, repositoryName=sibling, **spec))
    refused = wait_for(f"{deeper} refused", lambda: ready(control_plane, ns, "deeper", "False", "Forbidden"))
    assert f"may not write {deeper}:prod" in condition(refused, "Ready")["message"]
    wait_for(f"{sibling} Ready", lambda: ready(control_plane, ns, "sibling", "True", "InSync"))
    assert tag_digest(ecr_session_client, deeper, "prod") is None


def _flip(what: str, probe: Callable[[], Any], flips: list[tuple[str, float]]) -> None:
    start = time.monotonic()
    wait_for(what, probe, timeout=10)
    flips.append((what, round(time.monotonic() - start, 1)))


def test_a_policy_edit_and_a_namespace_relabel_flip_a_resource_both_ways(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_session_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A grant given or lifted shows within 10 s (the drift scheduler's next tick), both ways."""
    edited, relabelled = tenants(), tenants()
    repo, elsewhere = unique("e2e/flip"), unique("e2e/flip-other")
    ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    spec = {"repositoryName": repo, "source": {"tag": "build-1"}, "tags": ["prod"]}
    flips: list[tuple[str, float]] = []

    # A policy edit: the grant moves to another repository and back.
    name = unique("e2e-edit")
    policies(name, for_namespaces(edited, registries=[write_grant(repo)]))
    apply(control_plane, eit("web", edited, **spec))
    wait_for("granted", lambda: ready(control_plane, edited, "web", "True", "InSync"))
    policies(name, for_namespaces(edited, registries=[write_grant(elsewhere)]))
    _flip("edit lifts", lambda: ready(control_plane, edited, "web", "False", "Forbidden"), flips)
    policies(name, for_namespaces(edited, registries=[write_grant(repo)]))
    _flip("edit gives", lambda: ready(control_plane, edited, "web", "True", "InSync"), flips)

    # A Namespace relabel: the policy selects by a label, taken off and put back.
    label = unique("tenant")
    policies(
        unique("e2e-label"),
        {"namespaceSelector": {"matchLabels": {"e2e.ecrtag.dev/tenant": label}}, "registries": [write_grant(repo)]},
    )
    apply(control_plane, eit("web", relabelled, **{**spec, "tags": ["stable"]}))
    wait_for("unlabelled Forbidden", lambda: ready(control_plane, relabelled, "web", "False", "Forbidden"))
    control_plane.kubectl("label", "namespace", relabelled, f"e2e.ecrtag.dev/tenant={label}")
    _flip("label gives", lambda: ready(control_plane, relabelled, "web", "True", "InSync"), flips)
    control_plane.kubectl("label", "namespace", relabelled, "e2e.ecrtag.dev/tenant-")
    _flip("unlabel lifts", lambda: ready(control_plane, relabelled, "web", "False", "Forbidden"), flips)
    control_plane.kubectl("label", "namespace", relabelled, f"e2e.ecrtag.dev/tenant={label}")
    _flip("relabel gives", lambda: ready(control_plane, relabelled, "web", "True", "InSync"), flips)
    with capsys.disabled():
        print("\nflip seconds: " + ", ".join(f"{w} {s}" for w, s in flips))


def policy_status(cluster: KubeCluster, name: str) -> dict[str, Any]:
    obj = json.loads(cluster.kubectl("get", "ecrtagpolicy", name, "-o", "json").stdout)
    return dict(obj.get("status") or {})


def role_conflict(cluster: KubeCluster, name: str) -> dict[str, Any] | None:
    """The policy's status once its Ready condition says RoleConflict."""
    status = policy_status(cluster, name)
    ready_ = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return status if ready_ and (ready_[0]["status"], ready_[0]["reason"]) == ("False", "RoleConflict") else None


def test_two_roles_for_one_registry_are_a_conflict_on_both_policies(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The operator never picks one of two roles: both policies report it, and the registry is
    refused to the namespace until they agree."""
    ns = tenants()
    repo = unique("e2e/conflict")
    ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    first, second = unique("e2e-role-a"), unique("e2e-role-b")
    for name in (first, second):
        policies(
            name,
            for_namespaces(ns, registries=[write_grant(repo, roleArn=f"arn:aws:iam::{OWN_ACCOUNT}:role/{name}")]),
        )
    before = repository_calls(ecr_server, repo)
    apply(control_plane, eit("web", ns, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"]))
    obj = wait_for("Forbidden", lambda: ready(control_plane, ns, "web", "False", "Forbidden"))
    message = condition(obj, "Ready")["message"]
    assert f"policies name different credentials for {SHOWN_ACCOUNT}/{REGION}" in message, message
    assert "arn:aws:iam" not in message  # the roles are the policies' business, not the tenant's
    for name in (first, second):
        status = wait_for(f"{name} RoleConflict", functools.partial(role_conflict, control_plane, name))
        conflicts = status["conflicts"]
        assert [(c["namespace"], c["registryId"], c["region"]) for c in conflicts] == [(ns, OWN_ACCOUNT, REGION)]
        assert conflicts[0]["policies"] == sorted([first, second])
    with capsys.disabled():
        print("\n" + control_plane.kubectl("get", "ecrtagpolicies", first, second).stdout + message)
    assert repository_calls(ecr_server, repo) == before


def test_a_refused_claim_cannot_squat_another_teams_tag(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    """Issue 13, attack 1: team-b, granted only its own repositories, claims team-a's ``prod`` first
    (so its claim is older); only granted claims count, so team-a's resource owns the tag."""
    team_a, team_b = tenants(), tenants()
    prefix_a, prefix_b = unique("team-a"), unique("team-b")
    repo = f"{prefix_a}/web"
    theirs = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo + "a")
    ecr_seed.push(ecr_session_client, repo, "evil", "docker", seed=repo + "b")
    policies(unique("e2e-team-a"), for_namespaces(team_a, registries=[write_grant(f"{prefix_a}/*")]))
    policies(unique("e2e-team-b"), for_namespaces(team_b, registries=[write_grant(f"{prefix_b}/*")]))
    common = {"repositoryName": repo, "tags": ["prod"], "driftCheckInterval": DRIFT}
    apply(control_plane, eit("squat", team_b, **common, source={"tag": "evil"}))
    squat = wait_for("squat Forbidden", lambda: ready(control_plane, team_b, "squat", "False", "Forbidden"))
    assert f"may not write {repo}:prod" in condition(squat, "Ready")["message"]
    apply(control_plane, eit("web", team_a, **common, source={"tag": "build-1"}))
    wait_for("team-a InSync", lambda: ready(control_plane, team_a, "web", "True", "InSync"))
    assert tag_digest(ecr_session_client, repo, "prod") == theirs.digest
    writes = {op: ecr_server.control.calls().of(op, repo) for op in WRITES}
    assert writes["BatchDeleteImage"] == 0

    wait_for_drift_cycles(ecr_server, operator_process, repo)
    assert {op: ecr_server.control.calls().of(op, repo) for op in WRITES} == writes
    assert tag_digest(ecr_session_client, repo, "prod") == theirs.digest
    assert ready(control_plane, team_a, "web", "True", "InSync")
    assert ready(control_plane, team_b, "squat", "False", "Forbidden")


def test_a_tenant_cannot_delete_a_tag_another_resource_owns(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    """Issue 13, attack 3: both teams may write the shared repository. team-b copies team-a's source
    exactly (the same source is no rival), lists team-a's tags with deletionPolicy Delete, drops
    ``prod``, then deletes its resource: a delete asks who else claims a tag, whatever its source."""
    team_a, team_b = tenants(), tenants()
    repo = unique("e2e/shared")
    image = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo)
    policies(unique("e2e-shared"), for_namespaces(team_a, team_b, registries=[write_grant(repo)]))
    same = {"repositoryName": repo, "source": {"tag": "build-1"}, "driftCheckInterval": DRIFT}
    apply(control_plane, eit("web", team_a, **same, tags=["prod", "stable"]))
    wait_for("team-a InSync", lambda: ready(control_plane, team_a, "web", "True", "InSync"))
    puts = ecr_server.control.calls().of("PutImage", repo)

    apply(control_plane, eit("copy", team_b, **same, tags=["prod", "stable"], deletionPolicy="Delete"))
    wait_for("the copy InSync", lambda: ready(control_plane, team_b, "copy", "True", "InSync"))
    apply(control_plane, eit("copy", team_b, **same, tags=["stable"], deletionPolicy="Delete"))
    wait_for("prod released", lambda: ready(control_plane, team_b, "copy", "True", "InSync"))
    control_plane.kubectl("delete", "ecrimagetag", "copy", "-n", team_b, "--timeout=60s")
    assert get(control_plane, team_b, "copy") is None
    assert ecr_server.control.calls().of("BatchDeleteImage", repo) == 0
    assert tag_digest(ecr_session_client, repo, "prod") == image.digest
    assert tag_digest(ecr_session_client, repo, "stable") == image.digest

    wait_for_drift_cycles(ecr_server, operator_process, repo)
    assert ecr_server.control.calls().of("BatchDeleteImage", repo) == 0
    assert ecr_server.control.calls().of("PutImage", repo) == puts
    assert tag_digest(ecr_session_client, repo, "prod") == image.digest
    assert ready(control_plane, team_a, "web", "True", "InSync")


def test_a_conflict_with_another_namespace_does_not_name_it(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_session_client: Any,
) -> None:
    """Issue 13, attack 8: the owner in another namespace is "another namespace", nowhere named."""
    team_a, team_b = tenants(), tenants()
    repo = unique("e2e/leak")
    owner = ecr_seed.push(ecr_session_client, repo, "build-1", "docker", seed=repo + "1")
    ecr_seed.push(ecr_session_client, repo, "build-2", "docker", seed=repo + "2")
    policies(unique("e2e-leak"), for_namespaces(team_a, team_b, registries=[write_grant(repo)]))
    apply(control_plane, eit("private-name", team_a, repositoryName=repo, source={"tag": "build-1"}, tags=["prod"]))
    owned = wait_for("owner InSync", lambda: ready(control_plane, team_a, "private-name", "True", "InSync"))
    # The oldest claim wins, by creationTimestamp (whole seconds), then namespace/name: the rival
    # comes a second later, so that the random namespace names cannot decide.
    created = datetime.fromisoformat(owned["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    wait_for("a later second", lambda: datetime.now(UTC) >= created + timedelta(seconds=1.1))
    apply(control_plane, eit("web", team_b, repositoryName=repo, source={"tag": "build-2"}, tags=["prod"]))
    loser = wait_for("TagConflict", lambda: ready(control_plane, team_b, "web", "False", "TagConflict"))
    assert "owned by another namespace" in condition(loser, "Ready")["message"]
    assert [t.get("owner") for t in loser["status"]["tags"]] == ["another namespace"]
    events = control_plane.kubectl("get", "events", "-n", team_b, "-o", "json").stdout
    for shown in (json.dumps(loser["status"]), events):
        assert team_a not in shown
        assert "private-name" not in shown
    assert tag_digest(ecr_session_client, repo, "prod") == owner.digest


# An operator of its own with small caps on claims, serving only namespaces made with this prefix (the
# session's operator serves others), so that its caps decide alone.
CAPPED_PREFIX = "capped"
CAPS = {"ECR_TAG_OPERATOR_MAX_CLAIMS_PER_TAG": "2", "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_NAMESPACE": "3"}


@pytest.fixture
def capped_operator(
    control_plane: KubeCluster, ecr_server: RunningEmulator, tmp_path: Path
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        control_plane.kubeconfig_path,
        {**ecr_server.env, **TEST_ENV, **CAPS},
        args=["--namespace", f"{CAPPED_PREFIX}-*"],
        log_path=tmp_path / "capped-operator.log",
    )
    with proc:
        yield proc


def test_claims_past_a_cap_are_refused_and_the_owners_tag_stays(
    control_plane: KubeCluster,
    capped_operator: OperatorProcess,
    policies: PolicyApply,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    """Issue 13, caps on claims: team-b, granted the shared repository too, piles claims on team-a's
    ``prod`` and fills its own namespace. Past each cap its newest claim is refused (TooManyClaims),
    saying which cap and how to raise it and naming no other namespace; team-a's ``prod`` stays on its
    digest and InSync, its writes flat over 3 drift cycles; a place freed goes to the next in line."""
    with contextlib.ExitStack() as stack:
        team_a, team_b = (stack.enter_context(fresh_namespace(control_plane, CAPPED_PREFIX)) for _ in range(2))
        try:
            _claims_past_a_cap(control_plane, team_a, team_b, capped_operator, policies, ecr_server, ecr_session_client)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\ncapped operator log (tail):\n{capped_operator.log_tail(60)}") from None


def _claims_past_a_cap(
    cluster: KubeCluster,
    team_a: str,
    team_b: str,
    operator: OperatorProcess,
    policies: PolicyApply,
    server: RunningEmulator,
    ecr: Any,
) -> None:
    repo = unique("e2e/capped")
    owner = ecr_seed.push(ecr, repo, "build-1", "docker", seed=repo + "a")
    evil = ecr_seed.push(ecr, repo, "evil", "docker", seed=repo + "b")
    policies(unique("e2e-capped"), for_namespaces(team_a, team_b, registries=[write_grant(repo)]))
    common = {"repositoryName": repo, "driftCheckInterval": DRIFT}
    apply(cluster, eit("web", team_a, **common, source={"tag": "build-1"}, tags=["prod"]))
    served = wait_for("team-a InSync", lambda: ready(cluster, team_a, "web", "True", "InSync"))
    # Ownership and the caps queue by creationTimestamp (whole seconds), then namespace/name: team-b
    # comes a second later, so that the random namespace names cannot decide.
    created = datetime.fromisoformat(served["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    wait_for("a later second", lambda: datetime.now(UTC) >= created + timedelta(seconds=1.1))

    evil_spec = {**common, "source": {"tag": "evil"}}
    apply(cluster, eit("b1", team_b, **evil_spec, tags=["prod"]))
    wait_for("b1 TagConflict", lambda: ready(cluster, team_b, "b1", "False", "TagConflict"))
    apply(cluster, eit("b2", team_b, **evil_spec, tags=["prod"]))
    per_tag = wait_for("b2 past the cap per tag", lambda: ready(cluster, team_b, "b2", "False", "TooManyClaims"))
    message = condition(per_tag, "Ready")["message"]
    assert message.startswith(f"{repo}:prod is claimed by 2 older EcrImageTags, the cap per tag"), message
    assert "ECR_TAG_OPERATOR_MAX_CLAIMS_PER_TAG (chart value maxClaimsPerTag)" in message
    # b1 and b2 hold three claims with b3's two: past the cap per namespace of 3, b3 is refused whole.
    apply(cluster, eit("b3", team_b, **evil_spec, tags=["qa", "dev"]))
    per_namespace = wait_for(
        "b3 past the cap per namespace", lambda: ready(cluster, team_b, "b3", "False", "TooManyClaims")
    )
    assert condition(per_namespace, "Ready")["message"].startswith(
        f"namespace {team_b} holds 2 tag claims in older EcrImageTags, and the 2 of this one would pass the cap of 3"
    )
    events = cluster.kubectl("get", "events", "-n", team_b, "-o", "json").stdout
    for shown in (json.dumps(per_tag["status"]), json.dumps(per_namespace["status"]), events):
        assert team_a not in shown
        assert OWN_ACCOUNT not in shown
    assert json.loads(events)["items"], "no events in team-b"
    assert tag_digest(ecr, repo, "prod") == owner.digest
    assert tag_digest(ecr, repo, "qa") is None  # refused before any write

    writes = {op: server.control.calls().of(op, repo) for op in WRITES}
    wait_for_drift_cycles(server, operator, repo)
    assert {op: server.control.calls().of(op, repo) for op in WRITES} == writes
    assert tag_digest(ecr, repo, "prod") == owner.digest
    assert ready(cluster, team_a, "web", "True", "InSync")
    assert ready(cluster, team_b, "b2", "False", "TooManyClaims")
    assert ready(cluster, team_b, "b3", "False", "TooManyClaims")

    # b2 goes: b3 is next in line for its namespace's place, and takes it within a drift tick or two.
    cluster.kubectl("delete", "ecrimagetag", "b2", "-n", team_b)
    wait_for("b3 served", lambda: ready(cluster, team_b, "b3", "True", "InSync"), timeout=60)
    assert tag_digest(ecr, repo, "qa") == evil.digest
    assert tag_digest(ecr, repo, "prod") == owner.digest
