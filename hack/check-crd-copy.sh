#!/usr/bin/env bash
# The Helm chart carries byte-for-byte copies of files whose single source of truth lives
# elsewhere in the repository (Helm can only read files inside the chart):
#   crds/ecrimagetags.ecrtag.dev.yaml         -> charts/ecr-tag-operator/files/crd.yaml
#   crds/ecrtagpolicies.ecrtag.dev.yaml       -> charts/ecr-tag-operator/files/crd-ecrtagpolicies.yaml
#   argocd/ecrtag.dev/EcrImageTag/health.lua  -> charts/ecr-tag-operator/files/argocd-health.lua
# Without arguments: exit 1 with a diff for each copy that differs. With --fix: copy the sources over
# the copies.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=(
  "crds/ecrimagetags.ecrtag.dev.yaml charts/ecr-tag-operator/files/crd.yaml"
  "crds/ecrtagpolicies.ecrtag.dev.yaml charts/ecr-tag-operator/files/crd-ecrtagpolicies.yaml"
  "argocd/ecrtag.dev/EcrImageTag/health.lua charts/ecr-tag-operator/files/argocd-health.lua"
)
status=0
for pair in "${pairs[@]}"; do
  read -r source copy <<<"$pair"
  if [ "${1:-}" = "--fix" ]; then
    cp "$source" "$copy"
    echo "copied $source to $copy"
  elif ! cmp -s "$source" "$copy"; then
    diff -u "$source" "$copy" || true
    echo "$copy differs from $source: run $0 --fix" >&2
    status=1
  fi
done
exit "$status"
