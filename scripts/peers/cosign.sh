#!/usr/bin/env bash
# Builds cosign v2.6.5 (the peer signer the signing interop tests and the
# verify benchmark compare with) into ${MOAT_TEST_TOOLS:-$HOME/.cache/moat-tools/bin}/cosign
# in a throwaway wrapper module (temp dir), never touching moat's go.mod.
# Built as cosign's own Linux release is (.goreleaser.yml: CGO_ENABLED=0,
# -trimpath), so the verify benchmark compares release builds of both tools.
# Idempotent: skips the build when the binary of this version and build
# exists (a stamp file beside it records which).
# Use it offline and key-based (see /work/shared/PEERS.md):
#   cosign sign --key K --tlog-upload=false --allow-http-registry --yes REF@DIGEST
#   cosign verify --key K.pub --insecure-ignore-tlog --allow-http-registry --trusted-root EMPTY.json REF
set -euo pipefail
VERSION=v2.6.5
DEST="${MOAT_TEST_TOOLS:-$HOME/.cache/moat-tools/bin}"
BIN="$DEST/cosign"
STAMP="$VERSION CGO_ENABLED=0 -trimpath"
if [ -x "$BIN" ] && [ "$(cat "$BIN.build" 2>/dev/null)" = "$STAMP" ]; then echo "cosign.sh: $BIN present"; exit 0; fi
mkdir -p "$DEST"
export GOFLAGS=-buildvcs=false GOWORK=off

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
go mod init moat-peer-cosign >/dev/null 2>&1
go get "github.com/sigstore/cosign/v2/cmd/cosign@$VERSION" >/dev/null
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-X sigs.k8s.io/release-utils/version.gitVersion=$VERSION" \
  -o "$BIN.tmp" github.com/sigstore/cosign/v2/cmd/cosign
mv "$BIN.tmp" "$BIN"
echo "$STAMP" > "$BIN.build"
echo "cosign.sh: built $BIN"
