package guard

import (
	"bytes"
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/vulndb"
)

// Options configure a Guard.
type Options struct {
	Store *store.Store
	Blobs storage.Driver
	Auth  *auth.Service
	Audit *audit.Recorder
	// DataDir holds guard.db, the layer cache and scan temporary files.
	DataDir string
	// DBDir is the vulnerability database directory; without a database
	// SBOMs are stored and findings wait (status "pending").
	DBDir string
	// Workers scan in parallel (default 1: scans must not starve pushes).
	Workers int
	// MaxAttempts bounds how often a failing scan is tried (default 3);
	// RetryBase is the first backoff, doubled per attempt (default 10s).
	MaxAttempts int
	RetryBase   time.Duration
	// RescanInterval re-matches every stored SBOM (0: only when the
	// database changes); DBPoll is how often the database directory is
	// checked for an update (default 30s).
	RescanInterval time.Duration
	DBPoll         time.Duration
	// Webhooks receive events, signed with WebhookSecret.
	Webhooks      []string
	WebhookSecret string
	// AttestKey, when set, signs the CycloneDX SBOM and the vulnerability
	// findings of every scanned image as in-toto attestations stored
	// beside it (see attest.go); each use is audited.
	AttestKey crypto.Signer
	// Version is the moat version written into SBOMs.
	Version string
	Log     *slog.Logger
}

// Guard scans, stores findings, gates pulls and sends events.
type Guard struct {
	o      Options
	rw, ro *sql.DB
	cache  *scan.DirCache
	tmp    string

	dbMu sync.RWMutex
	db   *vulndb.DB
	dbFP string

	wake      chan struct{}
	wakeHooks chan struct{}
	rescanMu  sync.Mutex
	stop      context.CancelFunc
	wg        sync.WaitGroup
	http      httpDoer

	afterRescan atomic.Pointer[func(context.Context)]
}

// Open opens guard's database in o.DataDir and the vulnerability database
// when there is one. Call Start to run the workers.
func Open(ctx context.Context, o Options) (*Guard, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 10 * time.Second
	}
	if o.DBPoll <= 0 {
		o.DBPoll = 30 * time.Second
	}
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return nil, err
	}
	rw, ro, err := openDB(ctx, filepath.Join(o.DataDir, "guard.db"))
	if err != nil {
		return nil, err
	}
	g := &Guard{o: o, rw: rw, ro: ro, wake: make(chan struct{}, 1), wakeHooks: make(chan struct{}, 1), http: defaultHTTP()}
	if g.cache, err = scan.NewDirCache(filepath.Join(o.DataDir, "layer-cache")); err != nil {
		g.Close()
		return nil, err
	}
	g.tmp = filepath.Join(o.DataDir, "scan-tmp")
	os.RemoveAll(g.tmp) // scratch of scans a crash interrupted
	if err := os.MkdirAll(g.tmp, 0o700); err != nil {
		g.Close()
		return nil, err
	}
	// A crash mid-scan leaves jobs "running": they run again.
	if _, err := rw.ExecContext(ctx, `UPDATE jobs SET state = 'queued' WHERE state = 'running'`); err != nil {
		g.Close()
		return nil, err
	}
	if _, err := rw.ExecContext(ctx, `UPDATE images SET status = 'queued' WHERE status = 'scanning'`); err != nil {
		g.Close()
		return nil, err
	}
	g.reloadDB()
	return g, nil
}

// Start runs the scan workers, the database watcher and rescan schedule,
// and webhook delivery until Close.
func (g *Guard) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	for i := 0; i < g.o.Workers; i++ {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.worker(ctx) }()
	}
	g.wg.Add(3)
	go func() {
		defer g.wg.Done()
		if n, err := g.Reconcile(ctx); err != nil && ctx.Err() == nil {
			g.o.Log.Error("guard: reconciling the scan queue with the registry failed", "error", err.Error())
		} else if n > 0 {
			g.o.Log.Info("guard: queued scans at start: images not scanned yet, or catalogued by an older moat", "images", n)
		}
	}()
	go func() { defer g.wg.Done(); g.watch(ctx) }()
	go func() { defer g.wg.Done(); g.deliverLoop(ctx) }()
}

