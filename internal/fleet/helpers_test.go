package fleet_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/fleet"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/sbom"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

// env is a fleet server on real parts: the registry's account store and
// token service (robot accounts), a SQLite fleet database, httptest.
type env struct {
	dir    string
	accts  *store.Store
	auth   *auth.Service
	fleet  *fleet.Store
	srv    *fleet.Server
	ts     *httptest.Server
	events []fleet.Event
	mu     sync.Mutex
}

func newEnv(t *testing.T, m fleet.Matcher) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	e.open(t, m)
	return e
}

// open (re)opens the databases and the server over e.dir.
func (e *env) open(t *testing.T, m fleet.Matcher) {
	t.Helper()
	ctx := context.Background()
	var err error
	e.accts, err = store.OpenSQLite(ctx, filepath.Join(e.dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	e.auth, err = auth.NewService(e.accts, filepath.Join(e.dir, "token.key"), "moat")
	if err != nil {
		t.Fatal(err)
	}
	e.fleet, err = fleet.OpenSQLite(ctx, filepath.Join(e.dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.srv = fleet.NewServer(e.fleet, fleet.AccountAuth(e.auth), fleet.Options{Matcher: m, Log: log, OnEvent: func(ev fleet.Event) {
		e.mu.Lock()
		e.events = append(e.events, ev)
		e.mu.Unlock()
	}})
	e.ts = httptest.NewServer(e.srv)
	t.Cleanup(e.close)
}

func (e *env) close() {
	if e.ts != nil {
		e.ts.Close()
		e.fleet.Close()
		e.accts.Close()
		e.ts = nil
	}
}

// robot creates a robot account and returns a client authenticated as it.
func (e *env) robot(t *testing.T, name string) *fleet.Client {
	t.Helper()
	secret := auth.RandomSecret(24)
	hash, err := auth.HashPassword(secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.accts.CreateRobot(context.Background(), store.Robot{Name: name, SecretHash: hash}); err != nil {
		t.Fatal(err)
	}
	return &fleet.Client{Server: e.ts.URL, Username: name, Password: secret}
}

// user creates a plain user and returns a client authenticated as it.
func (e *env) user(t *testing.T, name string, admin bool) *fleet.Client {
	t.Helper()
	pw := auth.RandomSecret(16)
	hash, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.accts.CreateUser(context.Background(), name, hash, admin); err != nil {
		t.Fatal(err)
	}
	return &fleet.Client{Server: e.ts.URL, Username: name, Password: pw}
}

func (e *env) eventKinds() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for _, ev := range e.events {
		out[ev.Kind+" "+ev.Container]++
	}
	return out
}

// goDB imports the real Go vulnerability data into a temporary database.
func goDB(t *testing.T) *vulndb.DB {
	t.Helper()
	data := testenv.OSVData(t)
	dir := t.TempDir()
	if _, err := vulndb.Import(context.Background(), dir, []string{filepath.Join(data, "Go", "all.zip")}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// textSBOM is the CycloneDX SBOM of an image holding a Go binary built
// with golang.org/x/text v0.3.7, brought in by layer 1.
func textSBOM(t *testing.T, version string) []byte {
	t.Helper()
	pkgs := []catalog.Package{{
		Name: "golang.org/x/text", Version: version, Type: catalog.TypeGo, Ecosystem: "Go",
		PURL:      "pkg:golang/golang.org/x/text@" + version,
		Locations: []catalog.Location{{Path: "/app", Layer: 1, LayerDiffID: "sha256:" + repeat("b", 64)}},
		Layer:     1, LayerDiffID: "sha256:" + repeat("b", 64), CreatedBy: "COPY app /app",
	}}
	var buf bytes.Buffer
	s := sbom.Subject{Name: "example/app:1", ImageID: "sha256:" + repeat("c", 64), Layers: []sbom.Layer{
		{Index: 0, DiffID: "sha256:" + repeat("a", 64)}, {Index: 1, DiffID: "sha256:" + repeat("b", 64), CreatedBy: "COPY app /app"}}}
	if err := sbom.WriteCycloneDX(&buf, s, pkgs, sbom.ToolInfo{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func repeat(s string, n int) string { return string(bytes.Repeat([]byte(s), n)) }

var _ fleet.Matcher = match.Matcher{}

func do(t *testing.T, c *fleet.Client, method, path string, in, out any) {
	t.Helper()
	if err := c.Do(context.Background(), method, path, in, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

func status(err error) int {
	if se, ok := err.(*fleet.StatusError); ok {
		return se.Status
	}
	if err == nil {
		return http.StatusOK
	}
	return -1
}
