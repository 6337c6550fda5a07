package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/sbom"
)

// Principal is an authenticated caller of the fleet API.
type Principal struct {
	Name string
	// Robot accounts (and administrators) may report as agents.
	Robot bool
	Admin bool
}

// Authenticator authenticates a request. It returns ErrUnauthenticated
// (wrapped) for missing or refused credentials.
type Authenticator func(r *http.Request) (Principal, error)

// ErrUnauthenticated means the request carried no valid credentials.
var ErrUnauthenticated = errors.New("authentication required")

// Accounts is what the fleet needs of the registry's account service
// (*auth.Service): robot secrets and passwords through HTTP basic
// authentication, or registry bearer tokens.
type Accounts interface {
	Authenticate(ctx context.Context, name, password string) (*auth.Principal, error)
	VerifyToken(ctx context.Context, raw string) (*auth.Principal, error)
}

// AccountAuth authenticates fleet requests against the registry's accounts:
// an agent sends its robot account name and secret as basic credentials.
// Disabled, expired and revoked accounts are refused at once.
func AccountAuth(a Accounts) Authenticator {
	return func(r *http.Request) (Principal, error) {
		h := r.Header.Get("Authorization")
		var p *auth.Principal
		var err error
		switch {
		case h == "":
			return Principal{}, ErrUnauthenticated
		case len(h) > 7 && strings.EqualFold(h[:7], "bearer "):
			p, err = a.VerifyToken(r.Context(), strings.TrimSpace(h[7:]))
		default:
			u, pw, ok := r.BasicAuth()
			if !ok {
				return Principal{}, fmt.Errorf("%w: unsupported Authorization scheme", ErrUnauthenticated)
			}
			p, err = a.Authenticate(r.Context(), u, pw)
		}
		if err != nil {
			if errors.Is(err, auth.ErrUnauthorized) {
				return Principal{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
			}
			return Principal{}, err
		}
		if p.Kind == auth.KindAnonymous {
			return Principal{}, ErrUnauthenticated
		}
		return Principal{Name: p.Name, Robot: p.Kind == auth.KindRobot, Admin: p.Admin}, nil
	}
}

// Matcher finds the vulnerabilities of packages (match.Matcher{DB: db}).
type Matcher interface {
	Match(ctx context.Context, pkgs []catalog.Package) (*match.Result, error)
}

// Options configure a Server.
type Options struct {
	// Matcher matches SBOM packages; nil stores SBOMs without findings
	// until SetMatcher and Rematch.
	Matcher Matcher
	// Checker evaluates running containers: NewPolicyChecker(policy) for
	// the shared policy's runtime rules; nil means LeastPrivilege{}.
	Checker RuntimeChecker
	Log     *slog.Logger
	// PublicMetrics serves /metrics without authentication.
	PublicMetrics bool
	// SBOMSource, when set, is asked for the SBOM of an image the fleet has
	// none of (e.g. the registry's SBOM store, by manifest digest) before an
	// agent is asked to catalogue it; it returns nil, nil when it has none.
	SBOMSource func(ctx context.Context, digest string) ([]byte, error)
	// OnEvent, when set, is called with every recorded event (webhook
	// delivery).
	OnEvent func(Event)
	Now     func() time.Time
}

// Server serves the fleet API and metrics.
type Server struct {
	st    *Store
	authn Authenticator
	o     Options

	mu      sync.RWMutex
	matcher Matcher

	rematchMu sync.Mutex
	metrics   http.Handler
}

// NewServer returns the fleet handler over st.
func NewServer(st *Store, authn Authenticator, o Options) *Server {
	if o.Checker == nil {
		o.Checker = LeastPrivilege{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{st: st, authn: authn, o: o, matcher: o.Matcher}
	s.metrics = newMetricsHandler(s)
	return s
}

// SetMatcher replaces the matcher (after a database update); call Rematch
// to apply it to the stored SBOMs.
func (s *Server) SetMatcher(m Matcher) {
	s.mu.Lock()
	s.matcher = m
	s.mu.Unlock()
}

func (s *Server) currentMatcher() Matcher {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.matcher
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string][]apiError{"errors": {{Code: code, Message: msg}}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

const prefix = "/api/v1/fleet/"

// maxReport bounds a JSON request body.
const maxReport = 32 << 20

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/metrics" {
		if !s.o.PublicMetrics {
			if _, ok := s.authenticate(w, r, false); !ok {
				return
			}
		}
		s.metrics.ServeHTTP(w, r)
		return
	}
	if !strings.HasPrefix(path, prefix) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "unknown endpoint "+path)
		return
	}
	rest := strings.TrimPrefix(path, prefix)
	agentCall := r.Method != http.MethodGet
	p, ok := s.authenticate(w, r, agentCall)
	if !ok {
		return
	}
	switch {
	case rest == "report" && r.Method == http.MethodPost:
		s.handleReport(w, r, p)
	case rest == "stats" && r.Method == http.MethodPost:
		s.handleStats(w, r, p)
	case rest == "images/missing" && r.Method == http.MethodPost:
		s.handleMissing(w, r)
	case strings.HasPrefix(rest, "sboms/") && r.Method == http.MethodPut:
		s.handleSBOM(w, r, p, strings.TrimPrefix(rest, "sboms/"))
	case rest == "hosts" && r.Method == http.MethodGet:
		hs, err := s.st.hosts(r.Context())
		s.reply(w, hs, err)
	case rest == "running" && r.Method == http.MethodGet:
		rc, err := s.st.running(r.Context(), r.URL.Query().Get("host"))
		s.reply(w, rc, err)
	case strings.HasPrefix(rest, "exposure/") && r.Method == http.MethodGet:
		id := strings.TrimPrefix(rest, "exposure/")
		if id == "" {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "give a vulnerability ID: /api/v1/fleet/exposure/CVE-...")
			return
		}
		ex, err := s.st.exposure(r.Context(), id)
		s.reply(w, Exposure{Query: id, Containers: ex}, err)
	case rest == "events" && r.Method == http.MethodGet:
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 || limit > 1000 {
			limit = 1000
		}
		evs, err := s.st.events(r.Context(), after, limit)
		s.reply(w, evs, err)
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no endpoint %s %s", r.Method, path))
	}
}

