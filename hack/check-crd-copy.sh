#!/usr/bin/env bash
# The Helm chart renders its CRD from charts/ecr-tag-operator/files/crd.yaml, which must be a
# byte-for-byte copy of crds/ecrimagetags.ecrtag.dev.yaml (the single source of truth).
# Without arguments: exit 1 with a diff when they differ. With --fix: copy the source over the copy.
set -euo pipefail
cd "$(dirname "$0")/.."
source_crd=crds/ecrimagetags.ecrtag.dev.yaml
chart_copy=charts/ecr-tag-operator/files/crd.yaml
if [ "${1:-}" = "--fix" ]; then
  cp "$source_crd" "$chart_copy"
  echo "copied $source_crd to $chart_copy"
elif ! cmp -s "$source_crd" "$chart_copy"; then
  diff -u "$source_crd" "$chart_copy" || true
  echo "$chart_copy differs from $source_crd: run $0 --fix" >&2
  exit 1
fi
