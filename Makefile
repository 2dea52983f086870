# The two newcomer commands are `make demo` and `make test`; everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv binaries oci-clients oci-conformance lint test test-fast demo clean

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

lint: venv
	$(BIN)/ruff check operator localenv tests benchmarks
	$(BIN)/ruff format --check operator localenv tests benchmarks
	$(BIN)/mypy

# Everything CI runs: lint, then every test (unit, ECR emulator, integration, end to end on a real
# kube-apiserver + etcd, chart, Argo CD health check, faults, the OCI conformance suite on the emulator's
# registry face, crane/oras/cosign against it, and `demo --once` with its output checked).
test: venv binaries oci-clients oci-conformance lint
	$(BIN)/pytest -m "not slow" tests

# Unit tests only: no processes started.
test-fast: venv
	$(BIN)/pytest tests/unit

demo: venv binaries
	$(BIN)/ecr-tag-demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
