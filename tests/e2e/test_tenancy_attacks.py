"""Issue 13's attacks 2, 4, 5, 6 and 7, as a hostile tenant would try them on the real API server.

team-b can only create, change and delete EcrImageTags in its own namespace; team-a has one resource
that owns ``prod``. Each attack must fail to hurt team-a: its ``prod`` stays on its digest and
``InSync``, and the emulator's PutImage and BatchDeleteImage counts for it stay flat over 3 drift
cycles (or, for fairness, team-a's change is served ahead of team-b's backlog). Attacks 1, 3 and 8
and the caps on claims are in test_tenancy.py.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_localenv.ecr_launcher import RunningEmulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for

from .helpers import (
    DRIFT,
    OWN_ACCOUNT,
    SHOWN_ACCOUNT,
    PolicyApply,
    apply,
    condition,
    drift_mark,
    eit,
    for_namespaces,
    is_ready,
    metric_sum,
    ready,
    repository_calls,
    resources,
    unique,
    wait_for_drift_cycles,
    write_grant,
    writes_to,
)

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class TeamA:
    """team-a's resource ``web`` in its own namespace, owning ``prod`` of its repository."""

    namespace: str
    repository: str
    digest: str


def team_a_owns_prod(
    cluster: KubeCluster, namespace: str, repository: str, ecr: Any, policies: PolicyApply, shared_with: str = ""
) -> TeamA:
    """team-a's ``prod`` served, its repository granted to team-a (and to ``shared_with``)."""
    image = ecr_seed.push(ecr, repository, "build-1", "docker", seed=repository + "a")
    namespaces = [namespace, shared_with] if shared_with else [namespace]
    policies(unique("e2e-team-a"), for_namespaces(*namespaces, registries=[write_grant(repository)]))
    spec = {"repositoryName": repository, "source": {"tag": "build-1"}, "tags": ["prod"], "driftCheckInterval": DRIFT}
    apply(cluster, eit("web", namespace, **spec))
    wait_for("team-a InSync", lambda: ready(cluster, namespace, "web", "True", "InSync"))
    assert tag_digest(ecr, repository, "prod") == image.digest
    return TeamA(namespace, repository, image.digest)


def assert_unhurt(cluster: KubeCluster, team_a: TeamA, ecr: Any) -> None:
    assert tag_digest(ecr, team_a.repository, "prod") == team_a.digest
    assert ready(cluster, team_a.namespace, "web", "True", "InSync"), "team-a's web is no longer InSync"


def a_later_second(obj: dict[str, Any] | None) -> None:
    """Until a second after ``obj``'s creation: ownership queues claims by creationTimestamp (whole
    seconds), then namespace/name, so that the random namespace names cannot decide."""
    assert obj is not None
    created = datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    wait_for("a later second", lambda: datetime.now(UTC) >= created + timedelta(seconds=1.1))


def manifests(*docs: str) -> str:
    return "---\n".join(docs)


def test_the_own_account_written_out_is_the_same_tag(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
) -> None:
    """Attack 2, aliasing: team-b, granted the same repository and tag (a real rival, newer), names
    ``prod`` with ``registryId`` set to the operator's own account written out, and another source.
    The claim key is the effective account, so team-b sees team-a's claim and never writes."""
    team_a_ns, team_b = tenants(), tenants()
    repo = unique("e2e/alias")
    team_a = team_a_owns_prod(control_plane, team_a_ns, repo, ecr_session_client, policies, shared_with=team_b)
    ecr_seed.push(ecr_session_client, repo, "evil", "docker", seed=repo + "b")
    a_later_second(ready(control_plane, team_a_ns, "web", "True", "InSync"))
    writes = writes_to(ecr_server, repo)
    mark = drift_mark(ecr_server, operator_process, repo)

    rival = {"repositoryName": repo, "registryId": OWN_ACCOUNT, "source": {"tag": "evil"}, "tags": ["prod"]}
    apply(control_plane, eit("web", team_b, **rival, driftCheckInterval=DRIFT))
    loser = wait_for("team-b TagConflict", lambda: ready(control_plane, team_b, "web", "False", "TagConflict"))
    message = condition(loser, "Ready")["message"]
    assert "owned by another namespace" in message, message
    assert team_a_ns not in json.dumps(loser["status"])
    assert writes_to(ecr_server, repo) == writes
    assert_unhurt(control_plane, team_a, ecr_session_client)

    # Both resources check the repository every 30 s: the flapping of the reproduction (6 PutImage in
    # 3 cycles) would show here.
    wait_for_drift_cycles(ecr_server, operator_process, repo, readers=2, since=mark)
    assert writes_to(ecr_server, repo) == writes
    assert_unhurt(control_plane, team_a, ecr_session_client)
    assert ready(control_plane, team_b, "web", "False", "TagConflict")


