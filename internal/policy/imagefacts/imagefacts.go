// Package imagefacts supplies the policy's image facts.
//
// For an image in a moat registry (detected once per host: its guard API
// answers with moat's challenge) the facts and findings are the ones the
// registry stored when it scanned the image on push and re-matched since,
// read from GET /api/v1/guard/findings with the same credentials as a
// pull. Any other image — or one the registry has not scanned yet — is
// read from its registry (or the local Docker engine) and, when a
// vulnerability database is given, scanned and matched on demand. Scans
// are kept in an on-disk cache by digest (DiskCache): a later run re-uses
// the packages and, when the database has not changed, the findings.
// In memory, facts are cached by digest (those from a moat registry for
// RegistryTTL, so re-scans there are seen), tag resolutions for a short
// time, and concurrent lookups of the same image share one read.
package imagefacts

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/singleflight"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/vulndb"
)

// Provider implements policy.FactsProvider and policy.DigestResolver.
type Provider struct {
	// Image options (Insecure for plain-HTTP registries, Keychain, ...).
	Image image.Options
	// DB, when set, is used to match scanned packages; without it images
	// are not scanned, and vulnerability rules pass only for images whose
	// findings a moat registry shares.
	DB *vulndb.DB
	// Docker, when set, reads images from the Docker engine at this host
	// ("unix:///var/run/docker.sock") instead of registries: facts from
	// the engine's image inspect, findings from a moat registry the image
	// was pulled from, else a scan through docker save.
	Docker string
	// Cache, when set, keeps scanned packages and findings on disk by
	// digest across processes.
	Cache *DiskCache
	// LayerCache, when set, keeps per-layer scan results by diff ID.
	LayerCache scan.LayerCache
	// NoRegistryFindings turns off asking moat registries for their
	// stored findings (every image is then scanned here).
	NoRegistryFindings bool
	// RegistryTTL is how long facts from a moat registry are reused
	// before it is asked again (default 5m).
	RegistryTTL time.Duration
	// TagTTL is how long a tag → digest resolution is reused (default 1m).
	TagTTL time.Duration
	// MaxEntries bounds each cache (default 10000).
	MaxEntries int
	// Warn, when set, receives warnings: corrupt cache entries, moat
	// registry answers that could not be used.
	Warn func(msg string)

	mu       sync.Mutex
	byDigest map[string]memEntry
	tags     map[string]tagEntry // tag → the manifest digest it resolved to
	tagFacts map[string]tagEntry // tag → the digest its facts are kept under
	repos    map[string]repoEntry
	hosts    map[string]hostEntry
	group    singleflight.Group
	dbOnce   sync.Once
	dbVer    string
	rtOnce   sync.Once
	rt       http.RoundTripper
	authRTs  map[string]authEntry // repository → its authenticated transport
}

type memEntry struct {
	f     *policy.ImageFacts
	until time.Time // zero: until evicted
}

type tagEntry struct {
	digest string
	at     time.Time
}

type repoEntry struct {
	layers [][]string
	at     time.Time
}

// MaxRepositoryImages bounds how many tags of a base-image repository are read.
const MaxRepositoryImages = 200

func (p *Provider) ttl() time.Duration {
	if p.TagTTL > 0 {
		return p.TagTTL
	}
	return time.Minute
}

func (p *Provider) registryTTL() time.Duration {
	if p.RegistryTTL > 0 {
		return p.RegistryTTL
	}
	return 5 * time.Minute
}

func (p *Provider) max() int {
	if p.MaxEntries > 0 {
		return p.MaxEntries
	}
	return 10000
}

func (p *Provider) platform() string {
	if p.Image.Platform != "" {
		return p.Image.Platform
	}
	return image.HostPlatform()
}

func (p *Provider) warn(msg string) {
	if p.Warn != nil {
		p.Warn(msg)
	}
}

func (p *Provider) dbVersion() string {
	p.dbOnce.Do(func() { p.dbVer = DBVersion(p.DB) })
	return p.dbVer
}

