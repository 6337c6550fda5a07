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
	"github.com/moat-dev/moat/internal/vulndb"
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

// TestVulnerabilityRules scans an image with two installed Python
// distributions against a database of two real PyPI OSV records.
func TestVulnerabilityRules(t *testing.T) {
	dir := t.TempDir()
	if _, err := vulndb.Import(context.Background(), dir, []string{"testdata/osv"}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	meta := func(n, v string) it.File {
		return it.Text("usr/lib/python3/site-packages/"+n+"-"+v+".dist-info/METADATA", "Metadata-Version: 2.1\nName: "+n+"\nVersion: "+v+"\n")
	}
	push(t, host+"/team/py:1", it.Image(t, it.Step{Layer: it.Layer(t, meta("gdal", "3.0.1"), meta("mkdocs", "1.2.2"), meta("requests", "2.31.0"))}))
	ref := host + "/team/py:1"
	prov := &imagefacts.Provider{DB: db}
	f, err := prov.ImageFacts(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !f.VulnsScanned || len(f.Findings) != 2 {
		t.Fatalf("findings %+v", f.Findings)
	}
	check := func(rule string) []string {
		t.Helper()
		p, err := policy.Parse("p.yaml", []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n"+rule))
		if err != nil {
			t.Fatal(err)
		}
		w := &workload.Workload{Kind: "Image", Name: ref, Containers: []workload.Container{{Name: ref, Image: ref}}}
		var out []string
		for _, v := range p.Evaluate(context.Background(), w, policy.Options{Facts: prov}).Violations {
			out = append(out, v.Message+" | "+v.Fix)
		}
		return out
	}
	got := check("    - name: sev\n      vulnerabilities: {maxSeverity: high}\n")
	if len(got) != 1 || !strings.Contains(got[0], "1 vulnerabilities with severity above HIGH: CVE-2019-17545 (CRITICAL) in gdal 3.0.1") || !strings.HasSuffix(got[0], "| upgrade gdal to 3.0.2") {
		t.Errorf("maxSeverity: %v", got)
	}
	got = check("    - name: cvss\n      vulnerabilities: {maxCVSS: 7.0}\n")
	if len(got) != 1 || !strings.Contains(got[0], "2 vulnerabilities with CVSS above 7.0") || !strings.Contains(got[0], "CVSS 9.8") || !strings.Contains(got[0], "CVE-2021-40978 (HIGH, CVSS 7.5) in mkdocs 1.2.2") {
		t.Errorf("maxCVSS: %v", got)
	}
	exc := "    - name: sev\n      vulnerabilities:\n        maxSeverity: medium\n        exceptions:\n          - {id: CVE-2019-17545, package: gdal, reason: not reachable, expires: %s}\n"
	got = check(strings.Replace(exc, "%s", "2099-01-01", 1))
	if len(got) != 1 || strings.Contains(got[0], "gdal") || !strings.Contains(got[0], "mkdocs") {
		t.Errorf("with an exception: %v", got)
	}
	got = check(strings.Replace(exc, "%s", "2020-01-01", 1))
	if len(got) != 1 || !strings.Contains(got[0], "gdal") {
		t.Errorf("with an expired exception: %v", got)
	}
	got = check("    - name: crit\n      cel: {expression: 'image.vulnerabilities.critical == 0 && image.vulnerabilities.maxCVSS < 9.0', message: critical}\n")
	if len(got) != 1 {
		t.Errorf("CEL over findings: %v", got)
	}
}
