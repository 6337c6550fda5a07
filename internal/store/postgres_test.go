package store

import (
	"context"
	"database/sql"
	"testing"

	"github.com/moat-dev/moat/internal/testenv"
)

// startPostgres runs a throwaway PostgreSQL (testenv.StartPostgres) and
// returns a database handle.
func startPostgres(t *testing.T) *sql.DB {
	db, err := sql.Open("pgx", testenv.StartPostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
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
