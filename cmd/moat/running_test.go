package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
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

// TestRunningExposure runs `moat running` and `moat exposure` against a
// fleet server on real parts (accounts, SQLite, the Go OSV data).
func TestRunningExposure(t *testing.T) {
	data := testenv.OSVData(t)
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := vulndb.Import(ctx, filepath.Join(dir, "db"), []string{filepath.Join(data, "Go", "all.zip")}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	accts, err := store.OpenSQLite(ctx, filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer accts.Close()
	as, err := auth.NewService(accts, filepath.Join(dir, "key"), "moat")
	if err != nil {
		t.Fatal(err)
	}
	fst, err := fleet.OpenSQLite(ctx, filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fst.Close()
	srv := fleet.NewServer(fst, fleet.AccountAuth(as), fleet.Options{Matcher: match.Matcher{DB: db}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	for _, acct := range []struct{ name, pw string }{{"robot$h", "robot-secret-1"}, {"alice", "alice-password-1"}} {
		hash, _ := auth.HashPassword(acct.pw)
		if strings.HasPrefix(acct.name, "robot$") {
			_, err = accts.CreateRobot(ctx, store.Robot{Name: acct.name, SecretHash: hash})
		} else {
			_, err = accts.CreateUser(ctx, acct.name, hash, true)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	agent := &fleet.Client{Server: ts.URL, Username: "robot$h", Password: "robot-secret-1"}
	key := "sha256:" + strings.Repeat("1", 64)
	c := fleet.Container{ID: "c1", Name: "web", Image: "example/app:1", ImageID: key, State: "running", Runtime: fleet.Runtime{Privileged: true}}
	if err := agent.Do(ctx, "POST", "report", fleet.Report{Host: fleet.Host{Name: "h1"}, Full: true, Containers: []fleet.Container{c}}, nil); err != nil {
		t.Fatal(err)
	}
	var bom bytes.Buffer
	pkgs := []catalog.Package{{Name: "golang.org/x/text", Version: "v0.3.7", Type: catalog.TypeGo, Ecosystem: "Go", PURL: "pkg:golang/golang.org/x/text@v0.3.7",
		Locations: []catalog.Location{{Path: "/app", Layer: 1}}, Layer: 1, CreatedBy: "COPY app /app"}}
	if err := sbom.WriteCycloneDX(&bom, sbom.Subject{Name: "example/app:1", ImageID: key}, pkgs, sbom.ToolInfo{}); err != nil {
		t.Fatal(err)
	}
	if err := agent.Do(ctx, "PUT", "sboms/"+key, bom.Bytes(), nil); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--server", ts.URL, "--username", "alice", "--password", "alice-password-1"))
		if err := root.Execute(); err != nil {
			t.Fatalf("moat %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	out := run("running")
	t.Logf("moat running:\n%s", out)
	if !strings.Contains(out, "h1") || !strings.Contains(out, "web") || !strings.Contains(out, "example/app:1") || !strings.Contains(out, "no-limits") {
		t.Errorf("moat running:\n%s", out)
	}
	out = run("running", "--violations")
	if !strings.Contains(out, "no-privileged") || !strings.Contains(out, "remove --privileged") {
		t.Errorf("moat running --violations:\n%s", out)
	}
	out = run("exposure", "CVE-2022-32149")
	t.Logf("moat exposure:\n%s", out)
	if !strings.Contains(out, "golang.org/x/text") || !strings.Contains(out, "v0.3.8") || !strings.Contains(out, "1 COPY app /app") {
		t.Errorf("moat exposure:\n%s", out)
	}
	var ex fleet.Exposure
	if err := json.Unmarshal([]byte(run("exposure", "GO-2022-1059", "--format", "json")), &ex); err != nil || len(ex.Containers) != 1 || ex.Containers[0].Host != "h1" {
		t.Errorf("moat exposure --format json: %+v %v", ex, err)
	}
	if out := run("exposure", "CVE-1999-0001"); !strings.Contains(out, "no running container is exposed to CVE-1999-0001") {
		t.Errorf("moat exposure (none):\n%s", out)
	}
	var rcs []fleet.RunningContainer
	if err := json.Unmarshal([]byte(run("running", "--format", "json")), &rcs); err != nil || len(rcs) != 1 || rcs[0].Findings["UNKNOWN"] < 1 {
		t.Errorf("moat running --format json: %+v %v", rcs, err)
	}
}
