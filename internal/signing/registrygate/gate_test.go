package registrygate

import (
	"context"
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
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/store"
)

const adminPW = "gate-test-admin-pw"

// testRegistry starts moat's registry over a temp data dir on 127.0.0.1.
func testRegistry(t *testing.T) (*registry.Instance, *httptest.Server) {
	inst, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir(), AdminPassword: adminPW,
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(inst)
	t.Cleanup(func() { ts.Close(); inst.Close() })
	return inst, ts
}

type gateKeychain struct{ a authn.Authenticator }

func (k gateKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// TestRequireSignature: in a project that requires signatures, pulls of
// unsigned images and of images signed only by untrusted keys are refused
// with DENIED and a denied audit event (HEAD, which signers need, is not); signed images, their signature
// artifacts and the platform images of a signed index are served; other
// projects are not affected.
func TestRequireSignature(t *testing.T) {
	ctx := context.Background()
	trustedKey, _ := signing.GenerateKey("")
	untrustedKey, _ := signing.GenerateKey(signing.AlgEd25519)
	gate := &signing.PullGate{DenyTTL: 1 /* cached denials expire at once */, Keys: map[string][]signing.PublicKey{
		"secure": {{Key: trustedKey.Public(), Source: "trusted.pub", Fingerprint: signing.Fingerprint(trustedKey.Public())}}}}
	inst, ts := testRegistry(t)
	inst.Signatures = Gate{gate}
	for _, p := range []string{"secure", "open"} {
		if _, err := inst.Store.CreateProject(ctx, store.Project{Name: p}); err != nil {
			t.Fatal(err)
		}
	}
	host := strings.TrimPrefix(ts.URL, "http://")
	kc := gateKeychain{authn.FromConfig(authn.AuthConfig{Username: "admin", Password: adminPW})}
	opts := []remote.Option{remote.WithAuthFromKeychain(kc)}
	rem := &signing.Remote{Insecure: true, Keychain: kc}
	push := func(repo string) string {
		img, _ := random.Image(256, 1)
		tag, _ := name.NewTag(host+"/"+repo+":v1", name.Insecure)
		if err := remote.Write(tag, img, opts...); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	// Pulls are a deployer's: a reader in both projects (accounts that
	// may push, the publishers, are not held to require-signature).
	hash, _ := auth.HashPassword("deployer-pw")
	if _, err := inst.Store.CreateUser(ctx, "deployer", hash, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"secure", "open"} {
		if err := inst.Store.SetMember(ctx, p, "deployer", auth.RoleReader); err != nil {
			t.Fatal(err)
		}
	}
	inst.Auth.Invalidate()
	deployer := []remote.Option{remote.WithAuthFromKeychain(gateKeychain{authn.FromConfig(authn.AuthConfig{Username: "deployer", Password: "deployer-pw"})})}
	pull := func(ref string) error {
		r, _ := name.ParseReference(ref, name.Insecure)
		_, err := remote.Get(r, deployer...)
		return err
	}

	dig := push("secure/app")
	err := pull(host + "/secure/app:v1")
	if err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "no signatures found") {
		t.Fatalf("unsigned pull: %v", err)
	}
	inst.Audit.Flush()
	evs, err := inst.Store.ListEvents(ctx, store.EventFilter{Repository: "secure/app"})
	if err != nil {
		t.Fatal(err)
	}
	denied := false
	for _, e := range evs {
		denied = denied || (!e.Allowed && e.Digest == dig && strings.Contains(e.Detail, "require-signature"))
	}
	if !denied {
		t.Fatalf("no denied audit event in %+v", evs)
	}
	// The other project has no requirement.
	push("open/app")
	if err := pull(host + "/open/app:v1"); err != nil {
		t.Fatalf("open project: %v", err)
	}
	// Signed by an untrusted key: still refused; the signature artifact
	// itself stays pullable.
	if _, err := rem.Sign(ctx, host+"/secure/app:v1", untrustedKey, signing.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pull(host + "/secure/app:v1"); err == nil || !strings.Contains(err.Error(), "untrusted") {
		t.Fatalf("untrusted signature: %v", err)
	}
	if err := pull(host + "/secure/app:sha256-" + strings.TrimPrefix(dig, "sha256:") + ".sig"); err != nil {
		t.Fatalf("signature artifact not pullable: %v", err)
	}
	// Signed by the trusted key: served.
	if _, err := rem.Sign(ctx, host+"/secure/app:v1", trustedKey, signing.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pull(host + "/secure/app@" + dig); err != nil {
		t.Fatalf("signed pull: %v", err)
	}

	// A signed multi-platform index: its platform images are served by
	// digest after the index was pulled.
	a, _ := random.Image(128, 1)
	b, _ := random.Image(128, 1)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json"),
		mutate.IndexAddendum{Add: a}, mutate.IndexAddendum{Add: b})
	itag, _ := name.NewTag(host+"/secure/multi:v1", name.Insecure)
	if err := remote.WriteIndex(itag, idx, opts...); err != nil {
		t.Fatal(err)
	}
	ad, _ := a.Digest()
	if err := pull(host + "/secure/multi@" + ad.String()); err == nil {
		t.Fatal("platform image of an unsigned index served")
	}
	if _, err := rem.Sign(ctx, host+"/secure/multi:v1", trustedKey, signing.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pull(host + "/secure/multi:v1"); err != nil {
		t.Fatalf("signed index: %v", err)
	}
	if err := pull(host + "/secure/multi@" + ad.String()); err != nil {
		t.Fatalf("platform image of a signed index: %v", err)
	}

	// The refusal reaches plain HTTP clients as 403 with the DENIED code:
	// a deployer (reader) is refused; a publisher, whose credentials may
	// push to the repository, reads the manifest (to sign it, as cosign
	// sign does with GET).
	push("secure/raw")
	get := func(user, pw string) (int, string) {
		req, _ := http.NewRequest("GET", ts.URL+"/v2/secure/raw/manifests/v1", nil)
		req.SetBasicAuth(user, pw)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	if code, body := get("deployer", "deployer-pw"); code != http.StatusForbidden || !strings.Contains(body, `"DENIED"`) || !strings.Contains(body, "requires a signature") {
		t.Fatalf("unsigned image over plain HTTP for a reader: %d %s", code, body)
	}
	if code, body := get("admin", adminPW); code != http.StatusOK {
		t.Fatalf("unsigned image for a principal who may push: %d %s", code, body)
	}
	inst.Audit.Flush()
	evs, _ = inst.Store.ListEvents(ctx, store.EventFilter{Repository: "secure/raw", Actor: "admin"})
	exempt := false
	for _, e := range evs {
		exempt = exempt || (e.Allowed && strings.Contains(e.Detail, "not enforced for admin"))
	}
	if !exempt {
		t.Fatalf("no audit event naming the publisher exemption in %+v", evs)
	}
}

func TestFromDir(t *testing.T) {
	dir := t.TempDir()
	k, _ := signing.GenerateKey("")
	pub, _ := signing.MarshalPublicKey(k.Public())
	os.MkdirAll(filepath.Join(dir, "secure"), 0o755)
	os.WriteFile(filepath.Join(dir, "secure", "release.pub"), pub, 0o644)
	g, err := FromDir(dir)
	if err != nil || !g.Required("secure") || g.Required("open") {
		t.Fatalf("FromDir: %v %+v", err, g.Keys)
	}
	if g, err := FromDir(filepath.Join(dir, "missing")); err != nil || g.Required("secure") {
		t.Fatalf("missing dir: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	if _, err := FromDir(dir); err == nil || !strings.Contains(err.Error(), "project empty") {
		t.Fatalf("project dir without keys: %v", err)
	}
}
