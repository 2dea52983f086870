"""The urgent checks kept between drift ticks: after every change (a new, changed or deleted
resource, a status, a grant) the kept answer is the one computed from scratch, per resource, by the
functions a reconcile uses (ownership.contested over the granted claims of the claims index)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from ecr_tag_operator import views
from ecr_tag_operator.drift_schedule import Entry, entry_of
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.ownership import Claim, ClaimKey, claim_of, claims, contested
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.runtime import Runtime
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

REGION, ACCOUNT = "us-east-1", "111122223333"
RUNTIME = Runtime(Settings(region=REGION), ecr=None, own_account=ACCOUNT)  # type: ignore[arg-type]
LABELS = {f"team-{k}": [{}] for k in range(3)}


def policy(tags: list[str] | None = None, namespaces: list[str] | None = None) -> dict[str, list[PolicyEntry]]:
    write: dict[str, Any] = {"repositories": ["**"]}
    if tags is not None:
        write["tags"] = tags
    spec = {"namespaces": namespaces or list(LABELS), "registries": [{"write": [write]}]}
    return {"all": [PolicyEntry(parse_policy("all", spec), 1, "1")]}


class Resource:
    """An EcrImageTag as its watch events carry it: meta, spec and status."""

    def __init__(self, n: int, tags: list[str], source: str, namespace: str = "team-0", mode: str = "Enforce") -> None:
        minute, second = divmod(n, 60)
        self.meta = {
            "namespace": namespace,
            "name": f"r{n}",
            "uid": f"u{n}",
            "generation": 1,
            "creationTimestamp": f"2026-01-01T00:{minute:02d}:{second:02d}Z",
        }
        self.spec: dict[str, Any] = {
            "repositoryName": "shared/web",
            "source": {"tag": source},
            "tags": tags,
            "mode": mode,
        }
        self.status: dict[str, Any] = {"observedGeneration": 1, "lastSyncTime": "2026-06-01T00:00:00Z"}

    def entry(self) -> Entry:
        made = entry_of(self.meta, self.spec, self.status, REGION, ACCOUNT)
        assert made is not None
        return made

    def settle(self, owners: dict[str, str], allowed: bool) -> None:
        """The status a reconcile would write: the owners it saw, or Forbidden."""
        reason = "InSync" if allowed else "Forbidden"
        self.status = {
            **self.status,
            "conditions": [{"type": "Ready", "reason": "TagConflict" if owners else reason}],
            "tags": [{"tag": t, "owner": owners[t]} if t in owners else {"tag": t} for t in self.spec["tags"]],
        }


def reference(resources: Iterable[Resource], policies: Any) -> set[str]:
    """Urgent resources, each asked from scratch as a reconcile asks: the grants, then the owners."""
    view = views.Grants(RUNTIME, policies, LABELS)
    index: dict[ClaimKey, list[Claim]] = {}
    for r in resources:
        for key, claim in claims(r.meta, r.spec, REGION, ACCOUNT).items():
            index.setdefault(key, []).append(claim)
    out = set()
    for r in resources:
        spec, entry = parse_spec(r.spec), r.entry()
        allowed = view.permission(spec, entry.namespace).refused is None

        def granted(key: ClaimKey) -> list[Claim]:
            return [c for c in index.get(key, ()) if view.grants_claim(key, c)]

        owners = contested(spec, claim_of(r.meta, spec, REGION, ACCOUNT), granted, REGION, ACCOUNT)
        if allowed == (entry.ready_reason == "Forbidden") or (allowed and set(owners) != entry.conflicts):
            out.add(entry.uid)
    return out


def owners_now(resources: list[Resource], policies: Any) -> Callable[[Resource], tuple[dict[str, str], bool]]:
    view = views.Grants(RUNTIME, policies, LABELS)
    index: dict[ClaimKey, list[Claim]] = {}
    for r in resources:
        for key, claim in claims(r.meta, r.spec, REGION, ACCOUNT).items():
            index.setdefault(key, []).append(claim)

    def of(r: Resource) -> tuple[dict[str, str], bool]:
        spec = parse_spec(r.spec)
        me = claim_of(r.meta, spec, REGION, ACCOUNT)
        lookup = lambda key: [c for c in index.get(key, ()) if view.grants_claim(key, c)]  # noqa: E731
        return contested(spec, me, lookup, REGION, ACCOUNT), view.permission(spec, r.meta["namespace"]).refused is None

    return of


class Tick:
    """The scheduler's use of views.Urgency: prepare on the loop, scan the entries."""

    def __init__(self, policies: dict[str, Any]) -> None:
        self.policies = policies
        self.urgency = views.Urgency(RUNTIME, self.policies, LABELS)
        self.kept: dict[str, Entry] = {}  # as kopf's index keeps an unchanged entry's object

    def __call__(self, resources: list[Resource]) -> set[str]:
        entries = []
        for r in resources:
            made = r.entry()
            old = self.kept.get(made.uid)
            entries.append(old if old == made else made)
        self.kept = {e.uid: e for e in entries}
        test = self.urgency.prepare()(entries)
        return {e.uid for e in entries if test(e)}


