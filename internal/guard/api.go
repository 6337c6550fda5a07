package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/report"
	"github.com/moat-dev/moat/internal/store"
)

// Image is an image's scan state as the REST API and `moat images` show it.
type Image struct {
	Repository string         `json:"repository"`
	Digest     string         `json:"digest"`
	Tags       []string       `json:"tags,omitempty"`
	Index      string         `json:"index,omitempty"`
	Platform   string         `json:"platform,omitempty"`
	Status     string         `json:"status"` // queued, scanning, scanned, pending, failed
	Error      string         `json:"error,omitempty"`
	Pushed     time.Time      `json:"pushed"`
	Scanned    time.Time      `json:"scanned,omitzero"`
	Created    time.Time      `json:"created,omitzero"`
	Counts     map[string]int `json:"counts"`
	// PushFindings is how many findings the first match found (-1: none yet).
	PushFindings int      `json:"push_findings"`
	Layers       []string `json:"layers,omitempty"`
	// ScanMillis is how long the scan took (catalogue, match, store).
	ScanMillis int64 `json:"scan_ms,omitempty"`
	// Upgrades are the package upgrades that fix findings.
	Upgrades []match.Upgrade `json:"upgrades,omitempty"`
}

// Images lists images of a project ("" for all) that pass the filter.
func (g *Guard) Images(ctx context.Context, project string, visible func(repo string) bool) ([]Image, error) {
	q := `SELECT repo, digest, index_digest, platform, status, error, pushed_at, scanned_at, created, counts, push_findings, layers, upgrades, scan_ms FROM images`
	var args []any
	if project != "" {
		q += ` WHERE project = ?`
		args = append(args, project)
	}
	q += ` ORDER BY repo, pushed_at, digest`
	rows, err := g.ro.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Image{}
	repoIDs := map[string]int64{}
	for rows.Next() {
		var im Image
		var pushed, scanned, created int64
		var counts, layers, ups string
		if err := rows.Scan(&im.Repository, &im.Digest, &im.Index, &im.Platform, &im.Status, &im.Error, &pushed, &scanned, &created, &counts, &im.PushFindings, &layers, &ups, &im.ScanMillis); err != nil {
			return nil, err
		}
		if visible != nil && !visible(im.Repository) {
			continue
		}
		if !g.stillStored(ctx, repoIDs, im.Repository, im.Digest) {
			continue // deleted from the registry
		}
		im.Pushed, im.Scanned, im.Created = fromMs(pushed), fromMs(scanned), fromMs(created)
		json.Unmarshal([]byte(counts), &im.Counts)
		json.Unmarshal([]byte(layers), &im.Layers)
		json.Unmarshal([]byte(ups), &im.Upgrades)
		out = append(out, im)
	}
	return out, rows.Err()
}

// stillStored reports whether the registry still holds repo@digest.
func (g *Guard) stillStored(ctx context.Context, ids map[string]int64, repo, digest string) bool {
	if g.o.Store == nil {
		return true
	}
	id, ok := ids[repo]
	if !ok {
		id = -1
		if rp, err := g.o.Store.RepoByName(ctx, repo); err == nil {
			id = rp.ID
		}
		ids[repo] = id
	}
	if id < 0 {
		return false
	}
	has, err := g.o.Store.HasManifest(ctx, id, digest)
	return err != nil || has
}

// addTags fills Tags (tags pointing at the image or at its index).
func (g *Guard) addTags(ctx context.Context, ims []Image) {
	byRepo := map[string]map[string][]string{}
	for i := range ims {
		r := ims[i].Repository
		if _, ok := byRepo[r]; !ok {
			byRepo[r] = g.tagMap(ctx, r)
		}
		ims[i].Tags = append(byRepo[r][ims[i].Digest], byRepo[r][ims[i].Index]...)
	}
}

func (g *Guard) tagMap(ctx context.Context, repo string) map[string][]string {
	out := map[string][]string{}
	rp, err := g.o.Store.RepoByName(ctx, repo)
	if err != nil {
		return out
	}
	tags, _ := g.o.Store.ListTags(ctx, rp.ID, "", 0)
	for _, t := range tags {
		if m, err := g.o.Store.GetManifest(ctx, rp.ID, t, false); err == nil {
			out[m.Digest] = append(out[m.Digest], t)
		}
	}
	return out
}

