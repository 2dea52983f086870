"""The urgent checks kept between drift ticks: after every change (a new, changed or deleted
resource, a status, a grant) the kept answer is the one computed from scratch, per resource, by the
functions a reconcile uses (ownership.contested over the granted claims of the claims index)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from ecr_tag_operator import drift_urgency, views
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
        """The status a reconcile would write: the owners it saw, or Forbidden (and none)."""
        reason = "InSync" if allowed else "Forbidden"
        owners = owners if allowed else {}
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
        if allowed == (entry.ready_reason == "Forbidden") or (allowed and set(owners) != set(entry.conflicts)):
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

    def __init__(self, policies: dict[str, Any], budget: int = drift_urgency.ARRIVALS_PER_UPDATE) -> None:
        self.policies = policies
        self.urgency = views.Urgency(RUNTIME, self.policies, LABELS, arrivals_per_update=budget)
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


def test_a_start_with_many_and_a_grant_that_moves_every_owner() -> None:
    """Many claims at once (a start, a batch) are sorted in bulk, not bisected in one by one; lifting
    the owner's namespace's grant moves the owner of every tag for every other resource."""
    grants = policy()
    sources = ["x"] + ["z" if n > 120 and n % 10 == 9 else "y" for n in range(1, 150)]  # r0 alone wants x
    resources = [Resource(n, ["prod", "stable", f"rel-{n % 7}"], sources[n], f"team-{n % 3}") for n in range(150)]
    settle_all(resources, grants)
    tick = Tick(grants)
    assert tick(resources) == set() == reference(resources, grants)
    tick.policies["all"] = policy(namespaces=["team-1", "team-2"])["all"]  # r0's team-0 loses its grant
    moved = tick(resources)
    assert moved == reference(resources, tick.policies)
    assert len(moved) > 120  # team-0's refused; of the rest, who wants y owns or shares most tags now
    settle_all(resources, tick.policies)
    assert tick(resources) == set()
    batch = [Resource(n, ["prod", "canary"], f"b{n % 4}", f"team-{n % 3}") for n in range(150, 230)]
    resources = resources[60:] + batch  # 60 gone (the oldest among them), 80 new: bulk both ways
    assert tick(resources) == reference(resources, tick.policies)
    tick.policies["all"] = policy()["all"]
    assert tick(resources) == reference(resources, tick.policies)


@pytest.mark.parametrize("budget", [drift_urgency.ARRIVALS_PER_UPDATE, 3])
@pytest.mark.parametrize(("seed", "batch"), [(seed, 3) for seed in range(12)] + [(seed, 40) for seed in range(6)])
def test_the_kept_answer_is_the_answer_from_scratch_after_any_changes(seed: int, batch: int, budget: int) -> None:
    """Up to ``batch`` changes between ticks: a few are moved one by one, many in bulk. With a budget
    of 3 claims per update most changes take a few ticks to be integrated, and more changes come
    meanwhile: only an integrated resource is ever urgent, and once ticks without changes have
    integrated everything the answer is the one from scratch."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sequence of changes, not a secret
    settle = random.Random(-seed)  # noqa: S311 - whether to wait for the build: apart, so changes stay the same
    tags = ["a", "b", "c", "d"]
    grants = policy()
    resources: list[Resource] = []
    tick = Tick(grants, budget)
    made = 0
    for _ in range(60 if batch < 10 else 25):
        for _ in range(rng.randint(1, batch)):
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
        urgent = tick(resources)
        assert all(tick.urgency.kept.integrated(uid) for uid in urgent)
        if tick.urgency.kept.pending and settle.random() < 0.5:
            continue  # more changes before the build is done
        for _ in range(len(resources)):  # each update integrates one resource at least
            if not tick.urgency.kept.pending:
                break
            urgent = tick(resources)
            assert all(tick.urgency.kept.integrated(uid) for uid in urgent)
        assert tick.urgency.kept.pending == 0
        assert urgent == reference(resources, tick.policies)


def start(count: int, budget: int) -> tuple[list[Resource], Tick, dict[str, list[PolicyEntry]]]:
    """``count`` settled resources of three tags, in three namespaces, created in a shuffled order
    (ownership's order is not the index's); a tick that has not seen them yet."""
    grants = policy()
    order = list(range(count))
    random.Random(count).shuffle(order)  # noqa: S311 - a reproducible order, not a secret
    resources = [Resource(n, ["prod", "stable", f"rel-{n % 4}"], f"b{n % 5}", f"team-{n % 3}") for n in order]
    settle_all(resources, grants)
    return resources, Tick(grants, budget), grants


def oldest(resources: list[Resource], count: int) -> list[Resource]:
    return sorted(resources, key=lambda r: drift_urgency.row_of(r.entry()))[:count]