def settle_all(resources: list[Resource], policies: Any) -> None:
    of = owners_now(resources, policies)
    for r in resources:
        r.settle(*of(r))


def test_settled_resources_are_not_urgent_until_an_owner_goes() -> None:
    grants = policy()
    resources = [Resource(n, ["prod", "stable"], f"b{n}") for n in range(5)]
    settle_all(resources, grants)
    tick = Tick(grants)
    assert tick(resources) == set() == reference(resources, grants)
    assert tick(resources) == set()  # nothing changed: nothing asked again
    assert tick.urgency.kept.asked == 0
    oldest = resources.pop(0)  # the owner of both tags is deleted: r1 owns them now
    assert oldest.meta["uid"] == "u0"
    assert tick(resources) == {"u1"} == reference(resources, grants)


def test_a_new_older_claim_a_changed_source_and_a_changed_grant_are_seen_at_the_next_tick() -> None:
    grants = policy()
    resources = [Resource(n, ["prod"], f"b{n}") for n in range(1, 4)]
    settle_all(resources, grants)
    tick = Tick(grants)
    assert tick(resources) == set()
    resources.append(Resource(0, ["prod"], "b9"))  # older than all: it owns prod now
    assert tick(resources) == {"u1"} == reference(resources, grants)  # u0 is the spec handler's
    settle_all(resources, grants)
    assert tick(resources) == set()
    resources[0].spec["source"] = {"tag": "b9"}  # r1 now wants what the owner wants: no conflict
    resources[1].spec["tags"] = ["canary"]  # r2 lets prod go
    assert tick(resources) == {"u1", "u2"} == reference(resources, grants)
    settle_all(resources, grants)
    assert tick(resources) == set()
    tick.policies["all"] = policy(tags=["canary"])["all"]  # prod no longer granted to anyone
    assert tick(resources) == reference(resources, grants) == {"u0", "u1", "u3"}


def test_an_observer_sees_the_owner_go() -> None:
    grants = policy()
    owner, observer = Resource(0, ["prod"], "b0"), Resource(1, ["prod"], "b1", mode="Observe")
    resources = [owner, observer]
    settle_all(resources, grants)
    tick = Tick(grants)
    assert tick(resources) == set()
    resources.remove(owner)
    assert tick(resources) == {"u1"} == reference(resources, grants)


@pytest.mark.parametrize("seed", range(12))
def test_the_kept_answer_is_the_answer_from_scratch_after_any_changes(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible sequence of changes, not a secret
    tags = ["a", "b", "c", "d"]
    grants = policy()
    resources: list[Resource] = []
    tick = Tick(grants)
    made = 0
    for _ in range(60):
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.3 or not resources:
                n = rng.randint(0, 200) if rng.random() < 0.5 else 300 + made
                if all(r.meta["uid"] != f"u{n}" for r in resources):
                    resources.append(
                        Resource(
                            n,
                            rng.sample(tags, rng.randint(1, 3)),
                            rng.choice(["x", "y", "z"]),
                            namespace=rng.choice(list(LABELS)),
                            mode="Observe" if rng.random() < 0.15 else "Enforce",
                        )
                    )
                    made += 1
            elif roll < 0.45:
                resources.pop(rng.randrange(len(resources)))
            elif roll < 0.6:
                rng.choice(resources).spec["source"] = {"tag": rng.choice(["x", "y", "z"])}
            elif roll < 0.7:
                rng.choice(resources).spec["tags"] = rng.sample(tags, rng.randint(1, 3))
            elif roll < 0.9:
                settle_all(resources, tick.policies)
            else:
                granted = rng.sample(tags, rng.randint(1, 4))
                namespaces = rng.sample(list(LABELS), rng.randint(1, 3))
                tick.policies["all"] = policy(tags=granted, namespaces=namespaces)["all"]
        assert tick(resources) == reference(resources, tick.policies)
