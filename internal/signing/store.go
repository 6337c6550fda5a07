package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
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

// collect finds the attachments of subj of kind k in the cosign tag and
// in the referrers API (both fetched in parallel), deduplicated, at most
// MaxSignatures, and downloads their content (at most k.maxSize bytes each).
func (r *Remote) collect(ctx context.Context, subj *Subject, k kind) ([]*candidate, error) {
	opts, err := r.pull(ctx)
	if err != nil {
		return nil, err
	}
	repo := subj.Ref.Context()
	var (
		mu    sync.Mutex
		cands []*candidate
		index = map[string]*candidate{}
	)
	add := func(src string, l v1.Descriptor) {
		mu.Lock()
		defer mu.Unlock()
		key := l.Digest.String() + "\x00" + l.Annotations[SignatureAnnotation]
		if c, ok := index[key]; ok {
			c.sources = append(c.sources, src)
			return
		}
		if len(cands) >= MaxSignatures {
			return
		}
		c := &candidate{sources: []string{src}, layer: l, annotations: l.Annotations}
		index[key] = c
		cands = append(cands, c)
	}
	g, gctx := errgroup.WithContext(ctx)
	if !r.NoTag {
		g.Go(func() error {
			tag := cosignTag(subj.Ref, k.suffix)
			raw, err := fetchManifest(gctx, tag, opts)
			if err != nil {
				if isNotFound(err) {
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
					add("tag "+tag.TagStr(), l)
				}
			}
			return nil
		})
	}
	if !r.NoReferrers {
		g.Go(func() error {
			idx, err := remote.Referrers(subj.Ref, append(opts, remote.WithContext(gctx))...)
			if err != nil {
				if isNotFound(err) {
					return nil
				}
				return fmt.Errorf("list referrers of %s: %w", subj.Ref, err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				return fmt.Errorf("list referrers of %s: %w", subj.Ref, err)
			}
			var want []v1.Descriptor
			for i, d := range im.Manifests {
				if i >= MaxReferrers {
					break
				}
				if d.ArtifactType == k.artifactType {
					want = append(want, d)
				}
			}
			rg, rctx := errgroup.WithContext(gctx)
			rg.SetLimit(8)
			for _, d := range want {
				rg.Go(func() error {
					raw, err := fetchManifest(rctx, repo.Digest(d.Digest.String()), opts)
					if err != nil {
						return fmt.Errorf("read referrer %s: %w", d.Digest, err)
					}
					var m v1.Manifest
					if err := json.Unmarshal(raw, &m); err != nil {
						return fmt.Errorf("referrer %s: not an image manifest: %w", d.Digest, err)
					}
					if m.Subject == nil || m.Subject.Digest != subj.Descriptor.Digest {
						return nil // listed but not about this image: ignore
					}
					for _, l := range m.Layers {
						if string(l.MediaType) == k.mediaType {
							add("referrer "+d.Digest.String(), l)
						}
					}
					return nil
				})
			}
			return rg.Wait()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Download the content of every candidate.
	dg, dctx := errgroup.WithContext(ctx)
	dg.SetLimit(8)
	for _, c := range cands {
		dg.Go(func() error {
			if c.layer.Size > k.maxSize || c.layer.Size < 0 {
				c.err = fmt.Errorf("layer %s is %d bytes, more than the %d allowed", c.layer.Digest, c.layer.Size, k.maxSize)
				return nil
			}
			l, err := remote.Layer(repo.Digest(c.layer.Digest.String()), append(opts, remote.WithContext(dctx))...)
			if err != nil {
				c.err = fmt.Errorf("fetch layer %s: %w", c.layer.Digest, err)
				return nil
			}
			rc, err := l.Compressed()
			if err != nil {
				c.err = fmt.Errorf("fetch layer %s: %w", c.layer.Digest, err)
				return nil
			}
			defer rc.Close()
			data, err := io.ReadAll(io.LimitReader(rc, k.maxSize+1))
			if err == nil && int64(len(data)) > k.maxSize {
				err = fmt.Errorf("more than %d bytes", k.maxSize)
			}
			if err == nil {
				// Reading to EOF makes go-containerregistry verify the digest.
				_, err = io.Copy(io.Discard, rc)
			}
			if err != nil {
				c.err = fmt.Errorf("fetch layer %s: %w", c.layer.Digest, err)
				return nil
			}
			c.content = data
			return nil
		})
	}
	_ = dg.Wait()
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].sources[0] < cands[j].sources[0] })
	return cands, nil
}

// fetchManifest GETs a manifest, bounded in size.
func fetchManifest(ctx context.Context, ref name.Reference, opts []remote.Option) ([]byte, error) {
	d, err := remote.Get(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	if len(d.Manifest) > maxManifest {
		return nil, fmt.Errorf("manifest of %d bytes is too large", len(d.Manifest))
	}
	return d.Manifest, nil
}
