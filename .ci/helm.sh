#!/usr/bin/env bash
# Install Helm from the Go module proxy when it is missing, and print where it is.
#
#   bash .ci/helm.sh            -> prints the absolute path of a helm v3.21.4 binary
#
# Built with `go install helm.sh/helm/v3/cmd/helm@VERSION` (Go from PATH or /usr/local/go/bin)
# into a cache outside the clone: ${LAMMPS_STREAM_HELM_BIN:-~/.cache/lammps-stream/bin}.
# Idempotent: a binary of the right version already there is reused, nothing is downloaded.
# Everything but the final path goes to stderr, so `helm=$(bash .ci/helm.sh)` works.
set -euo pipefail

version="${HELM_VERSION:-v3.21.4}"
bin_dir="${LAMMPS_STREAM_HELM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/lammps-stream/bin}"
helm="$bin_dir/helm"

installed_version() {
  "$helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "$helm" && "$(installed_version)" == "$version" ]]; then
  echo "$helm"
  exit 0
fi

go_bin="$(command -v go || true)"
[[ -z "$go_bin" && -x /usr/local/go/bin/go ]] && go_bin=/usr/local/go/bin/go
if [[ -z "$go_bin" ]]; then
  echo "helm.sh: Go is needed to build helm $version (go install); put go on PATH" >&2
  exit 2
fi

mkdir -p "$bin_dir"
echo "helm.sh: building helm $version with $("$go_bin" version | cut -d' ' -f3) into $bin_dir" >&2
# The Go module proxy only (it also serves the checksum database); no VCS fetches.
GOBIN="$bin_dir" GOPROXY="https://proxy.golang.org" GOFLAGS="-buildvcs=false" \
  CGO_ENABLED=0 "$go_bin" install "helm.sh/helm/v3/cmd/helm@$version" >&2

got="$(installed_version)"
if [[ "$got" != "$version" ]]; then
  echo "helm.sh: built $helm but it reports version '${got:-?}', expected $version" >&2
  exit 1
fi
echo "$helm"