// ImageFindings is an image's scan report with when each finding was first
// seen.
type ImageFindings struct {
	Image  Image              `json:"image"`
	Report *report.ScanReport `json:"report"`
	// FirstSeen maps finding ID + package to when it first appeared.
	FirstSeen map[string]time.Time `json:"first_seen,omitempty"`
}

// Findings returns the reports of the image(s) ref (a tag or digest; an
// index gives each platform image) in repo, with the project's exceptions
// applied as the pull gate applies them.
func (g *Guard) Findings(ctx context.Context, repo, ref string) ([]ImageFindings, error) {
	rp, err := g.o.Store.RepoByName(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, store.ErrNotFound)
	}
	m, err := g.o.Store.GetManifest(ctx, rp.ID, ref, false)
	if err != nil {
		return nil, fmt.Errorf("%s:%s: %w", repo, ref, err)
	}
	all, err := g.Images(ctx, "", func(r string) bool { return r == repo })
	if err != nil {
		return nil, err
	}
	set, err := g.Settings(ctx, ref2project(repo))
	if err != nil {
		return nil, err
	}
	ig, _ := exceptionRules(set.Exceptions, time.Now())
	var out []ImageFindings
	for _, im := range all {
		if im.Digest != m.Digest && im.Index != m.Digest {
			continue
		}
		f := ImageFindings{Image: im, FirstSeen: map[string]time.Time{}}
		var blob []byte
		g.ro.QueryRowContext(ctx, `SELECT packages FROM images WHERE repo = ? AND digest = ?`, repo, im.Digest).Scan(&blob)
		if blob != nil {
			st, err := decodeStored(blob)
			if err != nil {
				return nil, err
			}
			f.Report = &report.ScanReport{Result: st.result()}
		}
		if im.Status == "scanned" && f.Report != nil {
			fs, first, err := g.storedFindings(ctx, repo, im.Digest)
			if err != nil {
				return nil, err
			}
			mr := &match.Result{Findings: fs}
			if ig != nil {
				mr.Apply(ig)
			}
			v := vulnSection(mr.Findings)
			v.SuppressedCount = len(mr.Suppressed)
			v.Suppressed = mr.Suppressed
			v.ExpiredIgnores = mr.Expired
			v.Upgrades = im.Upgrades
			f.Report.Vulnerabilities = v
			for k, t := range first {
				id, rest, _ := strings.Cut(k, "|")
				parts := strings.Split(rest, "|")
				f.FirstSeen[id+" "+parts[len(parts)-2]] = t
			}
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s@%s is not a scanned image (an artifact, or pushed before scanning was on)", repo, m.Digest)
	}
	g.addTagsF(ctx, out)
	return out, nil
}

func (g *Guard) addTagsF(ctx context.Context, fs []ImageFindings) {
	ims := make([]Image, len(fs))
	for i := range fs {
		ims[i] = fs[i].Image
	}
	g.addTags(ctx, ims)
	for i := range fs {
		fs[i].Image.Tags = ims[i].Tags
	}
}

func ref2project(repo string) string { return auth.ProjectOf(repo) }

// Handler serves guard's REST API under /api/v1/guard/ and passes every
// other request to next (the registry).
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v1/guard/") {
			g.serveAPI(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"code": http.StatusText(status), "message": msg}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (g *Guard) principal(r *http.Request) (*auth.Principal, error) {
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		return nil, auth.ErrUnauthorized
	case len(h) > 7 && strings.EqualFold(h[:7], "bearer "):
		p, err := g.o.Auth.VerifyToken(r.Context(), strings.TrimSpace(h[7:]))
		if err != nil {
			return nil, err
		}
		// The REST API judges by the account, not the token's scopes.
		full := *p
		full.Granted = nil
		return &full, nil
	default:
		u, pw, ok := r.BasicAuth()
		if !ok {
			return nil, errors.New("unsupported Authorization scheme")
		}
		return g.o.Auth.Authenticate(r.Context(), u, pw)
	}
}

