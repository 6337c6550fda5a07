package registry

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

const adminPW = "admin-test-password"

// testRegistry starts a registry over a temp data dir on 127.0.0.1.
func testRegistry(t testing.TB, mod ...func(*Options)) (*Instance, *httptest.Server) {
	t.Helper()
	o := Options{DataDir: t.TempDir(), AdminPassword: adminPW, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	for _, m := range mod {
		m(&o)
	}
	inst, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(inst)
	t.Cleanup(func() {
		ts.Close()
		inst.Close()
	})
	return inst, ts
}

// addUser creates a user with a role in a project (created if missing).
func addUser(t testing.TB, st *store.Store, name, pw, project, role string) {
	t.Helper()
	ctx := context.Background()
	h, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, name, h, false); err != nil {
		t.Fatal(err)
	}
	if project == "" {
		return
	}
	if _, err := st.CreateProject(ctx, store.Project{Name: project}); err != nil && err != store.ErrConflict {
		t.Fatal(err)
	}
	if err := st.SetMember(ctx, project, name, role); err != nil {
		t.Fatal(err)
	}
}

// tool finds a peer tool: $MOAT_TEST_TOOLS, then ~/.cache/moat-tools/bin,
// then PATH. Missing tools skip the test, or fail it when CI=true.
func tool(t testing.TB, name string) string {
	t.Helper()
	dirs := []string{os.Getenv("MOAT_TEST_TOOLS")}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "moat-tools", "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := name + " not found in $MOAT_TEST_TOOLS, ~/.cache/moat-tools/bin or PATH (run scripts/build-tools.sh or install it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
