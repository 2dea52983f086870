"""The Argo CD health check (argocd/ecrtag.dev/EcrImageTag/health.lua), run the way Argo CD runs it.

Argo CD evaluates health checks with gopher-lua, a Lua 5.1. A check configured in argocd-cm gets only
the base and table libraries (no string, math, os or utf8) unless useOpenLibs is set. The script is
run here in Lua 5.1 from lupa with exactly that much: any other global, and any string method, is an
error. Each case in health_test.yaml (Argo CD's own format) must give exactly its status and message.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from ecr_tag_operator.reasons import TRANSIENT as TRANSIENT_REASONS
from ecr_tag_operator.spec import SpecError, parse_spec

from .support import CHECK_DIR, EXAMPLES, HEALTH_KEY, HEALTH_LUA, REPO, crd_schema, load_one, schema_problems

HEALTH_TEST = CHECK_DIR / "health_test.yaml"
TESTDATA = CHECK_DIR / "testdata"
LUA51_MODULES = ("lupa.lua51", "lupa.luajit21")  # LuaJIT 2.1 speaks Lua 5.1

# Runs a health script as Argo CD runs one from argocd-cm: a fresh environment holding the base
# library, the table library and `obj`; strings without methods (Argo CD never opens the string
# library, which is what gives strings their methods). Returns the script's result and the lines run.
_SANDBOX = """
function(source, obj)
  local chunk, problem = loadstring(source, "=health.lua")
  if chunk == nil then
    error(problem, 0)
  end
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    xpcall = xpcall, rawequal = rawequal, rawget = rawget, rawset = rawset,
    setmetatable = setmetatable, getmetatable = getmetatable, print = print, _VERSION = _VERSION,
    table = table, obj = obj,
  }
  setmetatable(env, {
    __index = function(_, name)
      error("global '" .. tostring(name) .. "' is not available to a health check from argocd-cm", 2)
    end,
    __newindex = function(_, name)
      error("the script assigns the global '" .. tostring(name) .. "'", 2)
    end,
  })
  setfenv(chunk, env)
  local lines = {}
  local string_methods = getmetatable("")
  debug.setmetatable("", nil)
  debug.sethook(function(_, line) lines[line] = true end, "l")
  local ok, result = pcall(chunk)
  debug.sethook()
  debug.setmetatable("", string_methods)
  if not ok then
    error(result, 0)
  end
  return result, lines
