package registry_e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-dev/moat/internal/testenv"
)

// TestPostgresMetadata runs moat serve with its metadata in PostgreSQL:
// the conformance suite and crane work, and the data survives a restart.
func TestPostgresMetadata(t *testing.T) {
	crane := tool(t, "crane")
	url := testenv.StartPostgres(t)
	data := t.TempDir()
	s := startServe(t, data, []string{"MOAT_ADMIN_PASSWORD=adminpw"}, "--database", url)
	conformance(t, s, "adminpw")
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	mustRun(t, env, crane, "auth", "login", s.addr, "-u", "admin", "-p", "adminpw")
	layer := layerTar(t, t.TempDir(), map[string]string{"pg.txt": "metadata in postgres"})
	mustRun(t, env, crane, "append", "--insecure", "-f", layer, "-t", s.addr+"/team/pg:v1")
	if _, err := os.Stat(filepath.Join(data, "moat.db")); err == nil {
		t.Error("SQLite database created although --database is PostgreSQL")
	}
	if err := sigterm(t, s); err != nil {
		t.Fatal(err)
	}
	s2 := startServe(t, data, nil, "--database", url)
	mustRun(t, env, crane, "auth", "login", s2.addr, "-u", "admin", "-p", "adminpw")
	mustRun(t, env, crane, "digest", "--insecure", s2.addr+"/team/pg:v1")
}
