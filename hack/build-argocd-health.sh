#!/usr/bin/env bash
# Builds hack/argocd-health (a health check evaluated by Argo CD's own code: argo-cd's util/lua and
# gitops-engine's health package, at the release its go.mod pins) into the cache the control-plane
# binaries use. Reuses a binary built from the same go.mod, go.sum and sources. Prints its path.
# With --path: prints the path only, building nothing (tests use it to find the binary).
set -euo pipefail
cd "$(dirname "$0")/argocd-health"

ARGOCD_VERSION=$(sed -n 's#^[[:space:]]*github.com/argoproj/argo-cd/v3 \(v[^ ]*\)$#\1#p' go.mod)
[ -n "$ARGOCD_VERSION" ] || { echo "[build-argocd-health] no argo-cd/v3 version in go.mod" >&2; exit 1; }
# The sources' hash is in the directory name: an edited harness is never served from an old build.
sources=$(cat go.mod go.sum ./*.go | sha256sum | cut -c1-12)

cache_root="${ECR_TAG_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-tag-operator}"
bin_dir="$cache_root/bin/argocd-health-${ARGOCD_VERSION}-${sources}"
binary="$bin_dir/argocd-health"
if [ "${1:-}" = "--path" ]; then
  echo "$binary"
  exit 0
fi

# go.sum is committed: the build fails rather than resolve other versions than those reviewed.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly ${GOFLAGS:-}" GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

log() { printf '[build-argocd-health] %s\n' "$*" >&2; }

start=$(date +%s)
if [ ! -x "$binary" ]; then
  mkdir -p "$bin_dir"
  log "building argocd-health against Argo CD $ARGOCD_VERSION (about 4 minutes on two cores when cold)"
  # Built beside the final name, then renamed: a concurrent run never sees half a binary.
  go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$binary.tmp.$$" .
  mv "$binary.tmp.$$" "$binary"
fi
log "ready in $(( $(date +%s) - start ))s: $binary"
echo "$binary"
