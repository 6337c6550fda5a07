package vulndb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// UpdateOptions tune Update.
type UpdateOptions struct {
	// Source is the base of the OSV bucket layout <Source>/<Ecosystem>/all.zip,
	// http(s):// or file://; default DefaultSource.
	Source string
	// Ecosystems to fetch; default DefaultEcosystems.
	Ecosystems []string
	// Client for http(s) sources; default http.DefaultClient.
	Client *http.Client
	// Progress, when set, receives a progress line per download (the
	// caller passes stderr when it is a terminal).
	Progress io.Writer
	// Warn receives malformed-record warnings.
	Warn func(string)
	// Now gives the update time; nil means time.Now.
	Now func() time.Time
}

// Update outcomes per ecosystem.
const (
	StatusUpdated   = "updated"
	StatusUnchanged = "unchanged"
	StatusNotFound  = "not found"
	StatusFailed    = "failed"
)

// UpdateResult is the outcome for one ecosystem.
type UpdateResult struct {
	Ecosystem  string   `json:"ecosystem"`
	Status     string   `json:"status"`
	Records    int      `json:"records"`
	Withdrawn  int      `json:"withdrawn"`
	Malformed  []string `json:"malformed,omitempty"`
	Downloaded int64    `json:"downloaded"`
	Error      string   `json:"error,omitempty"`
}

// Update fetches <Source>/<Ecosystem>/all.zip for each ecosystem with a
// conditional request (If-None-Match / If-Modified-Since from the previous
// update from the same source), verifies the zip (every entry read and its
// CRC checked), builds the ecosystem's file and swaps it in. An ecosystem
// that fails keeps its previous file; the others still update. The error
// lists the ecosystems that failed; ecosystems the source does not have
// are reported as StatusNotFound, not as errors.
func Update(ctx context.Context, dir string, opts UpdateOptions) ([]UpdateResult, error) {
	if opts.Source == "" {
		opts.Source = DefaultSource
	}
	base := strings.TrimRight(opts.Source, "/")
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("bad --source %q: %w", opts.Source, err)
	}
	switch u.Scheme {
	case "http", "https", "file":
	default:
		return nil, fmt.Errorf("bad --source %q: want an http://, https:// or file:// URL", opts.Source)
	}
	ecos := opts.Ecosystems
	if len(ecos) == 0 {
		ecos = DefaultEcosystems
	}
	if opts.Client == nil {
		opts.Client = http.DefaultClient
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	unlock, tmp, err := prepare(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer os.RemoveAll(tmp)

	var results []UpdateResult
	var failed []string
	for _, eco := range ecos {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		r := updateOne(ctx, dir, tmp, base, u, eco, opts)
		if r.Status == StatusFailed {
			failed = append(failed, eco+": "+r.Error)
		}
		results = append(results, r)
	}
	if len(failed) > 0 {
		return results, fmt.Errorf("update failed for %d ecosystem(s), their previous data is kept: %s", len(failed), strings.Join(failed, "; "))
	}
	return results, nil
}

func updateOne(ctx context.Context, dir, tmp, base string, u *url.URL, eco string, opts UpdateOptions) UpdateResult {
	r := UpdateResult{Ecosystem: eco}
	dbFile := filepath.Join(dir, fileName(eco))
	var prev Meta
	if m, err := readMeta(dbFile); err == nil && m.Source == base {
		prev = m
	}
	zipPath := filepath.Join(tmp, fileName(eco)+".zip")
	var etag, lastMod string
	var n int64
	var err error
	if u.Scheme == "file" {
		etag, lastMod, n, err = fetchFile(u, eco, prev, zipPath)
	} else {
		etag, lastMod, n, err = fetchHTTP(ctx, opts, base, eco, prev, zipPath)
	}
	defer os.Remove(zipPath)
	r.Downloaded = n
	switch {
	case errors.Is(err, errNotModified):
		r.Status = StatusUnchanged
		r.Records = prev.Records
		r.Withdrawn = prev.Withdrawn
		stamp := opts.Now().UTC().Format(time.RFC3339Nano) + "\n"
		_ = writeFileAtomic(dbFile+checkedSuffix, []byte(stamp))
		return r
	case errors.Is(err, errNotFound):
		r.Status = StatusNotFound
		return r
	case err != nil:
		r.Status = StatusFailed
		r.Error = err.Error()
		return r
	}
	c := newCollector(map[string]bool{eco: true}, opts.Warn, tmp)
	defer c.close()
	if err := c.run(ctx, func(emit func(string, []byte) error) error {
		return readZip(ctx, zipPath, func(name string, data []byte) error {
			return emit(eco+"/all.zip:"+strings.TrimPrefix(name, zipPath+":"), data)
		})
	}); err != nil {
		r.Status = StatusFailed
		r.Error = "downloaded zip does not verify: " + strings.ReplaceAll(err.Error(), zipPath, eco+"/all.zip")
		return r
	}
	b := c.builders[eco]
	if b == nil {
		b = newBuilder("")
	}
	m := Meta{Ecosystem: eco, Source: base, ETag: etag, LastModified: lastMod, Updated: opts.Now().UTC(),
		Withdrawn: c.withdrawn, Malformed: len(c.malformed)}
	staged, err := writeStaged(tmp, b, m)
	if err == nil {
		err = commit(dir, staged, eco)
	}
	if err != nil {
		r.Status = StatusFailed
		r.Error = err.Error()
		return r
	}
	r.Status = StatusUpdated
	r.Records = len(b.recs)
	r.Withdrawn = c.withdrawn
	r.Malformed = c.malformed
	return r
}

var (
	errNotModified = errors.New("not modified")
	errNotFound    = errors.New("not found at source")
)

// fetchFile copies <dir>/<eco>/all.zip; its size and modification time
// stand in for the ETag.
func fetchFile(u *url.URL, eco string, prev Meta, dst string) (etag, lastMod string, n int64, err error) {
	src := filepath.Join(filepath.FromSlash(u.Path), eco, "all.zip")
	st, err := os.Stat(src)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", 0, errNotFound
	}
	if err != nil {
		return "", "", 0, err
	}
	etag = `"` + strconv.FormatInt(st.Size(), 10) + "-" + strconv.FormatInt(st.ModTime().UnixNano(), 10) + `"`
	lastMod = st.ModTime().UTC().Format(http.TimeFormat)
	if prev.ETag == etag {
		return etag, lastMod, 0, errNotModified
	}
	in, err := os.Open(src)
	if err != nil {
		return "", "", 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return "", "", 0, err
	}
	n, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return etag, lastMod, n, err
}

