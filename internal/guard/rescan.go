package guard

import (
	"context"
	"database/sql"
	"encoding/json"
	"runtime"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/match"
)

// RescanResult summarises a re-match of the stored SBOMs.
type RescanResult struct {
	Images      int           `json:"images"`
	Changed     int           `json:"changed"`
	NewFindings int           `json:"newFindings"`
	Failed      int           `json:"failed"`
	Duration    time.Duration `json:"durationNs"`
}

func (g *Guard) watch(ctx context.Context) {
	poll := time.NewTicker(g.o.DBPoll)
	defer poll.Stop()
	var sched <-chan time.Time
	if g.o.RescanInterval > 0 {
		t := time.NewTicker(g.o.RescanInterval)
		defer t.Stop()
		sched = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			if g.reloadDB() {
				g.logRescan(ctx, "database changed")
			}
		case <-sched:
			g.reloadDB()
			g.logRescan(ctx, "schedule")
		}
	}
}

func (g *Guard) logRescan(ctx context.Context, why string) {
	res, err := g.Rescan(ctx)
	if err != nil {
		if ctx.Err() == nil {
			g.o.Log.Error("guard: rescan failed", "reason", why, "error", err.Error())
		}
		return
	}
	g.o.Log.Info("guard: rescan", "reason", why, "images", res.Images, "changed", res.Changed, "new_findings", res.NewFindings, "duration", res.Duration.String())
	if f := g.afterRescan.Load(); f != nil {
		(*f)(ctx)
	}
}

// Rescan re-matches every stored SBOM against the current database (the
// layers are never read again), writes only findings that changed, and
// emits a new-finding event for each image already scanned that gained
// findings. Without a database it does nothing.
//
// Each distinct package is matched once: a digest of its findings, combined
// over an image's packages, tells which images changed since their last
// match; only those are matched in full and written, each in its own
// transaction, so an interrupted rescan loses nothing and the next one
// finishes the work.
func (g *Guard) Rescan(ctx context.Context) (*RescanResult, error) {
	g.rescanMu.Lock()
	defer g.rescanMu.Unlock()
	start := time.Now()
	res := &RescanResult{}
	g.dbMu.RLock()
	have := g.db != nil
	g.dbMu.RUnlock()
	if !have {
		return res, nil
	}
	hashes, err := g.allPkgHashes(ctx)
	if err != nil {
		return nil, err
	}
	type img struct {
		repo, digest, status string
		mr                   *match.Result
		pkgs                 []catalog.Package
		err                  error
	}
	rows, err := g.ro.QueryContext(ctx, `SELECT repo, digest, status, pkg_ids, fhash FROM images WHERE packages IS NOT NULL ORDER BY repo, digest`)
	if err != nil {
		return nil, err
	}
	var list []*img
	for rows.Next() {
		var it img
		var ids []byte
		var fh string
		if err := rows.Scan(&it.repo, &it.digest, &it.status, &ids, &fh); err != nil {
			rows.Close()
			return nil, err
		}
		res.Images++
		if ids != nil && it.status == "scanned" && fh != "" {
			if list, err := decodeIDs(ids); err == nil && imageHash(list, hashes) == fh {
				continue // nothing changed for this image
			}
		}
		list = append(list, &it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Match the changed images in parallel, write from one goroutine
	// (SQLite has one writer).
	work := make(chan *img)
	done := make(chan *img, 64)
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				var blob []byte
				it.err = g.ro.QueryRowContext(ctx, `SELECT packages FROM images WHERE repo = ? AND digest = ?`, it.repo, it.digest).Scan(&blob)
				if it.err == nil {
					var st *stored
					st, it.err = decodeStored(blob)
					if it.err == nil {
						it.pkgs = st.Packages
						it.mr, _, it.err = g.match(ctx, st.Packages)
					}
				}
				done <- it
			}
		}()
	}
	go func() {
		defer close(work)
		for _, it := range list {
			select {
			case work <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()
	for it := range done {
		if it.err != nil || it.mr == nil {
			if it.err != nil {
				res.Failed++
				g.o.Log.Warn("guard: rematch failed", "repository", it.repo, "digest", it.digest, "error", it.err.Error())
			}
			continue
		}
		var added []match.Finding
		werr := g.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			added, err = g.storeMatch(ctx, tx, it.repo, it.digest, it.pkgs, it.mr, it.status != "scanned")
			return err
		})
		mr := it.mr
		it.pkgs, it.mr = nil, nil // keep memory bounded over many images
		if werr != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res.Failed++
			continue
		}
		res.Changed++
		g.refreshVulnAttestation(ctx, it.repo, it.digest, mr, start)
		if len(added) > 0 && it.status == "scanned" {
			res.NewFindings += len(added)
			var ids []map[string]string
			for _, f := range added {
				ids = append(ids, map[string]string{"id": f.ID, "severity": f.Severity.String(), "package": f.Package.Name, "version": f.Package.Version})
			}
			g.emit(ctx, "new-finding", it.repo, it.digest, map[string]any{"findings": ids})
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Duration = time.Since(start)
	return res, nil
}

// allPkgHashes matches every distinct package once (in parallel chunks).
func (g *Guard) allPkgHashes(ctx context.Context) (map[int64][32]byte, error) {
	rows, err := g.ro.QueryContext(ctx, `SELECT id, key FROM pkgs`)
	if err != nil {
		return nil, err
	}
	var ids []int64
	var pkgs []catalog.Package
	for rows.Next() {
		var id int64
		var key string
		if err := rows.Scan(&id, &key); err != nil {
			rows.Close()
			return nil, err
		}
		var p catalog.Package
		if err := json.Unmarshal([]byte(key), &p); err != nil {
			continue
		}
		ids, pkgs = append(ids, id), append(pkgs, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	n := runtime.GOMAXPROCS(0)
	chunk := (len(ids) + n - 1) / n
	out := map[int64][32]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for lo := 0; lo < len(ids); lo += chunk {
		hi := min(lo+chunk, len(ids))
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			h, err := g.pkgHashes(ctx, ids[lo:hi], pkgs[lo:hi])
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for k, v := range h {
				out[k] = v
			}
		}(lo, hi)
	}
	wg.Wait()
	return out, firstErr
}
