package guard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/distro"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/report"
	"github.com/moat-dev/moat/internal/sbom"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
)

// Artifact types of what a scan attaches to an image as OCI referrers.
const (
	ArtifactSBOM   = "application/vnd.cyclonedx+json"
	ArtifactReport = "application/vnd.moat.scan-report.v1+json"
)

// stored is what a scan keeps of an image to re-match it later without
// reading layers again: the SBOM's subject and packages.
type stored struct {
	Subject  scan.Subject
	OS       *distro.Release
	Layers   []scan.LayerInfo
	Packages []catalog.Package
}

// The zstd coder pair is made on first use, not at process start.
var (
	zenc = sync.OnceValue(func() *zstd.Encoder {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
		return e
	})
	zdec = sync.OnceValue(func() *zstd.Decoder {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
		return d
	})
)

func encodeStored(s *stored) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(s); err != nil {
		return nil, err
	}
	return zenc().EncodeAll(buf.Bytes(), nil), nil
}

func decodeStored(b []byte) (*stored, error) {
	raw, err := zdec().DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("stored SBOM: %w", err)
	}
	var s stored
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&s); err != nil {
		return nil, fmt.Errorf("stored SBOM: %w", err)
	}
	return &s, nil
}

func (s *stored) result() *scan.Result {
	return &scan.Result{Schema: scan.SchemaVersion, Subject: s.Subject, OS: s.OS, Layers: s.Layers, Packages: s.Packages}
}

func sbomSubject(r *scan.Result) sbom.Subject {
	s := sbom.Subject{Name: r.Subject.Name, Digest: r.Subject.Digest, ImageID: r.Subject.ImageID, Platform: r.Subject.Platform}
	if r.OS != nil {
		s.OSName, s.OSVersion = r.OS.ID, r.OS.VersionID
	}
	for _, l := range r.Layers {
		s.Layers = append(s.Layers, sbom.Layer{Index: l.Index, DiffID: l.DiffID, Digest: l.Digest, CreatedBy: l.CreatedBy, Size: l.Size})
	}
	return s
}

