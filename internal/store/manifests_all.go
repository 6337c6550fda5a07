package store

import "context"

// ForEachManifest calls fn for every manifest of every repository (with
// its content), in pages, so callers can reconcile derived state (the
// guard's scan queue) with what the registry holds. fn's error stops the walk.
func (s *Store) ForEachManifest(ctx context.Context, fn func(repo string, repoID int64, m *Manifest) error) error {
	const page = 500
	lastRepo, lastDigest := int64(-1), ""
	for {
		rows, err := s.query(ctx, `SELECT m.repo_id, r.name, m.`+manifestColsPrefixed+`, m.content
			FROM manifests m JOIN repositories r ON r.id = m.repo_id
			WHERE m.repo_id > ? OR (m.repo_id = ? AND m.digest > ?)
			ORDER BY m.repo_id, m.digest LIMIT ?`, lastRepo, lastRepo, lastDigest, page)
		if err != nil {
			return err
		}
		type item struct {
			repo   string
			repoID int64
			m      *Manifest
		}
		var items []item
		for rows.Next() {
			var it item
			var m Manifest
			var created int64
			if err := rows.Scan(&it.repoID, &it.repo, &m.Digest, &m.MediaType, &m.ArtifactType, &m.Subject, &m.Annotations, &m.Size, &created, &m.Content); err != nil {
				rows.Close()
				return err
			}
			m.CreatedAt = fromMillis(created)
			it.m = &m
			items = append(items, it)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it.repo, it.repoID, it.m); err != nil {
				return err
			}
		}
		if len(items) < page {
			return nil
		}
		last := items[len(items)-1]
		lastRepo, lastDigest = last.repoID, last.m.Digest
	}
}

// manifestColsPrefixed is manifestCols for a query that aliases manifests as m.
const manifestColsPrefixed = `digest, m.media_type, m.artifact_type, m.subject, m.annotations, m.size, m.created_at`
