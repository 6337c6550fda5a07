// Package store is the registry's metadata database (users, projects,
// members, robots, repositories, manifests, tags, upload sessions and audit
// events) behind database/sql. SQLite (pure Go) is the embedded default; the
// SQL is kept portable (ON CONFLICT, RETURNING, BIGINT times, "?"
// placeholders rewritten per dialect) so a PostgreSQL dialect can follow.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/glebarez/go-sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique row already exists.
var ErrConflict = errors.New("already exists")

// Dialect abstracts the few differences between SQL engines.
type Dialect struct {
	Name string
	// Types substituted into migrations.
	Blob, AutoID string
	// Numbered placeholders ($1, $2, ...) instead of "?".
	Numbered bool
}

// SQLite is the embedded default dialect.
var SQLite = Dialect{Name: "sqlite", Blob: "BLOB", AutoID: "INTEGER PRIMARY KEY AUTOINCREMENT"}

// Postgres is the dialect a PostgreSQL backend uses.
var Postgres = Dialect{Name: "postgres", Blob: "BYTEA", AutoID: "BIGSERIAL PRIMARY KEY", Numbered: true}

func (d Dialect) rebind(q string) string {
	if !d.Numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Store is the metadata database. Writes go through a single connection
// (SQLite allows one writer; serialising in Go avoids busy errors), reads
// through a pool.
type Store struct {
	d  Dialect
	rw *sql.DB
	ro *sql.DB
	// repos caches repository rows by name. A repository row never
	// changes or goes away once created (nothing deletes or renames
	// one), so a cached row stays true, also for other servers sharing
	// the database. Every registry request looks its repository up.
	repos     sync.Map // name -> Repo
	repoCount atomic.Int64
}

// maxCachedRepos bounds the repository cache (it is cleared when full).
const maxCachedRepos = 100_000

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies migrations.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
	rw, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	rw.SetMaxOpenConns(1)
	ro, err := sql.Open("sqlite", dsn)
	if err != nil {
		rw.Close()
		return nil, err
	}
	ro.SetMaxOpenConns(8)
	ro.SetMaxIdleConns(8)
	s := &Store{d: SQLite, rw: rw, ro: ro}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

// Open wraps an already opened database of the given dialect (for
// PostgreSQL: one pool serves reads and writes) and migrates it.
func Open(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{d: d, rw: db, ro: db}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	err := s.rw.Close()
	if s.ro != s.rw {
		s.ro.Close()
	}
	return err
}

func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return s.rw.ExecContext(ctx, s.d.rebind(q), args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.ro.QueryContext(ctx, s.d.rebind(q), args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.ro.QueryRowContext(ctx, s.d.rebind(q), args...)
}

// tx runs fn in a write transaction.
func (s *Store) tx(ctx context.Context, fn func(t *txn) error) error {
	t, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(&txn{t: t, d: s.d, ctx: ctx}); err != nil {
		t.Rollback()
		return err
	}
	return t.Commit()
}

type txn struct {
	t   *sql.Tx
	d   Dialect
	ctx context.Context
}

func (t *txn) exec(q string, args ...any) (sql.Result, error) {
	return t.t.ExecContext(t.ctx, t.d.rebind(q), args...)
}

func (t *txn) queryRow(q string, args ...any) *sql.Row {
	return t.t.QueryRowContext(t.ctx, t.d.rebind(q), args...)
}

func (t *txn) query(q string, args ...any) (*sql.Rows, error) {
	return t.t.QueryContext(t.ctx, t.d.rebind(q), args...)
}

func now() int64 { return time.Now().UnixMilli() }

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func isUnique(err error) bool {
	if err == nil {
		return false
	}
	m := err.Error()
	return strings.Contains(m, "UNIQUE constraint") || strings.Contains(m, "duplicate key")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
