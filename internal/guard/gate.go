package guard

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/store"
)

// Exception suppresses a vulnerability in a project's pull gate, with the
// semantics of an ignore-file entry (match.IgnoreRule): ID is any
// identifier of the flaw, Package narrows it, Expires (YYYY-MM-DD or
// RFC 3339) ends it.
type Exception struct {
	ID      string `json:"id"`
	Package string `json:"package,omitempty"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason"`
	Expires string `json:"expires"`
}

// Settings are a project's pull-gate settings.
type Settings struct {
	Project string `json:"project"`
	// BlockSeverity refuses pulls of images with a finding at or above it
	// (after exceptions); "" blocks nothing.
	BlockSeverity string `json:"block_severity"`
	// BlockUnscanned refuses pulls until the image's first scan finished
	// (a failed scan counts as unscanned).
	BlockUnscanned bool        `json:"block_unscanned"`
	Exceptions     []Exception `json:"exceptions"`
}

// SettingsUpdate changes some settings; nil fields stay.
type SettingsUpdate struct {
	BlockSeverity  *string      `json:"block_severity,omitempty"`
	BlockUnscanned *bool        `json:"block_unscanned,omitempty"`
	Exceptions     *[]Exception `json:"exceptions,omitempty"`
	// AddExceptions are appended (replacing entries with the same ID and
	// package); RemoveExceptions removes entries by ID.
	AddExceptions    []Exception `json:"add_exceptions,omitempty"`
	RemoveExceptions []string    `json:"remove_exceptions,omitempty"`
}

// Settings returns a project's pull-gate settings (defaults when unset).
func (g *Guard) Settings(ctx context.Context, project string) (*Settings, error) {
	s := &Settings{Project: project, Exceptions: []Exception{}}
	var ex string
	var unscanned int
	err := g.ro.QueryRowContext(ctx, `SELECT block_severity, block_unscanned, exceptions FROM settings WHERE project = ?`, project).Scan(&s.BlockSeverity, &unscanned, &ex)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.BlockUnscanned = unscanned != 0
	if err := json.Unmarshal([]byte(ex), &s.Exceptions); err != nil {
		return nil, fmt.Errorf("stored exceptions of %s: %w", project, err)
	}
	return s, nil
}

// UpdateSettings applies u to a project's settings and returns them.
func (g *Guard) UpdateSettings(ctx context.Context, project string, u SettingsUpdate) (*Settings, error) {
	s, err := g.Settings(ctx, project)
	if err != nil {
		return nil, err
	}
	if err := applyUpdate(s, u, time.Now()); err != nil {
		return nil, err
	}
	ex, _ := json.Marshal(s.Exceptions)
	_, err = g.rw.ExecContext(ctx, `INSERT INTO settings(project, block_severity, block_unscanned, exceptions) VALUES (?,?,?,?)
		ON CONFLICT(project) DO UPDATE SET block_severity = excluded.block_severity, block_unscanned = excluded.block_unscanned, exceptions = excluded.exceptions`,
		project, s.BlockSeverity, boolInt(s.BlockUnscanned), string(ex))
	return s, err
}

// applyUpdate applies u to s and validates the result (severity name,
// exceptions with an ID, a reason and a valid expiry).
func applyUpdate(s *Settings, u SettingsUpdate, now time.Time) error {
	if u.BlockSeverity != nil {
		v := strings.ToLower(strings.TrimSpace(*u.BlockSeverity))
		if v != "" && v != "none" {
			sev, err := match.ParseSeverity(v)
			if err != nil {
				return fmt.Errorf("block-severity: %w", err)
			}
			v = sev.String()
		} else {
			v = ""
		}
		s.BlockSeverity = v
	}
	if u.BlockUnscanned != nil {
		s.BlockUnscanned = *u.BlockUnscanned
	}
	if u.Exceptions != nil {
		s.Exceptions = *u.Exceptions
	}
	for _, rm := range u.RemoveExceptions {
		s.Exceptions = deleteFunc(s.Exceptions, func(e Exception) bool { return strings.EqualFold(e.ID, rm) })
	}
	for _, add := range u.AddExceptions {
		s.Exceptions = deleteFunc(s.Exceptions, func(e Exception) bool { return strings.EqualFold(e.ID, add.ID) && e.Package == add.Package })
		s.Exceptions = append(s.Exceptions, add)
	}
	if s.Exceptions == nil {
		s.Exceptions = []Exception{}
	}
	if _, err := exceptionRules(s.Exceptions, now); err != nil {
		return err
	}
	return nil
}

