package registrygate

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/store"

	_ "github.com/glebarez/go-sqlite" // the "sqlite" driver, to alter rows as an attacker would
)

type trustEnv struct {
	t     *testing.T
	data  string
	inst  *registry.Instance
	ts    *httptest.Server
	host  string
	trust *Trust
	mk    *signing.MasterKey
	// deployer's projects (a reader account that pulls: require-signature
	// does not apply to accounts that may push, the publishers)
	deployerIn map[string]bool
}

func newTrustEnv(t *testing.T) *trustEnv {
	ctx := context.Background()
	data := t.TempDir()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	inst, err := registry.Open(ctx, registry.Options{DataDir: data, AdminPassword: adminPW, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	mk, _, err := signing.LoadOrCreateMasterKey(filepath.Join(data, "master.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrust(ctx, inst.Store, mk, inst.Audit, log)
	if err != nil {
		t.Fatal(err)
	}
	tr.DenyTTL = 1 // cached denials expire at once
	inst.Signatures, inst.Trust = tr, tr
	ts := httptest.NewServer(inst)
	t.Cleanup(func() { ts.Close(); inst.Close() })
	return &trustEnv{t: t, data: data, inst: inst, ts: ts, host: strings.TrimPrefix(ts.URL, "http://"), trust: tr, mk: mk}
}

func (e *trustEnv) user(name, project, role string) {
	ctx := context.Background()
	h, _ := auth.HashPassword(name + "-pw")
	if _, err := e.inst.Store.CreateUser(ctx, name, h, false); err != nil {
		e.t.Fatal(err)
	}
	if role != "" {
		if err := e.inst.Store.SetMember(ctx, project, name, role); err != nil {
			e.t.Fatal(err)
		}
	}
	e.inst.Auth.Invalidate()
}

func (e *trustEnv) client(user string) *registry.AdminClient {
	pw := user + "-pw"
	if user == "admin" {
		pw = adminPW
	}
	c, err := registry.NewAdminClient(e.ts.URL, user, pw, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *trustEnv) opts() []remote.Option {
	return []remote.Option{remote.WithAuthFromKeychain(gateKeychain{authn.FromConfig(authn.AuthConfig{Username: "admin", Password: adminPW})})}
}

func (e *trustEnv) push(repo string) string {
	img, _ := random.Image(256, 1)
	tag, _ := name.NewTag(e.host+"/"+repo+":v1", name.Insecure)
	if err := remote.Write(tag, img, e.opts()...); err != nil {
		e.t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// pull reads a manifest as a deployer: an account with the reader role
// in the repository's project.
func (e *trustEnv) pull(ref string) error {
	project, _, _ := strings.Cut(ref, "/")
	if !e.deployerIn[project] {
		if e.deployerIn == nil {
			e.deployerIn = map[string]bool{}
			e.user("deployer", project, auth.RoleReader)
		} else if err := e.inst.Store.SetMember(context.Background(), project, "deployer", auth.RoleReader); err != nil {
			e.t.Fatal(err)
		}
		e.inst.Auth.Invalidate()
		e.deployerIn[project] = true
	}
	r, _ := name.ParseReference(e.host+"/"+ref, name.Insecure)
	_, err := remote.Get(r, remote.WithAuthFromKeychain(gateKeychain{authn.FromConfig(authn.AuthConfig{Username: "deployer", Password: "deployer-pw"})}))
	return err
}

// TestTrustAPI: projects' trusted keys and require-signature are managed
// through the admin API with least privilege; pulls are then decided with
// the stored keys (unsigned and untrusted-signer pulls DENIED, trusted
// ones served), every change and decision is audited, and the keys are
// sealed in the database: no PEM body is in the SQLite files, and a row
// moved to another project does not open.
func TestTrustAPI(t *testing.T) {
	ctx := context.Background()
	e := newTrustEnv(t)
	if _, err := e.inst.Store.CreateProject(ctx, store.Project{Name: "secure"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.inst.Store.CreateProject(ctx, store.Project{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	e.user("olga", "secure", auth.RoleOwner)
	e.user("mia", "secure", auth.RoleReader)
	e.user("wes", "secure", auth.RoleWriter)
	e.user("outsider", "", "")

	trusted, _ := signing.GenerateKey("")
	untrusted, _ := signing.GenerateKey(signing.AlgEd25519)
	trustedPEM, _ := signing.MarshalPublicKey(trusted.Public())
	untrustedPEM, _ := signing.MarshalPublicKey(untrusted.Public())
	path := "projects/secure/trusted-keys"

	// Least privilege: readers and writers may not add, outsiders may not
	// even list; owners add; members list.
	for _, u := range []string{"mia", "wes", "outsider"} {
		err := e.client(u).Do("POST", path, registry.TrustedKeyRequest{Name: "release", PublicKey: string(trustedPEM)}, nil)
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("%s added a trusted key: %v", u, err)
		}
	}
	if err := e.client("outsider").Do("GET", path, nil, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("outsider listed keys: %v", err)
	}
	var k registry.TrustedKey
	if err := e.client("olga").Do("POST", path, registry.TrustedKeyRequest{Name: "release", PublicKey: string(trustedPEM)}, &k); err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint != signing.Fingerprint(trusted.Public()) || k.Algorithm != "ecdsa-p256" || k.AddedBy != "olga" {
		t.Fatalf("added: %+v", k)
	}
	// Bad input: clear errors.
	for _, c := range []struct {
		req  registry.TrustedKeyRequest
		want string
	}{
		{registry.TrustedKeyRequest{Name: "release", PublicKey: string(untrustedPEM)}, "409"},
		{registry.TrustedKeyRequest{Name: "again", PublicKey: string(trustedPEM)}, "409"},
		{registry.TrustedKeyRequest{Name: "junk", PublicKey: "not a key"}, "no PEM block"},
		{registry.TrustedKeyRequest{Name: "Bad Name", PublicKey: string(untrustedPEM)}, "invalid name"},
	} {
		if err := e.client("olga").Do("POST", path, c.req, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v (want %s)", c.req, err, c.want)
		}
	}
	var ks []registry.TrustedKey
	if err := e.client("mia").Do("GET", path, nil, &ks); err != nil || len(ks) != 1 || ks[0].PublicKey != string(trustedPEM) {
		t.Fatalf("member list: %+v %v", ks, err)
	}

	// Keys alone do not turn the requirement on; the owner does.
	dig := e.push("secure/app")
	if err := e.pull("secure/app:v1"); err != nil {
		t.Fatalf("before require-signature: %v", err)
	}
	on, off := true, false
	if err := e.client("mia").Do("PATCH", "projects/secure", registry.ProjectRequest{RequireSignature: &on}, nil); err == nil {
		t.Fatal("a reader turned require-signature on")
	}
	var pr store.Project
	if err := e.client("olga").Do("PATCH", "projects/secure", registry.ProjectRequest{RequireSignature: &on}, &pr); err != nil || !pr.RequireSignature {
		t.Fatalf("require-signature on: %+v %v", pr, err)
	}
	if err := e.pull("secure/app:v1"); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("unsigned pull: %v", err)
	}
	rem := &signing.Remote{Insecure: true, Keychain: gateKeychain{authn.FromConfig(authn.AuthConfig{Username: "admin", Password: adminPW})}}
	if _, err := rem.Sign(ctx, e.host+"/secure/app:v1", untrusted, signing.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.pull("secure/app:v1"); err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "untrusted") {
		t.Fatalf("untrusted signer: %v", err)
	}
	if _, err := rem.Sign(ctx, e.host+"/secure/app:v1", trusted, signing.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.pull("secure/app@" + dig); err != nil {
		t.Fatalf("trusted signer: %v", err)
	}
	// Other projects are not affected.
	e.push("other/app")
	if err := e.pull("other/app:v1"); err != nil {
		t.Fatalf("other project: %v", err)
	}

	// The audit log has the key's addition, the switch, the refusals and
	// the allowed pull with the key that allowed it.
	e.inst.Audit.Flush()
	evs, _ := e.inst.Store.ListEvents(ctx, store.EventFilter{Limit: 1000})
	has := func(action string, allowed bool, detail string) bool {
		for _, ev := range evs {
			if ev.Action == action && ev.Allowed == allowed && strings.Contains(ev.Detail, detail) {
				return true
			}
		}
		return false
	}
	for _, w := range []struct {
		action  string
		allowed bool
		detail  string
	}{
		{audit.ActionTrustAdd, true, "secure release " + k.Fingerprint},
		{audit.ActionTrustAdd, false, "secure"},
		{audit.ActionProjectUpdate, true, "secure require_signature=true"},
		{audit.ActionPull, false, "require-signature: project secure requires a signature"},
		{audit.ActionPull, true, "require-signature: signed by " + k.Fingerprint},
	} {
		if !has(w.action, w.allowed, w.detail) {
			t.Errorf("no audit event %+v in %+v", w, evs)
		}
	}

	// At rest: no PEM body (nor the DER) of the key is in the database
	// files; the fingerprint is.
	blk, _ := pem.Decode(trustedPEM)
	body := strings.Join(strings.Split(strings.TrimSpace(string(trustedPEM)), "\n")[1:2], "")
	files, _ := filepath.Glob(filepath.Join(e.data, "moat.db*"))
	var all []byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all = append(all, b...)
	}
	if len(body) < 40 || bytes.Contains(all, []byte(body)) || bytes.Contains(all, blk.Bytes) || bytes.Contains(all, []byte("BEGIN PUBLIC KEY")) {
		t.Fatal("trusted key in plaintext in the database files")
	}
	if !bytes.Contains(all, []byte(k.Fingerprint)) {
		t.Fatal("fingerprint not found in the database files: wrong files searched?")
	}

	// The registry key: created once, sealed, its private key nowhere in
	// the database in the clear; its public key is served to anyone.
	rk, created, err := e.trust.LoadOrCreateRegistryKey(ctx)
	if err != nil || !created {
		t.Fatalf("registry key: %v %v", created, err)
	}
	rk2, created, err := e.trust.LoadOrCreateRegistryKey(ctx)
	if err != nil || created || signing.Fingerprint(rk2.Public()) != signing.Fingerprint(rk.Public()) {
		t.Fatalf("registry key reload: %v %v", created, err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	files, _ = filepath.Glob(filepath.Join(e.data, "moat.db*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, der) || bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Fatalf("registry private key in the clear in %s", f)
		}
	}
	resp, err := http.Get(e.ts.URL + "/api/v1/signing/public-key")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if pk, err := signing.ParsePublicKey(pub); err != nil || signing.Fingerprint(pk) != signing.Fingerprint(rk.Public()) {
		t.Fatalf("public key endpoint: %d %v %s", resp.StatusCode, err, pub)
	}

	// An operator's own key replaces the generated one (--registry-key):
	// served, loaded, audited with both fingerprints; setting it again
	// changes nothing.
	own, _ := signing.GenerateKey(signing.AlgEd25519)
	if changed, err := e.trust.SetRegistryKey(ctx, own); err != nil || !changed {
		t.Fatalf("set registry key: %v %v", changed, err)
	}
	if changed, err := e.trust.SetRegistryKey(ctx, own); err != nil || changed {
		t.Fatalf("set the same registry key again: %v %v", changed, err)
	}
	rk3, created, err := e.trust.LoadOrCreateRegistryKey(ctx)
	if err != nil || created || signing.Fingerprint(rk3.Public()) != signing.Fingerprint(own.Public()) {
		t.Fatalf("registry key after import: %v %v", created, err)
	}
	resp, err = http.Get(e.ts.URL + "/api/v1/signing/public-key")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if pk, err := signing.ParsePublicKey(pub); err != nil || signing.Fingerprint(pk) != signing.Fingerprint(own.Public()) {
		t.Fatalf("public key endpoint after import: %v %s", err, pub)
	}
	e.inst.Audit.Flush()
	evs, _ = e.inst.Store.ListEvents(ctx, store.EventFilter{Limit: 10000})
	imported := false
	for _, ev := range evs {
		imported = imported || (strings.Contains(ev.Detail, signing.Fingerprint(own.Public())+" imported") && strings.Contains(ev.Detail, "replacing "+signing.Fingerprint(rk.Public())))
	}
	if !imported {
		t.Fatalf("no audit event for the imported registry key in %+v", evs)
	}

	// A sealed row moved to another name or project does not open: the
	// project fails closed.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.data, "moat.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE trusted_keys SET name = 'renamed'`); err != nil {
		t.Fatal(err)
	}
	e.trust.Changed(ctx)
	if err := e.pull("secure/app@" + dig); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("tampered key row still trusted: %v", err)
	}
	if err := e.client("mia").Do("GET", path, nil, nil); err == nil || !strings.Contains(err.Error(), "authenticate") {
		t.Fatalf("listing a tampered key: %v", err)
	}
	if _, err := NewTrust(ctx, e.inst.Store, e.mk, nil, nil); err == nil || !errors.Is(err, signing.ErrSealedTampered) {
		t.Fatalf("start with a tampered key: %v", err)
	}
	db.Exec(`UPDATE trusted_keys SET name = 'release'`)
	e.trust.Changed(ctx)
	if err := e.pull("secure/app@" + dig); err != nil {
		t.Fatalf("restored row: %v", err)
	}
	// Another master key cannot open them.
	other, _ := signing.NewMasterKey(bytes.Repeat([]byte{9}, 32))
	if _, err := NewTrust(ctx, e.inst.Store, other, nil, nil); !errors.Is(err, signing.ErrWrongMasterKey) {
		t.Fatalf("wrong master key: %v", err)
	}

	// Removing the last key leaves the requirement: nothing is served.
	if err := e.client("mia").Do("DELETE", path+"/release", nil, nil); err == nil {
		t.Fatal("a reader removed a key")
	}
	if err := e.client("olga").Do("DELETE", path+"/release", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.client("olga").Do("DELETE", path+"/release", nil, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("removing twice: %v", err)
	}
	if err := e.pull("secure/app@" + dig); err == nil || !strings.Contains(err.Error(), "trusts no key") {
		t.Fatalf("require-signature without keys: %v", err)
	}
	if err := e.pull("secure/app:sha256-" + strings.TrimPrefix(dig, "sha256:") + ".sig"); err != nil {
		t.Fatalf("signature artifact not pullable: %v", err)
	}
	if err := e.client("olga").Do("PATCH", "projects/secure", registry.ProjectRequest{RequireSignature: &off}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.pull("secure/app@" + dig); err != nil {
		t.Fatalf("require-signature off: %v", err)
	}
	e.inst.Audit.Flush()
	evs, _ = e.inst.Store.ListEvents(ctx, store.EventFilter{Limit: 1000})
	if !has(audit.ActionTrustRemove, true, "secure release") || !has(audit.ActionKeyCreate, true, signing.Fingerprint(rk.Public())) {
		t.Fatalf("removal or key creation not audited: %+v", evs)
	}
}

// TestImportDir: --trusted-keys DIR keys go into the store once, and the
// projects that gained keys require signatures.
func TestImportDir(t *testing.T) {
	ctx := context.Background()
	e := newTrustEnv(t)
	e.inst.Store.CreateProject(ctx, store.Project{Name: "secure"})
	dir := t.TempDir()
	k, _ := signing.GenerateKey("")
	pub, _ := signing.MarshalPublicKey(k.Public())
	for _, p := range []string{"secure", "ghost"} {
		os.MkdirAll(filepath.Join(dir, p), 0o755)
		os.WriteFile(filepath.Join(dir, p, "Release Key.pub"), pub, 0o644)
	}
	notes, err := e.trust.ImportDir(ctx, dir)
	if err != nil || len(notes) != 2 {
		t.Fatalf("import: %v %q", err, notes)
	}
	if !e.trust.Required("secure") || e.trust.Required("ghost") {
		t.Fatal("require-signature not set by the import")
	}
	ks, _ := e.trust.ListTrustedKeys(ctx, "secure")
	if len(ks) != 1 || ks[0].Name != "release-key" {
		t.Fatalf("imported: %+v", ks)
	}
	e.inst.Audit.Flush()
	if evs, _ := e.inst.Store.ListEvents(ctx, store.EventFilter{Action: audit.ActionProjectUpdate}); len(evs) != 1 || !strings.Contains(evs[0].Detail, "secure require_signature=true") {
		t.Fatalf("import not audited: %+v", evs)
	}
	// Importing again adds nothing; turning the switch off sticks.
	e.inst.Store.SetRequireSignature(ctx, "secure", false)
	if notes, err := e.trust.ImportDir(ctx, dir); err != nil || len(notes) != 1 || e.trust.Required("secure") {
		t.Fatalf("second import: %v %q", err, notes)
	}
	if notes, err := e.trust.ImportDir(ctx, filepath.Join(dir, "missing")); err != nil || len(notes) != 0 {
		t.Fatalf("missing dir: %v %q", err, notes)
	}
}

func TestKeyNameFromFile(t *testing.T) {
	for in, want := range map[string]string{"/a/Release Key.pub": "release-key", "cosign.pub": "cosign", ".pub": "key", "x/ÄÖ.pem": "key"} {
		if got := KeyNameFromFile(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestRotateMasterKey: every stored key is re-sealed under the new master
// key in one transaction; a value under a master key that was not given
// rolls the whole rotation back; a second rotation changes nothing.
func TestRotateMasterKey(t *testing.T) {
	ctx := context.Background()
	e := newTrustEnv(t)
	for _, p := range []string{"a", "b"} {
		if _, err := e.inst.Store.CreateProject(ctx, store.Project{Name: p}); err != nil {
			t.Fatal(err)
		}
		k, _ := signing.GenerateKey("")
		pub, _ := signing.MarshalPublicKey(k.Public())
		if _, err := e.trust.AddTrustedKey(ctx, p, "release", pub, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	regKey, _, err := e.trust.LoadOrCreateRegistryKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldMK := e.mk
	newMK, _ := signing.NewMasterKey(bytes.Repeat([]byte{7}, 32))
	stranger, _ := signing.NewMasterKey(bytes.Repeat([]byte{9}, 32))

	// Without the old key the rotation fails and nothing changes.
	if _, err := RotateMasterKey(ctx, e.inst.Store, newMK, []*signing.MasterKey{stranger}, e.inst.Audit); !errors.Is(err, signing.ErrWrongMasterKey) {
		t.Fatalf("rotation without the old key: %v", err)
	}
	sealedUnder := func() map[string]int {
		out := map[string]int{}
		rows, _ := e.inst.Store.ListTrustedKeys(ctx, "")
		for _, r := range rows {
			env, _ := signing.ParseSealed(r.Sealed)
			out[env.KeyID]++
		}
		sk, _ := e.inst.Store.ServerKeyByName(ctx, RegistryKeyName)
		env, _ := signing.ParseSealed(sk.Sealed)
		out[env.KeyID]++
		return out
	}
	if got := sealedUnder(); got[oldMK.ID()] != 3 {
		t.Fatalf("after a failed rotation: %v", got)
	}

	n, err := RotateMasterKey(ctx, e.inst.Store, newMK, []*signing.MasterKey{stranger, oldMK}, e.inst.Audit)
	if err != nil || n != 3 {
		t.Fatalf("rotation: %d %v", n, err)
	}
	if got := sealedUnder(); got[newMK.ID()] != 3 || len(got) != 1 {
		t.Fatalf("after the rotation: %v", got)
	}
	// The new key alone opens everything, bound to the same rows.
	tr, err := NewTrust(ctx, e.inst.Store, newMK, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	k2, _, err := tr.LoadOrCreateRegistryKey(ctx)
	if err != nil || signing.Fingerprint(k2.Public()) != signing.Fingerprint(regKey.Public()) {
		t.Fatalf("registry key after the rotation: %v", err)
	}
	// The old master key no longer opens them.
	if _, _, err := (&Trust{Store: e.inst.Store, Master: oldMK}).LoadOrCreateRegistryKey(ctx); !errors.Is(err, signing.ErrWrongMasterKey) {
		t.Fatalf("old master key after the rotation: %v", err)
	}
	// Again: nothing to do.
	if n, err := RotateMasterKey(ctx, e.inst.Store, newMK, []*signing.MasterKey{oldMK}, e.inst.Audit); err != nil || n != 0 {
		t.Fatalf("second rotation: %d %v", n, err)
	}
	e.inst.Audit.Flush()
	evs, err := e.inst.Store.ListEvents(ctx, store.EventFilter{Action: audit.ActionKeyReseal, Limit: 10})
	if err != nil || len(evs) != 1 || !strings.Contains(evs[0].Detail, "3 sealed keys re-sealed from master key "+oldMK.ID()+" to "+newMK.ID()) {
		t.Fatalf("audit: %+v %v", evs, err)
	}
}
