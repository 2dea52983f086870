#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and helm from Go modules into a cache outside the repository,
# so tests get a real control plane without Docker (the way controller-runtime's envtest does).
# Reuses binaries already built for the pinned versions (helm only if it assumes the pinned Kubernetes
# version, see build_helm). Prints the directory holding them.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"   # the etcd that k8s.io/kubernetes ${K8S_VERSION} requires
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
K8S_MINOR="${K8S_VERSION#v1.}"; K8S_MINOR="${K8S_MINOR%%.*}"

cache_root="${ECR_TAG_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-tag-operator}"
bin_dir="$cache_root/bin/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"
work="$cache_root/build"
mkdir -p "$bin_dir" "$work"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
have() { [ -x "$bin_dir/$1" ]; }

build_kubernetes() {
  local dir="$work/kubernetes-$K8S_VERSION" staging_ver
  staging_ver="v0.${K8S_VERSION#v1.}"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  go mod init local/kubernetes-wrapper >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 with local replaces, which a dependent
  # ignores: replace each one named in this release's go.mod with its published release.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local mods
  mods=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  [ -n "$mods" ] || { log "no staging replaces found in $gomod"; exit 1; }
  for m in $mods; do go mod edit -replace="$m=$m@$staging_ver"; done
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kube-apiserver and kubectl $K8S_VERSION (several minutes on two cores)"
  go build -trimpath -ldflags "-s -w$ldflags" -o "$bin_dir/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local dir="$work/etcd-$ETCD_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  # etcd's release go.mod has local replaces too, so `go install pkg@version` refuses it.
  go mod init local/etcd-wrapper >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    go mod edit -require="go.etcd.io/etcd/$m@$ETCD_VERSION"
  done
  log "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3
}

# What `helm template` assumes when given no --kube-version (and no cluster): printed by a throwaway chart.
helm_default_kube_version() {
  local probe
  probe=$(mktemp -d "$work/helm-probe.XXXXXX")
  mkdir -p "$probe/chart/templates"
  printf 'apiVersion: v2\nname: probe\nversion: 0.0.0\n' >"$probe/chart/Chart.yaml"
  printf '# {{ .Capabilities.KubeVersion.Version }}\n' >"$probe/chart/templates/probe.yaml"
  HOME="$probe" HELM_CACHE_HOME="$probe/cache" HELM_CONFIG_HOME="$probe/config" HELM_DATA_HOME="$probe/data" \
    "$bin_dir/helm" template probe "$probe/chart" 2>/dev/null | sed -n 's/^# \(v[0-9][0-9.]*\)$/\1/p' || true
  rm -rf "$probe"
}

helm_kube_version_ok() { [ "$(helm_default_kube_version)" = "v1.$K8S_MINOR.0" ]; }

build_helm() {
  # Helm's default Kubernetes version (for `helm template` and `helm lint` without a cluster) is set
  # by ldflags, as helm's own Makefile does; without them it is v1.20.0, which charts requiring a
  # newer Kubernetes refuse. Here it is the pinned Kubernetes' minor version.
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" pkg
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
  done
  log "building helm $HELM_VERSION (default Kubernetes v1.$K8S_MINOR.0)"
  GOBIN="$bin_dir" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  helm_kube_version_ok || {
    log "helm $HELM_VERSION still assumes Kubernetes $(helm_default_kube_version), not v1.$K8S_MINOR.0:"
    log "its k8sVersionMajor/k8sVersionMinor variables moved; fix the -X flags in build_helm"
    exit 1
  }
}

start=$(date +%s)
{ have kube-apiserver && have kubectl; } || build_kubernetes
have etcd || build_etcd
# A helm built before build_helm set its default Kubernetes version is rebuilt (the directory name
# does not change with the build recipe).
{ have helm && helm_kube_version_ok; } || build_helm
log "ready in $(( $(date +%s) - start ))s: $bin_dir"
echo "$bin_dir"
