package signing

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, alg := range []string{"", AlgEd25519} {
		k, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := EncryptPrivateKey(k, []byte("correct horse"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(enc), "-----BEGIN "+SigstorePEMType+"-----") || !IsEncryptedPEM(enc) {
			t.Fatalf("unexpected PEM header: %.60s", enc)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		if strings.Contains(string(enc), string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: der}))[20:60]) {
			t.Fatal("private key material appears unencrypted")
		}
		back, err := ParsePrivateKey(enc, []byte("correct horse"))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if Fingerprint(back.Public()) != Fingerprint(k.Public()) {
			t.Fatal("decrypted key differs")
		}
		if _, err := ParsePrivateKey(enc, []byte("wrong")); !errors.Is(err, ErrPassphrase) {
			t.Fatalf("wrong passphrase: got %v", err)
		}
		pub, err := MarshalPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		p2, err := ParsePublicKey(pub)
		if err != nil || Fingerprint(p2) != Fingerprint(k.Public()) {
			t.Fatalf("public key round trip: %v", err)
		}
		msg := []byte("payload")
		sig, err := SignMessage(back, msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyMessage(p2, msg, sig); err != nil {
			t.Fatal(err)
		}
		if err := VerifyMessage(p2, []byte("other"), sig); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("tampered message verified: %v", err)
		}
	}
}

func TestParsePlainPEMKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(ed)
	small, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p8small, _ := x509.MarshalPKCS8PrivateKey(small)
	cases := []struct {
		typ     string
		der     []byte
		wantErr string
	}{
		{"EC PRIVATE KEY", sec1, ""},
		{"PRIVATE KEY", p8, ""},
		{"PRIVATE KEY", p8small, "unsupported ECDSA curve P-224"},
		{"PRIVATE KEY", []byte("garbage"), "PRIVATE KEY block"},
		{"OPENSSH PRIVATE KEY", p8, "unsupported PEM block type"},
		{"ENCRYPTED PRIVATE KEY", p8, "not supported"},
	}
	for _, c := range cases {
		_, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: c.typ, Bytes: c.der}), nil)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: got %v, want %q", c.typ, err, c.wantErr)
		}
	}
	if _, err := ParsePrivateKey([]byte("not pem"), nil); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("not pem: %v", err)
	}
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})); err == nil ||
		!strings.Contains(err.Error(), "got a private key") {
		t.Errorf("private as public: %v", err)
	}
}

func TestLoadPublicKeys(t *testing.T) {
	dir := t.TempDir()
	var fps []string
	for i, alg := range []string{"", AlgEd25519} {
		k, _ := GenerateKey(alg)
		pub, _ := MarshalPublicKey(k.Public())
		enc, _ := EncryptPrivateKey(k, []byte("pw"))
		base := filepath.Join(dir, []string{"a", "b"}[i])
		os.WriteFile(base+".pub", pub, 0o644)
		os.WriteFile(base+".key", enc, 0o600)
		os.WriteFile(base+"-priv.pem", enc, 0o600) // skipped: private
		fps = append(fps, Fingerprint(k.Public()))
	}
	keys, err := LoadPublicKeys(dir)
	if err != nil || len(keys) != 2 || keys[0].Fingerprint != fps[0] || keys[1].Fingerprint != fps[1] {
		t.Fatalf("dir: %v %+v", err, keys)
	}
	keys, err = LoadPublicKeys(filepath.Join(dir, "b.pub") + "," + filepath.Join(dir, "a.pub") + "," + filepath.Join(dir, "a.pub"))
	if err != nil || len(keys) != 2 || keys[0].Fingerprint != fps[1] {
		t.Fatalf("list: %v %+v", err, keys)
	}
	if _, err := LoadPublicKeys(filepath.Join(dir, "a.key")); err == nil {
		t.Fatal("private key file accepted as trusted key")
	}
	if _, err := LoadPublicKeys(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no public key") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := LoadPublicKeys(""); err == nil {
		t.Fatal("empty spec accepted")
	}
}
