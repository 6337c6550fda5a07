package signing

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	mk, created, err := LoadOrCreateMasterKey(path, "")
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi.Mode(), err)
	}
	again, created, err := LoadOrCreateMasterKey(path, "")
	if err != nil || created || again.ID() != mk.ID() {
		t.Fatalf("reload: %v %v", created, err)
	}
	if strings.Contains(mk.String(), string(mk.key[:])) || !strings.Contains(mk.String(), mk.ID()) {
		t.Fatalf("String: %q", mk.String())
	}
	// The environment wins over the file.
	envKey := strings.Repeat("A", 43) + "="
	fromEnv, _, err := LoadOrCreateMasterKey(path, envKey)
	if err != nil || fromEnv.ID() == mk.ID() {
		t.Fatalf("env: %v", err)
	}
	for _, bad := range []string{"not base64!", "c2hvcnQ="} {
		if _, _, err := LoadOrCreateMasterKey(path, bad); err == nil || !strings.Contains(err.Error(), MasterKeyEnv) {
			t.Fatalf("bad env %q: %v", bad, err)
		}
	}
	// A key file others can read is refused.
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateMasterKey(path, ""); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("mode 0644: %v", err)
	}
	if _, _, err := LoadOrCreateMasterKey("", ""); err == nil {
		t.Fatal("no path and no env accepted")
	}
}

func TestSealOpen(t *testing.T) {
	mk, _ := NewMasterKey(bytes.Repeat([]byte{7}, 32))
	other, _ := NewMasterKey(bytes.Repeat([]byte{8}, 32))
	aad := RowAAD("trusted-key", "secure", "release")
	pt := []byte("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
	sealed, err := mk.Seal(pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PUBLIC KEY")) || bytes.Contains(sealed, []byte("abc")) {
		t.Fatal("plaintext visible in the sealed value")
	}
	got, err := mk.Open(sealed, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %v %q", err, got)
	}
	// Another row (project or name): refused, so rows cannot be swapped.
	for _, wrong := range [][]byte{RowAAD("trusted-key", "other", "release"), RowAAD("trusted-key", "secure", "release2"),
		RowAAD("server-key", "secure", "release"), RowAAD("trusted-key", "secur", "erelease")} {
		if _, err := mk.Open(sealed, wrong); !errors.Is(err, ErrSealedTampered) {
			t.Fatalf("open with aad %q: %v", wrong, err)
		}
	}
	if _, err := other.Open(sealed, aad); !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), mk.ID()) {
		t.Fatalf("other master key: %v", err)
	}
	// Any altered byte is refused.
	for i := range sealed {
		b := append([]byte(nil), sealed...)
		b[i] ^= 1
		if _, err := mk.Open(b, aad); err == nil {
			t.Fatalf("byte %d altered: opened", i)
		}
	}
	if _, err := mk.Open(sealed[:20], aad); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("truncated: %v", err)
	}
	// Private keys round-trip.
	k, _ := GenerateKey(AlgEd25519)
	sk, err := mk.SealPrivateKey(k, RowAAD("server-key", "registry"))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := mk.OpenPrivateKey(sk, RowAAD("server-key", "registry"))
	if err != nil || Fingerprint(k2.Public()) != Fingerprint(k.Public()) {
		t.Fatalf("private key: %v", err)
	}
}

// FuzzOpenSealed: arbitrary bytes as a sealed value never panic, and only
// what Seal made opens.
func FuzzOpenSealed(f *testing.F) {
	mk, _ := NewMasterKey(bytes.Repeat([]byte{1}, 32))
	aad := RowAAD("trusted-key", "p", "n")
	good, _ := mk.Seal([]byte("key"), aad)
	f.Add(good)
	f.Add([]byte("MKS1"))
	f.Add(append([]byte("MKS1"), make([]byte, 40)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseSealed(data)
		if err == nil && (len(env.Nonce) != 12 || len(env.Ciphertext) < 16) {
			t.Fatalf("parsed a malformed envelope: %+v", env)
		}
		// Only "key" was ever sealed under this key and aad (the fuzz
		// workers seal their own copy, with another nonce).
		pt, err := mk.Open(data, aad)
		if err == nil && string(pt) != "key" {
			t.Fatalf("forged value opened: %q", pt)
		}
		mk.OpenPrivateKey(data, aad)
	})
}

func FuzzParseMasterKey(f *testing.F) {
	f.Add(strings.Repeat("A", 44))
	f.Add("  " + strings.Repeat("_", 43) + "\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		mk, err := ParseMasterKey(s)
		if err == nil && len(mk.ID()) != 16 {
			t.Fatal("bad id")
		}
	})
}

func TestReseal(t *testing.T) {
	oldMK, _ := NewMasterKey(bytes.Repeat([]byte{1}, 32))
	newMK, _ := NewMasterKey(bytes.Repeat([]byte{2}, 32))
	aad := RowAAD("trusted-key", "p", "k")
	sealed, err := oldMK.Seal([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := newMK.Reseal(sealed, aad, []*MasterKey{oldMK})
	if err != nil || !changed {
		t.Fatalf("reseal: %v %v", changed, err)
	}
	if pt, err := newMK.Open(out, aad); err != nil || string(pt) != "secret" {
		t.Fatalf("open after reseal: %q %v", pt, err)
	}
	// Already under the current key: unchanged, but still authenticated.
	if same, changed, err := newMK.Reseal(out, aad, nil); err != nil || changed || !bytes.Equal(same, out) {
		t.Fatalf("reseal under the current key: %v %v", changed, err)
	}
	// Bound to its row: another row's identity does not open.
	if _, _, err := newMK.Reseal(sealed, RowAAD("trusted-key", "p", "other"), []*MasterKey{oldMK}); !errors.Is(err, ErrSealedTampered) {
		t.Fatalf("moved row: %v", err)
	}
	// Altered ciphertext.
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	if _, _, err := newMK.Reseal(bad, aad, []*MasterKey{oldMK}); !errors.Is(err, ErrSealedTampered) {
		t.Fatalf("altered: %v", err)
	}
	// Under a key not given.
	if _, _, err := newMK.Reseal(sealed, aad, nil); !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), oldMK.ID()) {
		t.Fatalf("unknown key: %v", err)
	}
}
