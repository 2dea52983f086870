#!/usr/bin/env bash
# For people with Docker: the same end-to-end tests on a kind cluster instead of the local
# kube-apiserver + etcd. The operator and the ECR emulator still run on this host (127.0.0.1); only
# the Kubernetes API moves into kind. Needs docker, kind and make. (Not run in CI: CI has no Docker.)
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER_NAME:-ecr-tag-operator-e2e}"
kubeconfig="$(mktemp)"
trap 'kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; rm -f "$kubeconfig"' EXIT

make venv binaries
kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 120s
# envtest's convention: USE_EXISTING_CLUSTER=true runs the suite against $KUBECONFIG. The order is
# shuffled as in `make test` (the seed is printed; SEED=N replays it): the session's operator serves
# only namespaces of its own, so the chart and Argo CD tests share the cluster with it in any order.
USE_EXISTING_CLUSTER=true KUBECONFIG="$kubeconfig" .venv/bin/pytest -m e2e -p randomly \
  --randomly-seed="${SEED:-default}" tests/e2e tests/chart tests/argocd/test_against_apiserver.py "$@"
