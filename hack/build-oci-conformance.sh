#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance test (github.com/opencontainers/distribution-spec/conformance)
# from Go modules into a cache outside the repository, for tests/ecr/test_oci_conformance.py to run
# against the ECR emulator's registry face. Reuses a binary already built for the pinned version.
# Prints the binary's path.
#
# The package is a plain program now: upstream deprecates `go test -c` for it (its test is a shim that
# runs main), so it is built with `go build`.
set -euo pipefail

# The conformance module has no release tags of its own: pin a commit of distribution-spec's main.
CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}"

cache_root="${ECR_TAG_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-tag-operator}"
bin_dir="$cache_root/bin/oci-conformance-$CONFORMANCE_VERSION"
work="$cache_root/build"
binary="$bin_dir/oci-conformance"
mkdir -p "$bin_dir" "$work"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -p=1" GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

log() { printf '[build-oci-conformance] %s\n' "$*" >&2; }

build() {
  local dir="$work/oci-conformance-$CONFORMANCE_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  go mod init local/oci-conformance-wrapper >/dev/null 2>&1
  go mod edit -require="github.com/opencontainers/distribution-spec/conformance@$CONFORMANCE_VERSION"
  log "building the OCI conformance test $CONFORMANCE_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$binary.tmp" github.com/opencontainers/distribution-spec/conformance
  mv "$binary.tmp" "$binary"  # a reader never finds a half-written binary
}

start=$(date +%s)
[ -x "$binary" ] || build
log "ready in $(( $(date +%s) - start ))s: $binary"
echo "$binary"
