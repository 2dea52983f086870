#!/usr/bin/env bash
# Builds the OCI registry clients the end-to-end tests use as a user would -- crane (go-containerregistry),
# oras and cosign (sigstore) -- from Go modules into the cache hack/build-control-plane.sh uses, so no
# Docker or downloaded release binary is needed. Reuses binaries already built for the pinned versions.
# Prints the directory holding them.
set -euo pipefail

CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
COSIGN_VERSION="${COSIGN_VERSION:-v3.1.3}"

cache_root="${ECR_TAG_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-tag-operator}"
bin_dir="$cache_root/bin/crane-${CRANE_VERSION}_oras-${ORAS_VERSION}_cosign-${COSIGN_VERSION}"
mkdir -p "$bin_dir"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

log() { printf '[build-oci-clients] %s\n' "$*" >&2; }
have() { [ -x "$bin_dir/$1" ]; }

# None of the three release go.mod files has replace directives, so `go install pkg@version` builds
# each exactly as its module pins its dependencies. Each binary's version comes from the module's
# build info (crane and cosign read it; oras compiles its version in).
build() {
  local name="$1" pkg="$2" started
  started=$(date +%s)
  log "building $name from $pkg"
  GOBIN="$bin_dir" go install -trimpath -ldflags "-s -w" "$pkg"
  log "$name built in $(( $(date +%s) - started ))s"
}

start=$(date +%s)
have crane || build crane "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
have oras || build oras "oras.land/oras/cmd/oras@$ORAS_VERSION"
have cosign || build cosign "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION"
log "ready in $(( $(date +%s) - start ))s: $bin_dir"
echo "$bin_dir"
