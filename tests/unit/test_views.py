"""The adapters' view of kopf's indexes, read from handlers' threads while the event loop changes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecr_tag_operator.drift_schedule import Entry, entry_of
from ecr_tag_operator.grants import parse_policy
from ecr_tag_operator.policy_reporter import PolicyEntry
from ecr_tag_operator.runtime import Runtime
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.views import Grants, settled


class ChangingStore:
    """A store of kopf's index that the event loop changes while a thread walks it, ``times`` times."""

    def __init__(self, items: list[int], times: int) -> None:
        self.items = items
        self.times = times

    def __iter__(self) -> Iterator[int]:
        if self.times:
            self.times -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return iter(self.items)


def test_a_read_the_loop_interrupted_is_read_again() -> None:
    store = ChangingStore([1, 2, 3], times=3)
    assert settled(lambda: tuple(store)) == (1, 2, 3)
    assert store.times == 0


def test_an_index_that_never_settles_still_fails_loudly() -> None:
    store = ChangingStore([1], times=100)
    with pytest.raises(RuntimeError, match="changed size"):
        settled(lambda: tuple(store))


def test_one_ask_shared_by_many_entries_is_answered_for_each_namespace() -> None:
    runtime = Runtime(Settings(region="us-east-1"), ecr=None, own_account="111122223333")  # type: ignore[arg-type]
    spec = {"namespaces": ["team-a"], "registries": [{"write": [{"repositories": ["shared/*"], "tags": ["rc-*"]}]}]}
    policies = {"p": [PolicyEntry(parse_policy("p", spec), 1, "1")]}
    grants = Grants(runtime, policies, {"team-a": [{}], "team-b": [{}]})

    def made(namespace: str, n: int, tags: list[str]) -> Entry:
        meta = {"namespace": namespace, "name": f"r{n}", "uid": f"u{n}", "creationTimestamp": "2026-01-01T00:00:00Z"}
        found = entry_of(
            meta, {"repositoryName": "shared/web", "source": {"tag": "b"}, "tags": tags}, {}, "us-east-1", ""
        )
        assert found is not None
        return found

    a1, a2, b1 = made("team-a", 1, ["rc-1"]), made("team-a", 2, ["rc-1"]), made("team-b", 3, ["rc-1"])
    assert a1.ask is a2.ask is b1.ask
    wide = made("team-a", 4, ["rc-1", "prod"])  # another ask: prod is not granted
    for _ in range(2):  # asked, then answered from what was kept
        assert [grants.allows(e) for e in (a1, a2, b1, wide)] == [True, True, False, False]
    for e in (a1, b1, wide):
        assert grants.allows(e) == (grants.permission_of(e.ask, e.namespace).refused is None)
    grants.forget()
    assert grants.answers == 0
    assert [grants.allows(e) for e in (b1, a1)] == [False, True]
