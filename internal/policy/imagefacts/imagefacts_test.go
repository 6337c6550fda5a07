package imagefacts_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/workload"
)

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// TestBaseImagesFromRegistry builds a base image, an image on top of it and
// an unrelated one, pushes them to a registry on 127.0.0.1, and checks the
// approved-base-image rule and the digest cache.
func TestBaseImagesFromRegistry(t *testing.T) {
	var manifestGets atomic.Int64
	regh := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
			manifestGets.Add(1)
		}
		regh.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	base := it.Image(t, it.Step{Layer: it.Layer(t, it.Text("etc/os-release", "ID=base\n"))}, it.Step{Layer: it.Layer(t, it.Text("etc/base2", "x"))})
	derived, err := mutate.AppendLayers(base, it.Layer(t, it.Text("app/bin", "app")))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := derived.ConfigFile()
	cfg := cf.Config
	cfg.User, cfg.Labels = "1000", map[string]string{"team": "web"}
	derived, _ = mutate.Config(derived, cfg)
	other := it.Image(t, it.Step{Layer: it.Layer(t, it.Text("etc/os-release", "ID=other\n"))}, it.Step{Layer: it.Layer(t, it.Text("app/bin", "app"))})
	push(t, host+"/base/debian:12", base)
	push(t, host+"/base/debian:sha256-abc.sig", other) // signature-style tags are ignored
	push(t, host+"/team/app:1", derived)
	push(t, host+"/team/app:also", derived)
	push(t, host+"/team/other:1", other)

	p, err := policy.Parse("p.yaml", []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: base\n      images: {baseImages: ["+host+"/base/debian]}\n    - name: user\n      cel: {expression: \"image.user == '1000' && image.labels['team'] == 'web'\", message: wrong config}\n"))
	if err != nil {
		t.Fatal(err)
	}
	prov := &imagefacts.Provider{}
	eval := func(ref string) []string {
		w := &workload.Workload{Kind: "Image", Name: ref, Containers: []workload.Container{{Name: ref, Image: ref}}}
		var got []string
		for _, v := range p.Evaluate(context.Background(), w, policy.Options{Facts: prov}).Violations {
			got = append(got, v.Check+": "+v.Message)
		}
		return got
	}
	if got := eval(host + "/team/app:1"); len(got) != 0 {
		t.Errorf("derived image: %v", got)
	}
	got := eval(host + "/team/other:1")
	if len(got) != 2 || !strings.Contains(got[0], "images.baseImages: image "+host+"/team/other:1 is not built on an approved base image") || !strings.HasPrefix(got[1], "cel: wrong config") {
		t.Errorf("other image: %v", got)
	}
	// the same digest under another tag: only the manifest is fetched again
	before := manifestGets.Load()
	f1, err := prov.ImageFacts(context.Background(), host+"/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if manifestGets.Load() != before {
		t.Error("a cached tag was fetched again")
	}
	f2, err := prov.ImageFacts(context.Background(), host+"/team/app:also")
	if err != nil || f2.Digest != f1.Digest || f2.Reference != host+"/team/app:also" || len(f2.Layers) != 3 || f2.User != "1000" {
		t.Fatalf("%v %+v", err, f2)
	}
	d, _ := derived.Digest()
	if f1.Digest != d.String() {
		t.Errorf("digest %s, want %s", f1.Digest, d)
	}
	if got, err := prov.ResolveDigest(context.Background(), host+"/team/other:1"); err != nil || !strings.HasPrefix(got, "sha256:") {
		t.Errorf("resolve: %v %v", got, err)
	}
	if _, err := prov.ImageFacts(context.Background(), host+"/team/missing:1"); err == nil {
		t.Error("missing image has facts")
	}
}
