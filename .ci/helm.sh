#!/usr/bin/env bash
# Install Helm from the Go module proxy when it is missing, and print where it is.
#
#   helm="$(bash .ci/helm.sh)"     # absolute path of a helm v3.21.4 binary
#
# Built with `go install helm.sh/helm/v3/cmd/helm@VERSION` (go from PATH, else
# /usr/local/go/bin/go, else a Go toolchain fetched from the Go module proxy as the module
# golang.org/toolchain, checked against the checksum database, and kept in
# ~/.cache/lammps-stream/go/GOVERSION) into a cache outside the clone,
# ${HELM_BIN_DIR:-~/.cache/lammps-stream/bin}. The ldflags are those of Helm's own
# Makefile, so `helm version` names the release and the default Kubernetes version is the one
# its client-go targets (tests pass --kube-version anyway). Idempotent: a binary of the right
# version already there is reused and nothing is downloaded. Only the path goes to stdout.
set -euo pipefail

version="${HELM_VERSION:-v3.21.4}"
bin_dir="${HELM_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lammps-stream/bin}"
helm="$bin_dir/helm"

installed_version() {
  "$helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "$helm" && "$(installed_version)" == "$version" ]]; then
  echo "$helm"
  exit 0
fi

# The Go module proxy only (it serves the checksum database too); no VCS fetches.
export GOPROXY="https://proxy.golang.org" GOFLAGS="-buildvcs=false" CGO_ENABLED=0

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
  go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
  go_version="${GO_TOOLCHAIN_VERSION:-go1.26.8}"
  go_dir="${XDG_CACHE_HOME:-$HOME/.cache}/lammps-stream/go/$go_version"
  echo "helm.sh: no go on PATH; using $go_version from the Go module proxy ($go_dir)" >&2
  go_bin="$(python3 "$(dirname "$0")/go_toolchain.py" "$go_version" "$go_dir")"
  export GOTOOLCHAIN=local
fi
module="helm.sh/helm/v3"
echo "helm.sh: building helm $version with $("$go_bin" env GOVERSION) into $bin_dir" >&2
go_mod="$("$go_bin" mod download -json "$module@$version" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$go_mod")"   # e.g. v0.36.2
k8s_minor="$(echo "$client_go" | cut -d. -f2)"
ldflags="-w -s -X $module/internal/version.version=$version"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X $module/$pkg.k8sVersionMajor=1 -X $module/$pkg.k8sVersionMinor=$k8s_minor"
done
mkdir -p "$bin_dir"
GOBIN="$bin_dir" "$go_bin" install -trimpath -ldflags "$ldflags" "$module/cmd/helm@$version" >&2

got="$(installed_version)"
if [[ "$got" != "$version" ]]; then
  echo "helm.sh: built $helm but it reports version '${got:-?}', expected $version" >&2
  exit 1
fi
echo "helm.sh: $("$helm" version --short) (default Kubernetes 1.$k8s_minor)" >&2
echo "$helm"