func fetchHTTP(ctx context.Context, opts UpdateOptions, base, eco string, prev Meta, dst string) (etag, lastMod string, n int64, err error) {
	link := base + "/" + url.PathEscape(eco) + "/all.zip"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return "", "", 0, err
	}
	if prev.ETag != "" {
		req.Header.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		req.Header.Set("If-Modified-Since", prev.LastModified)
	}
	resp, err := opts.Client.Do(req)
	if err != nil {
		return "", "", 0, fmt.Errorf("GET %s: %w", link, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return prev.ETag, prev.LastModified, 0, errNotModified
	case http.StatusNotFound, http.StatusForbidden:
		// the public bucket answers 403 for missing objects
		return "", "", 0, errNotFound
	default:
		return "", "", 0, fmt.Errorf("GET %s: %s", link, resp.Status)
	}
	out, err := os.Create(dst)
	if err != nil {
		return "", "", 0, err
	}
	var w io.Writer = out
	var pw *progressWriter
	if opts.Progress != nil {
		pw = &progressWriter{out: opts.Progress, eco: eco, total: resp.ContentLength}
		w = io.MultiWriter(out, pw)
	}
	n, err = io.Copy(w, resp.Body)
	if pw != nil {
		pw.done(err)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", n, fmt.Errorf("GET %s: download interrupted after %d bytes: %w", link, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", "", n, fmt.Errorf("GET %s: got %d of %d bytes", link, n, resp.ContentLength)
	}
	return resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), n, nil
}

type progressWriter struct {
	out   io.Writer
	eco   string
	total int64
	n     int64
	last  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if now := time.Now(); now.Sub(p.last) > 100*time.Millisecond {
		p.last = now
		p.print()
	}
	return len(b), nil
}

func (p *progressWriter) print() {
	if p.total > 0 {
		fmt.Fprintf(p.out, "\r%-12s %7.1f / %.1f MB", p.eco, float64(p.n)/1e6, float64(p.total)/1e6)
	} else {
		fmt.Fprintf(p.out, "\r%-12s %7.1f MB", p.eco, float64(p.n)/1e6)
	}
}

func (p *progressWriter) done(err error) {
	p.print()
	if err != nil {
		fmt.Fprintln(p.out, " interrupted")
	} else {
		fmt.Fprintln(p.out, " done")
	}
}

func writeFileAtomic(path string, data []byte) error {
	fh, err := os.CreateTemp(filepath.Dir(path), ".tmp-w-*")
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		os.Remove(fh.Name())
		return err
	}
	if err := fh.Close(); err != nil {
		os.Remove(fh.Name())
		return err
	}
	return os.Rename(fh.Name(), path)
}
