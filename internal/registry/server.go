// Package registry serves the OCI Distribution Specification 1.1 (pull,
// push, content discovery, content management) with Docker token
// authentication, role-based access, audit events, per-project immutable
// tags and quotas, plus the admin REST API and garbage collection.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
)

// Config holds the registry's parts and limits.
type Config struct {
	Store *store.Store
	Blobs storage.Driver
	Auth  *auth.Service
	Audit *audit.Recorder
	Log   *slog.Logger
	// UploadDir holds in-progress uploads (must be local; for the
	// filesystem driver, on the same filesystem as the blobs).
	UploadDir string
	// MaxManifestSize and MaxBlobSize bound request bodies (bytes).
	MaxManifestSize int64
	MaxBlobSize     int64
	// StrictManifests rejects image manifests whose layers were not
	// pushed (by default sparse manifests are accepted, as OCI 1.1 allows).
	StrictManifests bool
	// Realm overrides the token endpoint URL in challenges.
	Realm string
	// Signatures, when set, refuses pulls of unsigned images in projects
	// that require signatures (see signature_gate.go; implemented by
	// internal/signing/registrygate).
	Signatures PullGate
	// Trust, when set, serves the admin API of projects' trusted keys and
	// the registry's public signing key (see trust.go).
	Trust TrustStore
	// OnPush, when set, is told about every committed manifest push, and
	// Gate, when set, may refuse pulls (see guard_hooks.go; implemented by
	// internal/guard).
	OnPush PushNotifier
	Gate   ImageGate
}

// Server is the registry HTTP handler.
type Server struct {
	Config
	gcMu     sync.RWMutex // writes hold R, garbage collection holds W
	sessions sync.Map     // upload id -> *session
}

// New returns a registry server; it cleans up upload files left without a
// session by a crash.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxManifestSize == 0 {
		cfg.MaxManifestSize = 4 << 20
	}
	if cfg.MaxBlobSize == 0 {
		cfg.MaxBlobSize = 64 << 30
	}
	if err := os.MkdirAll(cfg.UploadDir, 0o750); err != nil {
		return nil, err
	}
	s := &Server{Config: cfg}
	if err := s.recoverUploads(context.Background()); err != nil {
		return nil, fmt.Errorf("recover uploads: %w", err)
	}
	return s, nil
}

// recoverUploads removes upload files that have no session row (a crash
// between creating them) and temp files of monolithic uploads.
func (s *Server) recoverUploads(ctx context.Context) error {
	ids, err := s.Store.UploadIDs(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, id := range ids {
		known[id] = true
	}
	ents, err := os.ReadDir(s.UploadDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !known[e.Name()] {
			os.Remove(filepath.Join(s.UploadDir, e.Name()))
		}
	}
	return nil
}

type ctxKey struct{}

// reqInfo carries per-request facts for the request log.
type reqInfo struct {
	actor string
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(c int) {
	if w.status == 0 {
		w.status = c
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom copies blob downloads in 1 MiB writes: on loopback this
// measured faster than sendfile (which net/http uses for *os.File) and
// than net/http's 32 KiB copies.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = 200
	}
	bp := sendPool.Get().(*[]byte)
	defer sendPool.Put(bp)
	n, err := io.CopyBuffer(writerOnly{w.ResponseWriter}, r, *bp)
	w.n += n
	return n, err
}

var sendPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// writerOnly hides ReadFrom so io.CopyBuffer uses the given buffer.
type writerOnly struct{ io.Writer }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP logs one structured line per request and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &reqInfo{}
	sw := &statusWriter{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
	s.dispatch(sw, r)
	s.Log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("query", r.URL.RawQuery),
		slog.Int("status", sw.status), slog.Int64("bytes_out", sw.n), slog.Int64("bytes_in", r.ContentLength),
		slog.Duration("duration", time.Since(start)), slog.String("remote", remoteIP(r)),
		slog.String("actor", info.actor))
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/token" || p == "/v2/token":
		s.handleToken(w, r)
		return
	case strings.HasPrefix(p, "/api/v1/"):
		s.handleAdmin(w, r)
		return
	case p == "/token/jwks.json":
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.Auth.JWKS())
		return
	case p == "/healthz":
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, ok := parsePath(p)
	if !ok {
		writeError(w, http.StatusNotFound, codeNameUnknown, "unknown endpoint "+p)
		return
	}
	if rt.name != "" {
		if err := ValidateName(rt.name); err != nil {
			writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error())
			return
		}
	}
	switch rt.kind {
	case "base":
		s.handleBase(w, r)
	case "catalog":
		s.handleCatalog(w, r)
	case "manifest":
		s.handleManifest(w, r, rt)
	case "blob":
		s.handleBlob(w, r, rt)
	case "uploads":
		s.handleUploadStart(w, r, rt)
	case "upload":
		s.handleUpload(w, r, rt)
	case "tags":
		s.handleTags(w, r, rt)
	case "referrers":
		s.handleReferrers(w, r, rt)
	}
}

func remoteIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// principal authenticates the request's credentials: a bearer token, basic
// credentials, or none (anonymous). ok is false when credentials were
// given but are invalid.
func (s *Server) principal(r *http.Request) (*auth.Principal, error) {
	h := r.Header.Get("Authorization")
	var p *auth.Principal
	var err error
	switch {
	case h == "":
		p = auth.Anonymous
	case len(h) > 7 && strings.EqualFold(h[:7], "bearer "):
		p, err = s.Auth.VerifyToken(r.Context(), strings.TrimSpace(h[7:]))
	default:
		u, pw, ok := r.BasicAuth()
		if !ok {
			return nil, errors.New("unsupported Authorization scheme")
		}
		p, err = s.Auth.Authenticate(r.Context(), u, pw)
	}
	if err != nil {
		return nil, err
	}
	if info, _ := r.Context().Value(ctxKey{}).(*reqInfo); info != nil {
		info.actor = p.Name
	}
	return p, nil
}

func (s *Server) realm(r *http.Request) string {
	if s.Realm != "" {
		return s.Realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/token"
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request, scopes []string, msg string) {
	v := fmt.Sprintf(`Bearer realm=%q,service=%q`, s.realm(r), s.Auth.ServiceName)
	if len(scopes) > 0 {
		v += fmt.Sprintf(`,scope=%q`, strings.Join(scopes, " "))
	}
	w.Header().Set("WWW-Authenticate", v)
	writeError(w, http.StatusUnauthorized, codeUnauthorized, msg)
}

// need is one permission a request requires.
type need struct {
	repo    string
	actions []string // all required
}

// authorize checks the request may perform every action in needs. On
// failure it writes 401 (with a challenge naming the scopes, so clients
// fetch a suitable token) or 403 and records a denied audit event.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, action string, needs ...need) (*auth.Principal, bool) {
	var scopes []string
	for _, n := range needs {
		scopes = append(scopes, "repository:"+n.repo+":"+strings.Join(n.actions, ","))
	}
	p, err := s.principal(r)
	if err != nil {
		s.deny(r, nil, action, needs, err.Error())
		s.challenge(w, r, scopes, err.Error())
		return nil, false
	}
	for _, n := range needs {
		got, err := s.Auth.Allowed(r.Context(), p, "repository", n.repo, n.actions)
		if err != nil {
			writeError(w, http.StatusInternalServerError, codeUnsupported, err.Error())
			return nil, false
		}
		if len(got) == len(n.actions) {
			continue
		}
		msg := fmt.Sprintf("access to %s (%s) denied", n.repo, strings.Join(n.actions, ","))
		if p.Kind != auth.KindAnonymous || r.Header.Get("Authorization") != "" {
			// A request without credentials is the first step of the
			// token flow, not a denial worth an audit event.
			s.deny(r, p, action, needs, msg)
		}
		if p.Kind == auth.KindAnonymous {
			s.challenge(w, r, scopes, "authentication required: "+msg)
			return nil, false
		}
		if p.Granted != nil {
			// The token may just lack the scope: if the account has it,
			// ask the client for a token that carries it.
			full := *p
			full.Granted = nil
			if got, _ := s.Auth.Allowed(r.Context(), &full, "repository", n.repo, n.actions); len(got) == len(n.actions) {
				s.challenge(w, r, scopes, "token does not grant "+strings.Join(n.actions, ",")+" on "+n.repo)
				return nil, false
			}
		}
		writeError(w, http.StatusForbidden, codeDenied, msg)
		return nil, false
	}
	return p, true
}

func (s *Server) deny(r *http.Request, p *auth.Principal, action string, needs []need, msg string) {
	if s.Audit == nil || action == "" {
		return
	}
	e := audit.Event{Action: action, RemoteAddr: remoteIP(r), Allowed: false, Detail: msg}
	if p != nil {
		e.Actor, e.ActorKind = p.Name, p.Kind
	}
	if len(needs) > 0 {
		e.Repository = needs[0].repo
	}
	s.Audit.Record(e)
}

func (s *Server) record(r *http.Request, p *auth.Principal, action, repo, digest, tag, detail string) {
	if s.Audit == nil {
		return
	}
	e := audit.Event{Action: action, Repository: repo, Digest: digest, Tag: tag, RemoteAddr: remoteIP(r), Allowed: true, Detail: detail}
	if p != nil {
		e.Actor, e.ActorKind = p.Name, p.Kind
	}
	s.Audit.Record(e)
}

func (s *Server) handleBase(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if err != nil {
		s.challenge(w, r, nil, err.Error())
		return
	}
	if p.Kind == auth.KindAnonymous && !s.Auth.AllowAnonymous {
		s.challenge(w, r, nil, "authentication required")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func internalError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusInternalServerError, codeUnsupported, "internal error: "+err.Error())
}
