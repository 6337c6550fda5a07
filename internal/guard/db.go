// Package guard makes the registry guard what it serves: it scans every
// pushed image in the background (a job queue persisted in SQLite that
// survives restarts and retries with backoff), stores each image's SBOM
// and findings (with when each finding was first seen) and attaches them
// as OCI referrers, refuses pulls of vulnerable or unscanned images per
// project, re-matches every stored SBOM when the vulnerability database
// changes, and sends events to signed webhooks.
package guard

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/glebarez/go-sqlite" // registers the "sqlite" driver
)

// migrations create guard's tables; each runs once (guard_schema).
var migrations = []string{
	`CREATE TABLE jobs (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		repo TEXT NOT NULL,
		repo_id BIGINT NOT NULL,
		digest TEXT NOT NULL,
		state TEXT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_at BIGINT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		UNIQUE (repo, digest)
	);
	CREATE INDEX jobs_state ON jobs(state, next_at);
	CREATE TABLE images (
		repo TEXT NOT NULL,
		digest TEXT NOT NULL,
		project TEXT NOT NULL,
		media_type TEXT NOT NULL,
		index_digest TEXT NOT NULL DEFAULT '',
		platform TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		pushed_at BIGINT NOT NULL,
		scanned_at BIGINT NOT NULL DEFAULT 0,
		matched_at BIGINT NOT NULL DEFAULT 0,
		created BIGINT NOT NULL DEFAULT 0,
		layers TEXT NOT NULL DEFAULT '[]',
		packages BLOB,
		sbom BLOB,
		counts TEXT NOT NULL DEFAULT '{}',
		push_findings INTEGER NOT NULL DEFAULT -1,
		PRIMARY KEY (repo, digest)
	);
	CREATE INDEX images_project ON images(project);
	CREATE TABLE findings (
		repo TEXT NOT NULL,
		digest TEXT NOT NULL,
		fkey TEXT NOT NULL,
		vuln_id TEXT NOT NULL,
		severity TEXT NOT NULL,
		first_seen BIGINT NOT NULL,
		data TEXT NOT NULL,
		PRIMARY KEY (repo, digest, fkey)
	);
	CREATE TABLE settings (
		project TEXT PRIMARY KEY,
		block_severity TEXT NOT NULL DEFAULT '',
		block_unscanned INTEGER NOT NULL DEFAULT 0,
		exceptions TEXT NOT NULL DEFAULT '[]'
	);
	CREATE TABLE events (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		at BIGINT NOT NULL,
		type TEXT NOT NULL,
		repo TEXT NOT NULL DEFAULT '',
		digest TEXT NOT NULL DEFAULT '',
		data TEXT NOT NULL
	);
	CREATE TABLE deliveries (
		event_id BIGINT NOT NULL,
		url TEXT NOT NULL,
		state TEXT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_at BIGINT NOT NULL,
		status INTEGER NOT NULL DEFAULT 0,
		error TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (event_id, url)
	);
	CREATE INDEX deliveries_state ON deliveries(state, next_at);
	CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`,
	`ALTER TABLE images ADD COLUMN upgrades TEXT NOT NULL DEFAULT '[]'`,
	// Re-scans match each distinct package once: pkgs holds them (the
	// fields matching uses), images.pkg_ids an image's package IDs and
	// images.fhash a digest of what matching its packages gave.
	`CREATE TABLE pkgs (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE);
	ALTER TABLE images ADD COLUMN pkg_ids BLOB;
	ALTER TABLE images ADD COLUMN fhash TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE images ADD COLUMN scan_ms BIGINT NOT NULL DEFAULT 0`,
	// The cataloger version (scan.CatalogVersion) an image was last
	// scanned with: images scanned by an older one are scanned again from
	// storage (Reconcile), since a re-match alone reuses the packages the
	// old catalogers found. Images from before this column have ''.
	`ALTER TABLE images ADD COLUMN catalog_version TEXT NOT NULL DEFAULT ''`,
}

// openDB opens (creating) guard's SQLite database and migrates it. One
// connection writes (SQLite has one writer); a pool reads.
func openDB(ctx context.Context, path string) (rw, ro *sql.DB, err error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	rw, err = sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, err
	}
	rw.SetMaxOpenConns(1)
	ro, err = sql.Open("sqlite", dsn)
	if err != nil {
		rw.Close()
		return nil, nil, err
	}
	ro.SetMaxOpenConns(4)
	if err := migrate(ctx, rw); err != nil {
		rw.Close()
		ro.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return rw, ro, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS guard_schema (version INTEGER PRIMARY KEY)`); err != nil {
		return err
	}
	var have int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM guard_schema`).Scan(&have); err != nil {
		return err
	}
	for i := have; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, stmt := range strings.Split(migrations[i], ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO guard_schema(version) VALUES (?)`, i+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func nowMs() int64 { return time.Now().UnixMilli() }

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
