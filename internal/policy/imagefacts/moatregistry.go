package imagefacts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/scan"
)

// Where facts come from (policy.ImageFacts.FactsSource).
const (
	SourceRegistry = "registry" // a moat registry's stored findings
	SourceScan     = "scan"     // scanned and matched by this process (or its cache)
)

// guardFindingsPath is moat's registry guard endpoint for stored findings.
const guardFindingsPath = "/api/v1/guard/findings"

const maxFindingsResponse = 64 << 20

type hostEntry struct {
	moat  bool
	until time.Time
}

// isMoat reports whether the registry is a moat registry with its guard
// (scan on push) running: an unauthenticated request to the guard API is
// answered with moat's Basic challenge. The answer is kept per host for
// 10 minutes (30 seconds when the registry could not be reached).
func (p *Provider) isMoat(ctx context.Context, reg name.Registry) bool {
	host := reg.RegistryStr()
	p.mu.Lock()
	if e, ok := p.hosts[host]; ok && time.Now().Before(e.until) {
		p.mu.Unlock()
		return e.moat
	}
	p.mu.Unlock()
	v, _, _ := p.group.Do("probe\x00"+host, func() (any, error) {
		moat, reached := probeMoat(ctx, reg, p.transport())
		keep := 10 * time.Minute
		if !reached {
			keep = 30 * time.Second
		}
		p.mu.Lock()
		if p.hosts == nil || len(p.hosts) >= p.max() {
			p.hosts = map[string]hostEntry{}
		}
		p.hosts[host] = hostEntry{moat: moat, until: time.Now().Add(keep)}
		p.mu.Unlock()
		return moat, nil
	})
	return v.(bool)
}

// transport is the HTTP transport for registries: Image.Transport, else
// one image.RegistryTransport (system roots plus the certs.d directories'
// CAs and client certificates) kept for the provider's lifetime.
func (p *Provider) transport() http.RoundTripper {
	if p.Image.Transport != nil {
		return p.Image.Transport
	}
	p.rtOnce.Do(func() { p.rt = image.NewRegistryTransport(nil) })
	return p.rt
}

// imageOptions are p.Image with the provider's transport, so that scans
// share its connections.
func (p *Provider) imageOptions() image.Options {
	o := p.Image
	o.Transport = p.transport()
	return o
}

// probeMoat asks reg's guard API over HTTPS and, for registries
// go-containerregistry would also reach over plain HTTP (--insecure,
// localhost and private addresses), then over HTTP: the same order as its
// ping, so a registry on 127.0.0.1 serving HTTPS is recognised too.
func probeMoat(ctx context.Context, reg name.Registry, rt http.RoundTripper) (moat, reached bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	schemes := []string{"https"}
	if reg.Scheme() == "http" {
		schemes = append(schemes, "http")
	}
	for _, scheme := range schemes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+reg.RegistryStr()+guardFindingsPath, nil)
		if err != nil {
			return false, false
		}
		resp, err := (&http.Client{Transport: rt, CheckRedirect: noRedirect}).Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized && isMoatChallenge(resp.Header.Values("WWW-Authenticate")), true
	}
	return false, false
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func isMoatChallenge(vs []string) bool {
	for _, v := range vs {
		if strings.HasPrefix(strings.ToLower(v), "basic ") && strings.Contains(v, `realm="moat"`) {
			return true
		}
	}
	return false
}

// registryAnswer is the part of the guard's findings answer (a list of
// guard.ImageFindings, one per platform image) that facts need.
type registryAnswer struct {
	Image struct {
		Repository string    `json:"repository"`
		Digest     string    `json:"digest"`
		Index      string    `json:"index"`
		Platform   string    `json:"platform"`
		Status     string    `json:"status"`
		Error      string    `json:"error"`
		Scanned    time.Time `json:"scanned"`
	} `json:"image"`
	Report *struct {
		Subject         scan.Subject     `json:"subject"`
		Layers          []scan.LayerInfo `json:"layers"`
		Vulnerabilities *struct {
			Findings   []match.Finding           `json:"findings"`
			Suppressed []match.SuppressedFinding `json:"suppressed"`
		} `json:"vulnerabilities"`
	} `json:"report"`
}

// decodeRegistryFindings decodes the answer of a moat registry's
// GET /api/v1/guard/findings.
func decodeRegistryFindings(b []byte) ([]registryAnswer, error) {
	var out []registryAnswer
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("not a findings answer: %w", err)
	}
	for i := range out {
		if !validDigest(out[i].Image.Digest) {
			return nil, fmt.Errorf("findings answer %d: image digest %q is not a digest", i, out[i].Image.Digest)
		}
	}
	return out, nil
}

// pickAnswer chooses the platform image: the one named by digest, else the
// one for platform, else the only one.
func pickAnswer(as []registryAnswer, digest, platform string) *registryAnswer {
	for i := range as {
		if digest != "" && as[i].Image.Digest == digest {
			return &as[i]
		}
	}
	for i := range as {
		if platform != "" && samePlatform(as[i].Image.Platform, platform) {
			return &as[i]
		}
	}
	if len(as) == 1 {
		return &as[0]
	}
	return nil
}

// samePlatform compares "os/arch[/variant]", a missing variant matching any.
func samePlatform(a, b string) bool {
	pa, pb := strings.Split(a, "/"), strings.Split(b, "/")
	if len(pa) < 2 || len(pb) < 2 || pa[0] != pb[0] || pa[1] != pb[1] {
		return false
	}
	return len(pa) == 2 || len(pb) == 2 || pa[2] == pb[2]
}

