package imagefacts_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/guard"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/image/certsdtest"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/registry"
)

// TestMoatRegistryOverHTTPSPrivateCA: a moat registry serving HTTPS with a
// private CA is recognised by the probe, and its stored findings used,
// once the CA is in the registry's certs.d directory; without it the
// registry cannot be reached at all.
func TestMoatRegistryOverHTTPSPrivateCA(t *testing.T) {
	ctx := context.Background()
	dbDir := t.TempDir()
	importDB(t, dbDir, osvRecords...)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	inst, err := registry.Open(ctx, registry.Options{DataDir: t.TempDir(), AdminPassword: adminPW, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.Open(ctx, guard.Options{Store: inst.Store, Blobs: inst.Blobs, Auth: inst.Auth, Audit: inst.Audit,
		DataDir: t.TempDir(), DBDir: dbDir, RetryBase: 10 * time.Millisecond, DBPoll: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	inst.OnPush, inst.Gate = g, g
	g.Start()
	t.Cleanup(func() { g.Close(); inst.Close() })
	ca := certsdtest.NewCA(t, "moat test registry CA")
	_, host := certsdtest.Serve(t, g.Handler(inst), ca, nil)

	img := appImage(t)
	ref := host + "/team/app:1.0"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPW}), remote.WithTransport(ca.Transport(nil))); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if im, err := g.WaitFinished(wctx, "team/app", d.String()); err != nil || im.Status != "scanned" {
		t.Fatalf("registry scan: %v %+v", err, im)
	}

	root := t.TempDir()
	t.Setenv(image.CertsDirsEnv, root)
	db := openDB(t, osvRecords...)
	if _, err := (&imagefacts.Provider{DB: db, Image: image.Options{Keychain: basicKeychain("admin", adminPW)}}).ImageFacts(ctx, ref); err == nil ||
		!strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("without the CA: want an unknown-authority error, got %v", err)
	}

	certsdtest.WriteDir(t, root, host, map[string][]byte{"ca.crt": ca.PEM})
	prov := &imagefacts.Provider{DB: db, Image: image.Options{Keychain: basicKeychain("admin", adminPW)}}
	f, err := prov.ImageFacts(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if f.FactsSource != imagefacts.SourceRegistry || f.Digest != d.String() || len(f.Findings) != 3 || !strings.Contains(f.FactsNote, "moat registry "+host) {
		t.Fatalf("facts over HTTPS: source %q digest %s note %q, %d findings", f.FactsSource, f.Digest, f.FactsNote, len(f.Findings))
	}
}