def test_a_start_is_integrated_oldest_first_within_the_budget_of_each_update() -> None:
    """40 resources of 3 claims each, 10 claims per update: 3 resources (9 claims) per update, the
    oldest first, until all 40 are in: ceil(40 / 3) = 14 updates."""
    resources, tick, _ = start(40, 10)
    tick(resources)
    kept = tick.urgency.kept
    assert kept.pending == 37
    first = oldest(resources, 3)
    assert {r.meta["uid"] for r in resources if kept.integrated(r.meta["uid"])} == {r.meta["uid"] for r in first}
    key = (ACCOUNT, REGION, "shared/web", "prod")
    assert kept.claims_of(key) == [claim_of(r.meta, parse_spec(r.spec), REGION, ACCOUNT) for r in first]
    updates = 1
    while kept.pending:
        before = kept.pending
        tick(resources)
        updates += 1
        assert kept.pending == max(before - 3, 0)
        integrated = [r for r in resources if kept.integrated(r.meta["uid"])]
        assert sorted(r.meta["uid"] for r in integrated) == sorted(
            r.meta["uid"] for r in oldest(resources, 40 - kept.pending)
        )
    assert updates == 14
    assert len(kept.claims_of(key)) == 40


def test_an_entry_larger_than_the_budget_is_integrated_alone() -> None:
    """At least one entry per update, so that the build always progresses."""
    resources, tick, _ = start(5, 2)
    for left in (4, 3, 2, 1, 0):
        tick(resources)
        assert tick.urgency.kept.pending == left


def test_a_partial_start_answers_exactly_for_the_resources_it_holds() -> None:
    """Oldest first: every rival that can own an integrated resource's tags is older, so integrated
    already. Half the resources' statuses name stale owners (or none): at each update of the build,
    the urgent ones are exactly the reference's among the resources integrated (60 resources of 3
    claims, 20 claims per update: 6 more each time)."""
    resources, tick, grants = start(60, 20)
    for r in resources[::2]:
        r.settle({}, allowed=True)  # the owners they saw are gone, or they never saw theirs
    expected = reference(resources, grants)
    assert len(expected) > 10  # the stale statuses are not all right by chance
    answers = []
    for _ in range(10):
        urgent = tick(resources)
        kept = tick.urgency.kept
        integrated = {r.meta["uid"] for r in resources if kept.integrated(r.meta["uid"])}
        assert urgent == expected & integrated
        answers.append(len(urgent))
    assert tick.urgency.kept.pending == 0
    assert answers[0] < answers[-1] == len(expected)  # partial answers, then the whole one


def test_resources_whose_claims_moved_wait_like_new_ones() -> None:
    """A changed source moves a resource's claims: they leave at once, and come back within the
    budget, oldest first, as a new resource's do; meanwhile the resource is not urgent."""
    resources, tick, grants = start(40, 10)
    for _ in range(14):
        assert tick(resources) == set()  # settled: integrated or not, none is urgent
    assert tick.urgency.kept.pending == 0
    for r in resources:
        r.spec["source"] = {"tag": "moved"}
    urgent = tick(resources)
    kept = tick.urgency.kept
    assert kept.pending == 37
    first = {r.meta["uid"] for r in oldest(resources, 3)}
    assert urgent <= first == {r.meta["uid"] for r in resources if kept.integrated(r.meta["uid"])}
    assert len(kept.claims_of((ACCOUNT, REGION, "shared/web", "stable"))) == 3
    for _ in range(13):
        urgent = tick(resources)
    assert kept.pending == 0
    assert urgent == reference(resources, grants)
    assert len(urgent) > 30  # one source for all: the statuses' owners are gone


def test_many_resources_gone_at_once_leave_every_key_they_held_and_no_other() -> None:
    """Keys that lose the same resources hold equal lists (filtered once, then copied) or different
    ones (filtered each): either way each key keeps exactly its remaining claims, oldest first."""
    both = [Resource(n, ["p", "q"], "s") for n in range(40)]
    only_q = [Resource(100 + n, ["q"], "t") for n in range(30)]
    only_p = [Resource(200 + n, ["p"], "u") for n in range(5)]
    twins = [Resource(300 + n, ["x", "y"], "v") for n in range(40)]  # keys x and y: equal lists
    resources = both + only_q + only_p + twins
    grants = policy()
    settle_all(resources, grants)
    tick = Tick(grants)
    tick(resources)
    gone = {id(r) for r in both[5:30] + only_q[:10] + twins[::2]}
    resources = [r for r in resources if id(r) not in gone]
    settle_all(resources, grants)
    urgent = tick(resources)
    kept = tick.urgency.kept
    for tag in ("p", "q", "x", "y"):
        key = (ACCOUNT, REGION, "shared/web", tag)
        holders = [r for r in resources if tag in r.spec["tags"]]
        want = sorted(claim_of(r.meta, parse_spec(r.spec), REGION, ACCOUNT) for r in holders)
        assert kept.claims_of(key) == want, tag
    assert urgent == reference(resources, grants)
