package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/signing"
)

// TestSignCommands runs key generate, sign, verify, attest and
// verify-attestation end to end against a registry on 127.0.0.1.
func TestSignCommands(t *testing.T) {
	ts := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer ts.Close()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("MOAT_KEY_PASSWORD", "test-pass")
	host := strings.TrimPrefix(ts.URL, "http://")
	img := it.Image(t, it.Step{Layer: it.Layer(t,
		it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0","license":"WTFPL"}`)),
		CreatedBy: "COPY app /app"})
	ref := host + "/team/app"
	tag, _ := name.NewTag(ref+":1.0", name.Insecure)
	if err := remote.Write(tag, img, remote.WithTransport(remote.DefaultTransport)); err != nil {
		t.Fatal(err)
	}
	dig, _ := img.Digest()
	dir := t.TempDir()
	signer, other := filepath.Join(dir, "signer"), filepath.Join(dir, "other")

	if out, err := run(t, "key", "generate", "--output-key-prefix", signer); err != nil || !strings.Contains(out, "Key fingerprint: SHA256:") {
		t.Fatalf("key generate: %v\n%s", err, out)
	}
	if _, err := run(t, "key", "generate", "--output-key-prefix", signer); err == nil {
		t.Fatal("key generate overwrote an existing key")
	}
	if _, err := run(t, "key", "generate", "--alg", "ed25519", "--output-key-prefix", other); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "sign", "--insecure", "--key", signer+".key", "-a", "team=payments", ref+":1.0")
	if err != nil || !strings.Contains(out, "Signed "+ref+"@"+dig.String()) || !strings.Contains(out, ".sig") || !strings.Contains(out, "referrer:") {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	t.Setenv("MOAT_KEY_PASSWORD", "wrong")
	if _, err := run(t, "sign", "--insecure", "--key", signer+".key", ref+":1.0"); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	t.Setenv("MOAT_KEY_PASSWORD", "test-pass")

	out, err = run(t, "verify", "--insecure", "--key", signer+".pub", ref+":1.0")
	if err != nil || !strings.Contains(out, "VERIFIED") || !strings.Contains(out, "team=payments") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err = run(t, "verify", "--insecure", "--key", signer+".pub", "--format", "json", ref+"@"+dig.String())
	var res []signing.VerifyResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res[0].Verified || res[0].Signatures[0].SignedAt == "" {
		t.Fatalf("verify json: %v\n%s", err, out)
	}
	// A directory of trusted keys (holding private keys too) verifies.
	if _, err := run(t, "verify", "--insecure", "--key", dir, ref+":1.0"); err != nil {
		t.Fatalf("verify dir: %v", err)
	}
	// Untrusted key, missing annotation: gate errors (exit 1).
	var g *gateError
	out, err = run(t, "verify", "--insecure", "--key", other+".pub", ref+":1.0")
	if !errors.As(err, &g) || !strings.Contains(out, "untrusted") {
		t.Fatalf("untrusted: %v\n%s", err, out)
	}
	if _, err = run(t, "verify", "--insecure", "--key", signer+".pub", "-a", "team=other", ref+":1.0"); !errors.As(err, &g) {
		t.Fatalf("annotation: %v", err)
	}
	// Registry errors are not gate errors (exit 2).
	if _, err = run(t, "verify", "--insecure", "--key", signer+".pub", "127.0.0.1:1/none:1"); err == nil || errors.As(err, &g) {
		t.Fatalf("unreachable: %v", err)
	}

	// Attestations: SBOM from a scan, provenance from flags.
	if out, err = run(t, "attest", "--insecure", "--key", signer+".key", "--type", "sbom", ref+":1.0"); err != nil {
		t.Fatalf("attest sbom: %v\n%s", err, out)
	}
	commit := strings.Repeat("ab", 20)
	if out, err = run(t, "attest", "--insecure", "--key", signer+".key", "--type", "provenance", "--source-repo", "https://example.com/team/app",
		"--commit", commit, "--builder-id", "https://ci.example.com/runner", ref+":1.0"); err != nil {
		t.Fatalf("attest provenance: %v\n%s", err, out)
	}
	if _, err = run(t, "attest", "--insecure", "--key", signer+".key", "--type", "provenance", "--commit", "abc", ref+":1.0"); err == nil {
		t.Fatal("provenance without source repo accepted")
	}
	out, err = run(t, "verify-attestation", "--insecure", "--key", signer+".pub", "--type", "sbom", "--format", "json", ref+":1.0")
	var ar signing.AttestationsResult
	if err != nil || json.Unmarshal([]byte(out), &ar) != nil || !ar.Verified || len(ar.Attestations) != 1 ||
		!strings.Contains(string(ar.Attestations[0].Predicate), "left-pad") {
		t.Fatalf("verify-attestation sbom: %v\n%.2000s", err, out)
	}
	out, err = run(t, "verify-attestation", "--insecure", "--key", signer+".pub", "--type", "provenance", "--format", "json", ref+":1.0")
	if err != nil || !strings.Contains(out, commit) || !strings.Contains(out, "https://ci.example.com/runner") || !strings.Contains(out, "layer-0") {
		t.Fatalf("verify-attestation provenance: %v\n%.2000s", err, out)
	}
	out, err = run(t, "verify-attestation", "--insecure", "--key", signer+".pub", "--type", "vuln", ref+":1.0")
	if !errors.As(err, &g) || !strings.Contains(err.Error(), "no attestations of type "+signing.PredicateVuln) {
		t.Fatalf("missing vuln attestation: %v\n%s", err, out)
	}
	if _, err = run(t, "verify-attestation", "--insecure", "--key", other+".pub", ref+":1.0"); !errors.As(err, &g) {
		t.Fatalf("untrusted attestation key: %v", err)
	}
}

// TestKeyImport imports a plain PEM key and re-imports moat's own
// (cosign-format) key; the imported keys sign what the original verifies.
func TestKeyImport(t *testing.T) {
	t.Setenv("MOAT_KEY_PASSWORD", "import-pass")
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(ec)
	plain := filepath.Join(dir, "plain.pem")
	os.WriteFile(plain, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	out, err := run(t, "key", "import", "--output-key-prefix", filepath.Join(dir, "imported"), plain)
	if err != nil || !strings.Contains(out, signing.Fingerprint(ec.Public())) {
		t.Fatalf("import plain PEM: %v\n%s", err, out)
	}
	enc, _ := os.ReadFile(filepath.Join(dir, "imported.key"))
	k, err := signing.ParsePrivateKey(enc, []byte("import-pass"))
	if err != nil || !signing.IsEncryptedPEM(enc) || signing.Fingerprint(k.Public()) != signing.Fingerprint(ec.Public()) {
		t.Fatalf("imported key: %v", err)
	}
	// Re-import the encrypted key: same key, needs the passphrase.
	if _, err := run(t, "key", "import", "--output-key-prefix", filepath.Join(dir, "again"), filepath.Join(dir, "imported.key")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOAT_KEY_PASSWORD", "wrong")
	if _, err := run(t, "key", "import", "--output-key-prefix", filepath.Join(dir, "third"), filepath.Join(dir, "imported.key")); err == nil ||
		!strings.Contains(err.Error(), "passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), 0o600)
	if _, err := run(t, "key", "import", "--output-key-prefix", filepath.Join(dir, "j"), filepath.Join(dir, "junk.pem")); err == nil ||
		!strings.Contains(err.Error(), "unsupported PEM block type") {
		t.Fatalf("openssh key: %v", err)
	}
}