// Close stops the workers (a scan in progress is abandoned and runs again
// on the next start) and closes the databases.
func (g *Guard) Close() error {
	if g.stop != nil {
		g.stop()
		g.wg.Wait()
	}
	g.dbMu.Lock()
	if g.db != nil {
		g.db.Close()
		g.db = nil
	}
	g.dbMu.Unlock()
	if g.ro != nil {
		g.ro.Close()
	}
	return g.rw.Close()
}

// dbFingerprint identifies the database files' state (names, sizes,
// modification times): `moat db update` replaces files by rename.
func dbFingerprint(dir string) string {
	if dir == "" {
		return ""
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.moatdb"))
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", filepath.Base(n), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// reloadDB (re)opens the vulnerability database when its files changed;
// it reports whether they did.
func (g *Guard) reloadDB() bool {
	fp := dbFingerprint(g.o.DBDir)
	g.dbMu.RLock()
	same := fp == g.dbFP
	g.dbMu.RUnlock()
	if same {
		return false
	}
	var db *vulndb.DB
	if fp != "" {
		var err error
		db, err = vulndb.Open(g.o.DBDir)
		if err != nil {
			g.o.Log.Warn("guard: vulnerability database unreadable; findings wait", "dir", g.o.DBDir, "error", err.Error())
			db = nil
		}
	}
	g.dbMu.Lock()
	old := g.db
	g.db, g.dbFP = db, fp
	g.dbMu.Unlock()
	if old != nil {
		// Matches in flight hold the read lock; Close after swapping waits
		// for none, so give them the old mapping until they finish.
		go func() { g.dbMu.Lock(); old.Close(); g.dbMu.Unlock() }()
	}
	return true
}

// isImageManifest reports whether a stored manifest is a container image
// (not an artifact such as a signature or SBOM, and not an index).
func isImageManifest(m *store.Manifest) bool {
	if m.Subject != "" {
		return false
	}
	switch m.MediaType {
	case "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json":
	default:
		return false
	}
	return m.ArtifactType == "application/vnd.oci.image.config.v1+json" || m.ArtifactType == "application/vnd.docker.container.image.v1+json"
}

func isIndex(m *store.Manifest) bool {
	return m.MediaType == "application/vnd.oci.image.index.v1+json" || m.MediaType == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// ManifestPushed queues a scan of a pushed image; an index queues each of
// its platform images. It implements registry.PushNotifier: it only writes
// a queue row, the scan runs in the background.
func (g *Guard) ManifestPushed(ctx context.Context, repo string, repoID int64, m *store.Manifest) {
	var err error
	switch {
	case isImageManifest(m):
		err = g.enqueue(ctx, repo, repoID, m.Digest, m.MediaType, "", "")
	case isIndex(m) && m.Subject == "":
		var idx struct {
			Manifests []struct {
				MediaType string `json:"mediaType"`
				Digest    string `json:"digest"`
				Platform  *struct {
					OS           string `json:"os"`
					Architecture string `json:"architecture"`
					Variant      string `json:"variant"`
				} `json:"platform"`
			} `json:"manifests"`
		}
		if json.Unmarshal(m.Content, &idx) != nil {
			return
		}
		for _, c := range idx.Manifests {
			child, e := g.o.Store.GetManifest(ctx, repoID, c.Digest, false)
			if e != nil {
				continue // sparse index: nothing to scan
			}
			if !isImageManifest(child) {
				continue
			}
			plat := ""
			if c.Platform != nil {
				plat = c.Platform.OS + "/" + c.Platform.Architecture
				if c.Platform.Variant != "" {
					plat += "/" + c.Platform.Variant
				}
			}
			if e := g.enqueue(ctx, repo, repoID, c.Digest, child.MediaType, m.Digest, plat); e != nil {
				err = e
			}
		}
	default:
		return
	}
	if err != nil {
		g.o.Log.Error("guard: queueing a scan failed", "repository", repo, "digest", m.Digest, "error", err.Error())
	}
}

// enqueue records the image (status queued) and its scan job, once per
// repository and digest.
func (g *Guard) enqueue(ctx context.Context, repo string, repoID int64, digest, mediaType, index, platform string) error {
	now := nowMs()
	tx, err := g.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO images(repo, digest, project, media_type, index_digest, platform, status, pushed_at)
		VALUES (?,?,?,?,?,?,'queued',?) ON CONFLICT(repo, digest) DO UPDATE SET
		index_digest = CASE WHEN excluded.index_digest != '' THEN excluded.index_digest ELSE images.index_digest END,
		platform = CASE WHEN excluded.platform != '' THEN excluded.platform ELSE images.platform END`,
		repo, digest, auth.ProjectOf(repo), mediaType, index, platform, now); err != nil {
		return err
	}
	if _, err := queueJob(ctx, tx, repo, repoID, digest, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	select {
	case g.wake <- struct{}{}:
	default:
	}
	return nil
}

// queueJob queues a scan of repo@digest unless one is queued or running
// already; queued reports whether this call added it.
func queueJob(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, repo string, repoID int64, digest string, now int64) (queued bool, err error) {
	res, err := db.ExecContext(ctx, `INSERT INTO jobs(repo, repo_id, digest, state, next_at, created_at, updated_at)
		VALUES (?,?,?,'queued',?,?,?) ON CONFLICT(repo, digest) DO NOTHING`, repo, repoID, digest, now, now, now)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

type job struct {
	id       int64
	repo     string
	repoID   int64
	digest   string
	attempts int
}

// claim takes the next due job, marking it running.
func (g *Guard) claim(ctx context.Context) (*job, error) {
	var j job
	err := g.rw.QueryRowContext(ctx, `UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?
		WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND next_at <= ? ORDER BY next_at, id LIMIT 1)
		RETURNING id, repo, repo_id, digest, attempts`, nowMs(), nowMs()).Scan(&j.id, &j.repo, &j.repoID, &j.digest, &j.attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &j, nil
}

func (g *Guard) worker(ctx context.Context) {
	for {
		j, err := g.claim(ctx)
		if err != nil && ctx.Err() == nil {
			g.o.Log.Error("guard: claiming a job failed", "error", err.Error())
		}
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-g.wake:
			case <-time.After(time.Second):
			}
			continue
		}
		g.run(ctx, j)
		if ctx.Err() != nil {
			return
		}
	}
}

// run scans one job's image and records the outcome: done, queued again
// with backoff, or failed after MaxAttempts.
func (g *Guard) run(ctx context.Context, j *job) {
	// A scanned image scanned again keeps "scanned" (and its findings)
	// throughout, also when the new scan fails.
	g.rw.ExecContext(ctx, `UPDATE images SET status = 'scanning' WHERE repo = ? AND digest = ? AND status <> 'scanned'`, j.repo, j.digest)
	err := g.scanImage(ctx, j)
	if ctx.Err() != nil {
		// Shutting down: the job runs again on the next start.
		bg := context.Background()
		g.rw.ExecContext(bg, `UPDATE jobs SET state = 'queued', attempts = attempts - 1 WHERE id = ?`, j.id)
		g.rw.ExecContext(bg, `UPDATE images SET status = 'queued' WHERE repo = ? AND digest = ? AND status = 'scanning'`, j.repo, j.digest)
		return
	}
	now := nowMs()
	if err == nil {
		g.rw.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, j.id)
		return
	}
	msg := err.Error()
	g.o.Log.Warn("guard: scan failed", "repository", j.repo, "digest", j.digest, "attempt", j.attempts, "error", msg)
	if j.attempts >= g.o.MaxAttempts {
		g.rw.ExecContext(ctx, `UPDATE jobs SET state = 'failed', error = ?, updated_at = ? WHERE id = ?`, msg, now, j.id)
		g.rw.ExecContext(ctx, `UPDATE images SET status = 'failed', error = ? WHERE repo = ? AND digest = ? AND status <> 'scanned'`, msg, j.repo, j.digest)
		g.emit(ctx, "scan-failed", j.repo, j.digest, map[string]any{"error": msg, "attempts": j.attempts})
		return
	}
	backoff := g.o.RetryBase << (j.attempts - 1)
	g.rw.ExecContext(ctx, `UPDATE jobs SET state = 'queued', error = ?, next_at = ?, updated_at = ? WHERE id = ?`, msg, now+backoff.Milliseconds(), now, j.id)
	g.rw.ExecContext(ctx, `UPDATE images SET status = 'queued', error = ? WHERE repo = ? AND digest = ? AND status <> 'scanned'`, msg, j.repo, j.digest)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// Reconcile queues a scan for every image the registry holds that the guard
// has no record of: manifests pushed while scanning was off (--no-scan), or
// committed just before a crash that came before their job was queued (the
// registry's and the guard's databases are separate). Images already known
// are left alone. Start runs it once in the background.
func (g *Guard) Reconcile(ctx context.Context) (int, error) {
	queued := 0
	known := func(repo, digest string) bool {
		var one int
		return g.rw.QueryRowContext(ctx, `SELECT 1 FROM images WHERE repo = ? AND digest = ?`, repo, digest).Scan(&one) == nil
	}
	err := g.o.Store.ForEachManifest(ctx, func(repo string, repoID int64, m *store.Manifest) error {
		switch {
		case isImageManifest(m):
			if known(repo, m.Digest) {
				return nil
			}
		case isIndex(m) && m.Subject == "":
			var idx struct {
				Manifests []struct {
					Digest string `json:"digest"`
				} `json:"manifests"`
			}
			if json.Unmarshal(m.Content, &idx) != nil {
				return nil
			}
			missing := false
			for _, c := range idx.Manifests {
				if !known(repo, c.Digest) {
					if ok, _ := g.o.Store.HasManifest(ctx, repoID, c.Digest); ok {
						missing = true
					}
				}
			}
			if !missing {
				return nil
			}
		default:
			return nil
		}
		g.ManifestPushed(ctx, repo, repoID, m)
		queued++
		return nil
	})
	if err != nil {
		return queued, err
	}
	n, err := g.requeueOldCatalog(ctx)
	return queued + n, err
}

// requeueOldCatalog queues a scan from storage for every scanned image
// whose packages an older cataloger found (images.catalog_version is not
// scan.CatalogVersion): what the catalogers report changed (e.g. RHEL
// packages now name their enterprise_linux release), and re-matching the
// stored packages would keep the old answers. The images stay scanned,
// with their findings, until the new scan replaces them.
func (g *Guard) requeueOldCatalog(ctx context.Context) (int, error) {
	rows, err := g.rw.QueryContext(ctx, `SELECT repo, digest FROM images WHERE status = 'scanned' AND catalog_version <> ? ORDER BY pushed_at DESC`, scan.CatalogVersion)
	if err != nil {
		return 0, err
	}
	type im struct{ repo, digest string }
	var ims []im
	for rows.Next() {
		var i im
		if err := rows.Scan(&i.repo, &i.digest); err != nil {
			rows.Close()
			return 0, err
		}
		ims = append(ims, i)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	queued := 0
	now := nowMs()
	for _, i := range ims {
		r, err := g.o.Store.RepoByName(ctx, i.repo)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return queued, err
		}
		added, err := queueJob(ctx, g.rw, i.repo, r.ID, i.digest, now)
		if err != nil {
			return queued, err
		}
		if added {
			queued++
		}
	}
	if queued > 0 {
		g.o.Log.Info("guard: re-scanning images catalogued by an older version of moat's catalogers", "images", queued, "catalog_version", scan.CatalogVersion)
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
	return queued, nil
}
