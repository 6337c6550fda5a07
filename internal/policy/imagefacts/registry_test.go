package imagefacts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/guard"
	"github.com/moat-dev/moat/internal/image"
	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/vulndb"
	"github.com/moat-dev/moat/internal/workload"
)

const adminPW = "admin-test-password"

const (
	critical = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
	medium   = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N"
)

func osvRecord(id, cve, pkg, introduced, fixed, vector string) string {
	fix := ""
	if fixed != "" {
		fix = fmt.Sprintf(`, {"fixed": %q}`, fixed)
	}
	return fmt.Sprintf(`{"id": %q, "aliases": [%q], "summary": "flaw in %s", "modified": "2024-01-01T00:00:00Z",
  "severity": [{"type": "CVSS_V3", "score": %q}],
  "affected": [{"package": {"ecosystem": "npm", "name": %q},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": %q}%s]}]}]}`, id, cve, pkg, vector, pkg, introduced, fix)
}

// osvRecords are three npm flaws: a fixable critical one, an unfixable
// critical one and a fixable medium one.
var osvRecords = []string{
	osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical),
	osvRecord("GHSA-xxxx-left-0001", "CVE-2099-0001", "left-pad", "0", "", critical),
	osvRecord("GHSA-xxxx-left-0002", "CVE-2099-0002", "left-pad", "1.0.0", "1.3.1", medium),
}

