package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/audit"
)

// Repo is a repository.
type Repo struct {
	ID        int64
	ProjectID int64
	Name      string
}

// Manifest is a stored manifest with its content.
type Manifest struct {
	Digest       string
	MediaType    string
	ArtifactType string
	Subject      string
	Annotations  string // JSON object or ""
	Size         int64
	Content      []byte
	CreatedAt    time.Time
}

// Upload is a resumable blob upload session.
type Upload struct {
	ID        string
	Repo      string
	Offset    int64
	HashState []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ImmutableTagError is returned when a push or delete would move an
// immutable tag.
type ImmutableTagError struct{ Tag string }

func (e *ImmutableTagError) Error() string {
	return "tag " + e.Tag + " is immutable in this project and cannot be changed or deleted"
}

// RepoByName looks a repository up.
func (s *Store) RepoByName(ctx context.Context, name string) (*Repo, error) {
	if v, ok := s.repos.Load(name); ok {
		r := v.(Repo)
		return &r, nil
	}
	var r Repo
	err := s.queryRow(ctx, `SELECT id, project_id, name FROM repositories WHERE name = ?`, name).Scan(&r.ID, &r.ProjectID, &r.Name)
	if err != nil {
		return nil, notFound(err)
	}
	if s.repoCount.Add(1) > maxCachedRepos {
		s.repos.Clear()
		s.repoCount.Store(1)
	}
	s.repos.Store(name, r)
	return &r, nil
}

// EnsureRepo returns a repository, creating it in an existing project.
// Concurrent calls for the same name are safe on every dialect.
func (s *Store) EnsureRepo(ctx context.Context, project, name string) (*Repo, error) {
	if r, err := s.RepoByName(ctx, name); err == nil {
		return r, nil
	}
	var r Repo
	err := s.tx(ctx, func(t *txn) error {
		var pid int64
		if err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, project).Scan(&pid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return &MissingError{What: "project", Name: project}
			}
			return err
		}
		if _, err := t.exec(`INSERT INTO repositories(project_id, name, created_at) VALUES (?,?,?) ON CONFLICT(name) DO NOTHING`, pid, name, now()); err != nil {
			return err
		}
		return t.queryRow(`SELECT id, project_id, name FROM repositories WHERE name = ?`, name).Scan(&r.ID, &r.ProjectID, &r.Name)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ListRepos lists repository names after `last` (exclusive), at most n
// (n <= 0: all).
func (s *Store) ListRepos(ctx context.Context, last string, n int) ([]string, error) {
	q := `SELECT name FROM repositories WHERE name > ? ORDER BY name`
	args := []any{last}
	if n > 0 {
		q += ` LIMIT ?`
		args = append(args, n)
	}
	return s.strings(ctx, q, args...)
}

func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	return queryList(ctx, s, func(r rowScanner) (string, error) {
		var v string
		err := r.Scan(&v)
		return v, err
	}, q, args...)
}

// BlobSize returns the size of a blob linked into a repository.
func (s *Store) BlobSize(ctx context.Context, repoID int64, digest string) (int64, error) {
	var size int64
	err := s.queryRow(ctx, `SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repo_id = ? AND rb.digest = ?`, repoID, digest).Scan(&size)
	return size, notFound(err)
}

// GlobalBlobSize returns the size of a known blob in any repository.
func (s *Store) GlobalBlobSize(ctx context.Context, digest string) (int64, error) {
	var size int64
	err := s.queryRow(ctx, `SELECT size FROM blobs WHERE digest = ?`, digest).Scan(&size)
	return size, notFound(err)
}

// LinkBlob records a committed blob and links it into a repository.
func (s *Store) LinkBlob(ctx context.Context, repoID int64, digest string, size int64) error {
	return s.tx(ctx, func(t *txn) error {
		if _, err := t.exec(`INSERT INTO blobs(digest, size, created_at) VALUES (?,?,?) ON CONFLICT(digest) DO NOTHING`, digest, size, now()); err != nil {
			return err
		}
		_, err := t.exec(`INSERT INTO repo_blobs(repo_id, digest, created_at) VALUES (?,?,?) ON CONFLICT(repo_id, digest) DO NOTHING`, repoID, digest, now())
		return err
	})
}

// UnlinkBlob removes a blob from a repository (content is collected by GC).
func (s *Store) UnlinkBlob(ctx context.Context, repoID int64, digest string) error {
	return s.affectOne(ctx, `DELETE FROM repo_blobs WHERE repo_id = ? AND digest = ?`, repoID, digest)
}

// ProjectUsage returns the bytes stored in a project: distinct blobs
// linked into its repositories plus manifest sizes.
func (s *Store) ProjectUsage(ctx context.Context, projectID int64) (int64, error) {
	var blobs, mans int64
	err := s.queryRow(ctx, `SELECT COALESCE(SUM(size),0) FROM blobs WHERE digest IN
		(SELECT rb.digest FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id WHERE r.project_id = ?)`, projectID).Scan(&blobs)
	if err != nil {
		return 0, err
	}
	err = s.queryRow(ctx, `SELECT COALESCE(SUM(m.size),0) FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.project_id = ?`, projectID).Scan(&mans)
	return blobs + mans, err
}

// PutManifest stores a manifest, its references and tags in one
// transaction. Tags in an immutable project that already point elsewhere
// make the whole write fail with *ImmutableTagError.
func (s *Store) PutManifest(ctx context.Context, repoID int64, m Manifest, refs []string, tags []string, immutable bool) error {
	return s.tx(ctx, func(t *txn) error { return putManifest(t, repoID, m, refs, tags, immutable) })
}

// ErrTagMoved is PutManifestIfTag's answer when the tag no longer points
// where the caller read it: someone else moved it meanwhile.
var ErrTagMoved = errors.New("the tag was moved meanwhile")

// PutManifestIfTag stores a manifest and points tag at it only if the tag
// still points at expect ("" = the tag does not exist), in one
// transaction: a read-modify-write of a tag (such as the cosign .att tag,
// whose manifest accumulates layers) never loses a concurrent writer's
// change. Otherwise it stores nothing and returns ErrTagMoved.
func (s *Store) PutManifestIfTag(ctx context.Context, repoID int64, m Manifest, refs []string, tag, expect string) error {
	return s.tx(ctx, func(t *txn) error {
		var cur string
		err := t.queryRow(`SELECT digest FROM tags WHERE repo_id = ? AND name = ?`, repoID, tag).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if cur != expect {
			return ErrTagMoved
		}
		return putManifest(t, repoID, m, refs, []string{tag}, false)
	})
}

func putManifest(t *txn, repoID int64, m Manifest, refs []string, tags []string, immutable bool) error {
	if immutable {
		for _, tag := range tags {
			var cur string
			err := t.queryRow(`SELECT digest FROM tags WHERE repo_id = ? AND name = ?`, repoID, tag).Scan(&cur)
			if err == nil && cur != m.Digest {
				return &ImmutableTagError{Tag: tag}
			}
		}
	}
	_, err := t.exec(`INSERT INTO manifests(repo_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at)
		VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(repo_id, digest) DO NOTHING`,
		repoID, m.Digest, m.MediaType, m.ArtifactType, m.Subject, m.Annotations, m.Size, m.Content, now())
	if err != nil {
		return err
	}
	for _, c := range refs {
		if _, err := t.exec(`INSERT INTO manifest_refs(repo_id, manifest, child) VALUES (?,?,?) ON CONFLICT DO NOTHING`, repoID, m.Digest, c); err != nil {
			return err
		}
	}
	for _, tag := range tags {
		if _, err := t.exec(`INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (?,?,?,?)
			ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`, repoID, tag, m.Digest, now()); err != nil {
			return err
		}
	}
	return nil
}

// HasManifest reports whether a manifest exists in a repository.
func (s *Store) HasManifest(ctx context.Context, repoID int64, digest string) (bool, error) {
	var one int
	err := s.queryRow(ctx, `SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?`, repoID, digest).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

const manifestCols = `digest, media_type, artifact_type, subject, annotations, size, created_at`

func scanManifest(row rowScanner, withContent bool) (*Manifest, error) {
	var m Manifest
	var created int64
	dst := []any{&m.Digest, &m.MediaType, &m.ArtifactType, &m.Subject, &m.Annotations, &m.Size, &created}
	if withContent {
		dst = append(dst, &m.Content)
	}
	if err := row.Scan(dst...); err != nil {
		return nil, notFound(err)
	}
	m.CreatedAt = fromMillis(created)
	return &m, nil
}

// GetManifest returns a manifest by digest, or by tag if ref is not a digest.
func (s *Store) GetManifest(ctx context.Context, repoID int64, ref string, withContent bool) (*Manifest, error) {
	cols := manifestCols
	if withContent {
		cols += `, content`
	}
	if strings.Contains(ref, ":") {
		return scanManifest(s.queryRow(ctx, `SELECT `+cols+` FROM manifests WHERE repo_id = ? AND digest = ?`, repoID, ref), withContent)
	}
	return scanManifest(s.queryRow(ctx, `SELECT `+cols+` FROM manifests WHERE repo_id = ? AND digest =
		(SELECT digest FROM tags WHERE repo_id = ? AND name = ?)`, repoID, repoID, ref), withContent)
}

// DeleteManifest deletes a manifest and every tag pointing to it.
func (s *Store) DeleteManifest(ctx context.Context, repoID int64, digest string, immutable bool) error {
	return s.tx(ctx, func(t *txn) error {
		if immutable {
			var tag string
			if err := t.queryRow(`SELECT name FROM tags WHERE repo_id = ? AND digest = ?`, repoID, digest).Scan(&tag); err == nil {
				return &ImmutableTagError{Tag: tag}
			}
		}
		if _, err := t.exec(`DELETE FROM tags WHERE repo_id = ? AND digest = ?`, repoID, digest); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM manifest_refs WHERE repo_id = ? AND manifest = ?`, repoID, digest); err != nil {
			return err
		}
		res, err := t.exec(`DELETE FROM manifests WHERE repo_id = ? AND digest = ?`, repoID, digest)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// DeleteTag removes a tag (not the manifest).
func (s *Store) DeleteTag(ctx context.Context, repoID int64, tag string, immutable bool) error {
	if immutable {
		var d string
		if err := s.queryRow(ctx, `SELECT digest FROM tags WHERE repo_id = ? AND name = ?`, repoID, tag).Scan(&d); err == nil {
			return &ImmutableTagError{Tag: tag}
		}
	}
	return s.affectOne(ctx, `DELETE FROM tags WHERE repo_id = ? AND name = ?`, repoID, tag)
}

// ListTags lists tag names after `last`, at most n (n <= 0: all).
func (s *Store) ListTags(ctx context.Context, repoID int64, last string, n int) ([]string, error) {
	q := `SELECT name FROM tags WHERE repo_id = ? AND name > ? ORDER BY name`
	args := []any{repoID, last}
	if n > 0 {
		q += ` LIMIT ?`
		args = append(args, n)
	}
	return s.strings(ctx, q, args...)
}

// Referrers lists manifests in a repository whose subject is digest.
func (s *Store) Referrers(ctx context.Context, repoID int64, digest string) ([]Manifest, error) {
	scan := func(r rowScanner) (*Manifest, error) { return scanManifest(r, false) }
	return queryList(ctx, s, deref(scan), `SELECT `+manifestCols+` FROM manifests WHERE repo_id = ? AND subject = ? ORDER BY digest`, repoID, digest)
}

// CreateUpload records a new upload session.
func (s *Store) CreateUpload(ctx context.Context, id, repo string) error {
	t := now()
	_, err := s.exec(ctx, `INSERT INTO uploads(id, repo, byte_offset, created_at, updated_at) VALUES (?,?,0,?,?)`, id, repo, t, t)
	return err
}

// GetUpload returns an upload session.
func (s *Store) GetUpload(ctx context.Context, id string) (*Upload, error) {
	var u Upload
	var c, m int64
	err := s.queryRow(ctx, `SELECT id, repo, byte_offset, hash_state, created_at, updated_at FROM uploads WHERE id = ?`, id).
		Scan(&u.ID, &u.Repo, &u.Offset, &u.HashState, &c, &m)
	if err != nil {
		return nil, notFound(err)
	}
	u.CreatedAt, u.UpdatedAt = fromMillis(c), fromMillis(m)
	return &u, nil
}

// UpdateUpload records the bytes received so far and the hash state.
func (s *Store) UpdateUpload(ctx context.Context, id string, offset int64, state []byte) error {
	return s.affectOne(ctx, `UPDATE uploads SET byte_offset = ?, hash_state = ?, updated_at = ? WHERE id = ?`, offset, state, now(), id)
}

// DeleteUpload removes an upload session.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	return s.affectOne(ctx, `DELETE FROM uploads WHERE id = ?`, id)
}

// StaleUploads lists uploads not touched since before.
func (s *Store) StaleUploads(ctx context.Context, before time.Time) ([]string, error) {
	return s.strings(ctx, `SELECT id FROM uploads WHERE updated_at < ?`, before.UnixMilli())
}

// UploadIDs lists every upload session id.
func (s *Store) UploadIDs(ctx context.Context) ([]string, error) {
	return s.strings(ctx, `SELECT id FROM uploads`)
}

// InsertEvents implements audit.Sink.
func (s *Store) InsertEvents(ctx context.Context, events []audit.Event) error {
	// Multi-row INSERTs (eventsPerInsert rows each, within both SQLite's
	// and PostgreSQL's bound-parameter limits): parsing a statement costs
	// more than inserting a row.
	const eventsPerInsert = 50
	return s.tx(ctx, func(t *txn) error {
		for len(events) > 0 {
			n := min(len(events), eventsPerInsert)
			var q strings.Builder
			q.WriteString(`INSERT INTO audit_events(at, actor, actor_kind, action, repository, digest, tag, remote_addr, allowed, detail) VALUES `)
			args := make([]any, 0, n*10)
			for i, e := range events[:n] {
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteString(`(?,?,?,?,?,?,?,?,?,?)`)
				args = append(args, e.Time.UnixMilli(), e.Actor, e.ActorKind, e.Action, e.Repository, e.Digest, e.Tag, e.RemoteAddr, b2i(e.Allowed), e.Detail)
			}
			if _, err := t.exec(q.String(), args...); err != nil {
				return err
			}
			events = events[n:]
		}
		return nil
	})
}

// EventFilter selects audit events.
type EventFilter struct {
	Actor, Action, Repository string
	AfterID                   int64
	Limit                     int
}

// ListEvents returns audit events in id order.
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]audit.Event, error) {
	q := `SELECT id, at, actor, actor_kind, action, repository, digest, tag, remote_addr, allowed, detail FROM audit_events WHERE id > ?`
	args := []any{f.AfterID}
	if f.Actor != "" {
		q += ` AND actor = ?`
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	if f.Repository != "" {
		q += ` AND repository = ?`
		args = append(args, f.Repository)
	}
	q += ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var at int64
		var allowed int
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.ActorKind, &e.Action, &e.Repository, &e.Digest, &e.Tag, &e.RemoteAddr, &allowed, &e.Detail); err != nil {
			return nil, err
		}
		e.Time, e.Allowed = fromMillis(at), allowed != 0
		out = append(out, e)
	}
	return out, rows.Err()
}

// GCCandidates returns blobs created before `before` that no manifest in
// any repository references (layers, configs, or manifests' own content is
// stored in the database so it is never a blob).
func (s *Store) GCCandidates(ctx context.Context, before time.Time) (map[string]int64, error) {
	rows, err := s.query(ctx, `SELECT digest, size FROM blobs WHERE created_at <= ?
		AND digest NOT IN (SELECT child FROM manifest_refs)`, before.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var d string
		var n int64
		if err := rows.Scan(&d, &n); err != nil {
			return nil, err
		}
		out[d] = n
	}
	return out, rows.Err()
}

// DeleteBlobRecord removes a blob and its links if it is still
// unreferenced; it reports whether it was removed.
func (s *Store) DeleteBlobRecord(ctx context.Context, digest string) (bool, error) {
	removed := false
	err := s.tx(ctx, func(t *txn) error {
		var one int
		err := t.queryRow(`SELECT 1 FROM manifest_refs WHERE child = ? LIMIT 1`, digest).Scan(&one)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := t.exec(`DELETE FROM repo_blobs WHERE digest = ?`, digest); err != nil {
			return err
		}
		res, err := t.exec(`DELETE FROM blobs WHERE digest = ?`, digest)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		removed = n > 0
		return nil
	})
	return removed, err
}

// KnownBlob reports whether a blob has a record (committed and visible).
func (s *Store) KnownBlob(ctx context.Context, digest string) (bool, error) {
	_, err := s.GlobalBlobSize(ctx, digest)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ReposWithBlob lists (up to 100) repositories a blob is linked into.
func (s *Store) ReposWithBlob(ctx context.Context, digest string) ([]string, error) {
	return s.strings(ctx, `SELECT r.name FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id WHERE rb.digest = ? ORDER BY r.name LIMIT 100`, digest)
}
