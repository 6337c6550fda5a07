package signing

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cosignEnv runs the real cosign binary offline and key-based against the
// registries on 127.0.0.1 (see /work/shared/PEERS.md).
type cosignEnv struct {
	t        *testing.T
	bin, dir string
	root     string // empty trusted root: no public Sigstore trust material
	env      []string
}

const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}`

func newCosign(t *testing.T, regs ...*testReg) *cosignEnv {
	bin := tool(t, "cosign")
	dir := t.TempDir()
	auths := map[string]any{}
	for _, r := range regs {
		if r.user != "" {
			auths[r.host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.pass))}
		}
	}
	cfg, _ := json.Marshal(map[string]any{"auths": auths})
	os.MkdirAll(filepath.Join(dir, "docker"), 0o700)
	os.WriteFile(filepath.Join(dir, "docker", "config.json"), cfg, 0o600)
	root := filepath.Join(dir, "trusted_root.json")
	os.WriteFile(root, []byte(emptyTrustedRoot), 0o644)
	return &cosignEnv{t: t, bin: bin, dir: dir, root: root, env: []string{
		"HOME=" + dir, "DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "TUF_ROOT=" + filepath.Join(dir, "tuf"),
		"COSIGN_PASSWORD=interop-pass", "PATH=/usr/bin:/bin", "SIGSTORE_NO_CACHE=true",
	}}
}

// run runs cosign and returns combined output and error.
func (c *cosignEnv) run(extraEnv []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(append([]string{}, c.env...), extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cosignEnv) verifyArgs(sub string, pub string) []string {
	return []string{sub, "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", "--trusted-root", c.root}
}

// writeKeyPair writes a moat-generated, passphrase-encrypted key pair.
func writeKeyPair(t *testing.T, dir, prefix, alg string) (priv, pub string, keys []PublicKey) {
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncryptPrivateKey(k, []byte("interop-pass"))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := MarshalPublicKey(k.Public())
	priv, pub = filepath.Join(dir, prefix+".key"), filepath.Join(dir, prefix+".pub")
	os.WriteFile(priv, enc, 0o600)
	os.WriteFile(pub, pubPEM, 0o644)
	keys, err = LoadPublicKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub, keys
}

// TestCosignInterop: cosign verifies what moat signs and attests, and moat
// verifies what cosign signs and attests, against go-containerregistry's
// registry and moat's own registry (token auth), on 127.0.0.1.
func TestCosignInterop(t *testing.T) {
	ctx := context.Background()
	regs := registries(t)
	cs := newCosign(t, regs...)
	for _, reg := range regs {
		t.Run(reg.name, func(t *testing.T) {
			dir := t.TempDir()
			_, moatPub, _ := writeKeyPair(t, dir, "moat", "")
			moatKey, err := LoadPrivateKey(filepath.Join(dir, "moat.key"), []byte("interop-pass"))
			if err != nil {
				t.Fatal(err)
			}

			t.Run("cosign verifies moat signature", func(t *testing.T) {
				ref, dig := pushRandom(t, reg, "proj/moat-signed")
				if _, err := reg.remote().Sign(ctx, ref+":v1", moatKey, SignOptions{Annotations: map[string]string{"team": "a"}}); err != nil {
					t.Fatal(err)
				}
				out, err := cs.run(nil, append(cs.verifyArgs("verify", moatPub), "-a", "team=a", ref+"@"+dig.String())...)
				if err != nil || !strings.Contains(out, dig.String()) {
					t.Fatalf("cosign verify: %v\n%s", err, out)
				}
				t.Logf("cosign verify:\n%s", out)
				// cosign refuses it with another key.
				_, otherPub, _ := writeKeyPair(t, dir, "other", "")
				if out, err := cs.run(nil, append(cs.verifyArgs("verify", otherPub), ref+"@"+dig.String())...); err == nil {
					t.Fatalf("cosign verified with the wrong key:\n%s", out)
				}
			})

			t.Run("cosign verifies moat referrer via OCI 1.1", func(t *testing.T) {
				ref, dig := pushRandom(t, reg, "proj/moat-referrer")
				r := reg.remote()
				r.NoTag = true
				if _, err := r.Sign(ctx, ref+":v1", moatKey, SignOptions{}); err != nil {
					t.Fatal(err)
				}
				out, err := cs.run(nil, append(cs.verifyArgs("verify", moatPub), "--experimental-oci11", ref+"@"+dig.String())...)
				if err != nil || !strings.Contains(out, dig.String()) {
					t.Fatalf("cosign verify --experimental-oci11: %v\n%s", err, out)
				}
			})

			t.Run("moat verifies cosign signature made with a moat key", func(t *testing.T) {
				ref, dig := pushRandom(t, reg, "proj/cosign-signed")
				out, err := cs.run(nil, "sign", "--key", filepath.Join(dir, "moat.key"), "--tlog-upload=false", "--allow-http-registry",
					"--yes", "-a", "build=42", ref+"@"+dig.String())
				if err != nil {
					t.Fatalf("cosign sign: %v\n%s", err, out)
				}
				_, keys, _ := loadPub(t, moatPub)
				vr, err := reg.remote().Verify(ctx, ref+":v1", keys)
				if err != nil || vr.Signatures[0].Annotations["build"] != "42" {
					t.Fatalf("moat verify: %v %+v", err, vr)
				}
			})

			t.Run("moat reads cosign keys and verifies cosign referrers", func(t *testing.T) {
				kdir := t.TempDir()
				cs2 := *cs
				cs2.dir = kdir
				if out, err := cs2.run(nil, "generate-key-pair"); err != nil {
					t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
				}
				ck, err := LoadPrivateKey(filepath.Join(kdir, "cosign.key"), []byte("interop-pass"))
				if err != nil {
					t.Fatalf("moat reads cosign.key: %v", err)
				}
				cpub, keys, _ := loadPub(t, filepath.Join(kdir, "cosign.pub"))
				if Fingerprint(ck.Public()) != Fingerprint(cpub) {
					t.Fatal("cosign.key and cosign.pub differ")
				}
				ref, dig := pushRandom(t, reg, "proj/cosign-referrer")
				out, err := cs.run([]string{"COSIGN_EXPERIMENTAL=1"}, "sign", "--key", filepath.Join(kdir, "cosign.key"), "--tlog-upload=false",
					"--allow-http-registry", "--yes", "--registry-referrers-mode", "oci-1-1", ref+"@"+dig.String())
				if err != nil {
					t.Fatalf("cosign sign oci-1-1: %v\n%s", err, out)
				}
				r := reg.remote()
				r.NoTag = true
				vr, err := r.Verify(ctx, ref+":v1", keys)
				if err != nil {
					t.Fatalf("moat verify of cosign referrer: %v %+v", err, vr)
				}
			})

			t.Run("ed25519 keys both ways", func(t *testing.T) {
				edPriv, edPub, edKeys := writeKeyPair(t, dir, "ed", AlgEd25519)
				edKey, err := LoadPrivateKey(edPriv, []byte("interop-pass"))
				if err != nil {
					t.Fatal(err)
				}
				ref, dig := pushRandom(t, reg, "proj/ed25519")
				if _, err := reg.remote().Sign(ctx, ref+":v1", edKey, SignOptions{}); err != nil {
					t.Fatal(err)
				}
				if out, err := cs.run(nil, append(cs.verifyArgs("verify", edPub), ref+"@"+dig.String())...); err != nil {
					t.Fatalf("cosign verify of moat's ed25519 signature: %v\n%s", err, out)
				}
				ref2, dig2 := pushRandom(t, reg, "proj/ed25519-cosign")
				if out, err := cs.run(nil, "sign", "--key", edPriv, "--tlog-upload=false", "--allow-http-registry", "--yes", ref2+"@"+dig2.String()); err != nil {
					t.Fatalf("cosign sign with moat's ed25519 key: %v\n%s", err, out)
				}
				if vr, err := reg.remote().Verify(ctx, ref2+":v1", edKeys); err != nil {
					t.Fatalf("moat verify of cosign's ed25519 signature: %v %+v", err, vr)
				}
			})

			t.Run("moat verifies cosign Sigstore bundles", func(t *testing.T) {
				ref, dig := pushRandom(t, reg, "proj/bundled")
				pinned := ref + "@" + dig.String()
				if out, err := cs.run(nil, "sign", "--key", filepath.Join(dir, "moat.key"), "--tlog-upload=false", "--allow-http-registry",
					"--yes", "--new-bundle-format", pinned); err != nil {
					t.Fatalf("cosign sign --new-bundle-format: %v\n%s", err, out)
				}
				_, keys, _ := loadPub(t, moatPub)
				vr, err := reg.remote().Verify(ctx, ref+":v1", keys)
				if err != nil || !strings.HasPrefix(vr.Signatures[0].Sources[0], "bundle referrer ") {
					t.Fatalf("moat verify of a cosign bundle signature: %v %+v", err, vr)
				}
				_, otherKeys, _ := loadPub(t, filepath.Join(dir, "other.pub"))
				if _, err := reg.remote().Verify(ctx, ref+":v1", otherKeys); !IsVerificationError(err) {
					t.Fatalf("bundle signature verified with another key: %v", err)
				}
				pred := filepath.Join(dir, "bom.json")
				os.WriteFile(pred, []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}`), 0o644)
				if out, err := cs.run(nil, "attest", "--key", filepath.Join(dir, "moat.key"), "--predicate", pred, "--type", "cyclonedx",
					"--tlog-upload=false", "--allow-http-registry", "--yes", "--new-bundle-format", pinned); err != nil {
					t.Fatalf("cosign attest --new-bundle-format: %v\n%s", err, out)
				}
				ar, err := reg.remote().VerifyAttestations(ctx, ref+":v1", keys, PredicateCycloneDX)
				if err != nil || len(ar.Attestations) != 1 || !strings.Contains(string(ar.Attestations[0].Predicate), "CycloneDX") {
					t.Fatalf("moat verify-attestation of a cosign bundle: %v %+v", err, ar)
				}
				// The signature bundle is not mistaken for an attestation.
				if all, err := reg.remote().VerifyAttestations(ctx, ref+":v1", keys, ""); err != nil || len(all.Attestations) != 1 {
					t.Fatalf("attestations of any type: %v %+v", err, all)
				}
			})

			t.Run("attestations both ways", func(t *testing.T) {
				ref, dig := pushRandom(t, reg, "proj/attested")
				bom := json.RawMessage(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"components":[{"type":"library","name":"left-pad","version":"1.3.0"}]}`)
				if _, err := reg.remote().Attest(ctx, ref+":v1", moatKey, AttestOptions{PredicateType: PredicateCycloneDX, Predicate: bom}); err != nil {
					t.Fatal(err)
				}
				out, err := cs.run(nil, append(cs.verifyArgs("verify-attestation", moatPub), "--type", "cyclonedx", ref+"@"+dig.String())...)
				if err != nil || !strings.Contains(out, "payload") {
					t.Fatalf("cosign verify-attestation of moat's: %v\n%s", err, out)
				}
				t.Logf("cosign verify-attestation:\n%.600s", out)
				if out, err := cs.run(nil, append(cs.verifyArgs("verify-attestation", moatPub), "--type", "slsaprovenance1", ref+"@"+dig.String())...); err == nil {
					t.Fatalf("cosign accepted a cyclonedx attestation as slsaprovenance1:\n%s", out)
				}
				// cosign attests a provenance predicate; moat verifies it.
				pred := filepath.Join(dir, "prov.json")
				p, _ := ProvenancePredicate(Provenance{SourceRepo: "https://example.com/r", Commit: strings.Repeat("1", 40), BuilderID: "https://ci.example.com"})
				os.WriteFile(pred, p, 0o644)
				out, err = cs.run(nil, "attest", "--key", filepath.Join(dir, "moat.key"), "--predicate", pred, "--type", "slsaprovenance1",
					"--tlog-upload=false", "--allow-http-registry", "--yes", ref+"@"+dig.String())
				if err != nil {
					t.Fatalf("cosign attest: %v\n%s", err, out)
				}
				_, keys, _ := loadPub(t, moatPub)
				ar, err := reg.remote().VerifyAttestations(ctx, ref+":v1", keys, PredicateSLSAv1)
				if err != nil || len(ar.Attestations) != 1 || !strings.Contains(string(ar.Attestations[0].Predicate), "https://ci.example.com") {
					t.Fatalf("moat verify-attestation of cosign's: %v %+v", err, ar)
				}
				ar, err = reg.remote().VerifyAttestations(ctx, ref+":v1", keys, PredicateCycloneDX)
				if err != nil || len(ar.Attestations) != 1 {
					t.Fatalf("moat verify-attestation of moat's: %v %+v", err, ar)
				}
			})
		})
	}
}

func loadPub(t *testing.T, path string) (any, []PublicKey, error) {
	keys, err := LoadPublicKeys(path)
	if err != nil {
		t.Fatal(fmt.Errorf("load %s: %w", path, err))
	}
	return keys[0].Key, keys, nil
}