// importDB imports OSV records into dir.
func importDB(t *testing.T, dir string, recs ...string) {
	t.Helper()
	src := t.TempDir()
	for i, r := range recs {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("r%d.json", i)), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := vulndb.Import(context.Background(), dir, []string{src}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

func openDB(t *testing.T, recs ...string) *vulndb.DB {
	t.Helper()
	dir := t.TempDir()
	importDB(t, dir, recs...)
	db, err := vulndb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// moatRegistry is moat's registry with its guard (scan on push), in process.
type moatRegistry struct {
	inst   *registry.Instance
	g      *guard.Guard
	ts     *httptest.Server
	host   string
	dbDir  string
	tokens atomic.Int64 // requests to the token endpoint
}

func startMoat(t *testing.T, dbDir string) *moatRegistry {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	inst, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir(), AdminPassword: adminPW, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.Open(context.Background(), guard.Options{Store: inst.Store, Blobs: inst.Blobs, Auth: inst.Auth, Audit: inst.Audit,
		DataDir: t.TempDir(), DBDir: dbDir, RetryBase: 10 * time.Millisecond, DBPoll: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	inst.OnPush, inst.Gate = g, g
	g.Start()
	m := &moatRegistry{inst: inst, g: g, dbDir: dbDir}
	h := g.Handler(inst)
	m.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			m.tokens.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	m.host = strings.TrimPrefix(m.ts.URL, "http://")
	t.Cleanup(func() {
		m.ts.Close()
		g.Close()
		inst.Close()
	})
	return m
}

func (m *moatRegistry) push(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	r, err := name.ParseReference(m.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPW})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// wait waits (bounded) until the guard finished with repo@digest.
func (m *moatRegistry) wait(t *testing.T, repo, digest string) guard.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	im, err := m.g.WaitFinished(ctx, repo, digest)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// keychain gives the same credentials for every registry.
type keychain struct{ authn.Authenticator }

func (k keychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.Authenticator, nil }

func basicKeychain(u, p string) authn.Keychain {
	return keychain{&authn.Basic{Username: u, Password: p}}
}

// appImage is an npm application on an Alpine base, non-root and labelled.
func appImage(t *testing.T) v1.Image {
	img := it.Image(t,
		it.Step{Layer: it.Layer(t, it.Text("/etc/os-release", "ID=alpine\nVERSION_ID=3.19.0\n")), CreatedBy: "base"},
		it.Step{Layer: it.Layer(t,
			it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.15","license":"MIT"}`),
			it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0"}`),
		), CreatedBy: "COPY app /app"},
	)
	cf, _ := img.ConfigFile()
	cfg := cf.Config
	cfg.User, cfg.Labels = "1000", map[string]string{"team": "web"}
	img, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	img, _ = mutate.CreatedAt(img, v1.Time{Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	return img
}

// vulnPolicies are rules of every vulnerability kind, judged both ways.
var vulnPolicies = map[string]string{
	"maxSeverity": "    - name: sev\n      vulnerabilities: {maxSeverity: high}\n",
	"maxCVSS":     "    - name: cvss\n      vulnerabilities: {maxCVSS: 5.0}\n",
	"fixable":     "    - name: fixable\n      vulnerabilities: {maxSeverity: low, fixableOnly: true}\n",
	"exceptions":  "    - name: exc\n      vulnerabilities:\n        maxSeverity: low\n        exceptions:\n          - {id: CVE-2020-8203, package: lodash, reason: not reachable, expires: 2099-01-01}\n          - {id: GHSA-xxxx-left-0002, reason: expired, expires: 2000-01-01}\n",
	"cel":         "    - name: cel\n      cel: {expression: 'image.vulnerabilities.critical == 0', message: critical findings}\n",
}

func evaluate(t *testing.T, rules, ref string, prov policy.FactsProvider) *policy.Result {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n"+rules))
	if err != nil {
		t.Fatal(err)
	}
	w := &workload.Workload{Kind: "Image", Name: ref, Containers: []workload.Container{{Name: ref, Image: ref}}}
	return p.Evaluate(context.Background(), w, policy.Options{Facts: prov, Now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)})
}

// TestFactsFromMoatRegistry pushes a vulnerable image to moat's registry
// with scanning on, waits for the scan, and checks that the facts come from
// the registry's stored findings — read by a reader whom the pull gate
// refuses the image itself — and that every vulnerability rule decides
// exactly as it does on a local scan of the same image.
func TestFactsFromMoatRegistry(t *testing.T) {
	dbDir := t.TempDir()
	importDB(t, dbDir, osvRecords...)
	m := startMoat(t, dbDir)
	img := appImage(t)
	dg := m.push(t, "team/app:1.0", img)
	if im := m.wait(t, "team/app", dg); im.Status != "scanned" {
		t.Fatalf("registry scan: %+v", im)
	}
	// a reader of the project, refused pulls by the project's gate
	ctx := context.Background()
	h, _ := auth.HashPassword("reader-pw")
	if _, err := m.inst.Store.CreateUser(ctx, "rita", h, false); err != nil {
		t.Fatal(err)
	}
	if err := m.inst.Store.SetMember(ctx, "team", "rita", auth.RoleReader); err != nil {
		t.Fatal(err)
	}
	m.inst.Auth.Invalidate()
	sev := "critical"
	if _, err := m.g.UpdateSettings(ctx, "team", guard.SettingsUpdate{BlockSeverity: &sev,
		AddExceptions: []guard.Exception{{ID: "CVE-2020-8203", Reason: "project says so", Expires: "2099-01-01"}}}); err != nil {
		t.Fatal(err)
	}
	ref := m.host + "/team/app:1.0"
	r, _ := name.ParseReference(ref)
	if _, err := remote.Image(r, remote.WithAuth(&authn.Basic{Username: "rita", Password: "reader-pw"})); err == nil {
		t.Fatal("the pull gate let the reader pull a critical image")
	}

	db := openDB(t, osvRecords...)
	fromReg := &imagefacts.Provider{DB: db, Image: image.Options{Keychain: basicKeychain("rita", "reader-pw")}}
	f, err := fromReg.ImageFacts(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if f.FactsSource != imagefacts.SourceRegistry || !f.VulnsScanned || f.Digest != dg || f.FactsCached || !strings.Contains(f.FactsNote, "moat registry "+m.host) {
		t.Fatalf("facts: source %q digest %s note %q", f.FactsSource, f.Digest, f.FactsNote)
	}
	cf, _ := img.ConfigFile()
	var diffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	if f.User != "1000" || f.Labels["team"] != "web" || !reflect.DeepEqual(f.Layers, diffIDs) || !f.Created.Equal(cf.Created.Time) {
		t.Fatalf("config facts: user %q labels %v layers %v created %v", f.User, f.Labels, f.Layers, f.Created)
	}
	// the project's exception does not hide the finding from the policy
	var ids []string
	for _, fd := range f.Findings {
		ids = append(ids, fd.ID)
	}
	if strings.Join(ids, " ") != "CVE-2099-0001 CVE-2020-8203 CVE-2099-0002" { // worst first, then by package
		t.Fatalf("findings %v", ids)
	}
	lo := f.Findings[1]
	if lo.Severity.String() != "CRITICAL" || lo.CVSS == nil || lo.CVSS.Score != 9.8 || !reflect.DeepEqual(lo.FixedVersions, []string{"4.17.19"}) ||
		!reflect.DeepEqual(lo.Aliases, []string{"GHSA-p6mc-m468-83gw"}) || lo.Package.Name != "lodash" || lo.Package.Version != "4.17.15" || lo.Package.PURL == "" {
		t.Fatalf("lodash finding: %+v", lo)
	}
	res := evaluate(t, vulnPolicies["maxSeverity"], ref, fromReg)
	if !res.Denied() || len(res.Violations) != 1 || !strings.Contains(res.Violations[0].Message, "2 vulnerabilities with severity above HIGH: CVE-2099-0001 (CRITICAL) in left-pad 1.3.0; CVE-2020-8203 (CRITICAL) in lodash 4.17.15") {
		t.Fatalf("maxSeverity from the registry: %+v", res.Violations)
	}

	// The same digest in a plain registry is not judged by what the moat
	// registry says: it is scanned.
	plainHost, _ := countingRegistry(t)
	push(t, plainHost+"/team/app:1.0", img)
	pf, err := fromReg.ImageFacts(ctx, plainHost+"/team/app:1.0")
	if err != nil || pf.FactsSource != imagefacts.SourceScan || pf.Digest != dg || len(pf.Findings) != 3 {
		t.Fatalf("same digest in a plain registry: %v %+v", err, pf)
	}

	// The same image scanned here (as the administrator may pull it):
	// the same findings and the same decisions.
	local := &imagefacts.Provider{DB: db, NoRegistryFindings: true, Image: image.Options{Keychain: basicKeychain("admin", adminPW)}}
	lf, err := local.ImageFacts(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if lf.FactsSource != imagefacts.SourceScan || lf.Digest != dg {
		t.Fatalf("local facts: %q %s", lf.FactsSource, lf.Digest)
	}
	a, _ := json.Marshal(f.Findings)
	b, _ := json.Marshal(lf.Findings)
	if string(a) != string(b) {
		t.Errorf("findings differ:\nregistry %s\nlocal    %s", a, b)
	}
	for name, rules := range vulnPolicies {
		ra, rb := evaluate(t, rules, ref, fromReg), evaluate(t, rules, ref, local)
		if !reflect.DeepEqual(ra, rb) {
			t.Errorf("%s: registry %+v\nlocal %+v", name, ra, rb)
		}
		if !ra.Denied() && name != "exceptions" {
			t.Errorf("%s: not denied: %+v", name, ra)
		}
	}
	if r := evaluate(t, vulnPolicies["exceptions"], ref, fromReg); len(r.Violations) != 1 || strings.Contains(r.Violations[0].Message, "lodash") ||
		!strings.Contains(r.Violations[0].Message, "CVE-2099-0002") {
		t.Errorf("exceptions: %+v", r.Violations)
	}
}

// TestRegistryFindingsReuseToken: asking a moat registry again (its
// answer expired) reuses the pull token of the repository instead of
// logging in for every lookup.
func TestRegistryFindingsReuseToken(t *testing.T) {
	dbDir := t.TempDir()
	importDB(t, dbDir, osvRecords...)
	m := startMoat(t, dbDir)
	dg := m.push(t, "team/app:1.0", appImage(t))
	if im := m.wait(t, "team/app", dg); im.Status != "scanned" {
		t.Fatalf("registry scan: %+v", im)
	}
	p := &imagefacts.Provider{DB: openDB(t, osvRecords...), RegistryTTL: time.Nanosecond, Image: image.Options{Keychain: basicKeychain("admin", adminPW)}}
	before := m.tokens.Load()
	for i := 0; i < 3; i++ {
		f, err := p.ImageFacts(context.Background(), m.host+"/team/app@"+dg)
		if err != nil || f.FactsSource != imagefacts.SourceRegistry || f.FactsCached {
			t.Fatalf("lookup %d: %v %+v", i, err, f)
		}
	}
	if n := m.tokens.Load() - before; n != 1 {
		t.Fatalf("%d token requests for 3 lookups of one repository, want 1", n)
	}
}

// TestMoatRegistryNotScannedYet: a moat registry without a vulnerability
// database holds the image as pending, so facts come from a scan here (and
// say why); once the registry has matched it, from the registry.
func TestMoatRegistryNotScannedYet(t *testing.T) {
	dbDir := t.TempDir()
	m := startMoat(t, dbDir)
	dg := m.push(t, "team/app:1.0", appImage(t))
	if im := m.wait(t, "team/app", dg); im.Status != "pending" {
		t.Fatalf("registry without a database: %+v", im)
	}
	ref := m.host + "/team/app:1.0"
	var warnings []string
	prov := &imagefacts.Provider{DB: openDB(t, osvRecords...), Image: image.Options{Keychain: basicKeychain("admin", adminPW)},
		RegistryTTL: time.Nanosecond, Warn: func(s string) { warnings = append(warnings, s) }}
	f, err := prov.ImageFacts(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if f.FactsSource != imagefacts.SourceScan || len(f.Findings) != 3 || !strings.Contains(f.FactsNote, "the registry has not scanned the image yet (pending)") {
		t.Fatalf("fallback: %q %q %d findings", f.FactsSource, f.FactsNote, len(f.Findings))
	}
	if len(warnings) != 0 {
		t.Errorf("warnings for a registry that is only not ready: %v", warnings)
	}
	// the registry gets its database and re-matches
	importDB(t, dbDir, osvRecords...)
	req, _ := http.NewRequest("POST", m.ts.URL+"/api/v1/guard/rescan", nil)
	req.SetBasicAuth("admin", adminPW)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if im := m.wait(t, "team/app", dg); im.Status != "scanned" {
		t.Fatalf("after rescan: %+v", im)
	}
	f, err = prov.ImageFacts(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if f.FactsSource != imagefacts.SourceRegistry || len(f.Findings) != 3 {
		t.Fatalf("after the registry scanned: %q %q", f.FactsSource, f.FactsNote)
	}
	// wrong credentials: the registry does not share, the image cannot be
	// pulled either — an error, not facts
	bad := &imagefacts.Provider{DB: prov.DB, Image: image.Options{Keychain: basicKeychain("admin", "wrong")}}
	if _, err := bad.ImageFacts(context.Background(), ref); err == nil {
		t.Fatal("facts with wrong credentials")
	}
}

// countingRegistry is ggcr's in-memory registry counting blob GETs.
func countingRegistry(t *testing.T) (host string, blobGets *atomic.Int64) {
	blobGets = new(atomic.Int64)
	regh := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		regh.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), blobGets
}

// TestDiskCacheAcrossRuns: an image in a plain registry is scanned once;
// a second provider (a second `moat check`) with the same cache reads no
// blob, a database update re-matches the cached packages without reading
// the image, and a corrupt entry is dropped with a warning and rescanned.
func TestDiskCacheAcrossRuns(t *testing.T) {
	host, blobGets := countingRegistry(t)
	ref := host + "/team/app:1.0"
	push(t, ref, appImage(t))
	dir := t.TempDir()
	db := openDB(t, osvRecords...)
	run := func(db *vulndb.DB) (*policy.ImageFacts, []string) {
		t.Helper()
		c, err := imagefacts.OpenDiskCache(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		lc := c.LayerCache()
		var warns []string
		p := &imagefacts.Provider{DB: db, Cache: c, LayerCache: lc, Warn: func(s string) { warns = append(warns, s) }}
		f, err := p.ImageFacts(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if r := evaluate(t, vulnPolicies["maxSeverity"], ref, p); !r.Denied() {
			t.Fatalf("not denied: %+v", r)
		}
		return f, warns
	}
	f1, _ := run(db)
	if f1.FactsSource != imagefacts.SourceScan || f1.FactsCached || len(f1.Findings) != 3 {
		t.Fatalf("first run: %+v", f1)
	}
	first := blobGets.Load()
	if first < 3 { // config and two layers
		t.Fatalf("first run read %d blobs", first)
	}
	f2, _ := run(db)
	if got := blobGets.Load() - first; got != 0 {
		t.Errorf("second run read %d blobs", got)
	}
	if !f2.FactsCached || f2.FactsSource != imagefacts.SourceScan || f2.Digest != f1.Digest || f2.User != "1000" || !reflect.DeepEqual(f2.Layers, f1.Layers) {
		t.Errorf("second run: %+v", f2)
	}
	a, _ := json.Marshal(f1.Findings)
	b, _ := json.Marshal(f2.Findings)
	if string(a) != string(b) {
		t.Errorf("cached findings differ:\n%s\n%s", a, b)
	}
	// a database with one more record: the cached packages are re-matched
	db2 := openDB(t, append(osvRecords, osvRecord("GHSA-xxxx-lodash-0003", "CVE-2099-0003", "lodash", "4.0.0", "4.17.21", medium))...)
	f3, _ := run(db2)
	if got := blobGets.Load() - first; got != 0 {
		t.Errorf("re-match read %d blobs", got)
	}
	if len(f3.Findings) != 4 || !f3.FactsCached || !strings.Contains(f3.FactsNote, "re-matched") {
		t.Errorf("after a database update: %d findings, %q", len(f3.Findings), f3.FactsNote)
	}
	// corrupt every entry: a warning, a rescan (layers from the layer cache)
	ents, _ := filepath.Glob(filepath.Join(dir, "v1-*.json.zst"))
	if len(ents) != 1 {
		t.Fatalf("cache entries %v", ents)
	}
	os.WriteFile(ents[0], []byte("not zstd"), 0o600)
	f4, warns := run(db2)
	if len(warns) != 1 || !strings.Contains(warns[0], "corrupt facts cache entry") {
		t.Errorf("warnings %v", warns)
	}
	if f4.FactsCached || len(f4.Findings) != 4 {
		t.Errorf("after corruption: %+v", f4)
	}
	if got := blobGets.Load() - first; got != 1 { // only the config: layers come from the layer cache
		t.Errorf("rescan after corruption read %d blobs", got)
	}
}

// TestMoatRegistryIndex: a tag naming a multi-platform index gives the
// stored findings of the requested platform's image.
func TestMoatRegistryIndex(t *testing.T) {
	dbDir := t.TempDir()
	importDB(t, dbDir, osvRecords...)
	m := startMoat(t, dbDir)
	amd := it.WithPlatform(t, appImage(t), "linux", "amd64", "")
	arm := it.WithPlatform(t, it.Image(t, it.Step{Layer: it.Layer(t,
		it.Text("/etc/os-release", "ID=alpine\nVERSION_ID=3.19.0\n"),
		it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0"}`))}), "linux", "arm64", "v8")
	idx := it.Index(t, amd, arm)
	r, _ := name.ParseReference(m.host + "/team/multi:1")
	if err := remote.WriteIndex(r, idx, remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPW})); err != nil {
		t.Fatal(err)
	}
	amdD, _ := amd.Digest()
	armD, _ := arm.Digest()
	idxD, _ := idx.Digest()
	for _, d := range []v1.Hash{amdD, armD} {
		if im := m.wait(t, "team/multi", d.String()); im.Status != "scanned" {
			t.Fatalf("%s: %+v", d, im)
		}
	}
	for _, c := range []struct {
		platform string
		digest   v1.Hash
		findings int
	}{{"linux/amd64", amdD, 3}, {"linux/arm64", armD, 2}, {"linux/arm64/v8", armD, 2}} {
		p := &imagefacts.Provider{Image: image.Options{Platform: c.platform, Keychain: basicKeychain("admin", adminPW)}}
		f, err := p.ImageFacts(context.Background(), m.host+"/team/multi:1")
		if err != nil {
			t.Fatal(err)
		}
		if f.FactsSource != imagefacts.SourceRegistry || f.Digest != c.digest.String() || len(f.Findings) != c.findings {
			t.Errorf("%s: %q %s %d findings (%s)", c.platform, f.FactsSource, f.Digest, len(f.Findings), f.FactsNote)
		}
		// pinning the tag gives the index, not the platform image
		if d, err := p.ResolveDigest(context.Background(), m.host+"/team/multi:1"); err != nil || d != idxD.String() {
			t.Errorf("%s: pinned to %s %v, want the index %s", c.platform, d, err, idxD)
		}
	}
	// a platform the index lacks: the registry has nothing, and the scan
	// here cannot select an image either
	p := &imagefacts.Provider{DB: openDB(t, osvRecords...), Image: image.Options{Platform: "linux/s390x", Keychain: basicKeychain("admin", adminPW)}}
	if f, err := p.ImageFacts(context.Background(), m.host+"/team/multi:1"); err == nil {
		t.Errorf("s390x: %+v", f)
	}
}
