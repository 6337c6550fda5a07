package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// kind describes one sort of attachment: signatures or attestations.
type kind struct {
	suffix       string // cosign tag suffix: "sig" or "att"
	artifactType string // referrer artifactType
	mediaType    string // layer media type
	maxSize      int64  // largest layer read
}

var (
	sigKind = kind{"sig", SignatureArtifactType, SimpleSigningMediaType, MaxPayloadSize}
	attKind = kind{"att", AttestationArtifactType, DSSEMediaType, MaxEnvelopeSize}
)

// Stored says where an attachment was written.
type Stored struct {
	Tag      string `json:"tag,omitempty"`      // the cosign sha256-<hex>.sig/.att tag
	Referrer string `json:"referrer,omitempty"` // digest of the OCI 1.1 referrer manifest
}

// attach stores one layer for subj both ways: appended to the cosign tag's
// manifest and as its own referrer manifest with subject = subj.
func (r *Remote) attach(ctx context.Context, subj *Subject, k kind, content []byte, ann map[string]string) (*Stored, error) {
	if r.NoTag && r.NoReferrers {
		return nil, errors.New("nowhere to store: both the cosign tag and the referrers API are turned off")
	}
	opts := r.options(ctx)
	out := &Stored{}
	layer := static.NewLayer(content, types.MediaType(k.mediaType))
	ldig, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	if !r.NoTag {
		tag := cosignTag(subj.Ref, k.suffix)
		base, err := remote.Image(tag, opts...)
		if err != nil {
			if !isNotFound(err) {
				return nil, fmt.Errorf("read %s: %w", tag, err)
			}
			base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		}
		m, err := base.Manifest()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", tag, err)
		}
		if len(m.Layers) >= MaxSignatures {
			return nil, fmt.Errorf("%s already holds %d entries, the most moat writes", tag, len(m.Layers))
		}
		dup := false
		for _, l := range m.Layers {
			if l.Digest == ldig && l.Annotations[SignatureAnnotation] == ann[SignatureAnnotation] {
				dup = true
			}
		}
		if !dup {
			img, err := mutate.Append(base, mutate.Addendum{Layer: layer, Annotations: ann})
			if err != nil {
				return nil, err
			}
			if err := remote.Write(tag, img, opts...); err != nil {
				return nil, fmt.Errorf("write %s: %w", tag, err)
			}
		}
		out.Tag = tag.String()
	}
	if !r.NoReferrers {
		// As cosign does, the config is "{}" with the artifact type as its
		// media type, so registries that derive artifactType from
		// config.mediaType (pre-1.1 drafts) list it the same way.
		emptyCfg := static.NewLayer([]byte("{}"), types.MediaType(k.artifactType))
		for _, l := range []v1.Layer{emptyCfg, layer} {
			if err := remote.WriteLayer(subj.Ref.Context(), l, opts...); err != nil {
				return nil, fmt.Errorf("upload to %s: %w", subj.Ref.Context(), err)
			}
		}
		cdig, _ := emptyCfg.Digest()
		man := map[string]any{
			"schemaVersion": 2,
			"mediaType":     types.OCIManifestSchema1,
			"artifactType":  k.artifactType,
			"config":        v1.Descriptor{MediaType: types.MediaType(k.artifactType), Digest: cdig, Size: 2},
			"layers": []v1.Descriptor{{MediaType: types.MediaType(k.mediaType), Digest: ldig,
				Size: int64(len(content)), Annotations: ann}},
			"subject":     subj.Descriptor,
			"annotations": map[string]string{"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339)},
		}
		raw, err := json.Marshal(man)
		if err != nil {
			return nil, err
		}
		h, _, _ := v1.SHA256(bytes.NewReader(raw))
		dst := subj.Ref.Context().Digest(h.String())
		if err := remote.Put(dst, rawManifest{raw, types.OCIManifestSchema1}, opts...); err != nil {
			return nil, fmt.Errorf("write referrer to %s: %w", subj.Ref.Context(), err)
		}
		out.Referrer = h.String()
	}
	return out, nil
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// candidate is one stored layer that may be a signature or attestation.
type candidate struct {
	sources     []string // "tag <name>" and/or "referrer <digest>"
	layer       v1.Descriptor
	annotations map[string]string
	content     []byte
	err         error
}

// ErrNotFound is what a Source returns for a manifest that does not exist
// (an error with a NotFound() bool method reporting true also counts).
var ErrNotFound = errors.New("not found")

func notFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.Is(err, ErrNotFound) || errors.As(err, &nf) && nf.NotFound()
}