# Regions no policy grants: made up (the CRD admits any name of a region's shape) and real ones.
ATTACK_REGIONS = [f"xx-fake-{i}" for i in range(1, 21)] + [
    "eu-west-3",
    "ap-south-2",
    "sa-east-1",
    "me-central-1",
    "af-south-1",
]
CLIENTS = "ecr_tag_operator_ecr_clients"
DEFERRED = "ecr_tag_operator_deferred_changes"


def rss_bytes(operator: OperatorProcess) -> int:
    """The operator process's resident set (Linux /proc), what the chart's memory limit bounds."""
    assert operator.process is not None
    with open(f"/proc/{operator.process.pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib * 1024


def cpu_seconds(operator: OperatorProcess) -> float:
    """User and system CPU the operator process has used (Linux /proc)."""
    assert operator.process is not None
    with open(f"/proc/{operator.process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_specs_naming_ungranted_regions_make_no_client(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Attack 5, memory by region: team-b, granted its repository in the operator's region only,
    creates 25 EcrImageTags whose target or source names another region (a boto3 client each, ~9 MiB,
    before the fix: past the chart's 256 MiB limit). Each is Forbidden naming its region, the operator
    keeps no more AWS clients than before, and its RSS grows by far less than one client per spec."""
    team_a_ns, team_b = tenants(), tenants()
    team_a = team_a_owns_prod(control_plane, team_a_ns, unique("e2e/regions-a"), ecr_session_client, policies)
    own = unique("e2e/regions-b")
    ecr_seed.push(ecr_session_client, own, "build-1", "docker", seed=own)
    policies(unique("e2e-team-b"), for_namespaces(team_b, registries=[write_grant(own)]))
    writes = writes_to(ecr_server, team_a.repository)
    before = repository_calls(ecr_server, own)
    clients = metric_sum(operator_process.metrics(), CLIENTS)
    rss = rss_bytes(operator_process)
    mark = drift_mark(ecr_server, operator_process, team_a.repository)

    docs = []
    for i, region in enumerate(ATTACK_REGIONS):
        # Half name the target's region, half a source in that region promoted into the granted one.
        where = {"region": region} if i % 2 == 0 else {}
        source = {"tag": "build-1"} | ({} if i % 2 == 0 else {"region": region})
        docs.append(eit(f"r{i}", team_b, repositoryName=own, source=source, tags=["prod"], **where))
    apply(control_plane, manifests(*docs))
    for i, region in enumerate(ATTACK_REGIONS):
        obj = wait_for(f"r{i} Forbidden", lambda i=i: ready(control_plane, team_b, f"r{i}", "False", "Forbidden"))
        message = condition(obj, "Ready")["message"]
        assert f"no policy grants it registry {SHOWN_ACCOUNT} in {region}" in message, message
    after = metric_sum(operator_process.metrics(), CLIENTS)
    grown = rss_bytes(operator_process) - rss
    with capsys.disabled():
        print(f"\nclients {clients:.0f} -> {after:.0f}; RSS {rss / 2**20:.0f} MiB, +{grown / 2**20:.1f} MiB")
    assert clients >= 1, f"no {CLIENTS} gauge, or no client yet though team-a was served"
    assert after == clients
    assert grown < 64 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB for 25 refused specs"
    assert repository_calls(ecr_server, own) == before  # refused before any call

    wait_for_drift_cycles(ecr_server, operator_process, team_a.repository, since=mark)
    assert writes_to(ecr_server, team_a.repository) == writes
    assert_unhurt(control_plane, team_a, ecr_session_client)
    assert metric_sum(operator_process.metrics(), CLIENTS) == clients


# team-b's backlog: resources x tags PutImages of one image, queued on the operator's own PutImage
# rate (its default 10/s, which the tests leave; the emulator has no quota of its own): about 40 s.
# ECR's service quotas page: "Rate of PutImage requests" 10 per second, "Tags per image" 1,000.
BACKLOG_RESOURCES = 20
BACKLOG_TAGS = 20


def test_one_namespaces_backlog_does_not_starve_anothers_change(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    operator_process: OperatorProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Attack 6, fairness: team-b queues 400 PutImages; team-a then changes its source. PutImage
    tokens go round-robin to the namespaces waiting, so team-a's change is served while team-b still
    has resources waiting (an order, not a time), and team-b converges afterwards."""
    team_a_ns, team_b = tenants(), tenants()
    team_a = team_a_owns_prod(control_plane, team_a_ns, unique("e2e/fair-a"), ecr_session_client, policies)
    second = ecr_seed.push(ecr_session_client, team_a.repository, "build-2", "docker", seed=team_a.repository + "2")
    own = unique("e2e/fair-b")
    ecr_seed.push(ecr_session_client, own, "build-1", "docker", seed=own)
    policies(unique("e2e-team-b"), for_namespaces(team_b, registries=[write_grant(own)]))
    total = BACKLOG_RESOURCES * BACKLOG_TAGS
    docs = [
        eit(
            f"b{i}",
            team_b,
            repositoryName=own,
            source={"tag": "build-1"},
            tags=[f"b{i}-{j}" for j in range(BACKLOG_TAGS)],
        )
        for i in range(BACKLOG_RESOURCES)
    ]
    apply(control_plane, manifests(*docs))
    wait_for("team-b's backlog flowing", lambda: ecr_server.control.calls().of("PutImage", own) >= 20, timeout=120)

    started = time.monotonic()
    apply(
        control_plane,
        eit(
            "web",
            team_a_ns,
            repositoryName=team_a.repository,
            source={"tag": "build-2"},
            tags=["prod"],
            driftCheckInterval=DRIFT,
        ),
    )
    wait_for(
        "team-a's change Ready",
        lambda: (
            ready(control_plane, team_a_ns, "web", "True", "InSync")
            and tag_digest(ecr_session_client, team_a.repository, "prod") == second.digest
        ),
        timeout=120,
    )
    served = time.monotonic() - started
    waiting = [o["metadata"]["name"] for o in resources(control_plane, team_b) if not is_ready(o)]
    written = ecr_server.control.calls().of("PutImage", own)
    with capsys.disabled():
        print(f"\nteam-a served in {served:.1f} s; team-b then {written}/{total} PutImage, {len(waiting)} waiting")
    assert waiting, "team-b's backlog was through before team-a's change: the backlog proves nothing"
    assert written < total

    deferred = [metric_sum(operator_process.metrics(), DEFERRED)]

    def converged() -> bool:
        deferred.append(metric_sum(operator_process.metrics(), DEFERRED))
        return all(is_ready(o) for o in resources(control_plane, team_b))

    wait_for("team-b converged", converged, timeout=total / 10 * 3 + 120, every=2.0)
    assert ecr_server.control.calls().of("PutImage", own) >= total
    # 20 resources against 16 slots: some waited in the drift scheduler, and none is left there once
    # their statuses are stored (a change left deferred would be picked at every tick for good).
    assert max(deferred) > 0
    wait_for("no change left deferred", lambda: metric_sum(operator_process.metrics(), DEFERRED) == 0, timeout=60)


# A source index far past what status may list: its status must stay well under etcd's 1.5 MiB.
WIDE_CHILDREN = 2000
STATUS_BOUND = 64 * 1024


def test_an_index_of_thousands_of_children_keeps_a_bounded_status(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Attack 7, unbounded objects: team-b tags an OCI index of 2,000 children and checks it every
    30 s. Its status lists at most the capped platforms, with platformCount and platformsTruncated,
    under 64 KiB. The children are pushed first: botocore's ECR model lists
    ReferencedImagesNotFoundException for PutImage ("The manifest list is referencing an image that
    does not exist"); the index (about 430 KB) is under its ImageManifest max of 4,194,304."""
    team_a_ns, team_b = tenants(), tenants()
    team_a = team_a_owns_prod(control_plane, team_a_ns, unique("e2e/wide-a"), ecr_session_client, policies)
    own = unique("e2e/wide-b")
    wide = ecr_seed.push_wide_index(ecr_session_client, own, "wide", WIDE_CHILDREN, seed=own)
    policies(unique("e2e-team-b"), for_namespaces(team_b, registries=[write_grant(own)]))
    writes = writes_to(ecr_server, team_a.repository)
    spec = {"repositoryName": own, "source": {"tag": "wide"}, "tags": ["latest"], "driftCheckInterval": DRIFT}
    mark = drift_mark(ecr_server, operator_process, team_a.repository)
    apply(control_plane, eit("wide", team_b, **spec))

    def bounded(obj: dict[str, Any] | None) -> int:
        assert obj is not None
        size = len(json.dumps(obj["status"]))
        image = obj["status"]["image"]
        assert image["digest"] == wide.digest
        assert image["platformCount"] == WIDE_CHILDREN
        assert image["platformsTruncated"] is True
        assert 0 < len(image["platforms"]) < WIDE_CHILDREN
        assert size < STATUS_BOUND, f"status of {size} bytes"
        return size

    obj = wait_for("the wide index InSync", lambda: ready(control_plane, team_b, "wide", "True", "InSync"), timeout=180)
    size = bounded(obj)
    assert tag_digest(ecr_session_client, own, "latest") == wide.digest
    with capsys.disabled():
        print(
            f"\nstatus of a {WIDE_CHILDREN}-child index: {size} bytes, {len(obj['status']['image']['platforms'])} listed"
        )

    wait_for_drift_cycles(ecr_server, operator_process, team_a.repository, since=mark)
    assert writes_to(ecr_server, team_a.repository) == writes
    assert_unhurt(control_plane, team_a, ecr_session_client)
    bounded(ready(control_plane, team_b, "wide", "True", "InSync"))


# The chart's livenessProbe: timeoutSeconds 5 (charts/ecr-tag-operator/templates/deployment.yaml).
PROBE_TIMEOUT = 5.0
SHARED_RESOURCES = 150
SHARED_TAGS = 20


@dataclass
class LivenessPoller:
    """GETs the operator's liveness endpoint every half second on a thread of its own, as the kubelet
    would, and keeps each answer's latency (None for an error or a timeout)."""

    url: str
    answers: list[float | None] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=PROBE_TIMEOUT) as resp:  # noqa: S310 - loopback
                    self.answers.append(time.monotonic() - started if resp.status == 200 else None)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                self.answers.append(None)
            self.stop.wait(0.5)  # the polling interval


@contextmanager
def polling_liveness(operator: OperatorProcess) -> Iterator[LivenessPoller]:
    poller = LivenessPoller(f"http://127.0.0.1:{operator.liveness_port}/healthz")
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    try:
        yield poller
    finally:
        poller.stop.set()
        thread.join(timeout=PROBE_TIMEOUT + 1)


def test_many_claims_on_few_tags_keep_the_operator_live(
    control_plane: KubeCluster,
    tenants: Callable[[], str],
    policies: PolicyApply,
    operator_process: OperatorProcess,
    ecr_server: RunningEmulator,
    ecr_session_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Attack 4, a quadratic tick on the event loop: team-b creates 150 EcrImageTags that all claim the
    same 20 tags of one repository, with three rival sources (3,000 claims, past the cap of 50 per
    tag), then deletes them all (every owner gone at once). Throughout, the liveness endpoint (on kopf's event loop, like the drift
    scheduler's tick) answers every probe within the chart's probe timeout, and team-a's ``prod``
    stays put. A size an e2e test can afford: the old scan's cost showed past a thousand resources
    (46 s of CPU per tick), which benchmarks/tenancy.py measures."""
    team_a_ns, team_b = tenants(), tenants()
    team_a = team_a_owns_prod(control_plane, team_a_ns, unique("e2e/shared-a"), ecr_session_client, policies)
    own = unique("e2e/shared-b")
    for k in range(3):
        ecr_seed.push(ecr_session_client, own, f"build-{k}", "docker", seed=f"{own}{k}")
    policies(unique("e2e-team-b"), for_namespaces(team_b, registries=[write_grant(own)]))
    writes = writes_to(ecr_server, team_a.repository)
    tags = [f"t{j}" for j in range(SHARED_TAGS)]
    docs = [
        eit(f"s{i}", team_b, repositoryName=own, source={"tag": f"build-{i % 3}"}, tags=tags)
        for i in range(SHARED_RESOURCES)
    ]
    cpu = cpu_seconds(operator_process)
    with polling_liveness(operator_process) as poller:
        apply(control_plane, manifests(*docs))
        wait_for(
            "team-b's resources reconciled",
            lambda: all(
                (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
                for o in resources(control_plane, team_b)
            ),
            timeout=300,
            every=2.0,
        )
        settled = resources(control_plane, team_b)
        control_plane.kubectl("delete", "ecrimagetags", "--all", "-n", team_b, "--timeout=180s", timeout=200)
        assert not resources(control_plane, team_b)
    answers = poller.answers
    latencies = sorted(a for a in answers if a is not None)
    failed = len(answers) - len(latencies)
    reasons = {condition(o, "Ready").get("reason") for o in settled}
    with capsys.disabled():
        print(
            f"\nliveness: {len(answers)} probes, {failed} failed, p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms; reasons {sorted(str(r) for r in reasons)}; "
            f"operator CPU {cpu_seconds(operator_process) - cpu:.0f} s"
        )
    assert len(answers) >= 10
    assert failed == 0, f"{failed} of {len(answers)} liveness probes failed or took over {PROBE_TIMEOUT} s"
    assert reasons <= {"InSync", "TagConflict", "TooManyClaims"}, reasons
    assert "TooManyClaims" in reasons  # 150 claims of each tag, past the cap of 50 per tag
    assert writes_to(ecr_server, team_a.repository) == writes
    assert_unhurt(control_plane, team_a, ecr_session_client)
