package registry

import (
	"context"
	"github.com/moat-dev/moat/internal/testenv"
	"io"
	"log/slog"
	"net/http/httptest"
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

// tool finds a peer tool (see testenv.Tool).
func tool(t testing.TB, name string) string {
	return testenv.Tool(t, name, "run scripts/build-tools.sh or install it")
}