// Source is where signatures and attestations are read from: a remote
// registry (Remote) or a registry's own storage (for pull-time checks).
// Every method works within the repository of the image being verified.
type Source interface {
	// Manifest returns the manifest a tag or digest names, or ErrNotFound.
	Manifest(ctx context.Context, ref string) ([]byte, error)
	// Referrers lists the manifests whose subject is digest.
	Referrers(ctx context.Context, digest string) ([]v1.Descriptor, error)
	// Blob returns a blob's content; more than max bytes is an error.
	Blob(ctx context.Context, digest string, max int64) ([]byte, error)
}

// remoteSource reads from a registry with go-containerregistry.
type remoteSource struct {
	repo name.Repository
	opts []remote.Option
}

func (r *Remote) source(ctx context.Context, repo name.Repository) (*remoteSource, error) {
	opts, err := r.pull(ctx, repo.Registry)
	if err != nil {
		return nil, err
	}
	return &remoteSource{repo: repo, opts: opts}, nil
}

func (s *remoteSource) Manifest(ctx context.Context, ref string) ([]byte, error) {
	var nr name.Reference = s.repo.Tag(ref)
	if strings.Contains(ref, ":") {
		nr = s.repo.Digest(ref)
	}
	d, err := remote.Get(nr, s.with(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if len(d.Manifest) > maxManifest {
		return nil, fmt.Errorf("manifest of %d bytes is too large", len(d.Manifest))
	}
	return d.Manifest, nil
}

func (s *remoteSource) Referrers(ctx context.Context, digest string) ([]v1.Descriptor, error) {
	idx, err := remote.Referrers(s.repo.Digest(digest), s.with(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return im.Manifests, nil
}

func (s *remoteSource) Blob(ctx context.Context, digest string, max int64) ([]byte, error) {
	l, err := remote.Layer(s.repo.Digest(digest), s.with(ctx)...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("more than %d bytes", max)
	}
	return data, nil
}

// collect finds the attachments of kind k of the image with digest dgst in
// src: the cosign tag and the referrers API (read in parallel),
// deduplicated, at most MaxSignatures, and downloads their content (at
// most k.maxSize bytes each, digest checked).
func collect(ctx context.Context, src Source, dgst string, noTag, noReferrers bool, k kind) ([]*candidate, error) {
	if noTag && noReferrers {
		return nil, errors.New("nowhere to look: both the cosign tag and the referrers API are turned off")
	}
	var (
		mu    sync.Mutex
		cands []*candidate
		index = map[string]*candidate{}
	)
	// Each new candidate's content is downloaded as soon as it is found,
	// while the other source is still being listed (at most 8 at once).
	dg, dctx := errgroup.WithContext(ctx)
	dg.SetLimit(8)
	download := func(c *candidate) error {
		if c.layer.Size > k.maxSize || c.layer.Size < 0 {
			c.err = fmt.Errorf("layer %s is %d bytes, more than the %d allowed", c.layer.Digest, c.layer.Size, k.maxSize)
			return nil
		}
		data, err := src.Blob(dctx, c.layer.Digest.String(), k.maxSize)
		if err == nil && c.layer.Digest.Algorithm == "sha256" {
			if h, _, _ := v1.SHA256(bytes.NewReader(data)); h != c.layer.Digest {
				err = fmt.Errorf("content does not match its digest")
			}
		}
		if err != nil {
			c.err = fmt.Errorf("fetch layer %s: %w", c.layer.Digest, err)
			return nil
		}
		c.content = data
		return nil
	}
	add := func(from string, l v1.Descriptor) {
		mu.Lock()
		key := l.Digest.String() + "\x00" + l.Annotations[SignatureAnnotation]
		if c, ok := index[key]; ok {
			c.sources = append(c.sources, from)
			mu.Unlock()
			return
		}
		if len(cands) >= MaxSignatures {
			mu.Unlock()
			return
		}
		c := &candidate{sources: []string{from}, layer: l, annotations: l.Annotations}
		index[key] = c
		cands = append(cands, c)
		mu.Unlock()
		dg.Go(func() error { return download(c) })
	}
	g, gctx := errgroup.WithContext(ctx)
	if !noTag {
		g.Go(func() error {
			tag := strings.Replace(dgst, ":", "-", 1) + "." + k.suffix
			raw, err := src.Manifest(gctx, tag)
			if err != nil {
				if notFound(err) {
					return nil
				}
				return fmt.Errorf("read %s: %w", tag, err)
			}
			var m v1.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("read %s: not an image manifest: %w", tag, err)
			}
			for i, l := range m.Layers {
				if i >= MaxSignatures {
					break
				}
				if string(l.MediaType) == k.mediaType {
					add("tag "+tag, l)
				}
			}
			return nil
		})
	}
	if !noReferrers {
		g.Go(func() error {
			descs, err := src.Referrers(gctx, dgst)
			if err != nil {
				return fmt.Errorf("list referrers of %s: %w", dgst, err)
			}
			var want []v1.Descriptor
			for i, d := range descs {
				if i >= MaxReferrers {
					break
				}
				// Sigstore bundles (cosign --new-bundle-format, cosign v3)
				// are told apart by their predicate type once read; the
				// empty type is what a referrers tag fallback may list
				// for them.
				if d.ArtifactType == k.artifactType || isBundleType(d.ArtifactType) || d.ArtifactType == emptyMediaType {
					want = append(want, d)
				}
			}
			rg, rctx := errgroup.WithContext(gctx)
			rg.SetLimit(8)
			for _, d := range want {
				rg.Go(func() error {
					raw, err := src.Manifest(rctx, d.Digest.String())
					if err != nil {
						return fmt.Errorf("read referrer %s: %w", d.Digest, err)
					}
					var m v1.Manifest
					if err := json.Unmarshal(raw, &m); err != nil {
						return fmt.Errorf("referrer %s: not an image manifest: %w", d.Digest, err)
					}
					if m.Subject == nil || m.Subject.Digest.String() != dgst {
						return nil // listed but not about this image: ignore
					}
					bundleIsSig := m.Annotations[BundlePredicateTypeAnnotation] == CosignSignPredicateType
					for _, l := range m.Layers {
						switch {
						case string(l.MediaType) == k.mediaType:
							add("referrer "+d.Digest.String(), l)
						case isBundleType(string(l.MediaType)) && bundleIsSig == (k.suffix == sigKind.suffix):
							if l.Annotations == nil && m.Annotations[BundlePredicateTypeAnnotation] != "" {
								l.Annotations = map[string]string{PredicateTypeAnnotation: m.Annotations[BundlePredicateTypeAnnotation]}
							}
							add("bundle referrer "+d.Digest.String(), l)
						}
					}
					return nil
				})
			}
			return rg.Wait()
		})
	}
	err := g.Wait()
	_ = dg.Wait() // downloads record their errors on their candidate
	if err != nil {
		return nil, err
	}
	// The two listings run concurrently, so the order they were found in
	// is not stable: report tags first, then referrers, each by name.
	for _, c := range cands {
		sort.Slice(c.sources, func(i, j int) bool { return sourceLess(c.sources[i], c.sources[j]) })
	}
	sort.SliceStable(cands, func(i, j int) bool { return sourceLess(cands[i].sources[0], cands[j].sources[0]) })
	return cands, nil
}

// sourceLess orders where a signature was found: the cosign tag before
// referrers, and bundle referrers last.
func sourceLess(a, b string) bool {
	rank := func(s string) int {
		switch {
		case strings.HasPrefix(s, "tag "):
			return 0
		case strings.HasPrefix(s, "referrer "):
			return 1
		}
		return 2
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra < rb
	}
	return a < b
}

// with returns the options for one call: a fresh slice, so that concurrent
// calls never append into a shared backing array.
func (s *remoteSource) with(ctx context.Context) []remote.Option {
	out := make([]remote.Option, 0, len(s.opts)+1)
	return append(append(out, s.opts...), remote.WithContext(ctx))
}
