#!/usr/bin/env bash
# The whole moat test suite, runnable on a fresh Debian machine with Go:
# installs what the end-to-end tests need (Debian packages, a running Docker
# engine, peer tools built once from the Go module proxy into a cache
# folder), then vets and tests every package.
#
#   scripts/test.sh            # everything
#   scripts/test.sh ./internal/scan/...   # only these packages (setup still runs)
set -euo pipefail
cd "$(dirname "$0")/.."

export MOAT_TEST_TOOLS="${MOAT_TEST_TOOLS:-$HOME/.cache/moat-tools/bin}"
export PATH="$MOAT_TEST_TOOLS:$PATH"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# 1. Debian packages the end-to-end tests use.
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v skopeo >/dev/null || need+=(skopeo)
command -v objcopy >/dev/null || need+=(binutils)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v dpkg-query >/dev/null || true
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. A Docker engine (the e2e tests scan and push through a real one).
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: starting dockerd"
  (as_root dockerd >/tmp/moat-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "test.sh: dockerd did not start:"; tail -20 /tmp/moat-dockerd.log; exit 1; }
fi

# 3. Peer tools from the Go module proxy (and etcd from Debian), built once
#    into the cache folder: crane, the reference registry, versitygw, the OCI
#    conformance suite, kube-apiserver + etcd, cosign, syft.
scripts/build-tools.sh
scripts/peers/kube.sh
scripts/peers/cosign.sh
scripts/peers/syft.sh

# 4. Vet and test.
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
go vet "${pkgs[@]}"
go test -count=1 -timeout 30m "${pkgs[@]}"
