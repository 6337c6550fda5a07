package fleet_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/moat-dev/moat/internal/fleet"
)

// FuzzAgentInput feeds arbitrary bodies to every endpoint an agent writes
// to: no panic, no server error, and garbage is refused with a 4xx.
func FuzzAgentInput(f *testing.F) {
	f.Add(0, []byte(`{"host":{"name":"h"},"full":true,"containers":[{"id":"c1","name":"x","state":"running","runtime":{"privileged":true,"mounts":[{"type":"bind","source":"/var/run/docker.sock"}]}}]}`))
	f.Add(0, []byte(`{"host":{"name":"h"},"removed":["c1"]}`))
	f.Add(1, []byte(`{"host":"h","samples":[{"containerID":"c1","noisy":true}]}`))
	f.Add(2, []byte(`{"images":["sha256:00","sha256:00"]}`))
	f.Add(3, []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"type":"library","name":"x","version":"1","purl":"pkg:golang/x@1"}]}`))
	f.Add(3, []byte(`{"spdxVersion":"SPDX-2.3"}`))
	st, err := fleet.OpenSQLite(context.Background(), filepath.Join(f.TempDir(), "fleet.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	robot := func(*http.Request) (fleet.Principal, error) {
		return fleet.Principal{Name: "robot$fuzz", Robot: true, Admin: true}, nil
	}
	srv := fleet.NewServer(st, robot, fleet.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	paths := []struct{ method, path string }{
		{"POST", "/api/v1/fleet/report"}, {"POST", "/api/v1/fleet/stats"}, {"POST", "/api/v1/fleet/images/missing"},
		{"PUT", "/api/v1/fleet/sboms/sha256:1111111111111111111111111111111111111111111111111111111111111111"},
	}
	f.Fuzz(func(t *testing.T, which int, body []byte) {
		if which < 0 {
			which = -which
		}
		p := paths[which%len(paths)]
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(p.method, p.path, bytes.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", p.method, p.path, rec.Code, rec.Body)
		}
		if rec.Code >= 300 && !bytes.Contains(rec.Body.Bytes(), []byte(`"message"`)) {
			t.Fatalf("%s %s: %d without a message: %s", p.method, p.path, rec.Code, rec.Body)
		}
	})
}
