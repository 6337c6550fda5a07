package signing

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServerKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "registry.key")
	if _, _, err := LoadOrCreateServerKey(path, nil); err == nil {
		t.Fatal("empty passphrase accepted")
	}
	k, created, err := LoadOrCreateServerKey(path, []byte("s3cret"))
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if !IsEncryptedPEM(data) || strings.Contains(string(data), "s3cret") {
		t.Fatal("server key not encrypted at rest")
	}
	pubs, err := LoadPublicKeys(filepath.Join(dir, "keys", "registry.pub"))
	if err != nil || pubs[0].Fingerprint != Fingerprint(k.Public()) {
		t.Fatalf("public key: %v", err)
	}
	k2, created, err := LoadOrCreateServerKey(path, []byte("s3cret"))
	if err != nil || created || Fingerprint(k2.Public()) != Fingerprint(k.Public()) {
		t.Fatalf("reload: %v %v", created, err)
	}
	if _, _, err := LoadOrCreateServerKey(path, []byte("wrong")); !errors.Is(err, ErrPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// Every use of the key is recorded; the attestation verifies.
	var uses []string
	a := &AuditedSigner{Signer: k2, Purpose: "scan-on-push sbom", Record: func(p, fp string) { uses = append(uses, p+" "+fp) }}
	art, err := NewAttestation(a, "reg.example/team/app", "sha256:"+hex64, AttestOptions{PredicateType: PredicateCycloneDX, Predicate: json.RawMessage(`{"bomFormat":"CycloneDX"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) != 1 || !strings.HasPrefix(uses[0], "scan-on-push sbom SHA256:") {
		t.Fatalf("uses %q", uses)
	}
	env, payload, err := ParseEnvelope(art.Content)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyEnvelope(env, payload, pubs); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSignature(a, "reg.example/team/app", "sha256:short", nil); err == nil {
		t.Fatal("bad digest accepted")
	}
}
