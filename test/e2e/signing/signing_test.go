// Package signing_e2e runs `moat serve` (the built binary) with scanning
// and attestation signing on, and checks the chain of custody end to end
// with real clients: the registry's signed SBOM and vulnerability
// attestations verify with `moat verify-attestation` and with the real
// cosign binary; projects' trusted keys, managed with `moat project trust`,
// decide pulls once require-signature is on; keys are sealed at rest.
package signing_e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

var moatBin string

func TestMain(m *testing.M) { testenv.MainWithMoat(m, "moat-signing-e2e-", &moatBin) }

const lodashRecord = `{"id": "GHSA-p6mc-m468-83gw", "aliases": ["CVE-2020-8203"], "summary": "Prototype Pollution in lodash",
  "modified": "2024-01-01T00:00:00Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "3.7.0"}, {"fixed": "4.17.19"}]}]}]}`

const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}`

type harness struct {
	t         *testing.T
	addr      string
	data      string
	home      string   // HOME and DOCKER_CONFIG of the clients
	admin     []string // env of admin commands
	clientEnv []string
	log       string // moat serve's output
	stop      func()
}

func run(env []string, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h *harness) must(env []string, bin string, args ...string) string {
	h.t.Helper()
	out, err := run(env, bin, args...)
	if err != nil {
		h.t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out
}

func start(t *testing.T) *harness { return startIn(t, t.TempDir()) }

// startIn runs moat serve over the data directory data.
func startIn(t *testing.T, data string, args ...string) *harness {
	db := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "lodash.json"), []byte(lodashRecord), 0o644)
	if _, err := vulndb.Import(context.Background(), db, []string{src}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	srv := exec.Command(moatBin, append([]string{"serve", "--addr", addr, "--data-dir", data, "--db-dir", db}, args...)...)
	srv.Env = append(os.Environ(), "MOAT_ADMIN_PASSWORD=adminpw", "MOAT_MASTER_KEY=")
	logf, _ := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		srv.Process.Kill()
		srv.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("moat serve output:\n%s", b)
		}
	}
	t.Cleanup(stop)
	if err := testenv.WaitHealthy(nil, "http://"+addr+"/healthz", 30*time.Second); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("moat serve did not start: %v\n%s", err, b)
	}
	home := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{addr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("admin:adminpw"))}}})
	os.MkdirAll(filepath.Join(home, "docker"), 0o700)
	os.WriteFile(filepath.Join(home, "docker", "config.json"), cfg, 0o600)
	os.WriteFile(filepath.Join(home, "trusted_root.json"), []byte(emptyTrustedRoot), 0o644)
	return &harness{t: t, addr: addr, data: data, home: home, log: logf.Name(), stop: stop,
		admin: []string{"MOAT_SERVER=http://" + addr, "MOAT_USERNAME=admin", "MOAT_PASSWORD=adminpw"},
		clientEnv: []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, "docker"), "TUF_ROOT=" + filepath.Join(home, "tuf"),
			"SIGSTORE_NO_CACHE=true", "MOAT_KEY_PASSWORD=key-pass", "COSIGN_PASSWORD=key-pass"}}
}

func (h *harness) opts(user, pw string) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: user, Password: pw})}
}

func (h *harness) push(repo string, img v1.Image) string {
	h.t.Helper()
	tag, _ := name.NewTag(h.addr+"/"+repo, name.Insecure)
	if err := remote.Write(tag, img, h.opts("admin", "adminpw")...); err != nil {
		h.t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func (h *harness) pull(ref string) error {
	r, _ := name.ParseReference(h.addr+"/"+ref, name.Insecure)
	_, err := remote.Get(r, h.opts("dev", "dev-pw")...)
	return err
}

func (h *harness) waitScanned(project string, n int) {
	h.t.Helper()
	for deadline := time.Now().Add(90 * time.Second); ; {
		out := h.must(h.admin, moatBin, "images", project, "--format", "json")
		var ims []struct {
			Status string `json:"status"`
		}
		json.Unmarshal([]byte(out), &ims)
		done := 0
		for _, im := range ims {
			if im.Status == "scanned" {
				done++
			}
		}
		if done == n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("images never scanned: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lodashImage(t *testing.T, marker string) v1.Image {
	return it.Image(t, it.Step{Layer: it.Layer(t,
		it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.15","license":"MIT"}`),
		it.Text("/app/marker", marker),
	), CreatedBy: "COPY app /app"})
}

