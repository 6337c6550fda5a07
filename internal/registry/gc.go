package registry

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// GC deletes blobs that no manifest references and that are older than
// grace (so blobs of pushes in progress, uploaded before their manifest,
// survive), stored content that has no database record (left by a crash
// between storing and recording), and upload sessions idle for longer than
// grace. It runs while the registry serves: the delete phase excludes
// concurrent blob commits and manifest writes.
func (s *Server) GC(ctx context.Context, dryRun bool, grace time.Duration) (*GCReport, error) {
	rep := &GCReport{DryRun: dryRun, Blobs: []string{}, Orphans: []string{}, GraceSeconds: int64(grace / time.Second)}
	cutoff := time.Now().Add(-grace)
	cands, err := s.Store.GCCandidates(ctx, cutoff)
	if err != nil {
		return nil, err
	}
	var orphans []string
	err = s.Blobs.Walk(ctx, func(d string, _ int64, mod time.Time) error {
		if mod.Before(cutoff) {
			if known, err := s.Store.KnownBlob(ctx, d); err == nil && !known {
				orphans = append(orphans, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	stale, err := s.Store.StaleUploads(ctx, cutoff)
	if err != nil {
		return nil, err
	}
	rep.Uploads = len(stale)
	if dryRun {
		for d, n := range cands {
			rep.Blobs = append(rep.Blobs, d)
			rep.Bytes += n
		}
		rep.Orphans = append(rep.Orphans, orphans...)
		sort.Strings(rep.Blobs)
		return rep, nil
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	for d, n := range cands {
		removed, err := s.Store.DeleteBlobRecord(ctx, d)
		if err != nil {
			return nil, err
		}
		if !removed {
			continue // referenced again since the scan
		}
		if err := s.Blobs.Delete(ctx, d); err != nil {
			return nil, err
		}
		rep.Blobs = append(rep.Blobs, d)
		rep.Bytes += n
	}
	for _, d := range orphans {
		if known, err := s.Store.KnownBlob(ctx, d); err != nil || known {
			continue
		}
		if err := s.Blobs.Delete(ctx, d); err != nil {
			return nil, err
		}
		rep.Orphans = append(rep.Orphans, d)
	}
	for _, id := range stale {
		if v, live := s.sessions.Load(id); live {
			ss := v.(*session)
			if !ss.mu.TryLock() {
				continue // a chunk is being written right now
			}
			s.endSession(ctx, ss)
			ss.mu.Unlock()
			continue
		}
		s.Store.DeleteUpload(ctx, id)
		os.Remove(filepath.Join(s.UploadDir, id))
	}
	sort.Strings(rep.Blobs)
	return rep, nil
}