// scanImage catalogues a job's image from the registry's storage (layers
// already catalogued come from the layer cache), matches it when a
// database is there, stores SBOM and findings, and attaches them as
// referrers.
func (g *Guard) scanImage(ctx context.Context, j *job) error {
	start := time.Now()
	m, err := g.o.Store.GetManifest(ctx, j.repoID, j.digest, true)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted before its scan: nothing to do.
		g.rw.ExecContext(ctx, `DELETE FROM images WHERE repo = ? AND digest = ?`, j.repo, j.digest)
		return nil
	}
	if err != nil {
		return err
	}
	if signing.IsSigningArtifact(m.Content) {
		// A cosign signature or attestation tag (its config says image):
		// nothing to catalogue, and no image to list.
		g.rw.ExecContext(ctx, `DELETE FROM images WHERE repo = ? AND digest = ?`, j.repo, j.digest)
		return nil
	}
	// An image already scanned (by an older cataloger: Reconcile) is
	// scanned again: it stays "scanned" with its current findings until
	// the new ones replace them, so its pulls are never held up, and its
	// findings keep their first-seen dates.
	var prev string
	g.rw.QueryRowContext(ctx, `SELECT status FROM images WHERE repo = ? AND digest = ?`, j.repo, j.digest).Scan(&prev)
	rescan := prev == "scanned"
	img, err := g.openStored(ctx, j.repoID, m)
	if err != nil {
		return err
	}
	im, err := image.FromV1(img, j.repo+"@"+j.digest, "registry")
	if err != nil {
		return err
	}
	im.Digest = j.digest
	defer im.Close()
	res, err := scan.ScanImage(ctx, im, scan.Options{Cache: g.cache, TempDir: g.tmp, Parallelism: 1})
	if err != nil {
		return err
	}
	st := &stored{Subject: res.Subject, OS: res.OS, Layers: res.Layers, Packages: res.Packages}
	blob, err := encodeStored(st)
	if err != nil {
		return err
	}
	var bomBuf bytes.Buffer
	if err := sbom.EncodeCycloneDX(&bomBuf, sbom.BuildCycloneDX(sbomSubject(res), res.Packages, sbom.ToolInfo{Name: "moat", Version: g.o.Version})); err != nil {
		return err
	}
	var layers []string
	for _, l := range im.Layers {
		layers = append(layers, l.Digest)
	}
	lj, _ := json.Marshal(layers)
	var created int64
	if im.Config != nil && !im.Config.Created.IsZero() {
		created = im.Config.Created.UnixMilli()
	}
	mr, matched, err := g.match(ctx, res.Packages)
	if err != nil {
		return err
	}
	// Artifacts first, so that an image listed as scanned already has
	// them.
	if err := g.attach(ctx, j, m, bomBuf.Bytes(), res, mr); err != nil {
		g.o.Log.Warn("guard: attaching SBOM and report as referrers failed", "repository", j.repo, "digest", j.digest, "error", err.Error())
	}
	if err := g.attest(ctx, j, m, bomBuf.Bytes(), mr, start); err != nil {
		g.o.Log.Warn("guard: storing the signed SBOM and scan attestations failed", "repository", j.repo, "digest", j.digest, "error", err.Error())
	}
	status := "pending"
	if matched || rescan {
		status = "scanned"
	}
	now := nowMs()
	err = g.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE images SET status = ?, error = '', scanned_at = ?, created = ?, layers = ?, packages = ?, sbom = ?, platform = CASE WHEN platform = '' THEN ? ELSE platform END, scan_ms = ?, catalog_version = ?
			WHERE repo = ? AND digest = ?`, status, now, created, string(lj), blob, bomBuf.Bytes(), res.Subject.Platform, time.Since(start).Milliseconds(), scan.CatalogVersion, j.repo, j.digest)
		if err != nil {
			return err
		}
		_, err = g.storeMatch(ctx, tx, j.repo, j.digest, res.Packages, mr, !rescan)
		return err
	})
	if err != nil {
		return err
	}
	g.emit(ctx, "scan-completed", j.repo, j.digest, map[string]any{"status": status, "packages": len(res.Packages), "counts": countsOf(mr), "rescan": rescan})
	return nil
}

// match matches packages against the current database; matched is false
// when there is none.
func (g *Guard) match(ctx context.Context, pkgs []catalog.Package) (*match.Result, bool, error) {
	g.dbMu.RLock()
	defer g.dbMu.RUnlock()
	if g.db == nil {
		return nil, false, nil
	}
	mr, err := match.Matcher{DB: g.db}.Match(ctx, pkgs)
	if err != nil {
		return nil, false, err
	}
	return mr, true, nil
}

func countsOf(mr *match.Result) map[string]int {
	out := map[string]int{}
	if mr == nil {
		return out
	}
	for s, n := range mr.CountBySeverity() {
		out[s.String()] = n
	}
	return out
}

// findingKey identifies a finding of an image across re-scans: the flaw
// and the package it affects.
func findingKey(f *match.Finding) string {
	loc := ""
	if len(f.Package.Locations) > 0 {
		loc = f.Package.Locations[0].Path
	}
	return f.ID + "|" + f.Ecosystem + "|" + f.Name + "|" + f.Version + "|" + f.Package.Name + "|" + loc
}

type findingRow struct {
	data      string
	firstSeen int64
}

// writeFindings makes the stored findings of an image equal fs, writing
// only rows that changed: new findings get first_seen = now, findings that
// remain keep theirs. It returns the keys of new findings.
func (g *Guard) writeFindings(ctx context.Context, tx *sql.Tx, repo, digest string, mr *match.Result, first bool) ([]match.Finding, error) {
	fs := mr.Findings
	have := map[string]findingRow{}
	rows, err := tx.QueryContext(ctx, `SELECT fkey, data, first_seen FROM findings WHERE repo = ? AND digest = ?`, repo, digest)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k string
		var r findingRow
		if err := rows.Scan(&k, &r.data, &r.firstSeen); err != nil {
			rows.Close()
			return nil, err
		}
		have[k] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	now := nowMs()
	seen := map[string]bool{}
	var added []match.Finding
	changed := false
	for i := range fs {
		f := &fs[i]
		k := findingKey(f)
		if seen[k] {
			continue
		}
		seen[k] = true
		data, err := json.Marshal(f)
		if err != nil {
			return nil, err
		}
		old, ok := have[k]
		switch {
		case !ok:
			added = append(added, *f)
			changed = true
			_, err = tx.ExecContext(ctx, `INSERT INTO findings(repo, digest, fkey, vuln_id, severity, first_seen, data) VALUES (?,?,?,?,?,?,?)`,
				repo, digest, k, f.ID, f.Severity.String(), now, string(data))
		case old.data != string(data):
			changed = true
			_, err = tx.ExecContext(ctx, `UPDATE findings SET data = ?, severity = ?, vuln_id = ? WHERE repo = ? AND digest = ? AND fkey = ?`,
				string(data), f.Severity.String(), f.ID, repo, digest, k)
		}
		if err != nil {
			return nil, err
		}
	}
	for k := range have {
		if !seen[k] {
			changed = true
			if _, err := tx.ExecContext(ctx, `DELETE FROM findings WHERE repo = ? AND digest = ? AND fkey = ?`, repo, digest, k); err != nil {
				return nil, err
			}
		}
	}
	if changed || first {
		counts := map[string]int{}
		for i := range fs {
			counts[fs[i].Severity.String()]++
		}
		cj, _ := json.Marshal(counts)
		ups := mr.Upgrades()
		if ups == nil {
			ups = []match.Upgrade{}
		}
		uj, _ := json.Marshal(ups)
		q := `UPDATE images SET counts = ?, upgrades = ?, matched_at = ?, status = 'scanned' WHERE repo = ? AND digest = ?`
		if first {
			q = `UPDATE images SET counts = ?, upgrades = ?, matched_at = ?, status = 'scanned', push_findings = ` + fmt.Sprint(len(seen)) + ` WHERE repo = ? AND digest = ?`
		}
		if _, err := tx.ExecContext(ctx, q, string(cj), string(uj), now, repo, digest); err != nil {
			return nil, err
		}
	}
	return added, nil
}

func (g *Guard) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := g.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// attach stores the CycloneDX SBOM and the scan report as OCI artifacts
// whose subject is the image, so referrers API clients find them.
func (g *Guard) attach(ctx context.Context, j *job, m *store.Manifest, bom []byte, res *scan.Result, mr *match.Result) error {
	rep := &report.ScanReport{Result: res}
	if mr != nil {
		rep.Vulnerabilities = vulnSection(mr.Findings)
	}
	repJSON, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	for _, a := range []struct {
		artifactType string
		content      []byte
	}{{ArtifactSBOM, bom}, {ArtifactReport, repJSON}} {
		if err := g.putArtifact(ctx, j.repoID, m, a.artifactType, a.content); err != nil {
			return err
		}
	}
	return nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// putBlob commits content to blob storage and links it to the repository.
func (g *Guard) putBlob(ctx context.Context, repoID int64, content []byte) (string, error) {
	dg := digestOf(content)
	if _, err := g.o.Blobs.Stat(ctx, dg); err != nil {
		f, err := os.CreateTemp(g.tmp, "artifact-")
		if err != nil {
			return "", err
		}
		_, werr := f.Write(content)
		cerr := f.Close()
		if werr != nil || cerr != nil {
			os.Remove(f.Name())
			return "", errors.Join(werr, cerr)
		}
		if err := g.o.Blobs.Commit(ctx, dg, f.Name()); err != nil {
			os.Remove(f.Name())
			return "", err
		}
	}
	return dg, g.o.Store.LinkBlob(ctx, repoID, dg, int64(len(content)))
}

const emptyConfig = "application/vnd.oci.empty.v1+json"

func (g *Guard) putArtifact(ctx context.Context, repoID int64, subject *store.Manifest, artifactType string, content []byte) error {
	layer, err := g.putBlob(ctx, repoID, content)
	if err != nil {
		return err
	}
	cfg, err := g.putBlob(ctx, repoID, []byte("{}"))
	if err != nil {
		return err
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	doc := struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        desc              `json:"config"`
		Layers        []desc            `json:"layers"`
		Subject       desc              `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}{2, "application/vnd.oci.image.manifest.v1+json", artifactType,
		desc{emptyConfig, cfg, 2}, []desc{{artifactType, layer, int64(len(content))}},
		desc{subject.MediaType, subject.Digest, subject.Size},
		map[string]string{"org.opencontainers.image.created": fromMs(nowMs()).Format("2006-01-02T15:04:05Z"), "dev.moat.generator": "moat serve"}}
	body, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	ann, _ := json.Marshal(doc.Annotations)
	mf := store.Manifest{Digest: digestOf(body), MediaType: doc.MediaType, ArtifactType: artifactType, Subject: subject.Digest,
		Annotations: string(ann), Size: int64(len(body)), Content: body}
	return g.o.Store.PutManifest(ctx, repoID, mf, []string{cfg, layer}, nil, false)
}

func vulnSection(fs []match.Finding) *report.Vulnerabilities {
	v := report.NewVulnerabilities(fs)
	v.Findings = fs
	if v.Findings == nil {
		v.Findings = []match.Finding{}
	}
	for _, f := range fs {
		v.Counts[f.Severity.String()]++
	}
	return v
}

var _ = storage.ParseDigest
var _ = filepath.Join
var _ = sort.Strings
var _ = strings.Cut