// ready reports whether the answer holds a finished match, and otherwise
// why not.
func (a *registryAnswer) ready() (bool, string) {
	switch {
	case a.Image.Status == "failed":
		return false, "the registry's scan failed: " + a.Image.Error
	case a.Image.Status != "scanned":
		return false, "the registry has not scanned the image yet (" + a.Image.Status + ")"
	case a.Report == nil || a.Report.Vulnerabilities == nil:
		return false, "the registry holds no findings for the image (no vulnerability database there)"
	}
	return true, ""
}

// findings are every finding the registry stored, including those the
// project's exceptions suppress there: the policy applies its own
// exceptions, and a project's owners must not be able to waive a
// cluster-wide policy.
func (a *registryAnswer) findings() []match.Finding {
	v := a.Report.Vulnerabilities
	out := make([]match.Finding, 0, len(v.Findings)+len(v.Suppressed))
	out = append(out, v.Findings...)
	for _, s := range v.Suppressed {
		out = append(out, s.Finding)
	}
	sortFindings(out)
	return out
}

// facts gives the image facts of a ready answer; ok is false when the
// report lacks the layer diff IDs (then the config must be read).
func (a *registryAnswer) facts(ref, host string) (*policy.ImageFacts, bool) {
	r := a.Report
	f := &policy.ImageFacts{Reference: ref, Digest: a.Image.Digest, User: r.Subject.User, Labels: r.Subject.Labels, Created: r.Subject.Created,
		VulnsScanned: true, Findings: a.findings(), FactsSource: SourceRegistry}
	f.FactsNote = "stored findings of moat registry " + host
	if !a.Image.Scanned.IsZero() {
		f.FactsNote += ", scanned " + a.Image.Scanned.UTC().Format(time.RFC3339)
	}
	for _, l := range r.Layers {
		if l.DiffID == "" {
			return f, false
		}
		f.Layers = append(f.Layers, l.DiffID)
	}
	return f, len(f.Layers) > 0 || r.Subject.Digest != ""
}

// errNotReady says the registry has no usable findings for the image (yet).
type errNotReady struct{ why string }

func (e *errNotReady) Error() string { return e.why }

// registryFindings asks a moat registry for the stored findings of
// repo:ref (a tag or digest), authenticating like a pull (the same keychain
// credentials, exchanged for a pull token of the repository).
func (p *Provider) registryFindings(ctx context.Context, repo name.Repository, ref string) ([]registryAnswer, error) {
	kc := p.Image.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	rt, err := p.authTransport(ctx, kc, repo)
	if err != nil {
		return nil, err
	}
	q := url.Values{"repository": {repo.RepositoryStr()}, "ref": {ref}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, repo.Scheme()+"://"+repo.RegistryStr()+guardFindingsPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: rt, CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFindingsResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading findings from %s: %w", repo.RegistryStr(), err)
	}
	if len(body) > maxFindingsResponse {
		return nil, fmt.Errorf("findings from %s: answer larger than %d bytes", repo.RegistryStr(), maxFindingsResponse)
	}
	if resp.StatusCode != http.StatusOK {
		msg := resp.Status
		var e struct {
			Errors []struct {
				Message string `json:"message"`
			} `json:"errors"`
		}
		if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
			msg += ": " + e.Errors[0].Message
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return nil, &errNotReady{"the registry did not share its findings (" + msg + "; log in with docker login as an account that may pull " + repo.RepositoryStr() + ")"}
		case http.StatusNotFound:
			return nil, &errNotReady{"the registry has no findings for the image (" + msg + ")"}
		}
		return nil, fmt.Errorf("findings from %s: %s", repo.RegistryStr(), msg)
	}
	as, err := decodeRegistryFindings(body)
	if err != nil {
		return nil, fmt.Errorf("findings from %s: %w", repo.RegistryStr(), err)
	}
	return as, nil
}

// authEntry is a repository's authenticated transport: it holds the pull
// token and gets a new one by itself when the registry refuses the old
// (expired) one.
type authEntry struct {
	rt    http.RoundTripper
	until time.Time
}

// authTTL bounds how long an authenticated transport is reused, so that
// changed credentials (a new docker login) are picked up.
const authTTL = 10 * time.Minute

// authTransport returns a transport authenticated for pulls of repo: one
// ping and token exchange per repository and authTTL, not per lookup.
func (p *Provider) authTransport(ctx context.Context, kc authn.Keychain, repo name.Repository) (http.RoundTripper, error) {
	key := repo.Name()
	now := time.Now()
	p.mu.Lock()
	if e, ok := p.authRTs[key]; ok && now.Before(e.until) {
		p.mu.Unlock()
		return e.rt, nil
	}
	p.mu.Unlock()
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, p.transport(), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s: %w", repo.RegistryStr(), err)
	}
	p.mu.Lock()
	if p.authRTs == nil || len(p.authRTs) >= p.max() {
		p.authRTs = map[string]authEntry{}
	}
	p.authRTs[key] = authEntry{rt: rt, until: now.Add(authTTL)}
	p.mu.Unlock()
	return rt, nil
}

// notReady reports whether err only says the registry has no findings to
// share, as opposed to a failure worth a warning.
func notReady(err error) bool {
	var e *errNotReady
	return errors.As(err, &e)
}
