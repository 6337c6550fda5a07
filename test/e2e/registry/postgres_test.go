package registry_e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startPostgres runs a throwaway PostgreSQL on 127.0.0.1 (as the postgres
// user when root) and returns its URL.
func startPostgres(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("MOAT_TEST_PGBIN")
	if bin == "" {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
			bin = filepath.Dir(m[len(m)-1])
		} else if p, err := exec.LookPath("initdb"); err == nil {
			bin = filepath.Dir(p)
		}
	}
	if bin == "" {
		msg := "PostgreSQL server binaries not found (apt-get install postgresql, or set MOAT_TEST_PGBIN)"
		if isCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "moat-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	asUser := func(name string, args ...string) *exec.Cmd {
		var c *exec.Cmd
		if os.Geteuid() == 0 {
			c = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		} else {
			c = exec.Command(filepath.Join(bin, name), args...)
		}
		c.Dir = dir
		return c
	}
	if os.Geteuid() == 0 {
		os.Chmod(dir, 0o777)
		exec.Command("chown", "postgres", dir).Run()
	}
	if out, err := asUser("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	var port int
	fmt.Sscanf(addr[len("127.0.0.1:"):], "%d", &port)
	srv := asUser("postgres", "-D", data, "-k", dir, "-p", fmt.Sprint(port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := asUser("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			t.Errorf("stopping postgres: %v\n%s", err, out)
			srv.Process.Kill()
		}
		srv.Wait()
	})
	for i := 0; ; i++ {
		if out, err := asUser("pg_isready", "-h", "127.0.0.1", "-p", fmt.Sprint(port)).CombinedOutput(); err == nil {
			break
		} else if i > 200 {
			t.Fatalf("postgres did not start: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// TestPostgresMetadata runs moat serve with its metadata in PostgreSQL:
// the conformance suite and crane work, and the data survives a restart.
func TestPostgresMetadata(t *testing.T) {
	crane := tool(t, "crane")
	url := startPostgres(t)
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
