package store

import (
	"context"
	"errors"
	"time"
)

// ServerKey is a signing key the server holds (e.g. "registry", which signs
// scan-on-push attestations). Sealed is its private key encrypted under
// the server's master key (internal/signing); PublicKey is its PEM.
type ServerKey struct {
	Name        string
	Fingerprint string
	PublicKey   string
	Sealed      []byte
	CreatedAt   time.Time
}

// TrustedKey is a public key a project trusts for signatures. Sealed is
// the PEM encrypted under the server's master key, bound to the row
// (project and name); Fingerprint identifies it without decrypting.
type TrustedKey struct {
	Project     string
	Name        string
	Fingerprint string
	Sealed      []byte
	AddedBy     string
	CreatedAt   time.Time
}

// ServerKeyByName returns a server key, or ErrNotFound.
func (s *Store) ServerKeyByName(ctx context.Context, name string) (*ServerKey, error) {
	var k ServerKey
	var created int64
	err := s.queryRow(ctx, `SELECT name, fingerprint, public_key, sealed, created_at FROM server_keys WHERE name = ?`, name).
		Scan(&k.Name, &k.Fingerprint, &k.PublicKey, &k.Sealed, &created)
	if err != nil {
		return nil, notFound(err)
	}
	k.CreatedAt = fromMillis(created)
	return &k, nil
}

// CreateServerKey stores a new server key; ErrConflict when one with the
// name exists (two servers starting at once: the loser reads the winner's).
func (s *Store) CreateServerKey(ctx context.Context, k ServerKey) error {
	_, err := s.exec(ctx, `INSERT INTO server_keys(name, fingerprint, public_key, sealed, created_at) VALUES (?,?,?,?,?)`,
		k.Name, k.Fingerprint, k.PublicKey, k.Sealed, now())
	if isUnique(err) {
		return ErrConflict
	}
	return err
}

// ReplaceServerKey stores k under its name, replacing any key there (an
// operator bringing the server its own key, or rotating it).
func (s *Store) ReplaceServerKey(ctx context.Context, k ServerKey) error {
	_, err := s.exec(ctx, `INSERT INTO server_keys(name, fingerprint, public_key, sealed, created_at) VALUES (?,?,?,?,?)
		ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint, public_key = excluded.public_key,
		sealed = excluded.sealed, created_at = excluded.created_at`,
		k.Name, k.Fingerprint, k.PublicKey, k.Sealed, now())
	return err
}

// AddTrustedKey adds a trusted key to an existing project: ErrNotFound
// without the project, ErrConflict when the name or the key is already
// there.
func (s *Store) AddTrustedKey(ctx context.Context, k TrustedKey) (*TrustedKey, error) {
	k.CreatedAt = fromMillis(now())
	err := s.tx(ctx, func(t *txn) error {
		var pid int64
		if err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, k.Project).Scan(&pid); err != nil {
			return notFound(err)
		}
		_, err := t.exec(`INSERT INTO trusted_keys(project_id, name, fingerprint, sealed, added_by, created_at) VALUES (?,?,?,?,?,?)`,
			pid, k.Name, k.Fingerprint, k.Sealed, k.AddedBy, k.CreatedAt.UnixMilli())
		if isUnique(err) {
			return ErrConflict
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// RemoveTrustedKey removes a project's trusted key by name.
func (s *Store) RemoveTrustedKey(ctx context.Context, project, name string) error {
	return s.affectOne(ctx, `DELETE FROM trusted_keys WHERE name = ? AND project_id = (SELECT id FROM projects WHERE name = ?)`, name, project)
}

// ListTrustedKeys returns the trusted keys of a project ("" for every
// project), by project and name.
func (s *Store) ListTrustedKeys(ctx context.Context, project string) ([]TrustedKey, error) {
	q := `SELECT p.name, k.name, k.fingerprint, k.sealed, k.added_by, k.created_at FROM trusted_keys k JOIN projects p ON p.id = k.project_id`
	var args []any
	if project != "" {
		q += ` WHERE p.name = ?`
		args = append(args, project)
	}
	q += ` ORDER BY p.name, k.name`
	return queryList(ctx, s, func(r rowScanner) (TrustedKey, error) {
		var k TrustedKey
		var created int64
		err := r.Scan(&k.Project, &k.Name, &k.Fingerprint, &k.Sealed, &k.AddedBy, &created)
		k.CreatedAt = fromMillis(created)
		return k, err
	}, q, args...)
}

// SignatureProjects returns the names of the projects that require
// signatures.
func (s *Store) SignatureProjects(ctx context.Context) ([]string, error) {
	return s.strings(ctx, `SELECT name FROM projects WHERE require_signature <> 0 ORDER BY name`)
}

// SetRequireSignature turns a project's require-signature switch on or off.
func (s *Store) SetRequireSignature(ctx context.Context, project string, on bool) error {
	return s.affectOne(ctx, `UPDATE projects SET require_signature = ? WHERE name = ?`, b2i(on), project)
}

// SealedKind tells ResealKeys which table a sealed value comes from.
type SealedKind string

const (
	SealedServerKey  SealedKind = "server-key"
	SealedTrustedKey SealedKind = "trusted-key"
)

// ResealKeys rewrites every sealed key the server holds in one
// transaction: fn gets each value with its kind and row identity (the
// server key's name; the trusted key's project and name) and returns the
// value to store and whether it changed. Any error from fn rolls the whole
// rotation back, so the store never holds keys under two master keys
// because of a half-done rotation. It returns how many values changed.
func (s *Store) ResealKeys(ctx context.Context, fn func(kind SealedKind, id []string, sealed []byte) ([]byte, bool, error)) (int, error) {
	n := 0
	err := s.tx(ctx, func(t *txn) error {
		type row struct {
			kind   SealedKind
			key    int64 // trusted_keys.project_id; 0 for server keys
			id     []string
			sealed []byte
		}
		var rows []row
		sr, err := t.query(`SELECT name, sealed FROM server_keys ORDER BY name`)
		if err != nil {
			return err
		}
		for sr.Next() {
			var name string
			var sealed []byte
			if err := sr.Scan(&name, &sealed); err != nil {
				sr.Close()
				return err
			}
			rows = append(rows, row{kind: SealedServerKey, id: []string{name}, sealed: sealed})
		}
		if err := errors.Join(sr.Err(), sr.Close()); err != nil {
			return err
		}
		tr, err := t.query(`SELECT k.project_id, p.name, k.name, k.sealed FROM trusted_keys k JOIN projects p ON p.id = k.project_id ORDER BY p.name, k.name`)
		if err != nil {
			return err
		}
		for tr.Next() {
			var r row
			var project, name string
			if err := tr.Scan(&r.key, &project, &name, &r.sealed); err != nil {
				tr.Close()
				return err
			}
			r.kind, r.id = SealedTrustedKey, []string{project, name}
			rows = append(rows, r)
		}
		if err := errors.Join(tr.Err(), tr.Close()); err != nil {
			return err
		}
		for _, r := range rows {
			out, changed, err := fn(r.kind, r.id, r.sealed)
			if err != nil {
				return err
			}
			if !changed {
				continue
			}
			if r.kind == SealedServerKey {
				_, err = t.exec(`UPDATE server_keys SET sealed = ? WHERE name = ?`, out, r.id[0])
			} else {
				_, err = t.exec(`UPDATE trusted_keys SET sealed = ? WHERE project_id = ? AND name = ?`, out, r.key, r.id[1])
			}
			if err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
