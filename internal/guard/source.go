package guard

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
)

// storedImage is an image manifest read from the registry's own metadata
// and blob storage (no HTTP round trip), as a go-containerregistry image.
type storedImage struct {
	ctx    context.Context
	st     *store.Store
	blobs  storage.Driver
	repoID int64
	m      *store.Manifest
	desc   struct {
		Config v1.Descriptor   `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
	}
}

func (g *Guard) openStored(ctx context.Context, repoID int64, m *store.Manifest) (v1.Image, error) {
	si := &storedImage{ctx: ctx, st: g.o.Store, blobs: g.o.Blobs, repoID: repoID, m: m}
	mf, err := v1.ParseManifest(bytesReader(m.Content))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Digest, err)
	}
	si.desc.Config, si.desc.Layers = mf.Config, mf.Layers
	return partial.CompressedToImage(si)
}

func (si *storedImage) RawManifest() ([]byte, error) { return si.m.Content, nil }
func (si *storedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(si.m.MediaType), nil
}

func (si *storedImage) readBlob(dg string, max int64) ([]byte, error) {
	rc, err := si.open(dg)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", dg, max)
	}
	return b, nil
}

func (si *storedImage) open(dg string) (io.ReadCloser, error) {
	if _, err := si.st.BlobSize(si.ctx, si.repoID, dg); err != nil {
		return nil, fmt.Errorf("blob %s is not in the repository: %w", dg, err)
	}
	return si.blobs.Open(si.ctx, dg)
}

func (si *storedImage) RawConfigFile() ([]byte, error) {
	return si.readBlob(si.desc.Config.Digest.String(), 8<<20)
}

func (si *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range si.desc.Layers {
		if l.Digest == h {
			return &storedLayer{si: si, d: l}, nil
		}
	}
	if si.desc.Config.Digest == h {
		return &storedLayer{si: si, d: si.desc.Config}, nil
	}
	return nil, fmt.Errorf("layer %s is not in manifest %s", h, si.m.Digest)
}

type storedLayer struct {
	si *storedImage
	d  v1.Descriptor
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *storedLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error)  { return l.si.open(l.d.Digest.String()) }
