#!/usr/bin/env bash
# What `make demo` and `make test` need from outside Python, installed when missing:
#   bash .ci/system-deps.sh venv   # what makes .venv/ (Debian's python3-venv: venv and pip)
#   bash .ci/system-deps.sh demo   # java 17+, Maven (the local Kafka), openssl (its TLS)
#   bash .ci/system-deps.sh test   # the same, plus Prometheus, the Pushgateway, a single-node
#                                  # Slurm (.ci/slurm.sh up) and helm (.ci/helm.sh)
# apt-get needs root; without it, the missing packages are named and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"

missing=()
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if [[ "$what" != venv ]]; then
  # Kafka 4.x needs Java 17+: Debian's default JRE is 17 on bookworm, 21 on trixie
  java_major="$({ java -version 2>&1 || true; } | sed -n 's/.*version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n1)"
  [[ -n "$java_major" && "$java_major" -ge 17 ]] || missing+=(default-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v openssl >/dev/null || missing+=(openssl)   # the stack's TLS certificates
fi
if [[ "$what" == test ]]; then
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  command -v prometheus >/dev/null || missing+=(prometheus)
fi
if ((${#missing[@]})); then
  if [[ "$(id -u)" != 0 ]]; then
    echo "missing: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 2
  fi
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ "$what" == test ]]; then
  bash .ci/slurm.sh up
  bash .ci/helm.sh >/dev/null   # helm v3.21.4 from the Go module proxy, built once
fi
