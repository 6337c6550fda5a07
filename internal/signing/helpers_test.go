package signing

import (
	"context"
	"crypto"
	"github.com/moat-dev/moat/internal/testenv"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/store"
)

const adminPW = "signing-test-admin-pw"

// testReg is a registry on 127.0.0.1 and how to reach it.
type testReg struct {
	name   string
	host   string // 127.0.0.1:PORT
	remote func() *Remote
	user   string // credentials for peer tools ("" = anonymous)
	pass   string
	tokens *atomic.Int64 // token requests served (moat's registry)
}

// ggcrRegistry starts go-containerregistry's in-memory registry with the
// referrers API enabled.
func ggcrRegistry(t testing.TB) *testReg {
	t.Helper()
	ts := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true),
		ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(ts.Close)
	host := strings.TrimPrefix(ts.URL, "http://")
	return &testReg{name: "ggcr", host: host, remote: func() *Remote {
		return &Remote{Insecure: true, Keychain: authn.NewMultiKeychain()}
	}}
}

// moatRegistry starts moat's own registry (token auth on) with the
// project "proj" and the administrator's credentials in a keychain.
func moatRegistry(t testing.TB) *testReg {
	t.Helper()
	inst, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir(), AdminPassword: adminPW,
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Store.CreateProject(context.Background(), store.Project{Name: "proj"}); err != nil {
		t.Fatal(err)
	}
	tokens := &atomic.Int64{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/token") {
			tokens.Add(1)
		}
		inst.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { ts.Close(); inst.Close() })
	host := strings.TrimPrefix(ts.URL, "http://")
	kc := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "admin", Password: adminPW})}
	return &testReg{name: "moat", host: host, user: "admin", pass: adminPW, tokens: tokens, remote: func() *Remote {
		return &Remote{Insecure: true, Keychain: kc}
	}}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

func registries(t *testing.T) []*testReg {
	return []*testReg{ggcrRegistry(t), moatRegistry(t)}
}

// pushRandom pushes a random image to host/repo:v1 and returns host/repo
// and the image digest.
func pushRandom(t testing.TB, reg *testReg, repo string) (string, v1.Hash) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.host + "/" + repo
	tag, err := name.NewTag(ref+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	r := reg.remote()
	if err := remote.Write(tag, img, r.options(context.Background())...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return ref, d
}

func mustKey(t testing.TB, alg string) (crypto.Signer, []PublicKey) {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k, []PublicKey{{Key: k.Public(), Source: "test", Fingerprint: Fingerprint(k.Public())}}
}

// tool finds a peer tool (see testenv.Tool).
func tool(t testing.TB, name string) string {
	return testenv.Tool(t, name, "run scripts/peers/cosign.sh")
}
