package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type v1Hash = v1.Hash
type v1IndexManifest = v1.IndexManifest

// splitTag separates an optional ":TAG" (the org.opencontainers.image.ref.name
// annotation) from a layout path.
func splitTag(p string) (string, string) {
	if _, err := os.Stat(p); err == nil {
		return p, ""
	}
	if i := strings.LastIndex(p, ":"); i > 0 && !strings.Contains(p[i:], "/") {
		return p[:i], p[i+1:]
	}
	return p, ""
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

// filterByTag narrows an index to the manifests annotated with tag.
func filterByTag(im *v1.IndexManifest, tag string) (*v1.IndexManifest, error) {
	if tag == "" {
		return im, nil
	}
	out := *im
	out.Manifests = nil
	var tags []string
	for _, d := range im.Manifests {
		if t := d.Annotations[refNameAnnotation]; t != "" {
			tags = append(tags, t)
			if t == tag {
				out.Manifests = append(out.Manifests, d)
			}
		}
	}
	if len(out.Manifests) == 0 {
		return nil, fmt.Errorf("no image tagged %q; tags present: %s", tag, strings.Join(tags, ", "))
	}
	return &out, nil
}

func openLayout(spec string, opts Options) (*Image, error) {
	p, tag := splitTag(spec)
	lp, err := layout.FromPath(p)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading index.json: %w", err)
	}
	imf, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index.json: %w", err)
	}
	imf, err = filterByTag(imf, tag)
	if err != nil {
		return nil, err
	}
	want, err := opts.platform()
	if err != nil {
		return nil, err
	}
	child := func(h v1.Hash) (*v1.IndexManifest, error) {
		sub, err := idx.ImageIndex(h)
		if err != nil {
			return nil, err
		}
		return sub.IndexManifest()
	}
	d, err := selectPlatform(imf, want, child)
	if err != nil {
		return nil, err
	}
	img, err := findImage(idx, d.Digest)
	if err != nil {
		return nil, fmt.Errorf("reading image %s: %w", d.Digest, err)
	}
	im := &Image{Source: "oci", Reference: spec, Digest: d.Digest.String()}
	return im, fromV1(img, im)
}

// archiveIndex maps the members of a tar file to their byte ranges, so blobs
// can be read at random without extracting the archive.
type archiveIndex struct {
	f       *os.File
	members map[string]*io.SectionReader
}

func indexTar(p string) (*archiveIndex, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	ai := &archiveIndex{f: f, members: map[string]*io.SectionReader{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reading archive %s: %w", p, err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			f.Close()
			return nil, err
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		ai.members[name] = io.NewSectionReader(f, off, hdr.Size)
	}
	return ai, nil
}

// tarNames lists up to max member names of a tar file (for sniffing).
func tarNames(p string, max int) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var out []string
	for len(out) < max {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, err
		}
		out = append(out, strings.TrimPrefix(hdr.Name, "./"))
	}
	return out, nil
}

func (ai *archiveIndex) blob(h v1.Hash) (*io.SectionReader, error) {
	sr, ok := ai.members["blobs/"+h.Algorithm+"/"+h.Hex]
	if !ok {
		return nil, fmt.Errorf("blob %s is missing from the archive", h)
	}
	return io.NewSectionReader(sr, 0, sr.Size()), nil
}

func (ai *archiveIndex) bytes(h v1.Hash, limit int64) ([]byte, error) {
	sr, err := ai.blob(h)
	if err != nil {
		return nil, err
	}
	if sr.Size() > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d allowed for metadata", h, sr.Size(), limit)
	}
	return io.ReadAll(sr)
}

const maxMetadata = 8 << 20

// archiveImage is a partial.CompressedImageCore over an OCI archive.
type archiveImage struct {
	ai   *archiveIndex
	desc v1.Descriptor
	raw  []byte
	m    *v1.Manifest
}

func (a *archiveImage) RawConfigFile() ([]byte, error) {
	return a.ai.bytes(a.m.Config.Digest, maxMetadata)
}
func (a *archiveImage) MediaType() (types.MediaType, error) { return a.desc.MediaType, nil }
func (a *archiveImage) RawManifest() ([]byte, error)        { return a.raw, nil }
func (a *archiveImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range a.m.Layers {
		if l.Digest == h {
			return &archiveBlob{ai: a.ai, desc: l}, nil
		}
	}
	if a.m.Config.Digest == h {
		return &archiveBlob{ai: a.ai, desc: a.m.Config}, nil
	}
	return nil, fmt.Errorf("layer %s not in manifest", h)
}

type archiveBlob struct {
	ai   *archiveIndex
	desc v1.Descriptor
}

func (b *archiveBlob) Digest() (v1.Hash, error) { return b.desc.Digest, nil }
func (b *archiveBlob) Compressed() (io.ReadCloser, error) {
	sr, err := b.ai.blob(b.desc.Digest)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(sr), nil
}
func (b *archiveBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *archiveBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }

func openOCIArchive(spec string, opts Options) (*Image, error) {
	p, tag := splitTag(spec)
	ai, err := indexTar(p)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			ai.f.Close()
		}
	}()
	idxSR, found := ai.members["index.json"]
	if !found {
		return nil, errors.New("not an OCI archive: no index.json")
	}
	raw, err := io.ReadAll(io.LimitReader(idxSR, maxMetadata))
	if err != nil {
		return nil, err
	}
	imf, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	imf, err = filterByTag(imf, tag)
	if err != nil {
		return nil, err
	}
	want, err := opts.platform()
	if err != nil {
		return nil, err
	}
	child := func(h v1.Hash) (*v1.IndexManifest, error) {
		b, err := ai.bytes(h, maxMetadata)
		if err != nil {
			return nil, err
		}
		return v1.ParseIndexManifest(bytes.NewReader(b))
	}
	d, err := selectPlatform(imf, want, child)
	if err != nil {
		return nil, err
	}
	mraw, err := ai.bytes(d.Digest, maxMetadata)
	if err != nil {
		return nil, err
	}
	if got, _, err := v1.SHA256(bytes.NewReader(mraw)); err == nil && d.Digest.Algorithm == "sha256" && got != d.Digest {
		return nil, fmt.Errorf("manifest %s does not match its digest (got %s)", d.Digest, got)
	}
	var m v1.Manifest
	if err := json.Unmarshal(mraw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	img, err := partial.CompressedToImage(&archiveImage{ai: ai, desc: d, raw: mraw, m: &m})
	if err != nil {
		return nil, err
	}
	im := &Image{Source: "oci-archive", Reference: spec, Digest: d.Digest.String()}
	if err := fromV1(img, im); err != nil {
		return nil, err
	}
	ok = true
	im.closers = append(im.closers, func() { ai.f.Close() })
	return im, nil
}

// findImage returns the image with digest h from idx or any index nested in it.
func findImage(idx v1.ImageIndex, h v1.Hash) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Digest == h {
			return idx.Image(h)
		}
	}
	for _, d := range im.Manifests {
		if d.MediaType.IsIndex() {
			sub, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := findImage(sub, h); err == nil {
				return img, nil
			}
		}
	}
	return nil, fmt.Errorf("image %s not found in the layout", h)
}
