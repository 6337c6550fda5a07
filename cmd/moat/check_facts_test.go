package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/guard"
	"github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/vulndb"
)

// TestCheckImageFactsSources runs `moat check` on an image in moat's
// registry (scanned on push: facts from its stored findings, read with the
// docker login credentials) and on one in a plain registry (scanned here,
// then from the facts cache on the second run).
func TestCheckImageFactsSources(t *testing.T) {
	const pw = "admin-check-password"
	// a vulnerability database: lodash < 4.17.19 is critical
	osv := t.TempDir()
	os.WriteFile(filepath.Join(osv, "r.json"), []byte(`{"id": "GHSA-p6mc-m468-83gw", "aliases": ["CVE-2020-8203"], "modified": "2024-01-01T00:00:00Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "npm", "name": "lodash"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.19"}]}]}]}`), 0o644)
	dbDir := t.TempDir()
	if _, err := vulndb.Import(context.Background(), dbDir, []string{osv}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	// moat's registry with scan on push, sharing the database
	lg := slog.New(slog.NewJSONHandler(io.Discard, nil))
	inst, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir(), AdminPassword: pw, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.Open(context.Background(), guard.Options{Store: inst.Store, Blobs: inst.Blobs, Auth: inst.Auth, Audit: inst.Audit,
		DataDir: t.TempDir(), DBDir: dbDir, DBPoll: time.Hour, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	inst.OnPush, inst.Gate = g, g
	g.Start()
	moatSrv := httptest.NewServer(g.Handler(inst))
	t.Cleanup(func() { moatSrv.Close(); g.Close(); inst.Close() })
	moatHost := strings.TrimPrefix(moatSrv.URL, "http://")
	plain := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(plain.Close)
	plainHost := strings.TrimPrefix(plain.URL, "http://")

	app := func(name string) v1.Image {
		return imagetest.Image(t, imagetest.Step{Layer: imagetest.Layer(t,
			imagetest.Text("/etc/os-release", "ID=alpine\nVERSION_ID=3.19.0\n"),
			imagetest.Text("/app/name", name),
			imagetest.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.15"}`))})
	}
	write := func(ref string, img v1.Image, opts ...remote.Option) {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img, opts...); err != nil {
			t.Fatal(err)
		}
	}
	moatRef, plainRef := moatHost+"/team/app:1", plainHost+"/team/app:1"
	img := app("moat")
	write(moatRef, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: pw}))
	write(plainRef, app("plain"))
	dg, _ := img.Digest()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ims, _ := g.Images(context.Background(), "", nil)
		if len(ims) == 1 && ims[0].Digest == dg.String() && ims[0].Status == "scanned" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never scanned: %+v", ims)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// docker login credentials for moat's registry
	dockerDir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, moatHost, base64.StdEncoding.EncodeToString([]byte("admin:"+pw)))
	os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(cfg), 0o600)
	t.Setenv("DOCKER_CONFIG", dockerDir)
	cacheDir := t.TempDir()
	t.Setenv("MOAT_FACTS_CACHE", cacheDir)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: no-critical\n      vulnerabilities: {maxSeverity: high}\n"), 0o644)

	type image struct {
		Reference, Digest, FactsSource, Note string
		Cached, VulnerabilitiesScanned       bool
		Counts                               map[string]int
	}
	run := func(format string) (string, []image) {
		t.Helper()
		var out, errb bytes.Buffer
		err := runCheck(context.Background(), []string{moatRef, plainRef}, checkFlags{policy: pol, format: format, dbDir: dbDir}, &out, &errb)
		var ge *gateError
		if !errors.As(err, &ge) {
			t.Fatalf("want a denial, got %v\n%s\n%s", err, out.String(), errb.String())
		}
		if errb.Len() != 0 {
			t.Errorf("stderr: %s", errb.String())
		}
		if format != "json" {
			return out.String(), nil
		}
		var rep struct {
			Summary struct{ Enforce int }
			Images  []image
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Summary.Enforce != 2 || len(rep.Images) != 2 {
			t.Fatalf("report: %s", out.String())
		}
		return out.String(), rep.Images
	}
	_, ims := run("json")
	if m := ims[0]; m.FactsSource != "registry" || m.Cached || m.Digest != dg.String() || m.Counts["CRITICAL"] != 1 || !strings.Contains(m.Note, "moat registry "+moatHost) {
		t.Errorf("moat registry image: %+v", m)
	}
	if p := ims[1]; p.FactsSource != "scan" || p.Cached || p.Counts["CRITICAL"] != 1 {
		t.Errorf("plain registry image: %+v", p)
	}
	_, ims = run("json")
	if p := ims[1]; p.FactsSource != "scan" || !p.Cached || p.Counts["CRITICAL"] != 1 {
		t.Errorf("plain registry image, second run: %+v", p)
	}
	if ents, _ := filepath.Glob(filepath.Join(cacheDir, "v1-*.json.zst")); len(ents) != 1 {
		t.Errorf("cache entries: %v (only the scanned image is cached)", ents)
	}
	out, _ := run("table")
	for _, want := range []string{"IMAGE", "FACTS", moatRef, "registry", "scan (cached)", "1C 0H 0M 0L 0U", "CVE-2020-8203 (CRITICAL) in lodash 4.17.15"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// --no-registry-findings --no-facts-cache: both scanned here
	var outb, errb bytes.Buffer
	runCheck(context.Background(), []string{moatRef}, checkFlags{policy: pol, format: "json", dbDir: dbDir, facts: factsFlags{noRegistry: true, noCache: true}}, &outb, &errb)
	if !strings.Contains(outb.String(), `"factsSource": "scan"`) || strings.Contains(outb.String(), `"cached": true`) {
		t.Errorf("without registry findings and cache:\n%s\n%s", outb.String(), errb.String())
	}
}
