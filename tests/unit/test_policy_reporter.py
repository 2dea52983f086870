"""EcrTagPolicy status, written only when it changes: valid or not, namespaces selected, conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ecr_tag_operator import grants
from ecr_tag_operator.policy_reporter import PolicyEntry, PolicyReporter

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def entry(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> PolicyEntry:
    try:
        parsed: grants.Policy | grants.PolicyError = grants.parse_policy(name, spec)
    except grants.PolicyError as exc:
        parsed = exc
    return PolicyEntry(parsed, 1, "9", status or {})


class Store:
    def __init__(self) -> None:
        self.written: dict[str, Mapping[str, Any]] = {}

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> bool:
        self.written[name] = status
        return True


def reporter(policies: dict[str, PolicyEntry], store: Store) -> PolicyReporter:
    return PolicyReporter(
        policies=lambda: policies,
        namespaces=lambda: {"team-a": {"team": "a"}, "team-b": {"team": "b"}},
        own_account="111122223333",
        region="us-east-1",
        store=store,
        tick=1,
        clock=lambda: NOW,
        ready=lambda: True,
    )


def registry(role: str) -> dict[str, Any]:
    return {"registryId": "444455556666", "roleArn": role, "write": [{"repositories": ["**"]}]}


def test_statuses_say_what_each_policy_selects_and_which_conflict() -> None:
    policies = {
        "a": entry(
            "a",
            {
                "namespaceSelector": {"matchLabels": {"team": "a"}},
                "registries": [registry("arn:aws:iam::444455556666:role/x")],
            },
        ),
        "b": entry("b", {"namespaces": ["team-a"], "registries": [registry("arn:aws:iam::444455556666:role/y")]}),
        "bad": entry("bad", {"namespaces": ["team-a"], "registries": [{"write": [{"repositories": ["[x"]}]}]}),
    }
    store = Store()
    assert asyncio.run(reporter(policies, store).report()) == 3
    ready = {name: body["conditions"][0]["reason"] for name, body in store.written.items()}
    assert ready == {"a": "RoleConflict", "b": "RoleConflict", "bad": "InvalidPolicy"}
    assert store.written["a"]["matchedNamespaces"] == ["team-a"]
    assert store.written["bad"]["matchedNamespaceCount"] == 0


def test_an_unchanged_status_is_not_written_again() -> None:
    spec = {"namespaces": ["team-b"], "registries": [{"write": [{"repositories": ["team-b/*"]}]}]}
    store = Store()
    asyncio.run(reporter({"b": entry("b", spec)}, store).report())
    written = dict(store.written["b"])
    again = Store()
    assert asyncio.run(reporter({"b": entry("b", spec, written)}, again).report()) == 0
    assert again.written == {}
