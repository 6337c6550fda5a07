package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/testenv"
)

func runDB(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newDBCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestDBUpdateStatusImport(t *testing.T) {
	data := testenv.OSVData(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var bodies int
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := filepath.Join(data, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
		fh, err := os.Open(p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer fh.Close()
		st, _ := fh.Stat()
		if r.Header.Get("If-Modified-Since") == "" {
			bodies++
		}
		http.ServeContent(w, r, "all.zip", st.ModTime(), fh)
	})}}
	srv.Start()
	defer srv.Close()

	dir := t.TempDir()
	out, err := runDB(t, "update", "--db-dir", dir, "--source", srv.URL, "--ecosystems", "Go,PyPI")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "Go") || !strings.Contains(out, "updated") {
		t.Errorf("update output:\n%s", out)
	}
	out, err = runDB(t, "update", "--db-dir", dir, "--source", srv.URL, "--ecosystems", "Go,PyPI", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var up struct {
		Results []struct{ Ecosystem, Status string }
	}
	if err := json.Unmarshal([]byte(out), &up); err != nil || len(up.Results) != 2 || up.Results[0].Status != "unchanged" || up.Results[1].Status != "unchanged" {
		t.Fatalf("second update: %v\n%s", err, out)
	}
	if bodies != 2 {
		t.Errorf("%d unconditional downloads, want 2", bodies)
	}

	out, err = runDB(t, "status", "--db-dir", dir, "--format", "json", "--max-age", "3d")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Ecosystems []struct {
			Ecosystem string
			Records   int
			Stale     bool
			Source    string
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Ecosystems) != 2 || st.Ecosystems[0].Ecosystem != "Go" ||
		st.Ecosystems[0].Records < 1000 || st.Ecosystems[0].Stale || st.Ecosystems[0].Source != srv.URL {
		t.Fatalf("status: %v\n%s", err, out)
	}
	// a zero max age makes everything stale, still exit 0
	out, err = runDB(t, "status", "--db-dir", dir, "--max-age", "0s")
	if err != nil || !strings.Contains(out, "(stale)") {
		t.Fatalf("stale status: %v\n%s", err, out)
	}

	// import a zip and a directory with a malformed record into a new dir
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "good.json"), []byte(`{"id":"X-1","affected":[{"package":{"ecosystem":"npm","name":"x"},"versions":["1.0.0"]}]}`), 0o644)
	os.WriteFile(filepath.Join(src, "bad.json"), []byte(`{"id":`), 0o644)
	dir2 := t.TempDir()
	out, err = runDB(t, "import", "--db-dir", dir2, filepath.Join(data, "PyPI", "all.zip"), src)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "PyPI") || !strings.Contains(out, "npm") || !strings.Contains(out, "1 malformed skipped") {
		t.Errorf("import output:\n%s", out)
	}
	if _, err := runDB(t, "status", "--db-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "moat db update") {
		t.Errorf("status of empty dir: %v", err)
	}
	if _, err := runDB(t, "status", "--db-dir", dir, "--max-age", "soon"); err == nil {
		t.Error("bad --max-age accepted")
	}
}
