#!/usr/bin/env bash
# Builds syft v1.57.0 (the peer SBOM tool the scan benchmark compares with)
# into ${MOAT_TOOLS:-$HOME/.cache/moat-tools}/bin/syft, as /work/shared/PEERS.md
# describes: a throwaway wrapper module (temp dir) that requires syft plus
# syft's own requirements, with two replaces for versions the filtered module
# proxy does not serve. Idempotent: skips the build when the binary exists.
set -euo pipefail
VERSION=v1.57.0
DEST="${MOAT_TOOLS:-$HOME/.cache/moat-tools}/bin"
BIN="$DEST/syft"
if [ -x "$BIN" ]; then echo "syft.sh: $BIN present"; exit 0; fi
mkdir -p "$DEST"
export GOFLAGS=-buildvcs=false GOWORK=off GOTOOLCHAIN=local

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# syft's own go.mod: its require block pins every dependency version.
syftmod=$(go mod download -json "github.com/anchore/syft@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$syftmod" ] || { echo "syft.sh: cannot download github.com/anchore/syft@$VERSION" >&2; exit 1; }
{
  echo "module moat-peer-syft"
  echo
  # keep go directive, require blocks and syft's own replaces; drop module/tool lines
  sed -e '/^module /d' -e '/^toolchain /d' -e '/^tool /d' -e '/^tool (/,/^)/d' "$syftmod"
  echo
  echo "require github.com/anchore/syft $VERSION"
  echo "replace github.com/github/go-spdx/v2 v2.8.0 => github.com/github/go-spdx/v2 v2.7.0"
  echo "replace github.com/docker/cli v29.9.2+incompatible => github.com/docker/cli v29.9.3+incompatible"
} > go.mod
go build -mod=mod -trimpath \
  -ldflags "-X main.version=${VERSION#v}" \
  -o "$BIN.tmp" github.com/anchore/syft/cmd/syft
mv "$BIN.tmp" "$BIN"
echo "syft.sh: built $BIN"
SYFT_CHECK_FOR_APP_UPDATE=false "$BIN" version 2>/dev/null | head -3 || true
