// Package imagefacts supplies the policy's image facts by reading images on
// demand: the manifest and config from any registry (or the local Docker
// engine), and — when a vulnerability database is given — a scan and match
// of the packages. Facts are cached by digest, tag resolutions for a short
// time, and concurrent lookups of the same image share one read.
package imagefacts

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/singleflight"

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
	// are not scanned and vulnerability rules cannot pass.
	DB *vulndb.DB
	// Spec turns a reference into an image source spec (default: the
	// reference itself, a registry).
	Spec func(ref string) string
	// Docker, when set, reads images from the Docker engine at this host
	// ("unix:///var/run/docker.sock") instead of registries: facts from
	// the engine's image inspect, scans through docker save.
	Docker string
	// TagTTL is how long a tag → digest resolution is reused (default 1m).
	TagTTL time.Duration
	// MaxEntries bounds each cache (default 10000).
	MaxEntries int

	mu       sync.Mutex
	byDigest map[string]*policy.ImageFacts
	tags     map[string]tagEntry
	repos    map[string]repoEntry
	group    singleflight.Group
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

func (p *Provider) max() int {
	if p.MaxEntries > 0 {
		return p.MaxEntries
	}
	return 10000
}

func (p *Provider) spec(ref string) string {
	if p.Spec != nil {
		return p.Spec(ref)
	}
	return ref
}

// digestIn returns the digest written in a reference, if any.
func digestIn(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

// ImageFacts implements policy.FactsProvider.
func (p *Provider) ImageFacts(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	p.mu.Lock()
	d := digestIn(ref)
	if d == "" {
		if t, ok := p.tags[ref]; ok && time.Since(t.at) < p.ttl() {
			d = t.digest
		}
	}
	if f, ok := p.byDigest[d]; ok && d != "" {
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
	im, err := image.Open(ctx, p.spec(ref), p.Image)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	d := im.Digest
	if d == "" {
		d = im.ImageID
	}
	p.mu.Lock()
	if f, ok := p.byDigest[d]; ok && d != "" {
		p.remember(ref, d)
		p.mu.Unlock()
		return f, nil
	}
	p.mu.Unlock()
	f := &policy.ImageFacts{Reference: ref, Digest: d}
	for _, l := range im.Layers {
		f.Layers = append(f.Layers, l.DiffID)
	}
	if im.Config != nil {
		f.User = im.Config.Config.User
		f.Labels = im.Config.Config.Labels
		f.Created = im.Config.Created.Time
	}
	if p.DB != nil {
		res, err := scan.ScanImage(ctx, im, scan.Options{})
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %w", ref, err)
		}
		m, err := match.Matcher{DB: p.DB}.Match(ctx, res.Packages)
		if err != nil {
			return nil, fmt.Errorf("matching %s: %w", ref, err)
		}
		f.Findings, f.VulnsScanned = m.Findings, true
	}
	p.mu.Lock()
	if p.byDigest == nil || len(p.byDigest) >= p.max() {
		p.byDigest = map[string]*policy.ImageFacts{}
	}
	if d != "" {
		p.byDigest[d] = f
	}
	p.remember(ref, d)
	p.mu.Unlock()
	return f, nil
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
	o := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if p.Image.Transport != nil {
		o = append(o, remote.WithTransport(p.Image.Transport))
	}
	return o
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
	f := &policy.ImageFacts{Reference: ref, Digest: insp.ID}
	for _, rd := range insp.RepoDigests {
		if i := strings.Index(rd, "@"); i > 0 {
			f.Digest = rd[i+1:]
			break
		}
	}
	p.mu.Lock()
	if c, ok := p.byDigest[f.Digest]; ok {
		p.remember(ref, f.Digest)
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	f.Layers = insp.RootFS.Layers
	if insp.Config != nil {
		f.User, f.Labels = insp.Config.User, insp.Config.Labels
	}
	if t, err := time.Parse(time.RFC3339Nano, insp.Created); err == nil {
		f.Created = t
	}
	if p.DB != nil {
		res, err := scan.Scan(ctx, "docker:"+insp.ID, scan.Options{Image: image.Options{DockerHost: p.Docker}})
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %w", ref, err)
		}
		m, err := match.Matcher{DB: p.DB}.Match(ctx, res.Packages)
		if err != nil {
			return nil, fmt.Errorf("matching %s: %w", ref, err)
		}
		f.Findings, f.VulnsScanned = m.Findings, true
	}
	p.mu.Lock()
	if p.byDigest == nil || len(p.byDigest) >= p.max() {
		p.byDigest = map[string]*policy.ImageFacts{}
	}
	p.byDigest[f.Digest] = f
	p.remember(ref, f.Digest)
	p.mu.Unlock()
	return f, nil
}
