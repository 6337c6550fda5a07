package store

import (
	"context"
	"strings"
)

// migrations are applied in order; each runs once, recorded in
// schema_migrations. {{BLOB}} and {{AUTOID}} are replaced per dialect.
var migrations = []string{
	`CREATE TABLE users (
		id {{AUTOID}},
		name TEXT NOT NULL UNIQUE,
		password_hash TEXT NOT NULL,
		is_admin INTEGER NOT NULL DEFAULT 0,
		disabled INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE projects (
		id {{AUTOID}},
		name TEXT NOT NULL UNIQUE,
		public INTEGER NOT NULL DEFAULT 0,
		immutable_tags INTEGER NOT NULL DEFAULT 0,
		quota_bytes BIGINT NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE members (
		project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		role TEXT NOT NULL,
		PRIMARY KEY (project_id, user_id)
	);
	CREATE TABLE robots (
		id {{AUTOID}},
		name TEXT NOT NULL UNIQUE,
		description TEXT NOT NULL DEFAULT '',
		secret_hash TEXT NOT NULL,
		expires_at BIGINT NOT NULL DEFAULT 0,
		disabled INTEGER NOT NULL DEFAULT 0,
		created_by TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL
	);
	CREATE TABLE robot_permissions (
		robot_id BIGINT NOT NULL REFERENCES robots(id) ON DELETE CASCADE,
		project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		role TEXT NOT NULL,
		PRIMARY KEY (robot_id, project_id)
	);
	CREATE TABLE repositories (
		id {{AUTOID}},
		project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		name TEXT NOT NULL UNIQUE,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE blobs (
		digest TEXT PRIMARY KEY,
		size BIGINT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE repo_blobs (
		repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT NOT NULL REFERENCES blobs(digest),
		created_at BIGINT NOT NULL,
		PRIMARY KEY (repo_id, digest)
	);
	CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
	CREATE TABLE manifests (
		repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT NOT NULL,
		media_type TEXT NOT NULL,
		artifact_type TEXT NOT NULL DEFAULT '',
		subject TEXT NOT NULL DEFAULT '',
		annotations TEXT NOT NULL DEFAULT '',
		size BIGINT NOT NULL,
		content {{BLOB}} NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (repo_id, digest)
	);
	CREATE INDEX manifests_subject ON manifests(repo_id, subject);
	CREATE TABLE manifest_refs (
		repo_id BIGINT NOT NULL,
		manifest TEXT NOT NULL,
		child TEXT NOT NULL,
		PRIMARY KEY (repo_id, manifest, child),
		FOREIGN KEY (repo_id, manifest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
	);
	CREATE INDEX manifest_refs_child ON manifest_refs(child);
	CREATE TABLE tags (
		repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		digest TEXT NOT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (repo_id, name),
		FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
	);
	CREATE TABLE uploads (
		id TEXT PRIMARY KEY,
		repo TEXT NOT NULL,
		byte_offset BIGINT NOT NULL DEFAULT 0,
		hash_state {{BLOB}},
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE audit_events (
		id {{AUTOID}},
		at BIGINT NOT NULL,
		actor TEXT NOT NULL,
		actor_kind TEXT NOT NULL,
		action TEXT NOT NULL,
		repository TEXT NOT NULL DEFAULT '',
		digest TEXT NOT NULL DEFAULT '',
		tag TEXT NOT NULL DEFAULT '',
		remote_addr TEXT NOT NULL DEFAULT '',
		allowed INTEGER NOT NULL,
		detail TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_events_at ON audit_events(at);`,
	// 2: keys the server holds, sealed (AES-256-GCM) under the master key
	// by internal/signing; projects' require-signature switch.
	`ALTER TABLE projects ADD COLUMN require_signature INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE server_keys (
		name TEXT PRIMARY KEY,
		fingerprint TEXT NOT NULL,
		public_key TEXT NOT NULL,
		sealed {{BLOB}} NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE trusted_keys (
		project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		fingerprint TEXT NOT NULL,
		sealed {{BLOB}} NOT NULL,
		added_by TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		PRIMARY KEY (project_id, name)
	);
	CREATE UNIQUE INDEX trusted_keys_fingerprint ON trusted_keys(project_id, fingerprint);`,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.rw.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return err
	}
	var have int
	if err := s.rw.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return err
	}
	for i := have; i < len(migrations); i++ {
		sqlText := strings.NewReplacer("{{BLOB}}", s.d.Blob, "{{AUTOID}}", s.d.AutoID).Replace(migrations[i])
		err := s.tx(ctx, func(t *txn) error {
			for _, stmt := range strings.Split(sqlText, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := t.t.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			_, err := t.exec(`INSERT INTO schema_migrations(version) VALUES (?)`, i+1)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