// digestIn returns the digest written in a reference, if any.
func digestIn(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

// scope is what in-memory facts are filed under besides the digest: the
// registry host (facts of an image in one registry come from that
// registry or a scan of it, never from another registry holding the same
// digest), or the Docker engine.
func (p *Provider) scope(ref string) string {
	if p.Docker != "" {
		return "docker|"
	}
	r, err := p.parse(ref)
	if err != nil {
		return "?|"
	}
	return r.Context().RegistryStr() + "|"
}

// cached returns the in-memory facts of digest d in scope (caller holds
// p.mu).
func (p *Provider) cached(scope, d string) (*policy.ImageFacts, bool) {
	if d == "" {
		return nil, false
	}
	e, ok := p.byDigest[scope+d]
	if !ok || (!e.until.IsZero() && time.Now().After(e.until)) {
		return nil, false
	}
	return e.f, true
}

// keep remembers f under the digests (in ref's scope) and ref's tag
// (caller holds p.mu).
func (p *Provider) keep(ref string, f *policy.ImageFacts, ttl time.Duration, digests ...string) {
	scope := p.scope(ref)
	if p.byDigest == nil || len(p.byDigest) >= p.max() {
		p.byDigest = map[string]memEntry{}
	}
	e := memEntry{f: f}
	if ttl > 0 {
		e.until = time.Now().Add(ttl)
	}
	for _, d := range digests {
		if d != "" {
			p.byDigest[scope+d] = e
		}
	}
	if len(digests) > 0 {
		p.rememberFacts(ref, digests[0])
	}
}

// rememberFacts notes that the facts of tag ref are kept under digest
// (caller holds p.mu).
func (p *Provider) rememberFacts(ref, digest string) {
	if digest == "" || digestIn(ref) != "" {
		return
	}
	if p.tagFacts == nil || len(p.tagFacts) >= p.max() {
		p.tagFacts = map[string]tagEntry{}
	}
	p.tagFacts[ref] = tagEntry{digest: digest, at: time.Now()}
}

// ImageFacts implements policy.FactsProvider.
func (p *Provider) ImageFacts(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	p.mu.Lock()
	d := digestIn(ref)
	if d == "" {
		if t, ok := p.tagFacts[ref]; ok && time.Since(t.at) < p.ttl() {
			d = t.digest
		}
	}
	if f, ok := p.cached(p.scope(ref), d); ok {
		p.mu.Unlock()
		return withRef(f, ref), nil
	}
	p.mu.Unlock()
	ch := p.group.DoChan(ref, func() (any, error) {
		// the read outlives one caller's deadline so that a slow image is
		// cached for the next request; it is bounded by its own timeout
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		return p.read(rctx, ref)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return withRef(r.Val.(*policy.ImageFacts), ref), nil
	}
}

func withRef(f *policy.ImageFacts, ref string) *policy.ImageFacts {
	c := *f
	c.Reference = ref
	return &c
}

func (p *Provider) read(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	if p.Docker != "" {
		return p.readDocker(ctx, ref)
	}
	r, err := p.parse(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid image reference: %w", ref, err)
	}
	var why string
	ttl := time.Duration(0)
	if !p.NoRegistryFindings && p.isMoat(ctx, r.Context().Registry) {
		f, a, err := p.fromRegistry(ctx, ref, r)
		if err == nil {
			p.mu.Lock()
			p.keep(ref, f, p.registryTTL(), a.Image.Digest, digestIn(ref))
			p.mu.Unlock()
			return f, nil
		}
		if !notReady(err) {
			p.warn(fmt.Sprintf("%s: the moat registry's findings could not be used, scanning here: %v", ref, err))
		}
		why = err.Error()
		ttl = p.registryTTL() // ask the registry again once it may have scanned
	}
	d0, err := p.ResolveDigest(ctx, ref)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if f, ok := p.cached(p.scope(ref), d0); ok {
		p.rememberFacts(ref, d0)
		p.mu.Unlock()
		return f, nil
	}
	p.mu.Unlock()
	pinned := r.Context().Digest(d0).String()
	f, err := p.scanned(ctx, scanTarget{
		key:  "registry|" + d0 + "|" + p.platform(),
		name: ref,
		open: func() (*image.Image, error) { return image.Open(ctx, pinned, p.imageOptions()) },
	})
	if err != nil {
		return nil, err
	}
	if why != "" {
		f.FactsNote = joinNote(why, f.FactsNote)
	}
	p.mu.Lock()
	p.keep(ref, f, ttl, d0, f.Digest)
	p.mu.Unlock()
	return f, nil
}

func joinNote(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// fromRegistry reads the facts of ref from a moat registry's stored
// findings.
func (p *Provider) fromRegistry(ctx context.Context, ref string, r name.Reference) (*policy.ImageFacts, *registryAnswer, error) {
	as, err := p.registryFindings(ctx, r.Context(), r.Identifier())
	if err != nil {
		return nil, nil, err
	}
	a := pickAnswer(as, digestIn(ref), p.platform())
	if a == nil {
		return nil, nil, &errNotReady{"the registry has no findings for platform " + p.platform()}
	}
	if ok, why := a.ready(); !ok {
		return nil, nil, &errNotReady{why}
	}
	f, complete := a.facts(ref, r.Context().RegistryStr())
	if !complete {
		im, err := image.Open(ctx, r.Context().Digest(a.Image.Digest).String(), p.imageOptions())
		if err != nil {
			return nil, nil, err
		}
		configFacts(f, im)
		im.Close()
	}
	return f, a, nil
}

// configFacts fills layers and config facts from an opened image.
func configFacts(f *policy.ImageFacts, im *image.Image) {
	f.Layers = f.Layers[:0]
	for _, l := range im.Layers {
		f.Layers = append(f.Layers, l.DiffID)
	}
	if im.Config != nil {
		f.User = im.Config.Config.User
		f.Labels = im.Config.Config.Labels
		f.Created = im.Config.Created.Time
	}
}

// scanTarget is an image to scan (or find in the disk cache).
type scanTarget struct {
	key  string // disk cache key
	name string // for messages
	open func() (*image.Image, error)
	// known, when set, are facts known without opening the image (the
	// Docker engine's inspect): they win over the image's and the cache's.
	known *policy.ImageFacts
}

// scanned gives the facts of t from the disk cache (re-matching the cached
// packages when the database changed) or by opening, scanning and
// matching the image.
func (p *Provider) scanned(ctx context.Context, t scanTarget) (*policy.ImageFacts, error) {
	if p.Cache != nil {
		e, err := p.Cache.Get(t.key)
		if err != nil {
			p.warn(fmt.Sprintf("%s: %v", t.name, err))
		}
		if e != nil {
			if f, ok := p.fromEntry(ctx, t, e); ok {
				return f, nil
			}
		}
	}
	im, err := t.open()
	if err != nil {
		return nil, err
	}
	defer im.Close()
	f := &policy.ImageFacts{Reference: t.name, Digest: im.Digest}
	if f.Digest == "" {
		f.Digest = im.ImageID
	}
	configFacts(f, im)
	overlay(f, t.known)
	if p.DB == nil {
		return f, nil
	}
	res, err := scan.ScanImage(ctx, im, scan.Options{Cache: p.LayerCache})
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", t.name, err)
	}
	m, err := match.Matcher{DB: p.DB}.Match(ctx, res.Packages)
	if err != nil {
		return nil, fmt.Errorf("matching %s: %w", t.name, err)
	}
	sortFindings(m.Findings)
	f.Findings, f.VulnsScanned, f.FactsSource = m.Findings, true, SourceScan
	f.FactsNote = "scanned here"
	if p.Cache != nil {
		e := &Entry{Key: t.key, Digest: f.Digest, Layers: f.Layers, User: f.User, Labels: f.Labels, Created: f.Created,
			CatalogVersion: scan.CatalogVersion, Packages: res.Packages, Scanned: time.Now().UTC(), DBVersion: p.dbVersion(), Findings: m.Findings}
		if e.Packages == nil {
			e.Packages = []catalog.Package{}
		}
		if err := p.Cache.Put(e); err != nil {
			p.warn(fmt.Sprintf("%s: facts not cached: %v", t.name, err))
		}
	}
	return f, nil
}

// fromEntry turns a cache entry into facts; ok is false when the entry
// cannot serve (packages of another catalog version and a changed
// database, or a re-match that failed).
func (p *Provider) fromEntry(ctx context.Context, t scanTarget, e *Entry) (*policy.ImageFacts, bool) {
	f := &policy.ImageFacts{Reference: t.name, Digest: e.Digest, Layers: e.Layers, User: e.User, Labels: e.Labels, Created: e.Created, FactsCached: true}
	overlay(f, t.known)
	if p.DB == nil {
		return f, true // config facts only: findings of an unknown database are not used
	}
	when := e.Scanned.UTC().Format(time.RFC3339)
	switch {
	case e.DBVersion == p.dbVersion():
		f.Findings = slices.Clone(e.Findings)
		f.FactsNote = "facts cache (scanned " + when + ")"
	case e.CatalogVersion == scan.CatalogVersion:
		m, err := match.Matcher{DB: p.DB}.Match(ctx, e.Packages)
		if err != nil {
			p.warn(fmt.Sprintf("%s: re-matching cached packages: %v", t.name, err))
			return nil, false
		}
		e.Findings, e.DBVersion = m.Findings, p.dbVersion()
		if err := p.Cache.Put(e); err != nil {
			p.warn(fmt.Sprintf("%s: facts not cached: %v", t.name, err))
		}
		f.Findings = m.Findings
		f.FactsNote = "facts cache (scanned " + when + ", re-matched with the current database)"
	default:
		return nil, false
	}
	sortFindings(f.Findings)
	f.VulnsScanned, f.FactsSource = true, SourceScan
	return f, true
}

// overlay puts known facts over read ones.
func overlay(f, known *policy.ImageFacts) {
	if known == nil {
		return
	}
	f.Digest, f.Layers, f.User, f.Labels, f.Created = known.Digest, known.Layers, known.User, known.Labels, known.Created
}

// sortFindings orders findings worst first (severity, CVSS score), then by
// package and ID, so that messages list the same findings in the same
// order whether they were matched here or stored by a registry.
func sortFindings(fs []match.Finding) {
	score := func(f *match.Finding) float64 {
		if f.CVSS == nil {
			return -1
		}
		return f.CVSS.Score
	}
	loc := func(f *match.Finding) string {
		if len(f.Package.Locations) == 0 {
			return ""
		}
		return f.Package.Locations[0].Path
	}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c < 0
		}
		if c := cmp.Compare(score(b), score(a)); c != 0 {
			return c < 0
		}
		if c := cmp.Or(cmp.Compare(a.Package.Name, b.Package.Name), cmp.Compare(a.Package.Version, b.Package.Version),
			cmp.Compare(a.ID, b.ID), cmp.Compare(a.Package.PURL, b.Package.PURL), cmp.Compare(loc(a), loc(b))); c != 0 {
			return c < 0
		}
		return false
	})
}

