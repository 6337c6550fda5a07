package store

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// pgBin finds a PostgreSQL server installation (Debian: package
// postgresql, binaries under /usr/lib/postgresql/N/bin).
func pgBin(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("MOAT_TEST_PGBIN"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	msg := "PostgreSQL server binaries not found (apt-get install postgresql, or set MOAT_TEST_PGBIN)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startPostgres runs a throwaway PostgreSQL on 127.0.0.1 and returns a
// database handle. As root it runs the server as the postgres user.
func startPostgres(t *testing.T) *sql.DB {
	bin := pgBin(t)
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
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
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
	db, err := sql.Open("pgx", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for i := 0; ; i++ {
		if err = db.Ping(); err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("postgres did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return db
}

// TestPostgres runs the store's migrations and behaviour tests against a
// real PostgreSQL: the SQL is portable and only the dialect differs.
func TestPostgres(t *testing.T) {
	db := startPostgres(t)
	ctx := context.Background()
	s, err := Open(ctx, db, Postgres)
	if err != nil {
		t.Fatalf("migrations on PostgreSQL: %v", err)
	}
	if _, err := Open(ctx, db, Postgres); err != nil {
		t.Fatalf("re-running migrations: %v", err)
	}
	testManifestsTagsReferrers(t, s)
	testAccountsAndAudit(t, s)
	testKeys(t, s)
	if err := s.CreateUpload(ctx, "u1", "p/r"); err != nil {
		t.Fatal(err)
	}
	s.UpdateUpload(ctx, "u1", 7, []byte{1, 2, 3})
	u, err := s.GetUpload(ctx, "u1")
	if err != nil || u.Offset != 7 || len(u.HashState) != 3 {
		t.Fatalf("upload on PostgreSQL: %+v %v", u, err)
	}
	if _, err := s.CreateUser(ctx, "bob", "h", false); err != ErrConflict {
		t.Fatalf("duplicate user on PostgreSQL: %v", err)
	}
}