func (s *Server) reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, v)
}

func (s *Server) internal(w http.ResponseWriter, err error) {
	s.o.Log.Error("fleet", "err", err)
	writeError(w, http.StatusInternalServerError, "INTERNAL", "internal error")
}

// authenticate checks credentials: agents report with robot accounts (or
// as an administrator); the fleet view, which spans every project, is
// readable by administrators and robot accounts (e.g. a metrics exporter).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, agent bool) (Principal, bool) {
	p, err := s.authn(r)
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			w.Header().Set("WWW-Authenticate", `Basic realm="moat"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "credentials missing, wrong, disabled, expired or revoked")
			return p, false
		}
		s.internal(w, err)
		return p, false
	}
	if !p.Robot && !p.Admin {
		msg := "the fleet view (every host's containers and exposures) is for administrators and robot accounts"
		if agent {
			msg = "only robot accounts (or administrators) report as agents"
		}
		writeError(w, http.StatusForbidden, "DENIED", msg)
		return p, false
	}
	return p, true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReport))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "malformed request body: "+err.Error())
		return false
	}
	return true
}

// validHost checks a host name from a report.
func validHost(name string) error {
	if name == "" {
		return errors.New("host name is empty")
	}
	if len(name) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return errors.New("host name holds control characters")
		}
	}
	return nil
}

// ValidateReport checks a report's shape: host name, container IDs.
func ValidateReport(r *Report) error {
	if err := validHost(r.Host.Name); err != nil {
		return err
	}
	for i, c := range r.Containers {
		if c.ID == "" || len(c.ID) > 128 {
			return fmt.Errorf("containers[%d]: bad id %q", i, c.ID)
		}
	}
	for i, id := range r.Removed {
		if id == "" || len(id) > 128 {
			return fmt.Errorf("removed[%d]: bad id %q", i, id)
		}
	}
	return nil
}

func (s *Server) hostError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrHostOwned) {
		writeError(w, http.StatusForbidden, "DENIED", err.Error())
		return
	}
	s.internal(w, err)
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, p Principal) {
	var rep Report
	if !decodeBody(w, r, &rep) {
		return
	}
	if err := ValidateReport(&rep); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	host := rep.Host.Name
	ctx := r.Context()
	evs, err := s.st.applyReport(ctx, &rep, p.Name, p.Admin, func(c *Container) []Violation {
		return s.checker().CheckRuntime(ctx, Workload(host, c))
	}, s.o.Now())
	if err != nil {
		s.hostError(w, err)
		return
	}
	s.emit(evs)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request, p Principal) {
	var rep StatsReport
	if !decodeBody(w, r, &rep) {
		return
	}
	if err := validHost(rep.Host); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	evs, err := s.st.applyStats(r.Context(), &rep, p.Name, p.Admin, s.o.Now())
	if err != nil {
		s.hostError(w, err)
		return
	}
	s.emit(evs)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMissing(w http.ResponseWriter, r *http.Request) {
	var req MissingRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Images) > 10000 {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "more than 10000 images in one request")
		return
	}
	m, err := s.st.missing(r.Context(), req.Images)
	if err != nil || s.o.SBOMSource == nil {
		s.reply(w, MissingResponse{Missing: m}, err)
		return
	}
	still := []string{}
	for _, k := range m {
		raw, err := s.o.SBOMSource(r.Context(), k)
		if err == nil && raw != nil {
			err = s.ingest(r.Context(), k, raw)
			if err == nil {
				continue
			}
		}
		if err != nil {
			s.o.Log.Warn("fleet: SBOM source", "image", k, "err", err)
		}
		still = append(still, k)
	}
	s.reply(w, MissingResponse{Missing: still}, nil)
}

// ingest reads, matches and stores an SBOM.
func (s *Server) ingest(ctx context.Context, key string, raw []byte) error {
	subj, pkgs, err := sbom.Read(bytes.NewReader(raw))
	if err != nil {
		return &badSBOMError{err}
	}
	fs, err := s.findings(ctx, pkgs)
	if err != nil {
		return err
	}
	return s.st.putSBOM(ctx, key, subj.Name, raw, len(pkgs), fs, s.o.Now())
}

type badSBOMError struct{ err error }

func (e *badSBOMError) Error() string { return "not a readable SBOM: " + e.err.Error() }

// validKey accepts "sha256:<64 hex>" (and other algorithms of the same form).
func validKey(k string) bool {
	alg, hex, ok := strings.Cut(k, ":")
	if !ok || alg == "" || len(hex) < 32 || len(hex) > 128 {
		return false
	}
	for _, c := range alg {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// handleSBOM takes an agent's SBOM of an image. An agent may only give the
// first SBOM of an image that a container on one of its hosts uses, so a
// compromised agent cannot replace the SBOM of other hosts' images.
func (s *Server) handleSBOM(w http.ResponseWriter, r *http.Request, p Principal, key string) {
	if !validKey(key) {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("image key %q is not a digest (sha256:...)", key))
		return
	}
	have, uses, err := s.st.sbomAccess(r.Context(), key, p.Name)
	if err != nil {
		s.internal(w, err)
		return
	}
	if !p.Admin {
		if have {
			writeError(w, http.StatusConflict, "EXISTS", "the server already has an SBOM of "+key)
			return
		}
		if !uses {
			writeError(w, http.StatusForbidden, "DENIED", "no container on this agent's hosts uses image "+key)
			return
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sbom.MaxSBOMSize))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "TOO_LARGE", "reading SBOM: "+err.Error())
		return
	}
	if err := s.ingest(r.Context(), key, raw); err != nil {
		var bad *badSBOMError
		if errors.As(err, &bad) {
			writeError(w, http.StatusBadRequest, "BAD_SBOM", err.Error())
			return
		}
		s.internal(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// findings matches pkgs with the current matcher (none without one).
func (s *Server) findings(ctx context.Context, pkgs []catalog.Package) ([]storedFinding, error) {
	m := s.currentMatcher()
	if m == nil {
		return nil, nil
	}
	res, err := m.Match(ctx, pkgs)
	if err != nil {
		return nil, fmt.Errorf("matching: %w", err)
	}
	out := make([]storedFinding, 0, len(res.Findings))
	for i := range res.Findings {
		f := &res.Findings[i]
		ids := f.IDs()
		up := make([]string, len(ids))
		for j, id := range ids {
			up[j] = strings.ToUpper(id)
		}
		p := &f.Package
		d := ExposedContainer{
			Vulnerability: f.ID, Aliases: f.Aliases, Severity: f.Severity.String(),
			Package: p.Name, Version: p.Version, Type: string(p.Type), PURL: p.PURL,
			Layer: p.Layer, LayerDiffID: p.LayerDiffID, CreatedBy: p.CreatedBy, FixedVersions: f.FixedVersions,
		}
		if len(p.Locations) > 0 {
			d.Path = p.Locations[0].Path
		}
		out = append(out, storedFinding{VulnID: f.ID, PkgRef: sbom.BOMRef(p), IDs: " " + strings.Join(up, " ") + " ", Severity: d.Severity, Detail: d})
	}
	return out, nil
}

// RematchResult summarises a re-match.
type RematchResult struct {
	Images int `json:"images"`
	// Events are the "newly exposed running container" events raised.
	Events []Event `json:"events"`
	// Failed lists image keys whose stored SBOM could not be re-matched.
	Failed []string `json:"failed,omitempty"`
}

// Rematch matches every stored SBOM again with the current matcher (call
// it after the vulnerability database changed), writes only the findings
// that changed, and records an event for each running container whose
// image gained findings.
func (s *Server) Rematch(ctx context.Context) (*RematchResult, error) {
	s.rematchMu.Lock()
	defer s.rematchMu.Unlock()
	keys, err := s.st.sbomKeys(ctx)
	if err != nil {
		return nil, err
	}
	res := &RematchResult{}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		raw, err := s.st.sbom(ctx, k)
		if err != nil {
			return res, err
		}
		_, pkgs, err := sbom.Read(bytes.NewReader(raw))
		if err != nil {
			s.o.Log.Warn("fleet rematch: stored SBOM unreadable", "image", k, "err", err)
			res.Failed = append(res.Failed, k)
			continue
		}
		fs, err := s.findings(ctx, pkgs)
		if err != nil {
			return res, err
		}
		evs, err := s.st.rematched(ctx, k, fs, s.o.Now())
		if err != nil {
			return res, err
		}
		res.Images++
		res.Events = append(res.Events, evs...)
		s.emit(evs)
	}
	return res, nil
}

func (s *Server) emit(evs []Event) {
	for _, e := range evs {
		s.o.Log.Info("fleet event", "kind", e.Kind, "host", e.Host, "container", e.Container, "message", e.Message)
		if s.o.OnEvent != nil {
			s.o.OnEvent(e)
		}
	}
}

// Handler routes the fleet's paths (/api/v1/fleet/ and /metrics) to fl and
// everything else to next (the registry), so `moat serve` wires the fleet
// with one handler: http.Server{Handler: fleet.Handler(fl, inst)}.
func Handler(fl *Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) || r.URL.Path == "/metrics" {
			fl.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetChecker replaces the runtime checker; call Reevaluate to apply it to
// the containers already known.
func (s *Server) SetChecker(c RuntimeChecker) {
	s.mu.Lock()
	s.o.Checker = c
	s.mu.Unlock()
}

func (s *Server) checker() RuntimeChecker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.o.Checker
}

// Reevaluate recomputes the violations of every known container with the
// current checker (after a policy change); it raises no events. It returns
// how many containers' violations changed.
func (s *Server) Reevaluate(ctx context.Context) (int, error) {
	return s.st.reevaluate(ctx, func(host string, c *Container) []Violation {
		return s.checker().CheckRuntime(ctx, Workload(host, c))
	})
}