func (p *Provider) remember(ref, digest string) {
	if digest == "" || digestIn(ref) != "" {
		return
	}
	if p.tags == nil || len(p.tags) >= p.max() {
		p.tags = map[string]tagEntry{}
	}
	p.tags[ref] = tagEntry{digest: digest, at: time.Now()}
}

// ResolveDigest implements policy.DigestResolver (registry references).
func (p *Provider) ResolveDigest(ctx context.Context, ref string) (string, error) {
	if d := digestIn(ref); d != "" {
		return d, nil
	}
	p.mu.Lock()
	if t, ok := p.tags[ref]; ok && time.Since(t.at) < p.ttl() {
		p.mu.Unlock()
		return t.digest, nil
	}
	p.mu.Unlock()
	r, err := p.parse(ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(r, p.remoteOpts(ctx)...)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ref, err)
	}
	d := desc.Digest.String()
	p.mu.Lock()
	p.remember(ref, d)
	p.mu.Unlock()
	return d, nil
}

func (p *Provider) parse(ref string) (name.Reference, error) {
	var opts []name.Option
	if p.Image.Insecure {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(ref, opts...)
}

func (p *Provider) remoteOpts(ctx context.Context) []remote.Option {
	kc := p.Image.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(p.transport())}
}

// RepositoryLayers implements policy.FactsProvider: the layer diff IDs of
// the images tagged in a registry repository (at most
// MaxRepositoryImages tags, newest names last), cached for 5 minutes.
func (p *Provider) RepositoryLayers(ctx context.Context, repo string) ([][]string, error) {
	p.mu.Lock()
	if e, ok := p.repos[repo]; ok && time.Since(e.at) < 5*time.Minute {
		p.mu.Unlock()
		return e.layers, nil
	}
	p.mu.Unlock()
	v, err, _ := p.group.Do("repo\x00"+repo, func() (any, error) {
		var opts []name.Option
		if p.Image.Insecure {
			opts = append(opts, name.Insecure)
		}
		r, err := name.NewRepository(repo, opts...)
		if err != nil {
			return nil, err
		}
		tags, err := remote.List(r, p.remoteOpts(ctx)...)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", repo, err)
		}
		sort.Strings(tags)
		if len(tags) > MaxRepositoryImages {
			tags = tags[len(tags)-MaxRepositoryImages:]
		}
		var out [][]string
		for _, t := range tags {
			if strings.HasPrefix(t, "sha256-") { // signature and attestation tags
				continue
			}
			img, err := remote.Image(r.Tag(t), p.remoteOpts(ctx)...)
			if err != nil {
				continue // an index without this platform, an artifact
			}
			cf, err := img.ConfigFile()
			if err != nil {
				continue
			}
			var ls []string
			for _, d := range cf.RootFS.DiffIDs {
				ls = append(ls, d.String())
			}
			out = append(out, ls)
		}
		p.mu.Lock()
		if p.repos == nil || len(p.repos) >= p.max() {
			p.repos = map[string]repoEntry{}
		}
		p.repos[repo] = repoEntry{layers: out, at: time.Now()}
		p.mu.Unlock()
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([][]string), nil
}

func (p *Provider) readDocker(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	cli, err := client.NewClientWithOpts(client.WithHost(p.Docker), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	known := &policy.ImageFacts{Reference: ref, Digest: insp.ID, Layers: insp.RootFS.Layers}
	for _, rd := range insp.RepoDigests {
		if i := strings.Index(rd, "@"); i > 0 {
			known.Digest = rd[i+1:]
			break
		}
	}
	p.mu.Lock()
	if f, ok := p.cached(p.scope(ref), known.Digest); ok {
		p.mu.Unlock()
		return f, nil
	}
	p.mu.Unlock()
	if insp.Config != nil {
		known.User, known.Labels = insp.Config.User, insp.Config.Labels
	}
	if t, err := time.Parse(time.RFC3339Nano, insp.Created); err == nil {
		known.Created = t
	}
	var why string
	ttl := time.Duration(0)
	if !p.NoRegistryFindings {
		for _, rd := range insp.RepoDigests {
			d, err := p.parseDigest(rd)
			if err != nil || !p.isMoat(ctx, d.Context().Registry) {
				continue
			}
			f, err := p.dockerFromRegistry(ctx, d, known)
			if err == nil {
				p.mu.Lock()
				p.keep(ref, f, p.registryTTL(), f.Digest)
				p.mu.Unlock()
				return f, nil
			}
			if !notReady(err) {
				p.warn(fmt.Sprintf("%s: the moat registry's findings could not be used, scanning here: %v", ref, err))
			}
			why, ttl = err.Error(), p.registryTTL()
		}
	}
	f, err := p.scanned(ctx, scanTarget{
		key:  "docker|" + insp.ID,
		name: ref,
		open: func() (*image.Image, error) {
			return image.Open(ctx, "docker:"+insp.ID, image.Options{DockerHost: p.Docker})
		},
		known: known,
	})
	if err != nil {
		return nil, err
	}
	f.FactsNote = joinNote(why, f.FactsNote)
	p.mu.Lock()
	p.keep(ref, f, ttl, f.Digest)
	p.mu.Unlock()
	return f, nil
}

func (p *Provider) parseDigest(s string) (name.Digest, error) {
	var opts []name.Option
	if p.Image.Insecure {
		opts = append(opts, name.Insecure)
	}
	return name.NewDigest(s, opts...)
}

// dockerFromRegistry takes the findings of an engine image from the moat
// registry it was pulled from: the platform image whose layers are the
// engine image's layers.
func (p *Provider) dockerFromRegistry(ctx context.Context, d name.Digest, known *policy.ImageFacts) (*policy.ImageFacts, error) {
	as, err := p.registryFindings(ctx, d.Context(), d.DigestStr())
	if err != nil {
		return nil, err
	}
	for i := range as {
		a := &as[i]
		if a.Report == nil || len(a.Report.Layers) != len(known.Layers) {
			continue
		}
		same := true
		for j, l := range a.Report.Layers {
			same = same && l.DiffID == known.Layers[j]
		}
		if !same {
			continue
		}
		if ok, why := a.ready(); !ok {
			return nil, &errNotReady{why}
		}
		f, _ := a.facts(known.Reference, d.RegistryStr())
		findings, note := f.Findings, f.FactsNote
		*f = *known
		f.Findings, f.FactsNote, f.VulnsScanned, f.FactsSource = findings, note, true, SourceRegistry
		return f, nil
	}
	return nil, &errNotReady{"the registry holds no scan of an image with these layers"}
}