end
"""


def lua51() -> ModuleType:
    """lupa's Lua 5.1 (or LuaJIT 2.1); a missing one fails the test: Argo CD's dialect is what is tested."""
    for name in LUA51_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.fail(
        f"none of {', '.join(LUA51_MODULES)} can be imported. lupa's binary wheels (lupa>=2.0) bundle "
        "Lua 5.1 and LuaJIT: install the test extra with `pip install -e '.[test]'`, or "
        "`pip install --only-binary lupa 'lupa>=2.0'`.",
        pytrace=False,
    )


def _to_lua(runtime: Any, value: Any) -> Any:
    """A Python value as Argo CD hands it to Lua: objects and arrays as tables, arrays 1-based, nulls absent."""
    if isinstance(value, Mapping):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = _to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate((i for i in value if i is not None), start=1):
            table[index] = _to_lua(runtime, item)
        return table
    if isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"{type(value).__name__} has no JSON form: {value!r}")


@dataclass
class Outcome:
    result: dict[str, Any]
    lines: set[int] = field(default_factory=set)


def run_health(obj: Mapping[str, Any], script: str | None = None) -> Outcome:
    module = lua51()
    runtime = module.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    assert tuple(runtime.lua_version) == (5, 1)
    sandbox = runtime.eval(_SANDBOX)
    returned = sandbox(HEALTH_LUA.read_text(encoding="utf-8") if script is None else script, _to_lua(runtime, obj))
    result, lines = returned[0], returned[1]
    assert module.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    return Outcome(dict(result.items()), {int(line) for line in lines})


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = load_one(HEALTH_TEST)["tests"]
    return cases


CASES = _cases()


def _fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = load_one(TESTDATA / name)
    return obj


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_matches_health_test_yaml(case: dict[str, Any]) -> None:
    got = run_health(load_one(CHECK_DIR / case["inputPath"])).result
    assert got == {"status": case["healthStatus"]["status"], "message": case["healthStatus"]["message"]}


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
    "progressing_ready_unknown",
    "progressing_throttling",
    "healthy_in_sync",
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


def test_every_status_return_of_the_script_is_reached_by_a_fixture() -> None:
    hit: set[int] = set()
    for case in CASES:
        hit |= run_health(load_one(CHECK_DIR / case["inputPath"])).lines
    lines = HEALTH_LUA.read_text(encoding="utf-8").splitlines()
    returns = {
        n for n, text in enumerate(lines, start=1) if re.search(r'\breturn "(Healthy|Progressing|Degraded)"', text)
    }
    assert len(returns) >= 9, "the script's status returns were not found"
    assert sorted(returns - hit) == []


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
    got = run_health(_with_ready("False", reason)).result
    assert got == {"status": "Progressing", "message": f"{reason}: said the operator; not in sync: staging ({reason})"}


PERMANENT = [
    "ImageNotFound",
    "ImageTagDoesNotMatchDigest",
    "ImageTagAlreadyExists",
    "ImageDigestDoesNotMatch",
    "LayersNotFound",
    "LayersUnavailable",
    "LayersArchived",
    "ReferencedImagesNotFound",
    "TagConflict",
    "Forbidden",
    "AccessDenied",
    "RepositoryNotFound",
    "InvalidSpec",
    "KmsError",
    "LimitExceeded",
    "UnsupportedManifest",
    "NoCredentials",
    "Drifted",  # in Enforce mode the operator never says Drifted; if it ever does, stop the rollout
    "SomeReasonAddedLater",
]


@pytest.mark.parametrize("reason", PERMANENT)
def test_every_other_reason_is_degraded(reason: str) -> None:
    assert reason not in TRANSIENT
    got = run_health(_with_ready("False", reason)).result
    assert got == {"status": "Degraded", "message": f"{reason}: said the operator; not in sync: staging ({reason})"}


def test_observe_mode_drift_is_degraded_only_in_observe_mode() -> None:
    observe = _with_ready("False", "Drifted")
    observe["spec"]["mode"] = "Observe"
    got = run_health(observe).result
    assert got == {"status": "Degraded", "message": "Observe mode: 1 tag drifted: staging; said the operator"}


def test_generations_given_as_strings_compare_equal_to_numbers() -> None:
    obj = _fixture("healthy_in_sync.yaml")
    obj["metadata"]["generation"] = "2"
    assert run_health(obj).result["status"] == "Healthy"
    obj["metadata"]["generation"] = "3"
    assert run_health(obj).result["status"] == "Progressing"


def test_the_runtime_is_lua_5_1_and_compiles_the_script() -> None:
    runtime = lua51().LuaRuntime(register_eval=False)
    assert tuple(runtime.lua_version) == (5, 1)
    assert runtime.eval("_VERSION") == "Lua 5.1"
    compile_script = runtime.eval("function(s) local f, err = loadstring(s, '=health.lua'); return err end")
    assert compile_script(HEALTH_LUA.read_text(encoding="utf-8")) is None
    # The same runtime refuses what only Lua 5.2+ accepts, so compiling above proves something.
    assert compile_script("local a = 7 // 2 return a") is not None
    assert compile_script("goto done ::done::") is not None


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ('return {status = string.format("%s", "Healthy")}', "global 'string' is not available"),
        ('return {status = ("healthy"):upper()}', "attempt to index"),
        ("return {status = math.floor(1)}", "global 'math' is not available"),
        ("return {status = os.time()}", "global 'os' is not available"),
        ('hs = {status = "Healthy"} return hs', "assigns the global 'hs'"),
    ],
)
def test_the_sandbox_refuses_what_argo_cd_does_not_offer(script: str, words: str) -> None:
    module = lua51()
    with pytest.raises(module.LuaError, match=re.escape(words)):
        run_health(_fixture("healthy_in_sync.yaml"), script)


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
