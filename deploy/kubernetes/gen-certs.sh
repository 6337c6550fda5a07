#!/usr/bin/env bash
# Certificate setup without cert-manager: makes a private CA and a serving
# certificate for moat-webhook.moat-system.svc with openssl, stores them in
# the moat-webhook-tls Secret, and writes the CA into the webhooks'
# caBundle. Run after namespace.yaml is applied:
#   deploy/kubernetes/gen-certs.sh && kubectl apply -k deploy/kubernetes
set -euo pipefail
cd "$(dirname "$0")"
NS=moat-system SVC=moat-webhook
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=moat webhook CA" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$SVC.$NS.svc" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' "$SVC" "$NS" "$SVC" "$NS" > "$tmp/ext"
openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -days 825 \
  -extfile "$tmp/ext" -out "$tmp/tls.crt" 2>/dev/null
kubectl -n "$NS" create secret tls moat-webhook-tls --cert="$tmp/tls.crt" --key="$tmp/tls.key" --dry-run=client -o yaml | kubectl apply -f -
ca=$(base64 -w0 < "$tmp/ca.crt")
for f in validating-webhook.yaml mutating-webhook.yaml; do
  sed -i "s|caBundle: .*|caBundle: \"$ca\"|" "$f"
done
echo "gen-certs.sh: secret $NS/moat-webhook-tls created; caBundle written into the webhook manifests"
