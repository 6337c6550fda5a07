#!/usr/bin/env bash
# Installs a real Kubernetes API server and etcd for the admission webhook
# end-to-end test (internal/admission), as /work/shared/PEERS.md describes:
#   - kube-apiserver v1.37.2 built from the Go module proxy in a throwaway
#     wrapper module that requires k8s.io/kubernetes and replaces each staging
#     module (./staging/src/k8s.io/X) with its published v0.37.2 version;
#   - etcd from the Debian package etcd-server, unpacked with dpkg -x (no
#     system service is installed or started).
# Into ${MOAT_TEST_TOOLS:-$HOME/.cache/moat-tools/bin}. Idempotent: a binary
# already present is kept. Cold kube-apiserver build: ~5 min, ~2.7 GB cache.
set -euo pipefail
VERSION=v1.37.2
STAGING=v0.${VERSION#v1.}
DEST="${MOAT_TEST_TOOLS:-$HOME/.cache/moat-tools/bin}"
mkdir -p "$DEST"
export GOFLAGS=-buildvcs=false GOWORK=off GOTOOLCHAIN=local

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# etcd
if [ -x "$DEST/etcd" ] && "$DEST/etcd" --version 2>/dev/null | grep -q "etcd Version"; then
  echo "kube.sh: $DEST/etcd present"
else
  tmp=$(mktemp -d)
  ( cd "$tmp"
    if ! apt-get download etcd-server >/dev/null 2>&1; then
      as_root apt-get update -qq
      apt-get download etcd-server >/dev/null
    fi
    dpkg -x etcd-server_*.deb x
    bin=x/usr/bin/etcd
    [ -x "$bin" ] || { echo "kube.sh: no usr/bin/etcd in the etcd-server package" >&2; exit 1; }
    cp "$bin" "$DEST/etcd.tmp" && mv "$DEST/etcd.tmp" "$DEST/etcd" )
  rm -rf "$tmp"
  echo "kube.sh: installed $DEST/etcd"
fi

# kube-apiserver
if [ -x "$DEST/kube-apiserver" ]; then
  echo "kube.sh: $DEST/kube-apiserver present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
kmod=$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$kmod" ] || { echo "kube.sh: cannot download k8s.io/kubernetes@$VERSION" >&2; exit 1; }
{
  echo "module moat-peer-kube"
  echo
  sed -n 's/^go \(.*\)$/go \1/p' "$kmod" | head -1
  echo
  echo "require k8s.io/kubernetes $VERSION"
  # every staging replace, pointed at the published version
  grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$kmod" \
    | awk '{print $1}' | sort -u \
    | grep -vE '^k8s\.io/(sample-cli-plugin|sample-controller)$' \
    | while read -r m; do echo "replace $m => $m $STAGING"; done
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod tidy >/dev/null 2>&1 || go get "k8s.io/kubernetes@$VERSION" >/dev/null
major=${VERSION#v}; major=${major%%.*}
minor=${VERSION#v*.}; minor=${minor%%.*}
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $p.gitVersion=$VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
done
go build -mod=mod -trimpath -ldflags "$ld" -o "$DEST/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$DEST/kube-apiserver.tmp" "$DEST/kube-apiserver"
echo "kube.sh: built $DEST/kube-apiserver"