// TestScanOnPushAttestationsVerify: the registry signs each scanned
// image's SBOM and vulnerability findings; moat verify-attestation and
// cosign verify-attestation accept them with the key from
// `moat project registry-key`, and refuse another key.
func TestScanOnPushAttestationsVerify(t *testing.T) {
	cosign := testenv.Tool(t, "cosign", "scripts/peers/cosign.sh builds it")
	h := start(t)
	h.must(h.admin, moatBin, "project", "create", "team")
	dg := h.push("team/app:v1", lodashImage(t, "one"))
	h.waitScanned("team", 1)

	// The master key was created 0600 beside the data.
	fi, err := os.Stat(filepath.Join(h.data, "master.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key: %v %v", fi, err)
	}
	pub := filepath.Join(h.home, "registry.pub")
	// Anyone may fetch the registry's public key: no credentials.
	out := h.must([]string{"MOAT_SERVER=http://" + h.addr, "MOAT_PASSWORD=", "MOAT_ADMIN_PASSWORD="}, moatBin, "project", "registry-key", "-o", pub)
	if !strings.Contains(out, "SHA256:") || !strings.Contains(out, "ecdsa-p256") {
		t.Fatalf("registry-key table:\n%s", out)
	}
	var rk struct {
		Fingerprint string `json:"fingerprint"`
		PublicKey   string `json:"public_key"`
	}
	json.Unmarshal([]byte(h.must(h.admin, moatBin, "project", "registry-key", "--format", "json")), &rk)
	resp, err := http.Get("http://" + h.addr + "/api/v1/signing/public-key")
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if file, _ := os.ReadFile(pub); string(anon) != rk.PublicKey || string(file) != rk.PublicKey || rk.Fingerprint == "" {
		t.Fatalf("public key differs: endpoint %q, file %q, json %q", anon, file, rk.PublicKey)
	}

	ref := h.addr + "/team/app@" + dg
	for _, typ := range []string{"vuln", "sbom"} {
		out := h.must(h.clientEnv, moatBin, "verify-attestation", ref, "--key", pub, "--type", typ, "--plain-http", "--format", "json")
		var res struct {
			Verified     bool `json:"verified"`
			Attestations []struct {
				Key       string          `json:"key"`
				Predicate json.RawMessage `json:"predicate"`
			} `json:"attestations"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Verified || len(res.Attestations) == 0 || res.Attestations[0].Key != rk.Fingerprint {
			t.Fatalf("moat verify-attestation --type %s: %v\n%s", typ, err, out)
		}
		if typ == "vuln" && !strings.Contains(string(res.Attestations[0].Predicate), "CVE-2020-8203") {
			t.Fatalf("vuln predicate lacks the finding: %s", res.Attestations[0].Predicate)
		}
	}
	for _, typ := range []string{"cyclonedx", "vuln"} {
		out, err := run(h.clientEnv, cosign, "verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry",
			"--trusted-root", filepath.Join(h.home, "trusted_root.json"), "--type", typ, ref)
		if err != nil || !strings.Contains(out, "payload") {
			t.Fatalf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
		}
	}
	// Another key: both refuse.
	h.must(h.clientEnv, moatBin, "key", "generate", "--output-key-prefix", filepath.Join(h.home, "other"))
	if out, err := run(h.clientEnv, moatBin, "verify-attestation", ref, "--key", filepath.Join(h.home, "other.pub"), "--type", "vuln", "--plain-http"); err == nil {
		t.Fatalf("moat verified with another key:\n%s", out)
	}
	if out, err := run(h.clientEnv, cosign, "verify-attestation", "--key", filepath.Join(h.home, "other.pub"), "--insecure-ignore-tlog", "--allow-http-registry",
		"--trusted-root", filepath.Join(h.home, "trusted_root.json"), "--type", "vuln", ref); err == nil {
		t.Fatalf("cosign verified with another key:\n%s", out)
	}
	// Each signature by the registry key is in the audit log.
	evs := h.audit("key.sign")
	if len(evs) != 2 || !strings.Contains(evs[0].Detail, rk.Fingerprint) {
		t.Fatalf("key.sign events: %+v", evs)
	}
	if evs := h.audit("key.create"); len(evs) != 1 {
		t.Fatalf("key.create events: %+v", evs)
	}
}

type event struct {
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Digest  string `json:"digest"`
	Allowed bool   `json:"allowed"`
	Detail  string `json:"detail"`
}

func (h *harness) audit(action string) []event {
	h.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+h.addr+"/api/v1/audit?action="+action, nil)
	req.SetBasicAuth("admin", "adminpw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var evs []event
	json.NewDecoder(resp.Body).Decode(&evs)
	return evs
}

// TestRequireSignatureWithTrustedKeys: an owner adds a trusted key with
// `moat project trust add` and turns require-signature on; then an
// unsigned pull is DENIED, a pull signed by the trusted key (moat sign)
// is served, an image signed only by an untrusted key (cosign sign) is
// DENIED; members list the keys, readers cannot add them; everything is
// audited; the database holds no key in plaintext.
func TestRequireSignatureWithTrustedKeys(t *testing.T) {
	h := start(t)
	h.must(h.admin, moatBin, "project", "create", "team")
	h.must(h.admin, moatBin, "user", "add", "olga", "--new-password", "olga-pw")
	h.must(h.admin, moatBin, "user", "add", "dev", "--new-password", "dev-pw")
	h.must(h.admin, moatBin, "member", "add", "team", "olga", "owner")
	h.must(h.admin, moatBin, "member", "add", "team", "dev", "reader")
	owner := []string{"MOAT_SERVER=http://" + h.addr, "MOAT_USERNAME=olga", "MOAT_PASSWORD=olga-pw"}
	reader := []string{"MOAT_SERVER=http://" + h.addr, "MOAT_USERNAME=dev", "MOAT_PASSWORD=dev-pw"}

	h.must(h.clientEnv, moatBin, "key", "generate", "--output-key-prefix", filepath.Join(h.home, "release"))
	h.must(h.clientEnv, moatBin, "key", "generate", "--output-key-prefix", filepath.Join(h.home, "rogue"))
	if out, err := run(reader, moatBin, "project", "trust", "add", "--project", "team", "--key", filepath.Join(h.home, "release.pub")); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("a reader added a trusted key: %v\n%s", err, out)
	}
	out := h.must(owner, moatBin, "project", "trust", "add", "--project", "team", "--key", filepath.Join(h.home, "release.pub"))
	if !strings.Contains(out, "release") || !strings.Contains(out, "SHA256:") {
		t.Fatalf("trust add:\n%s", out)
	}
	var keys []struct {
		Name, Fingerprint, PublicKey string
	}
	json.Unmarshal([]byte(h.must(reader, moatBin, "project", "trust", "list", "--project", "team", "--format", "json")), &keys)
	pubPEM, _ := os.ReadFile(filepath.Join(h.home, "release.pub"))
	if len(keys) != 1 || keys[0].Name != "release" {
		t.Fatalf("trust list: %+v", keys)
	}
	if out, err := run(owner, moatBin, "project", "trust", "add", "--project", "team", "--key", filepath.Join(h.home, "release.key")); err == nil || !strings.Contains(out, "private key") {
		t.Fatalf("a private key accepted as trusted key: %v\n%s", err, out)
	}

	unsigned := h.push("team/app:unsigned", lodashImage(t, "unsigned"))
	signed := h.push("team/app:signed", lodashImage(t, "signed"))
	rogue := h.push("team/app:rogue", lodashImage(t, "rogue"))
	if err := h.pull("team/app:unsigned"); err != nil {
		t.Fatalf("before require-signature: %v", err)
	}
	out = h.must(owner, moatBin, "project", "set", "team", "--require-signature")
	if !strings.Contains(out, "REQUIRE SIGNATURE") {
		t.Fatalf("project set:\n%s", out)
	}
	// cosign sign reads the image's manifest with GET: a publisher (its
	// token may push to the repository) may, so cosign signs under
	// require-signature too.
	cosign := testenv.Tool(t, "cosign", "scripts/peers/cosign.sh builds it")
	if out, err := run(h.clientEnv, cosign, "sign", "--key", filepath.Join(h.home, "rogue.key"), "--tlog-upload=false", "--allow-http-registry", "--yes",
		h.addr+"/team/app@"+rogue); err != nil {
		t.Fatalf("cosign sign under require-signature: %v\n%s", err, out)
	}
	// moat sign needs only HEAD: it signs under require-signature.
	h.must(h.clientEnv, moatBin, "sign", h.addr+"/team/app@"+signed, "--key", filepath.Join(h.home, "release.key"), "--plain-http")
	if err := h.pull("team/app@" + unsigned); err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "no signatures") {
		t.Fatalf("unsigned pull: %v", err)
	}
	if err := h.pull("team/app:signed"); err != nil {
		t.Fatalf("pull signed by the trusted key: %v", err)
	}
	if err := h.pull("team/app:rogue"); err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "untrusted") {
		t.Fatalf("untrusted signer: %v", err)
	}
	// The signature artifacts stay pullable.
	if err := h.pull("team/app:sha256-" + strings.TrimPrefix(rogue, "sha256:") + ".sig"); err != nil {
		t.Fatalf("signature artifact: %v", err)
	}

	// Audit: key added, switch turned on, pulls denied and allowed (with
	// the key that allowed it).
	fp := keys[0].Fingerprint
	if evs := h.audit("trust.add"); len(evs) != 2 || !evs[1].Allowed || !strings.Contains(evs[1].Detail, fp) || evs[0].Allowed {
		t.Fatalf("trust.add events: %+v", evs)
	}
	if evs := h.audit("project.update"); len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Detail, "require_signature=true") {
		t.Fatalf("project.update events: %+v", evs)
	}
	var denied, allowed int
	for _, e := range h.audit("pull") {
		switch {
		case !e.Allowed && strings.Contains(e.Detail, "require-signature") && (e.Digest == unsigned || e.Digest == rogue):
			denied++
		case e.Allowed && e.Digest == signed && strings.Contains(e.Detail, "signed by "+fp):
			allowed++
		}
	}
	if denied < 2 || allowed < 1 {
		t.Fatalf("pull events: %d denied, %d allowed-by-key", denied, allowed)
	}

	// At rest: the PEM body of the trusted key is not in the database files.
	body := strings.Split(strings.TrimSpace(string(pubPEM)), "\n")[1]
	files, _ := filepath.Glob(filepath.Join(h.data, "moat.db*"))
	seenFP := false
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(body)) || bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Fatalf("key material in plaintext in %s", f)
		}
		seenFP = seenFP || bytes.Contains(b, []byte(fp))
	}
	if len(files) == 0 || !seenFP {
		t.Fatalf("database files %v do not hold the key rows", files)
	}

	// Removing the key: signed images are refused too (no trusted key).
	h.must(owner, moatBin, "project", "trust", "remove", "--project", "team", "--name", "release")
	if err := h.pull("team/app:signed"); err == nil || !strings.Contains(err.Error(), "trusts no key") {
		t.Fatalf("after removing the key: %v", err)
	}
	if evs := h.audit("trust.remove"); len(evs) != 1 {
		t.Fatalf("trust.remove events: %+v", evs)
	}
}

// TestTrustedKeysDirImported: --trusted-keys DIR still works, as an import
// into the store at start.
func TestTrustedKeysDirImported(t *testing.T) {
	data := t.TempDir()
	h := startIn(t, data)
	h.must(h.admin, moatBin, "project", "create", "secure")
	h.must(h.clientEnv, moatBin, "key", "generate", "--output-key-prefix", filepath.Join(h.home, "release"))
	h.stop()
	dir := filepath.Join(t.TempDir(), "keys")
	os.MkdirAll(filepath.Join(dir, "secure"), 0o755)
	pub, _ := os.ReadFile(filepath.Join(h.home, "release.pub"))
	os.WriteFile(filepath.Join(dir, "secure", "release.pub"), pub, 0o644)

	h2 := startIn(t, data, "--trusted-keys", dir)
	if b, _ := os.ReadFile(h2.log); !strings.Contains(string(b), "imported 1 trusted key(s) of project secure") {
		t.Fatalf("no import message:\n%s", b)
	}
	var keys []struct {
		Name    string `json:"name"`
		AddedBy string `json:"added_by"`
	}
	json.Unmarshal([]byte(h2.must(h2.admin, moatBin, "project", "trust", "list", "--project", "secure", "--format", "json")), &keys)
	if len(keys) != 1 || keys[0].Name != "release" || !strings.HasPrefix(keys[0].AddedBy, "import:") {
		t.Fatalf("imported keys: %+v", keys)
	}
	if out := h2.must(h2.admin, moatBin, "project", "list", "--format", "json"); !strings.Contains(out, `"require_signature": true`) {
		t.Fatalf("require-signature not on after the import:\n%s", out)
	}
	// The same master key, a restart: the stored keys open again; a
	// wrong master key stops the server with a clear error.
	h2.stop()
	out, err := run([]string{"MOAT_ADMIN_PASSWORD=adminpw", "MOAT_MASTER_KEY=" + base64.StdEncoding.EncodeToString(make([]byte, 32))},
		moatBin, "serve", "--addr", "127.0.0.1:0", "--data-dir", data)
	if err == nil || !strings.Contains(out, "sealed with another master key") {
		t.Fatalf("wrong master key: %v\n%s", err, out)
	}

	// Master key rotation: the old key moved aside, a new one created at
	// start, every stored key re-sealed under it in one transaction.
	oldKey := filepath.Join(data, "master.key.old")
	if err := os.Rename(filepath.Join(data, "master.key"), oldKey); err != nil {
		t.Fatal(err)
	}
	h3 := startIn(t, data, "--previous-master-key-file", oldKey)
	if b, _ := os.ReadFile(h3.log); !strings.Contains(string(b), "stored keys under the master key") {
		t.Fatalf("no rotation message:\n%s", b)
	}
	if out := h3.must(h3.admin, moatBin, "project", "trust", "list", "--project", "secure"); !strings.Contains(out, "release") {
		t.Fatalf("trusted keys after the rotation:\n%s", out)
	}
	resealed := h3.audit("key.reseal")
	if len(resealed) != 1 || !strings.Contains(resealed[0].Detail, "re-sealed from master key") {
		t.Fatalf("rotation audit events: %+v", resealed)
	}
	h3.stop()
	// The new key alone now opens everything; the old one no longer does.
	h4 := startIn(t, data)
	h4.must(h4.admin, moatBin, "project", "trust", "list", "--project", "secure")
	h4.stop()
	old, _ := os.ReadFile(oldKey)
	out, err = run([]string{"MOAT_ADMIN_PASSWORD=adminpw", "MOAT_MASTER_KEY=" + strings.TrimSpace(string(old))},
		moatBin, "serve", "--addr", "127.0.0.1:0", "--data-dir", data)
	if err == nil || !strings.Contains(out, "sealed with another master key") {
		t.Fatalf("old master key after the rotation: %v\n%s", err, out)
	}
}

// TestRegistryKeyBroughtByOperator: `moat serve --registry-key FILE` makes
// an operator's own (passphrase-encrypted) key the registry key: scan-on-
// push attestations verify with its public key, the API serves it, and the
// import is audited.
func TestRegistryKeyBroughtByOperator(t *testing.T) {
	keys := t.TempDir()
	if out, err := run([]string{"MOAT_KEY_PASSWORD=org-pass"}, moatBin, "key", "generate", "--output-key-prefix", filepath.Join(keys, "org")); err != nil {
		t.Fatalf("key generate: %v\n%s", err, out)
	}
	t.Setenv("MOAT_KEY_PASSWORD", "org-pass") // moat serve reads the key's passphrase from it
	h := startIn(t, t.TempDir(), "--registry-key", filepath.Join(keys, "org.key"))
	if b, _ := os.ReadFile(h.log); !strings.Contains(string(b), "the registry signing key is now") {
		t.Fatalf("serve did not report the imported key:\n%s", b)
	}
	h.must(h.admin, moatBin, "project", "create", "team")
	dg := h.push("team/app:v1", lodashImage(t, "org"))
	h.waitScanned("team", 1)
	var rk struct {
		Fingerprint string `json:"fingerprint"`
	}
	json.Unmarshal([]byte(h.must(h.admin, moatBin, "project", "registry-key", "--format", "json")), &rk)
	pubs, err := signing.LoadPublicKeys(filepath.Join(keys, "org.pub"))
	if err != nil || len(pubs) != 1 || rk.Fingerprint != pubs[0].Fingerprint {
		t.Fatalf("registry key %q, operator's key %+v (%v)", rk.Fingerprint, pubs, err)
	}
	out := h.must(h.clientEnv, moatBin, "verify-attestation", h.addr+"/team/app@"+dg, "--key", filepath.Join(keys, "org.pub"), "--type", "vuln", "--plain-http")
	if !strings.Contains(out, rk.Fingerprint) {
		t.Fatalf("verify-attestation with the operator's key:\n%s", out)
	}
	imported := false
	for _, e := range h.audit("key.create") {
		imported = imported || strings.Contains(e.Detail, rk.Fingerprint+" imported")
	}
	if !imported {
		t.Fatalf("no audit event for the imported key: %+v", h.audit("key.create"))
	}
}
