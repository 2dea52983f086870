"""The Argo CD health check (argocd/ecrtag.dev/EcrImageTag/health.lua), run by Argo CD's own code.

Every evaluation goes through hack/argocd-health (see argocd_lua.py): argo-cd v3.2's util/lua and
gitops-engine's health.GetResourceHealth, with the script as the argocd-cm override for
ecrtag.dev/EcrImageTag, as the application controller runs it. Each case in health_test.yaml (Argo
CD's own format) must give exactly its status and message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_tag_operator.reasons import TRANSIENT as TRANSIENT_REASONS
from ecr_tag_operator.reasons import Reason
from ecr_tag_operator.spec import SpecError, parse_spec

from .argocd_lua import Health, evaluate, evaluate_files, evaluate_one
from .support import CHECK_DIR, EXAMPLES, HEALTH_KEY, HEALTH_LUA, REPO, crd_schema, load_one, schema_problems

HEALTH_TEST = CHECK_DIR / "health_test.yaml"
TESTDATA = CHECK_DIR / "testdata"
# What Argo CD v3.2's util/lua (ExecuteHealthLua) answers when a script returns a status it does not know.
INVALID_STATUS = Health("Unknown", "Lua returned an invalid health status")


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = load_one(HEALTH_TEST)["tests"]
    return cases


CASES = _cases()


def _fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = load_one(TESTDATA / name)
    return obj


def _evaluate_cases(script: str | Path = HEALTH_LUA) -> dict[str, Health]:
    paths = [CHECK_DIR / c["inputPath"] for c in CASES]
    return {c["inputPath"]: h for c, h in zip(CASES, evaluate_files(paths, script), strict=True)}


@cache
def _case_results() -> dict[str, Health]:
    return _evaluate_cases()


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_matches_health_test_yaml(case: dict[str, Any]) -> None:
    got = _case_results()[case["inputPath"]]
    assert got == Health(case["healthStatus"]["status"], case["healthStatus"]["message"])


def test_every_fixture_has_exactly_one_case() -> None:
    listed = [c["inputPath"] for c in CASES]
    assert len(listed) == len(set(listed)), "a fixture is listed twice"
    on_disk = {f"testdata/{p.name}" for p in TESTDATA.glob("*.yaml")}
    assert set(listed) == on_disk


def test_fixture_names_say_the_expected_status() -> None:
    # Argo CD's convention: testdata/<status>_<situation>.yaml.
    for case in CASES:
        assert Path(case["inputPath"]).name.startswith(case["healthStatus"]["status"].lower() + "_")


REQUIRED_SITUATIONS = {
    "progressing_no_status",
    "progressing_generation_ahead",
    "progressing_large_generation_ahead",
    "progressing_ready_unknown",
    "progressing_throttling",
    "healthy_in_sync",
    "healthy_large_generation",
    "degraded_image_not_found",
    "degraded_image_tag_does_not_match_digest",
    "degraded_image_tag_already_exists",
    "degraded_layers_not_found",
    "degraded_tag_conflict",
    "degraded_forbidden",
    "degraded_invalid_spec",
    "degraded_observe_drifted",
    "degraded_unknown_reason",
}


def test_the_required_situations_have_fixtures() -> None:
    assert {Path(c["inputPath"]).stem for c in CASES} >= REQUIRED_SITUATIONS


_STATUS_RETURN = re.compile(r'\breturn "(Healthy|Progressing|Degraded)"')


def test_every_status_return_of_the_script_is_reached_by_a_fixture() -> None:
    # gopher-lua has no line hook: each status return in turn is made to return a status Argo CD does
    # not know, and some fixture must then come out as Argo CD's "invalid health status".
    lines = HEALTH_LUA.read_text(encoding="utf-8").splitlines(keepends=True)
    returns = [n for n, text in enumerate(lines) if _STATUS_RETURN.search(text)]
    assert len(returns) >= 9, "the script's status returns were not found"
    unreached = []
    for n in returns:
        mutant = [*lines[:n], _STATUS_RETURN.sub('return "Reached"', lines[n]), *lines[n + 1 :]]
        if INVALID_STATUS not in _evaluate_cases("".join(mutant)).values():
            unreached.append(f"line {n + 1}: {lines[n].strip()}")
    assert unreached == []


def test_fixtures_are_objects_the_crd_admits() -> None:
    schema = crd_schema()
    for path in sorted(TESTDATA.glob("*.yaml")):
        obj = load_one(path)
        assert (obj["apiVersion"], obj["kind"]) == ("ecrtag.dev/v1alpha1", "EcrImageTag"), path.name
        assert isinstance(obj["metadata"]["generation"], int), path.name
        assert list(schema_problems(obj, schema)) == [], path.name


def test_fixture_specs_parse_except_the_invalid_one_whose_message_is_the_operators() -> None:
    for path in sorted(TESTDATA.glob("*.yaml")):
        obj = load_one(path)
        if path.stem != "degraded_invalid_spec":
            parse_spec(obj["spec"])
            continue
        with pytest.raises(SpecError) as caught:
            parse_spec(obj["spec"])
        (ready,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
        assert (ready["reason"], ready["message"]) == ("InvalidSpec", str(caught.value))


def _with_ready(status: str, reason: str, message: str = "said the operator") -> dict[str, Any]:
    obj = _fixture("healthy_in_sync.yaml")
    (ready,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    ready.update(status=status, reason=reason, message=message)
    obj["status"]["failures"] = []
    obj["status"]["tags"] = [{"tag": "staging", "inSync": status == "True", "reason": reason}]
    return obj


TRANSIENT = sorted(TRANSIENT_REASONS)


@pytest.mark.parametrize("reason", TRANSIENT)
def test_reasons_that_clear_by_themselves_are_progressing(reason: str) -> None:
    got = evaluate_one(_with_ready("False", reason))
    assert got == Health("Progressing", f"{reason}: said the operator; not in sync: staging ({reason})")


# Every reason of reasons.Reason the operator may write as a permanent Ready=False, and one it may add
# later: Degraded, as reasons.py says (a rollout waiting on these tags should stop).
PERMANENT = sorted({r.value for r in Reason if r.about.health == "Degraded"} | {"SomeReasonAddedLater"})


@pytest.mark.parametrize("reason", PERMANENT)
def test_every_other_reason_is_degraded(reason: str) -> None:
    assert reason not in TRANSIENT
    got = evaluate_one(_with_ready("False", reason))
    assert got == Health("Degraded", f"{reason}: said the operator; not in sync: staging ({reason})")


def test_observe_mode_drift_is_degraded_only_in_observe_mode() -> None:
    observe = _with_ready("False", "Drifted")
    observe["spec"]["mode"] = "Observe"
    got = evaluate_one(observe)
    assert got == Health("Degraded", "Observe mode: 1 tag drifted: staging; said the operator")
    enforce = _with_ready("False", "Drifted")
    assert evaluate_one(enforce) == Health("Degraded", "Drifted: said the operator; not in sync: staging (Drifted)")


def test_generations_given_as_strings_compare_equal_to_numbers() -> None:
    obj = _fixture("healthy_in_sync.yaml")
    as_text = _fixture("healthy_in_sync.yaml")
    as_text["metadata"]["generation"] = "2"
    ahead = _fixture("healthy_in_sync.yaml")
    ahead["metadata"]["generation"] = "3"
    assert [h.status for h in evaluate([obj, as_text, ahead])] == ["Healthy", "Healthy", "Progressing"]


# What Argo CD's engine is, shown by scripts run through the harness: where gopher-lua differs from
# C Lua 5.1, and which libraries a check from argocd-cm gets. Argo CD v3.2's util/lua/lua.go
# (runLuaWithResourceActionParameters) opens package, base and table, and preloads an os holding only
# time and date, with SkipOpenLibs unless useOpenLibs; it cancels a script after one second.


def _message_of(script: str) -> str:
    got = evaluate_one(_fixture("healthy_in_sync.yaml"), f'return {{status = "Healthy", message = {script}}}')
    assert (got.status, got.error) == ("Healthy", ""), got
    return got.message


def test_the_engine_is_lua_5_1() -> None:
    assert _message_of("_VERSION") == "Lua 5.1"
    # Lua 5.3's integer division is a syntax error there: the script must stay in Lua 5.1.
    got = evaluate_one(_fixture("healthy_in_sync.yaml"), 'local a = 7 // 2 return {status = "Healthy"}')
    assert got.status == "Unknown"
    assert "syntax error" in got.message


def test_the_engine_prints_large_integers_whole_unlike_c_lua() -> None:
    # C Lua 5.1 formats numbers with %.14g: 123456789012347 and 123456789012346 both print as
    # 1.2345678901235e+14 there, so the large-generation fixtures would come out Healthy.
    assert _message_of("tostring(123456789012347)") == "123456789012347"
    obj = _fixture("healthy_in_sync.yaml")
    obj["metadata"]["generation"] = 123456789012346
    script = 'return {status = "Healthy", message = tostring(obj.metadata.generation)}'
    assert evaluate_one(obj, script).message == "123456789012346"


def test_the_engine_has_gopher_luas_table_library_and_argo_cds_os() -> None:
    # C Lua 5.1's table library also has foreach, foreachi and setn; gopher-lua's does not.
    assert _message_of("tostring(table.foreach) .. tostring(table.foreachi) .. tostring(table.setn)") == "nilnilnil"
    assert _message_of("type(table.getn) .. type(table.concat) .. type(table.sort)") == "functionfunctionfunction"
    keys = "(function(m) local k = {} for n in pairs(m) do k[#k + 1] = n end table.sort(k) return table.concat(k, ',') end)"
    assert _message_of(f"{keys}(table)") == "concat,getn,insert,maxn,remove,sort"
    # Argo CD opens package, so require("os") gives its os; the global os stays unset all the same.
    assert _message_of(f'{keys}(require("os"))') == "date,time"
    assert _message_of("tostring(os)") == "nil"


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ('string.format("%s", "Healthy")', "attempt to index a non-table object(nil) with key 'format'"),
        ('("healthy"):upper()', "attempt to index a non-table object(string) with key 'upper'"),
        ("math.floor(1)", "attempt to index a non-table object(nil) with key 'floor'"),
        ('io.open("/etc/hostname")', "attempt to index a non-table object(nil) with key 'open'"),
        ("debug.traceback()", "attempt to index a non-table object(nil) with key 'traceback'"),
    ],
)
def test_a_check_from_argocd_cm_lacks_the_other_libraries(script: str, words: str) -> None:
    # gitops-engine turns the script's error into status Unknown with the error as message.
    got = evaluate_one(_fixture("healthy_in_sync.yaml"), f'return {{status = "Healthy", message = {script}}}')
    assert got.status == "Unknown"
    assert words in got.message
    assert words in got.error


def test_an_object_being_deleted_is_pending_deletion_before_the_script_runs() -> None:
    # gitops-engine's GetResourceHealth answers for a deleted object (no hook finalizer) itself, as
    # the controller sees an EcrImageTag held by the operator's finalizer.
    obj = _fixture("healthy_in_sync.yaml")
    obj["metadata"]["deletionTimestamp"] = "2026-11-30T10:00:00Z"
    assert evaluate_one(obj) == Health("Progressing", "Pending deletion")


def test_use_open_libs_is_what_gives_the_string_library() -> None:
    script = 'return {status = "Healthy", message = string.format("%d tags", 2)}'
    assert evaluate_one(_fixture("healthy_in_sync.yaml"), script, open_libs=True) == Health("Healthy", "2 tags")


def test_a_script_is_stopped_after_a_second() -> None:
    script = 'local n = 0 while true do n = n + 1 end return {status = "Healthy"}'
    got = evaluate_one(_fixture("healthy_in_sync.yaml"), script)
    assert got.status == "Unknown"
    assert "context deadline exceeded" in got.message


def _argocd_cm_blocks(markdown: str) -> Iterator[str]:
    for block in re.findall(r"```yaml\n(.*?)```", markdown, flags=re.DOTALL):
        if HEALTH_KEY in block:
            yield block


def test_the_shipped_copies_are_the_script_byte_for_byte() -> None:
    script = HEALTH_LUA.read_text(encoding="utf-8")
    patch = load_one(EXAMPLES / "argocd-cm-patch.yaml")
    assert (patch["apiVersion"], patch["kind"], patch["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert patch["data"] == {HEALTH_KEY: script}
    blocks = list(_argocd_cm_blocks((REPO / "docs" / "argo-cd.md").read_text(encoding="utf-8")))
    assert blocks, "docs/argo-cd.md shows no argocd-cm YAML with the health check"
    for block in blocks:
        doc = yaml.safe_load(block)
        data = doc["data"] if "data" in doc else doc["configs"]["cm"]
        assert data[HEALTH_KEY] == script


def test_the_transient_list_names_the_operators_reasons() -> None:
    # If reasons.TRANSIENT grows, the script must learn the new reason too.
    script = HEALTH_LUA.read_text(encoding="utf-8")
    table = re.search(r"local TRANSIENT = \{(.*?)\n\}", script, flags=re.DOTALL)
    assert table is not None
    assert set(re.findall(r"(\w+) = true", table.group(1))) == TRANSIENT_REASONS