func deleteFunc[T any](s []T, del func(T) bool) []T {
	out := s[:0]
	for _, v := range s {
		if !del(v) {
			out = append(out, v)
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// exceptionRules turns a project's exceptions into an ignore file, so they
// mean exactly what ignore-file entries mean (validation included).
func exceptionRules(ex []Exception, now time.Time) (*match.IgnoreFile, error) {
	doc := map[string]any{"ignore": ex}
	if len(ex) == 0 {
		doc["ignore"] = []Exception{}
	}
	b, _ := json.Marshal(doc)
	f, err := match.ParseIgnoreFile("project exceptions", b, now)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// imageRow is an image's scan state.
type imageRow struct {
	status, errMsg, index string
}

func (g *Guard) imageState(ctx context.Context, repo, digest string) (*imageRow, error) {
	var r imageRow
	err := g.ro.QueryRowContext(ctx, `SELECT status, error, index_digest FROM images WHERE repo = ? AND digest = ?`, repo, digest).Scan(&r.status, &r.errMsg, &r.index)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &r, err
}

// storedFindings loads an image's latest findings.
func (g *Guard) storedFindings(ctx context.Context, repo, digest string) ([]match.Finding, map[string]time.Time, error) {
	rows, err := g.ro.QueryContext(ctx, `SELECT data, first_seen FROM findings WHERE repo = ? AND digest = ?`, repo, digest)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []match.Finding
	first := map[string]time.Time{}
	for rows.Next() {
		var data string
		var fs int64
		if err := rows.Scan(&data, &fs); err != nil {
			return nil, nil, err
		}
		var f match.Finding
		if err := json.Unmarshal([]byte(data), &f); err != nil {
			return nil, nil, err
		}
		first[findingKey(&f)] = fromMs(fs)
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Severity != out[j].Severity {
			return out[i].Severity > out[j].Severity
		}
		if out[i].Package.Name != out[j].Package.Name {
			return out[i].Package.Name < out[j].Package.Name
		}
		return out[i].ID < out[j].ID
	})
	return out, first, rows.Err()
}

// CheckImagePull implements registry.ImageGate: it refuses an image (or an
// index whose platform image is refused) when the project blocks unscanned
// images and the scan has not finished, or blocks a severity and the
// latest findings, after the project's exceptions, reach it. System
// administrators and robots with the scanner role pass; artifacts
// (signatures, SBOMs) always pass.
func (g *Guard) CheckImagePull(ctx context.Context, p *auth.Principal, repo string, m *store.Manifest) (bool, string, error) {
	if !isImageManifest(m) && !(isIndex(m) && m.Subject == "") {
		return true, "", nil
	}
	project := auth.ProjectOf(repo)
	s, err := g.Settings(ctx, project)
	if err != nil {
		return false, "", err
	}
	if s.BlockSeverity == "" && !s.BlockUnscanned {
		return true, "", nil
	}
	if p != nil && (p.Admin || (p.Kind == auth.KindRobot && p.Roles[project] == auth.RoleScanner)) {
		return true, "", nil
	}
	digests := []string{m.Digest}
	if isIndex(m) {
		digests = nil
		rows, err := g.ro.QueryContext(ctx, `SELECT digest FROM images WHERE repo = ? AND index_digest = ? ORDER BY digest`, repo, m.Digest)
		if err != nil {
			return false, "", err
		}
		for rows.Next() {
			var d string
			rows.Scan(&d)
			digests = append(digests, d)
		}
		rows.Close()
		if len(digests) == 0 {
			return true, "", nil // an index of artifacts or of nothing pushed
		}
	}
	for _, d := range digests {
		ok, reason, err := g.checkOne(ctx, s, repo, d)
		if err != nil || !ok {
			return ok, reason, err
		}
	}
	return true, "", nil
}

func (g *Guard) checkOne(ctx context.Context, s *Settings, repo, digest string) (bool, string, error) {
	st, err := g.imageState(ctx, repo, digest)
	if err != nil {
		return false, "", err
	}
	ref := repo + "@" + digest
	if st == nil || st.status != "scanned" {
		if !s.BlockUnscanned {
			return true, "", nil
		}
		state := "not scanned yet"
		switch {
		case st == nil:
		case st.status == "failed":
			state = "its scan failed (" + st.errMsg + ")"
		case st.status == "pending":
			state = "not matched yet (the registry has no vulnerability database)"
		default:
			state = "not scanned yet (scan " + st.status + ")"
		}
		return false, fmt.Sprintf("image %s is %s; project %s blocks unscanned images (block-unscanned)", ref, state, s.Project), nil
	}
	if s.BlockSeverity == "" {
		return true, "", nil
	}
	min, err := match.ParseSeverity(s.BlockSeverity)
	if err != nil {
		return false, "", err
	}
	fs, _, err := g.storedFindings(ctx, repo, digest)
	if err != nil {
		return false, "", err
	}
	ig, err := exceptionRules(s.Exceptions, time.Now())
	if err != nil {
		return false, "", err
	}
	mr := &match.Result{Findings: fs}
	mr.Apply(ig)
	hits := mr.AtOrAbove(min)
	if len(hits) == 0 {
		return true, "", nil
	}
	var ids []string
	seen := map[string]bool{}
	for _, f := range hits {
		if !seen[f.ID] {
			seen[f.ID] = true
			ids = append(ids, f.ID)
		}
	}
	list := strings.Join(ids, ", ")
	if len(ids) > 5 {
		list = strings.Join(ids[:5], ", ") + fmt.Sprintf(", and %d more", len(ids)-5)
	}
	what := strings.ToLower(s.BlockSeverity)
	if min != match.Critical {
		what = "at or above " + what
	}
	noun := "vulnerabilities"
	if len(hits) == 1 {
		noun = "vulnerability"
	}
	return false, fmt.Sprintf("image has %d %s %s (%s); project %s blocks %s (block-severity); see moat findings %s",
		len(hits), what, noun, list, s.Project, strings.ToLower(s.BlockSeverity), ref), nil
}
