#!/usr/bin/env bash
# Builds the Go-based peer tools used by the registry tests and benchmarks
# into a cache folder (default $HOME/.cache/moat-tools/bin), each in its own
# throwaway wrapper module under a temp dir (never in moat's go.mod).
# Idempotent: a tool already present is skipped.
set -euo pipefail
DEST="${MOAT_TEST_TOOLS:-$HOME/.cache/moat-tools/bin}"
mkdir -p "$DEST"
export GOFLAGS=-buildvcs=false GOWORK=off

build() { # name module@version package [extra go.mod lines]
  local name=$1 modver=$2 pkg=$3 extra=${4:-}
  if [ -x "$DEST/$name" ]; then echo "build-tools: $name present"; return; fi
  local tmp; tmp=$(mktemp -d)
  ( cd "$tmp"
    go mod init moat-tools-wrapper >/dev/null 2>&1
    [ -n "$extra" ] && printf '%s\n' "$extra" >> go.mod
    go get "$modver" >/dev/null
    if [ "$name" = oci-conformance.test ]; then
      go test -c -o "$DEST/$name" "$pkg"
    else
      go build -o "$DEST/$name" "$pkg"
    fi )
  rm -rf "$tmp"
  echo "build-tools: built $name"
}

build crane github.com/google/go-containerregistry/cmd/crane@v0.22.1 github.com/google/go-containerregistry/cmd/crane
build registry github.com/distribution/distribution/v3/cmd/registry@v3.1.2 github.com/distribution/distribution/v3/cmd/registry
build versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0 github.com/versity/versitygw/cmd/versitygw
build oci-conformance.test github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111 github.com/opencontainers/distribution-spec/conformance
