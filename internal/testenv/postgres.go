package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// PostgresBin finds a PostgreSQL server installation: $MOAT_TEST_PGBIN,
// Debian's /usr/lib/postgresql/N/bin (package postgresql), or initdb on
// PATH; without one the test is skipped (failed in CI).
func PostgresBin(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("MOAT_TEST_PGBIN"); d != "" {
		return d
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	SkipOrFail(t, "PostgreSQL server binaries not found (apt-get install postgresql, or set MOAT_TEST_PGBIN)")
	return ""
}

// StartPostgres runs a throwaway PostgreSQL on 127.0.0.1 for the test (as
// the postgres user when root; fsync off) and returns its URL, once it
// accepts connections. It is stopped when the test ends.
func StartPostgres(t testing.TB) string {
	t.Helper()
	bin := PostgresBin(t)
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
		c.Dir = dir // the postgres user may not be able to read the test's directory
		return c
	}
	if os.Geteuid() == 0 {
		os.Chmod(dir, 0o777)
		exec.Command("chown", "postgres", dir).Run()
	}
	if out, err := asUser("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := asUser("postgres", "-D", data, "-k", dir, "-p", fmt.Sprint(port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// runuser does not forward signals: stop the server with pg_ctl.
		if out, err := asUser("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			t.Errorf("stopping postgres: %v\n%s", err, out)
			srv.Process.Kill()
		}
		srv.Wait()
	})
	for i := 0; ; i++ {
		out, err := asUser("pg_isready", "-h", "127.0.0.1", "-p", fmt.Sprint(port)).CombinedOutput()
		if err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("postgres did not start: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}
