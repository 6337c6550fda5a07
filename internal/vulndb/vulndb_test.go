package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testenv"
)

func ids(vs []*Vulnerability) map[string]bool {
	m := map[string]bool{}
	for _, v := range vs {
		m[v.ID] = true
	}
	return m
}

func TestImportRealZips(t *testing.T) {
	data := testenv.OSVData(t)
	dir := t.TempDir()
	res, err := Import(context.Background(), dir, []string{filepath.Join(data, "Go", "all.zip"), filepath.Join(data, "PyPI", "all.zip")}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ecosystems) != 2 || res.Ecosystems[0].Ecosystem != "Go" || res.Ecosystems[1].Ecosystem != "PyPI" {
		t.Fatalf("ecosystems = %+v", res.Ecosystems)
	}
	for _, m := range res.Ecosystems {
		if m.Records < 1000 {
			t.Errorf("%s: only %d records", m.Ecosystem, m.Records)
		}
	}
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Lookup("Go", "golang.org/x/text")
	if err != nil {
		t.Fatal(err)
	}
	m := ids(got)
	for _, id := range []string{"GO-2021-0113", "GO-2022-1059"} {
		if !m[id] {
			t.Errorf("golang.org/x/text: %s missing from %v", id, m)
		}
	}
	for _, v := range got {
		if v.ID == "GO-2022-1059" {
			if len(v.Aliases) != 2 || v.Aliases[0] != "CVE-2022-32149" {
				t.Errorf("aliases = %v", v.Aliases)
			}
			if len(v.Affected) != 1 || v.Affected[0].Ranges[0].Events[1].Fixed != "0.3.8" {
				t.Errorf("affected = %+v", v.Affected)
			}
		}
	}
	// PEP 503: any spelling of a PyPI name finds the records
	a, _ := db.Lookup("PyPI", "Django")
	b, _ := db.Lookup("PyPI", "django")
	if len(a) == 0 || len(a) != len(b) {
		t.Errorf("Django: %d records, django: %d", len(a), len(b))
	}
	if n := db.Count("Go", "example.com/none"); n != 0 {
		t.Errorf("unknown package: %d", n)
	}
	if got, _ := db.Lookup("npm", "golang.org/x/text"); len(got) != 0 {
		t.Errorf("npm lookup found Go records")
	}
	st, err := Status(dir)
	if err != nil || len(st) != 2 || st[0].Records != res.Ecosystems[0].Records {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

func writeZip(t testing.TB, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, c := range files {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(c))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

const debRecord = `{"id":"DSA-5000-1","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2024-0001"],
"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]},
{"package":{"ecosystem":"Debian:11","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.1w-0+deb11u1"}]}]}]}`

func TestImportDirectoryMalformedWithdrawn(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"a/DSA-5000-1.json": debRecord,
		"a/bad-json.json":   `{"id": "X-1", "affected": [`,
		"a/no-id.json":      `{"summary": "nothing"}`,
		"a/bad-range.json":  `{"id":"X-2","affected":[{"package":{"ecosystem":"Debian:12","name":"x"},"ranges":[{"type":"WHAT","events":[{"introduced":"0"}]}]}]}`,
		"a/withdrawn.json":  `{"id":"DLA-1-1","withdrawn":"2024-02-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"zlib"},"versions":["1"]}]}`,
		"b/plain.json":      `{"id":"DEBIAN-CVE-2024-9","affected":[{"package":{"ecosystem":"Debian","name":"zlib"},"versions":["1:1.2.13.dfsg-1"]}]}`,
		"b/readme.txt":      `not a record`,
	}
	for n, c := range files {
		p := filepath.Join(src, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(c), 0o644)
	}
	var warns []string
	dir := t.TempDir()
	res, err := Import(context.Background(), dir, []string{src}, ImportOptions{Warn: func(s string) { warns = append(warns, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Malformed) != 3 || len(warns) != 3 {
		t.Fatalf("malformed = %v", res.Malformed)
	}
	joined := strings.Join(res.Malformed, "\n")
	for _, want := range []string{"bad-json.json: skipped malformed record: invalid OSV JSON", "no-id.json: skipped malformed record: record has no id", `bad-range.json: skipped malformed record: X-2: affected[0].ranges[0]: unknown range type "WHAT"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("malformed list lacks %q:\n%s", want, joined)
		}
	}
	if res.Withdrawn != 1 || len(res.Ecosystems) != 1 || res.Ecosystems[0].Records != 2 {
		t.Fatalf("result = %+v", res)
	}
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// release-specific and release-less records
	if m := ids(must(db.Lookup("Debian:12", "openssl"))); !m["DSA-5000-1"] || len(m) != 1 {
		t.Errorf("Debian:12 openssl = %v", m)
	}
	if m := ids(must(db.Lookup("Debian:10", "openssl"))); len(m) != 0 {
		t.Errorf("Debian:10 openssl = %v", m)
	}
	if m := ids(must(db.Lookup("Debian:12", "zlib"))); !m["DEBIAN-CVE-2024-9"] || m["DLA-1-1"] {
		t.Errorf("Debian:12 zlib = %v (withdrawn must be dropped)", m)
	}
	// a package without a detected release sees every release
	if got := must(db.Lookup("Debian", "openssl")); len(got) != 1 {
		t.Errorf("Debian openssl = %d records, want the one record once", len(got))
	}
}

func must(v []*Vulnerability, err error) []*Vulnerability {
	if err != nil {
		panic(err)
	}
	return v
}

func TestEcosystemApplies(t *testing.T) {
	for _, c := range []struct {
		pkg, rec string
		want     bool
	}{
		{"Debian:12", "Debian:12", true},
		{"Debian:12", "Debian", true},
		{"Debian:12", "Debian:11", false},
		{"Debian", "Debian:11", true},
		{"Ubuntu:22.04", "Ubuntu:22.04:LTS", true},
		{"Ubuntu:22.04:LTS", "Ubuntu:Pro:22.04:LTS", false},
		{"Alpine:v3.20", "Alpine:v3.2", false},
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:9::appstream", true},
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:9::baseos", true},
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:8::appstream", false},
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:10.0", false},
		{"Red Hat:enterprise_linux:10", "Red Hat:enterprise_linux:10.0::baseos", true},
		{"Red Hat:enterprise_linux:1", "Red Hat:enterprise_linux:10.0::baseos", false},
		{"Red Hat:enterprise_linux:9", "Red Hat:rhel_eus:9.2::baseos", false},
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:9", true},
		{"Red Hat:enterprise_linux:9", "Red Hat", true},
		{"Red Hat", "Red Hat:enterprise_linux:8::appstream", true},
		{"Go", "Go", true},
		{"npm", "Go", false},
		{"Debian:12", "Debiana:12", false},
	} {
		if got := EcosystemApplies(c.pkg, c.rec); got != c.want {
			t.Errorf("EcosystemApplies(%q, %q) = %v", c.pkg, c.rec, got)
		}
	}
}

// osvServer serves an OSV bucket layout from root with strong ETags and
// Last-Modified, counting requests and body bytes. mode "drop" cuts the
// connection half way through a body; "truncate" sends a truncated zip as
// if complete.
type osvServer struct {
	root     string
	mode     atomic.Value
	requests atomic.Int64
	bodies   atomic.Int64
	status   sync.Map // path -> last status
}

func (s *osvServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	p := filepath.Join(s.root, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
	data, err := os.ReadFile(p)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	mode, _ := s.mode.Load().(string)
	switch mode {
	case "drop":
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(200)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		s.bodies.Add(1)
		return
	case "truncate":
		data = data[:len(data)*2/3]
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(200)
		w.Write(data)
		s.bodies.Add(1)
		return
	}
	st, _ := os.Stat(p)
	rec := &statusRecorder{ResponseWriter: w}
	http.ServeContent(rec, r, "all.zip", st.ModTime(), bytes.NewReader(data))
	if rec.code == 200 {
		s.bodies.Add(1)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(c int) { r.code = c; r.ResponseWriter.WriteHeader(c) }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.ResponseWriter.Write(b)
}

func newOSVServer(t *testing.T, root string) (*osvServer, string) {
	s := &osvServer{root: root}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	srv.Start()
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func TestUpdateHTTPConditionalAndInterrupted(t *testing.T) {
	data := testenv.OSVData(t)
	srv, url := newOSVServer(t, data)
	dir := t.TempDir()
	ctx := context.Background()
	var progress bytes.Buffer
	res, err := Update(ctx, dir, UpdateOptions{Source: url, Ecosystems: []string{"Go", "PyPI", "npm"}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Go": StatusUpdated, "PyPI": StatusUpdated, "npm": StatusNotFound}
	for _, r := range res {
		if r.Status != want[r.Ecosystem] {
			t.Errorf("%s: %s, want %s (%s)", r.Ecosystem, r.Status, want[r.Ecosystem], r.Error)
		}
	}
	if !strings.Contains(progress.String(), "Go") || !strings.Contains(progress.String(), "done") {
		t.Errorf("progress = %q", progress.String())
	}
	if srv.bodies.Load() != 2 {
		t.Fatalf("bodies = %d", srv.bodies.Load())
	}
	st1, _ := Status(dir)
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before := len(must(db.Lookup("Go", "golang.org/x/text")))
	if before < 2 {
		t.Fatalf("golang.org/x/text: %d records", before)
	}

	// second update: conditional requests, nothing downloaded
	res, err = Update(ctx, dir, UpdateOptions{Source: url, Ecosystems: []string{"Go", "PyPI"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status != StatusUnchanged || r.Downloaded != 0 {
			t.Errorf("second update %s: %s, %d bytes", r.Ecosystem, r.Status, r.Downloaded)
		}
	}
	if srv.bodies.Load() != 2 {
		t.Fatalf("second update downloaded again: bodies = %d", srv.bodies.Load())
	}
	st2, _ := Status(dir)
	if st2[0].Checked.IsZero() || !st2[0].Updated.Equal(st1[0].Updated) {
		t.Errorf("status after unchanged update: %+v", st2[0])
	}

	// interrupted download and truncated zip: error, previous data kept
	for _, mode := range []string{"drop", "truncate"} {
		srv.mode.Store(mode)
		// force a full download by changing the recorded ETag's source
		res, err = Update(ctx, dir, UpdateOptions{Source: url + "/", Ecosystems: []string{"Go"}})
		if err == nil || res[0].Status != StatusFailed {
			t.Fatalf("%s: update succeeded: %+v", mode, res)
		}
		t.Logf("%s: %v", mode, err)
		db2, err := Open(dir)
		if err != nil {
			t.Fatalf("%s: old database unusable: %v", mode, err)
		}
		if n := len(must(db2.Lookup("Go", "golang.org/x/text"))); n != before {
			t.Errorf("%s: %d records after failed update, want %d", mode, n, before)
		}
		db2.Close()
		left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
		if len(left) != 0 {
			t.Errorf("%s: temporary files left: %v", mode, left)
		}
	}
	srv.mode.Store("")
	// the handle opened before all this still reads its data
	if n := len(must(db.Lookup("Go", "golang.org/x/text"))); n != before {
		t.Errorf("old handle: %d records", n)
	}
}

func TestUpdateFileSource(t *testing.T) {
	data := t.TempDir()
	writeZip(t, filepath.Join(data, "Debian", "all.zip"), map[string]string{"DSA-5000-1.json": debRecord})
	dir := t.TempDir()
	res, err := Update(context.Background(), dir, UpdateOptions{Source: "file://" + data, Ecosystems: []string{"Debian", "Alpine"}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != StatusUpdated || res[0].Records != 1 || res[1].Status != StatusNotFound {
		t.Fatalf("res = %+v", res)
	}
	res, _ = Update(context.Background(), dir, UpdateOptions{Source: "file://" + data, Ecosystems: []string{"Debian"}})
	if res[0].Status != StatusUnchanged {
		t.Fatalf("second = %+v", res)
	}
	// a damaged zip is refused and the previous data stays
	os.WriteFile(filepath.Join(data, "Debian", "all.zip"), []byte("PK\x03\x04garbage"), 0o644)
	os.Chtimes(filepath.Join(data, "Debian", "all.zip"), time.Now(), time.Now().Add(time.Hour))
	res, err = Update(context.Background(), dir, UpdateOptions{Source: "file://" + data, Ecosystems: []string{"Debian"}})
	if err == nil || res[0].Status != StatusFailed || !strings.Contains(res[0].Error, "does not verify") {
		t.Fatalf("damaged zip: %+v %v", res, err)
	}
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if len(must(db.Lookup("Debian:12", "openssl"))) != 1 {
		t.Fatal("previous data lost")
	}
}

func TestOpenEmptyAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "moat db update") {
		t.Fatalf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "Go.moatdb"), []byte("MOATVDB1 short"), 0o644)
	if _, err := Open(dir); err == nil {
		t.Fatal("corrupt file opened")
	}
}

func TestResolveDir(t *testing.T) {
	t.Setenv(EnvDBDir, "/x/env")
	if d, _ := ResolveDir("/x/flag"); d != "/x/flag" {
		t.Error(d)
	}
	if d, _ := ResolveDir(""); d != "/x/env" {
		t.Error(d)
	}
	t.Setenv(EnvDBDir, "")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d, _ := ResolveDir(""); d != "/x/cache/moat" {
		t.Error(d)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	v, err := DecodeOSV([]byte(`{"id":"GHSA-x","aliases":["CVE-1"],"summary":"s","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
	"database_specific":{"severity":"HIGH"},
	"affected":[{"package":{"ecosystem":"npm","name":"x"},"ecosystem_specific":{"severity":"low"},"versions":["1.0.0"],
	"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"last_affected":"1.2.0"},{"limit":"2"}]},{"type":"GIT","repo":"r","events":[{"introduced":"abc"}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.EcosystemSeverity != "HIGH" || v.Affected[0].EcosystemSeverity != "low" {
		t.Fatalf("severity words: %q %q", v.EcosystemSeverity, v.Affected[0].EcosystemSeverity)
	}
	got, err := decodeRecord(encodeRecord(nil, v))
	if err != nil {
		t.Fatal(err)
	}
	a := got.Affected[0]
	if got.ID != "GHSA-x" || got.Aliases[0] != "CVE-1" || got.Severity[0].Score != v.Severity[0].Score || got.EcosystemSeverity != "HIGH" ||
		a.Versions[0] != "1.0.0" || a.Ranges[0].Events[1].LastAffected != "1.2.0" || a.Ranges[0].Events[2].Limit != "2" ||
		a.Ranges[1].Type != RangeGit || len(a.Ranges[1].Events) != 0 {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestStaleWarnings(t *testing.T) {
	src := t.TempDir()
	writeZip(t, filepath.Join(src, "Debian", "all.zip"), map[string]string{"DSA-5000-1.json": debRecord})
	dir := t.TempDir()
	old := time.Now().Add(-100 * time.Hour)
	if _, err := Import(context.Background(), dir, []string{filepath.Join(src, "Debian", "all.zip")}, ImportOptions{Now: func() time.Time { return old }}); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if w := db.StaleWarnings(time.Now(), DefaultMaxAge); len(w) != 1 || !strings.Contains(w[0], "Debian") || !strings.Contains(w[0], "moat db update") {
		t.Errorf("warnings = %v", w)
	}
	if w := db.StaleWarnings(time.Now(), 200*time.Hour); len(w) != 0 {
		t.Errorf("fresh data warned: %v", w)
	}
}
