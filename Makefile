# The two newcomer commands are `make demo` and `make test`; everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv binaries oci-clients oci-conformance argocd-health lint lock test test-fast demo clean

$(BIN)/ecr-tag-demo: pyproject.toml localenv/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e ./localenv
	touch $@

venv: $(BIN)/ecr-tag-demo

# kube-apiserver, kubectl, etcd and helm built from Go modules into a cache outside the repository.
binaries:
	bash hack/build-control-plane.sh >/dev/null

# crane, oras and cosign built from Go modules into the same cache: the e2e tests push, sign and
# inspect images with them as a user would.
oci-clients:
	bash hack/build-oci-clients.sh >/dev/null

# The OCI distribution-spec conformance test, built from Go modules into the same cache.
oci-conformance:
	bash hack/build-oci-conformance.sh >/dev/null

# Argo CD's own health-check evaluation (argo-cd's util/lua, gopher-lua), which tests/argocd runs the
# check through; built from hack/argocd-health into the same cache.
argocd-health:
	bash hack/build-argocd-health.sh >/dev/null

lint: venv
	$(BIN)/ruff check operator localenv tests benchmarks
	$(BIN)/ruff format --check operator localenv tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The image's hash-locked runtime dependencies, from pyproject.toml (uv comes with the test tools).
lock: venv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --no-header -o requirements.lock

# Test order is shuffled by pytest-randomly (modules, and the tests within each): every directory and
# test must pass alone and in any order. The header prints the seed ("Using --randomly-seed=N");
# `make test SEED=N` replays that order.
SEED ?= default
# Line coverage of the operator's package, its child processes in the end-to-end tests included,
# printed per module; what is measured and how is in pyproject.toml ([tool.coverage.*]).
COVERAGE := --cov --cov-report=term

# Everything CI runs: lint, then every test (unit, ECR emulator, integration, end to end on a real
# kube-apiserver + etcd, chart, Argo CD health check, faults, the OCI conformance suite on the emulator's
# registry face, crane/oras/cosign against it, and `demo --once` with its output checked).
test: venv binaries oci-clients oci-conformance argocd-health lint
	$(BIN)/pytest -m "not slow" -p randomly --randomly-seed=$(SEED) $(COVERAGE) tests

# Unit tests only: no processes started.
test-fast: venv
	$(BIN)/pytest tests/unit

demo: venv binaries
	$(BIN)/ecr-tag-demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
