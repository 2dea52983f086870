"""The drift scheduler's pure decisions: when a check is due, when a lost creation is taken over, and
which checks run together."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ecr_tag_operator.drift_schedule import Entry, due_time, entry_of, lost_creation, pick

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(
    n: int = 1,
    *,
    synced: float | None = 0.0,
    repo: str = "team/app",
    tags: tuple[str, ...] | None = None,
    generation: int = 1,
    observed: int | None = 1,
    created: float = 3600,
    ready: str = "InSync",
    interval: str = "60s",
) -> Entry:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True", "reason": ready}]}
    if observed is not None:
        status["observedGeneration"] = observed
    if synced is not None:
        status["lastSyncTime"] = ago(synced)
    meta = {
        "namespace": "team",
        "name": f"r{n}",
        "uid": f"uid-{n}",
        "generation": generation,
        "creationTimestamp": ago(created),
    }
    spec = {
        "repositoryName": repo,
        "source": {"tag": "build"},
        "tags": list(tags or (f"rel-{n}",)),
        "driftCheckInterval": interval,
    }
    made = entry_of(meta, spec, status, "us-east-1", "111122223333")
    assert made is not None
    return made


def never(_: Entry) -> bool:
    return False


def run(entries: list[Entry], **kw: Any) -> list[list[tuple[str, str]]]:
    args: dict[str, Any] = {
        "jitter": 0.0,
        "early": 0.0,
        "rescue_after": 900,
        "urgent": never,
        "waiting": never,
        "max_members": 50,
    }
    groups = pick(entries, NOW, **(args | kw))
    return [[(p.entry.name, p.trigger) for p in g] for g in groups]


def test_entry_holds_what_a_check_reads_and_nothing_for_invalid_or_deleting_resources() -> None:
    e = entry(7, tags=("a", "b"))
    assert e.group == ("111122223333", "us-east-1", "team/app")
    assert e.reads == ("a", "b", "build")  # the source tag is read from the same repository
    elsewhere = entry_of(
        {"namespace": "n", "name": "x", "uid": "u"},
        {"repositoryName": "team/app", "source": {"tag": "b", "repositoryName": "team/ci"}, "tags": ["a"]},
        {},
        "us-east-1",
        "",
    )
    assert elsewhere is not None
    assert elsewhere.reads == ("a",)  # the source is read in its own group's calls
    meta = {"namespace": "n", "name": "x", "uid": "u"}
    assert entry_of(meta, {"repositoryName": "team/app", "tags": []}, {}, "us-east-1", "") is None
    # Tags the status names another owner for, in sync or not (what urgent checks compare with).
    spec = {"repositoryName": "team/app", "source": {"tag": "b"}, "tags": ["a", "c", "d"]}
    tags = [{"tag": "a", "owner": "x/y", "inSync": True}, {"tag": "c", "owner": "x/y", "reason": "TagConflict"}]
    owned = entry_of(meta, spec, {"tags": [*tags, {"tag": "d", "inSync": True}]}, "us-east-1", "")
    assert owned is not None
    assert owned.conflicts == ("a", "c")
    deleting = meta | {"deletionTimestamp": ago(1)}
    assert (
        entry_of(deleting, {"repositoryName": "team/app", "source": {"tag": "b"}, "tags": ["t"]}, {}, "r", "") is None
    )


def test_due_after_the_interval_stretched_by_the_resources_own_jitter() -> None:
    assert due_time(entry(synced=59), 0.0) == NOW + timedelta(seconds=1)
    assert due_time(entry(synced=None), 0.0) is None
    # With jitter each resource waits its own fixed extra fraction, at most the jitter.
    waits = [(due_time(entry(n), 0.1) - NOW).total_seconds() for n in range(50)]  # type: ignore[operator]
    assert min(waits) >= 60
    assert max(waits) <= 66
    assert len(set(waits)) > 3


def test_lost_creation_only_when_never_reconciled_and_old() -> None:
    assert lost_creation(entry(observed=None, created=1000), NOW, after=900)
    assert not lost_creation(entry(observed=None, created=800), NOW, after=900)
    assert not lost_creation(entry(created=1000), NOW, after=900)


def test_only_due_urgent_or_lost_resources_run() -> None:
    entries = [
        entry(1, synced=61),  # due
        entry(2, synced=30),  # not due
        entry(3, synced=10, ready="Forbidden"),  # urgent (the predicate below says so)
        entry(4, synced=None, observed=None, created=1000),  # lost creation
        entry(5, synced=90, generation=2),  # due, but its spec changed: the spec handler's turn
        entry(6, synced=None, observed=None, created=10),  # still queued for its first reconcile
    ]
    got = run(entries, urgent=lambda e: e.ready_reason == "Forbidden")
    assert sorted(got[0]) == [("r1", "drift"), ("r3", "drift"), ("r4", "rescue")]
    assert len(got) == 1
    assert run(entries, waiting=lambda e: e.name in ("r1", "r3", "r4")) == []


def test_checks_of_one_repository_run_together_in_groups_that_fit_one_call() -> None:
    entries = [entry(n, synced=70, repo=f"team/app-{n % 2}") for n in range(130)]
    groups = run(entries, max_members=50)
    assert sorted(len(g) for g in groups) == [15, 15, 50, 50]
    for g in groups:
        assert len({int(name[1:]) % 2 for name, _ in g}) == 1  # one repository per group
    # At most 100 image ids per BatchGetImage: 40 resources with 3 tags each do not fit one call.
    wide = [entry(n, synced=70, tags=(f"a{n}", f"b{n}", f"c{n}")) for n in range(40)]
    assert [len(g) for g in run(wide)] == [33, 7]  # 33 * 3 + the shared source tag = 100 ids


def test_checks_that_need_more_than_one_call_alone_go_together_in_as_many_calls() -> None:
    # Each reads 100 shared tags and its own source tag: two calls alone, so 50 go together (100 + 50
    # ids fit two calls), not one group each.
    shared = tuple(f"t{i}" for i in range(100))

    def wide(n: int) -> Entry:
        made = entry(n, synced=70, tags=shared)
        return replace(made, claim=(*made.claim[:3], (*made.claim[3][:3], f"b{n}", made.claim[3][4])))

    entries = [wide(n) for n in range(120)]
    assert [len(g) for g in run(entries)] == [50, 50, 20]
    for g in pick(entries, NOW, jitter=0.0, early=0.0, rescue_after=900, urgent=never, waiting=never, max_members=50):
        assert len({t for p in g for t in p.entry.reads}) <= 200
    # A narrow check joins a wide group while their reads fit its two calls; narrow ones after a wide
    # one fill those calls.
    narrow = [entry(200 + n, synced=70, tags=(f"n{n}",)) for n in range(60)]
    groups = run([wide(0), *narrow], max_members=100)
    assert [len(g) for g in groups] == [61]
    # Two calls hold 200 ids: 100 shared + b0 + build (the narrow ones' source) + m0..m97; m98 goes on.
    many = [entry(300 + n, synced=70, tags=(f"m{n}",)) for n in range(101)]
    assert [len(g) for g in run([wide(0), *many], max_members=200)] == [99, 3]


def test_checks_due_soon_fill_a_group_that_runs_anyway() -> None:
    entries = [entry(1, synced=61), *(entry(n, synced=60 - n) for n in range(2, 10))]
    # rN is due in N s; within 10 % of 60 s (6 s) are r2..r6, soonest first.
    got = run(entries, early=0.1)
    assert [name for name, _ in got[0]] == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert run(entries, early=0.1, max_members=3) == [[("r1", "drift"), ("r2", "drift"), ("r3", "drift")]]
    # Nothing due: nothing runs early.
    assert run(entries[1:], early=0.1) == []


def test_a_deferred_change_is_picked_until_done_even_once_its_generation_is_observed() -> None:
    """A change the scheduler took over that failed transiently has its generation observed but no
    lastSyncTime: no drift check would ever be due, so it is picked for as long as it is deferred."""
    pending = entry(1, synced=None)
    assert pending.observed_generation == pending.generation
    picked = pick(
        [pending],
        NOW,
        jitter=0,
        early=0,
        rescue_after=900,
        urgent=lambda _: False,
        waiting=lambda _: False,
        deferred=lambda e: e.uid == pending.uid,
        max_members=10,
    )
    assert [[(p.entry.uid, p.trigger) for p in g] for g in picked] == [[(pending.uid, "spec")]]
    assert (
        pick(
            [pending],
            NOW,
            jitter=0,
            early=0,
            rescue_after=900,
            urgent=lambda _: False,
            waiting=lambda _: False,
            max_members=10,
        )
        == []
    )


def test_an_entry_keeps_what_the_grants_are_asked_not_the_spec_and_shares_repeated_strings() -> None:
    def made(n: int) -> Entry:
        # Each watch event brings strings of its own: joined at run time, so none is a shared literal.
        meta = {
            "namespace": "".join(["te", "am"]),
            "name": f"r{n}",
            "uid": f"u{n}",
            "generation": 1,
            "creationTimestamp": ago(60),
        }
        spec = {"repositoryName": "".join(["team/", "app"]), "source": {"tag": "b"}, "tags": ["".join(["pr", "od"])]}
        status = {"conditions": [{"type": "Ready", "reason": "".join(["In", "Sync"])}], "lastSyncTime": ago(1)}
        found = entry_of(meta, spec, status, "us-east-1", "111122223333")
        assert found is not None
        return found

    one, two = made(1), made(2)
    assert not hasattr(one, "spec")
    target, source, access = one.ask
    assert (target.repository, target.tags, source.repository, access) == ("team/app", ("prod",), "team/app", "write")
    assert one.ask is two.ask  # one Ask for equal asks: the grants answer it once per namespace
    assert one.namespace is two.namespace
    assert one.tags[0] is two.tags[0]
    assert one.ready_reason is two.ready_reason
    assert one.group[2] is two.group[2]
    assert one.conflicts is two.conflicts  # the one empty tuple
    assert one.interval is two.interval
    assert one.created == NOW - timedelta(seconds=60)
    assert one.claims
    observe = entry_of(
        {"namespace": "n", "name": "x", "uid": "u"},
        {"repositoryName": "team/app", "source": {"tag": "b"}, "tags": ["t"], "mode": "Observe"},
        {},
        "us-east-1",
        "",
    )
    assert observe is not None
    assert not observe.claims  # an Observe-mode resource claims nothing (ownership.claims)


def test_the_picks_are_those_of_every_entry_s_due_time_asked_one_by_one() -> None:
    """pick skips due_time for entries synced too recently to be due or soon: the same picks as
    asking due_time of every entry, over random syncs, checks, intervals, jitter and early."""
    rng = random.Random(7)  # noqa: S311 - a reproducible sample, not a secret
    for _ in range(30):
        jitter, early = rng.choice([0.0, 0.1, 0.5]), rng.choice([0.0, 0.1, 0.3, 0.5])
        entries = [
            entry(n, synced=rng.uniform(0, 200), interval=rng.choice(["30s", "60s", "120s"]), repo=f"r{n % 3}")
            for n in range(60)
        ]
        checked = {e.uid: NOW - timedelta(seconds=rng.uniform(0, 200)) for e in entries if rng.random() < 0.3}
        urgent = {e.uid for e in entries if rng.random() < 0.1}
        got = run(entries, jitter=jitter, early=early, checked=checked, urgent=lambda e, chosen=urgent: e.uid in chosen)
        due, soon = set(), set()
        for e in entries:
            at = due_time(e, jitter, checked.get(e.uid))
            assert at is not None
            if at <= NOW or e.uid in urgent:
                due.add(e.name)
            elif at - e.interval * early <= NOW:
                soon.add(e.name)
        picked = {name for group in got for name, _ in group}
        assert due <= picked
        assert picked <= due | soon
        # Groups are not full here (60 entries, 3 repositories, 50 a group): every soon check joins.
        assert picked == due | {n for n in soon if any(int(n[1:]) % 3 == int(d[1:]) % 3 for d in due)}