func (g *Guard) serveAPI(w http.ResponseWriter, r *http.Request) {
	p, err := g.principal(r)
	if err != nil || p.Kind == auth.KindAnonymous {
		w.Header().Set("WWW-Authenticate", `Basic realm="moat"`)
		apiError(w, http.StatusUnauthorized, "authentication required")
		return
	}
	ctx := r.Context()
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v1/guard/"), "/")
	q := r.URL.Query()
	canPull := func(repo string) bool {
		ok, _ := g.o.Auth.Can(ctx, p, repo, auth.ActionPull)
		return ok
	}
	switch {
	case r.Method == http.MethodGet && path == "images":
		ims, err := g.Images(ctx, q.Get("project"), canPull)
		if err != nil {
			apiError(w, http.StatusInternalServerError, err.Error())
			return
		}
		g.addTags(ctx, ims)
		writeJSON(w, http.StatusOK, ims)
	case r.Method == http.MethodGet && path == "findings":
		repo, ref := q.Get("repository"), q.Get("ref")
		if repo == "" || ref == "" {
			apiError(w, http.StatusBadRequest, "want ?repository=NAME&ref=TAG|DIGEST")
			return
		}
		if !canPull(repo) {
			apiError(w, http.StatusForbidden, "you may not pull "+repo)
			return
		}
		out, err := g.Findings(ctx, repo, ref)
		if errors.Is(err, store.ErrNotFound) {
			apiError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			apiError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, out)
	case strings.HasPrefix(path, "projects/") && strings.Count(path, "/") == 1:
		project := strings.TrimPrefix(path, "projects/")
		switch r.Method {
		case http.MethodGet:
			if !p.Admin && p.Roles[project] == "" {
				apiError(w, http.StatusForbidden, "only members of "+project+" may read its settings")
				return
			}
			s, err := g.Settings(ctx, project)
			if err != nil {
				apiError(w, http.StatusInternalServerError, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, s)
		case http.MethodPatch, http.MethodPut:
			if !p.Admin && !(p.Kind == auth.KindUser && p.Roles[project] == auth.RoleOwner) {
				apiError(w, http.StatusForbidden, "only the project owner or an administrator may change settings")
				return
			}
			if pr, err := g.o.Store.ProjectByName(ctx, project); err != nil || pr == nil {
				apiError(w, http.StatusNotFound, "project "+project+" does not exist")
				return
			}
			var u SettingsUpdate
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&u); err != nil {
				apiError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
				return
			}
			s, err := g.UpdateSettings(ctx, project, u)
			if err != nil {
				apiError(w, http.StatusBadRequest, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, s)
		default:
			apiError(w, http.StatusMethodNotAllowed, "use GET or PATCH")
		}
	case r.Method == http.MethodGet && path == "events":
		after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		evs, err := g.Events(ctx, after, limit, q.Get("type"))
		if err != nil {
			apiError(w, http.StatusInternalServerError, err.Error())
			return
		}
		vis := []Event{}
		for _, e := range evs {
			if p.Admin || (e.Repository != "" && canPull(e.Repository)) {
				vis = append(vis, e)
			}
		}
		writeJSON(w, http.StatusOK, vis)
	case r.Method == http.MethodGet && path == "report":
		o := ReportOptions{Project: q.Get("project"), BaseRepository: q.Get("base_repository")}
		o.StaleDays, _ = strconv.Atoi(q.Get("stale_days"))
		for _, t := range strings.Split(q.Get("live_tags"), ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.LiveTags = append(o.LiveTags, t)
			}
		}
		rep, err := g.Report(ctx, o, canPull)
		if err != nil {
			apiError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rep)
	case r.Method == http.MethodPost && path == "rescan":
		if !p.Admin {
			apiError(w, http.StatusForbidden, "only the system administrator may start a rescan")
			return
		}
		g.reloadDB()
		res, err := g.Rescan(ctx)
		if err != nil {
			apiError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	default:
		apiError(w, http.StatusNotFound, "unknown endpoint "+r.Method+" "+r.URL.Path)
	}
}

// WaitFinished waits until the image repo@digest has reached a final scan
// state (scanned, pending: no database, or failed) and returns it; ctx
// bounds the wait.
func (g *Guard) WaitFinished(ctx context.Context, repo, digest string) (Image, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ims, err := g.Images(ctx, "", nil)
		if err != nil {
			return Image{}, err
		}
		for _, im := range ims {
			if im.Repository == repo && im.Digest == digest && (im.Status == "scanned" || im.Status == "pending" || im.Status == "failed") {
				return im, nil
			}
		}
		select {
		case <-ctx.Done():
			return Image{}, fmt.Errorf("%s@%s did not finish scanning: %w", repo, digest, ctx.Err())
		case <-tick.C:
		}
	}
}
