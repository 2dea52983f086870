"""Reasons live in one place (ecr_tag_operator.reasons): ECR's codes map into it, README's table is
rendered from it, the Lua health check and the benchmarks agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest
from benchmarks import kube

from ecr_tag_operator.reasons import (
    TRANSIENT,
    Reason,
    code_is_transient,
    health,
    is_transient,
    reason_for,
    troubleshooting_table,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = botocore.session.get_session().get_service_model("ecr")
# Codes botocore reports for a call that never got an answer, and AWS's generic names.
CALL_CODES = {
    "ThrottlingException",
    "ServerException",
    "ServiceUnavailableException",
    "InternalFailure",
    "RequestTimeoutException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "EndpointConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "AccessDeniedException",
    "NoCredentials",
}


def ecr_codes() -> set[str]:
    """Every code ECR can answer a reconcile's calls with, from botocore's service model."""
    put = {e.name for e in MODEL.operation_model("PutImage").error_shapes} - {"ImageAlreadyExistsException"}
    reads = {
        e.name
        for op in ("BatchGetImage", "BatchCheckLayerAvailability")
        for e in MODEL.operation_model(op).error_shapes
    }
    return put | reads | set(MODEL.shape_for("ImageFailureCode").enum) | CALL_CODES


@pytest.mark.parametrize("code", sorted(ecr_codes()))
def test_every_ecr_code_has_a_reason_of_its_own(code: str) -> None:
    assert reason_for(code) in set(Reason), f"{code} -> {reason_for(code)} is not in reasons.Reason"


def test_reasons_are_one_camel_case_word() -> None:
    assert [r for r in Reason if not re.fullmatch(r"[A-Z][a-zA-Z]+", r.value)] == []


def test_transient_reasons_are_progressing_and_the_rest_are_not() -> None:
    assert {r for r in Reason if r.about.health == "Progressing"} == {Reason(r) for r in TRANSIENT}
    assert health("SomethingEcrSaidOneDay") == "Degraded"
    assert not is_transient("SomethingEcrSaidOneDay")


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("ThrottlingException", True),
        ("ServerException", True),
        ("UpstreamUnavailable", True),
        ("UpstreamTooManyRequests", True),
        ("UpstreamAccessDenied", False),
        ("LimitExceededException", False),
        ("LayersNotFoundException", False),
        ("AccessDeniedException", False),
    ],
)
def test_code_is_transient(code: str, transient: bool) -> None:
    assert code_is_transient(code) is transient


def test_readme_table_is_rendered_from_the_reasons() -> None:
    readme = (ROOT / "README.md").read_text()
    assert troubleshooting_table() in readme, (
        "README's troubleshooting table differs: paste reasons.troubleshooting_table()"
    )


def test_health_check_script_knows_the_transient_reasons() -> None:
    for script in (
        ROOT / "argocd/ecrtag.dev/EcrImageTag/health.lua",
        ROOT / "charts/ecr-tag-operator/files/argocd-health.lua",
    ):
        table = re.search(r"local TRANSIENT = \{(.*?)\}", script.read_text(), re.S)
        assert table, script
        assert set(re.findall(r"(\w+) = true", table.group(1))) == TRANSIENT, script


def test_benchmarks_use_the_same_transient_reasons() -> None:
    assert kube.TRANSIENT_REASONS is TRANSIENT
