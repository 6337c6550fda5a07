// Package image opens container images from every place users keep them and
// reads their layers once, streaming, into per-layer results that the scan
// pipeline squashes into the final filesystem view.
//
// Sources (see Open): a registry reference, an OCI image layout directory
// (oci:PATH), an OCI archive (oci-archive:PATH), a docker save tarball
// (docker-archive:PATH), an image held by a local Docker engine
// (docker:NAME), and a plain root filesystem directory (dir:PATH).
package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options tune how a source is opened.
type Options struct {
	// Platform selects an image from a multi-platform index ("linux/arm64",
	// "linux/arm/v7"); empty means the host's (linux/GOARCH).
	Platform string
	// Insecure allows plain HTTP to a registry.
	Insecure bool
	// Keychain resolves registry credentials; nil means ~/.docker/config.json
	// and Docker credential helpers.
	Keychain authn.Keychain
	// Transport overrides the HTTP transport for registries; nil means a
	// RegistryTransport (system roots plus the certs.d directories).
	Transport http.RoundTripper
	// DockerHost overrides DOCKER_HOST for the docker: source.
	DockerHost string
}

// Layer is one layer of an image, bottom first.
type Layer struct {
	Index     int
	DiffID    string
	Digest    string
	MediaType string
	Size      int64
	CreatedBy string
	open      func() (io.ReadCloser, error)
}

// Image is an opened image source.
type Image struct {
	// Name is what the user asked for; Source the kind of source
	// ("registry", "oci", "oci-archive", "docker-archive", "docker", "dir").
	Name   string
	Source string
	// Reference is the resolved reference ("registry/repo:tag" or a path).
	Reference string
	// Digest is the manifest digest when the source has one; ImageID the
	// config digest.
	Digest   string
	ImageID  string
	Platform string
	Config   *v1.ConfigFile
	Layers   []Layer
	// Dir is set for dir: sources.
	Dir string

	// stream, when set, reads every layer in one pass (docker engine).
	stream func(ctx context.Context, visit func(key string, r io.Reader) error) error
	// streamKeys maps layer index → key passed to visit.
	streamKeys []string
	closers    []func()
}

// Close releases what the source holds open.
func (im *Image) Close() {
	for _, c := range im.closers {
		c()
	}
	im.closers = nil
}

// HostPlatform is the default platform: linux on the host's architecture.
func HostPlatform() string {
	p := "linux/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		p += "/v7"
	}
	return p
}

func (o Options) platform() (*v1.Platform, error) {
	s := o.Platform
	if s == "" {
		s = HostPlatform()
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return nil, fmt.Errorf("--platform %q: %w (expected os/arch[/variant], e.g. linux/amd64)", s, err)
	}
	return p, nil
}

// Open resolves spec to an image source. A spec with a known prefix
// (oci:, oci-archive:, docker-archive:, docker:, dir:, registry:) names its
// source; a bare existing path is sniffed (directory with oci-layout → OCI
// layout, other directory → root filesystem, tar with manifest.json →
// docker archive, tar with index.json → OCI archive); anything else is a
// registry reference.
func Open(ctx context.Context, spec string, opts Options) (*Image, error) {
	kind, rest := splitSpec(spec)
	if kind == "" {
		var err error
		kind, err = sniff(spec)
		if err != nil {
			return nil, err
		}
		rest = spec
	}
	var im *Image
	var err error
	switch kind {
	case "registry":
		im, err = openRemote(ctx, rest, opts)
	case "oci":
		im, err = openLayout(rest, opts)
	case "oci-archive":
		im, err = openOCIArchive(rest, opts)
	case "docker-archive":
		im, err = openDockerArchive(rest)
	case "docker":
		im, err = openDaemon(ctx, rest, opts)
	case "dir":
		im, err = openDir(rest)
	default:
		return nil, fmt.Errorf("unknown image source %q", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	im.Name = spec
	if im.Source == "" {
		im.Source = kind
	}
	return im, nil
}

var prefixes = []string{"oci-archive", "docker-archive", "oci", "docker", "dir", "registry"}

func splitSpec(spec string) (string, string) {
	for _, p := range prefixes {
		if strings.HasPrefix(spec, p+":") {
			return p, spec[len(p)+1:]
		}
	}
	return "", spec
}

func sniff(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "registry", nil
		}
		return "", err
	}
	if st.IsDir() {
		if _, err := os.Stat(p + "/oci-layout"); err == nil {
			return "oci", nil
		}
		return "dir", nil
	}
	names, err := tarNames(p, 64)
	if err != nil {
		return "", fmt.Errorf("%s is neither a directory nor a readable image archive: %w", p, err)
	}
	for _, n := range names {
		if n == "manifest.json" {
			return "docker-archive", nil
		}
	}
	for _, n := range names {
		if n == "index.json" || n == "oci-layout" {
			return "oci-archive", nil
		}
	}
	return "", fmt.Errorf("%s: a tar archive but neither a docker save tarball (no manifest.json) nor an OCI archive (no index.json)", p)
}

// fromV1 fills an Image from a go-containerregistry image.
func fromV1(img v1.Image, im *Image) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading image config: %w", err)
	}
	mt, err := img.MediaType()
	if err == nil && !isImageManifest(mt) {
		return fmt.Errorf("not a container image: manifest media type %s", mt)
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	if m.Config.MediaType != "" && !isImageConfig(m.Config.MediaType) {
		return fmt.Errorf("not a container image: config media type %s (an OCI artifact?)", m.Config.MediaType)
	}
	if d, err := img.Digest(); err == nil && im.Digest == "" {
		im.Digest = d.String()
	}
	if d, err := img.ConfigName(); err == nil {
		im.ImageID = d.String()
	}
	im.Config = cfg
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("config lists %d layers but the manifest %d", len(cfg.RootFS.DiffIDs), len(layers))
	}
	hist := layerHistory(cfg)
	for i, l := range layers {
		l := l
		lmt, _ := l.MediaType()
		d, _ := l.Digest()
		sz, _ := l.Size()
		ly := Layer{Index: i, DiffID: cfg.RootFS.DiffIDs[i].String(), Digest: d.String(), MediaType: string(lmt), Size: sz}
		if i < len(hist) {
			ly.CreatedBy = hist[i]
		}
		if uncompressedMediaType(lmt) {
			ly.open = l.Uncompressed
		} else {
			ly.open = l.Compressed
		}
		im.Layers = append(im.Layers, ly)
	}
	if cfg.OS != "" {
		im.Platform = cfg.OS + "/" + cfg.Architecture
		if cfg.Variant != "" {
			im.Platform += "/" + cfg.Variant
		}
	}
	return nil
}

// layerHistory returns the created_by line of each non-empty layer.
func layerHistory(cfg *v1.ConfigFile) []string {
	var out []string
	for _, h := range cfg.History {
		if h.EmptyLayer {
			continue
		}
		out = append(out, strings.TrimSpace(h.CreatedBy))
	}
	return out
}

func isImageManifest(mt types.MediaType) bool {
	return mt == types.OCIManifestSchema1 || mt == types.DockerManifestSchema2 || mt == ""
}

func isImageConfig(mt types.MediaType) bool {
	return mt == types.OCIConfigJSON || mt == types.DockerConfigJSON
}

func uncompressedMediaType(mt types.MediaType) bool {
	s := string(mt)
	return s == string(types.OCIUncompressedLayer) || s == string(types.DockerUncompressedLayer) ||
		s == string(types.OCIUncompressedRestrictedLayer)
}

// knownLayerType reports whether a layer media type carries a tar.
func knownLayerType(mt string) bool {
	return mt == "" || strings.Contains(mt, "tar") || strings.Contains(mt, "rootfs.diff")
}

// selectPlatform picks the manifest for want from an index, looking into
// nested indexes through child, and lists what is offered when nothing
// matches.
func selectPlatform(im *v1.IndexManifest, want *v1.Platform, child func(v1.Hash) (*v1.IndexManifest, error)) (v1.Descriptor, error) {
	var cands []v1.Descriptor
	if err := flattenIndex(im, child, &cands, 0); err != nil {
		return v1.Descriptor{}, err
	}
	if len(cands) == 1 && cands[0].Platform == nil {
		return cands[0], nil
	}
	var offered []string
	for _, d := range cands {
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue // buildkit attestation manifests
		}
		offered = append(offered, d.Platform.String())
		if d.Platform.OS == want.OS && d.Platform.Architecture == want.Architecture &&
			(want.Variant == "" || d.Platform.Variant == want.Variant) {
			return d, nil
		}
	}
	if len(offered) == 0 {
		return v1.Descriptor{}, errors.New("the index holds no image with a platform")
	}
	return v1.Descriptor{}, fmt.Errorf("no image for platform %s in this index; it offers: %s (choose one with --platform)", want, strings.Join(offered, ", "))
}

func flattenIndex(im *v1.IndexManifest, child func(v1.Hash) (*v1.IndexManifest, error), out *[]v1.Descriptor, depth int) error {
	if depth > 8 {
		return errors.New("image indexes nested more than 8 deep")
	}
	for _, d := range im.Manifests {
		if d.MediaType.IsIndex() {
			if child == nil {
				continue
			}
			sub, err := child(d.Digest)
			if err != nil {
				return fmt.Errorf("reading nested index %s: %w", d.Digest, err)
			}
			if err := flattenIndex(sub, child, out, depth+1); err != nil {
				return err
			}
			continue
		}
		if d.MediaType == "" || d.MediaType.IsImage() {
			*out = append(*out, d)
		}
	}
	return nil
}

// Open returns the layer's stream: compressed or not, as the source stores
// it; Decompress (used by WalkLayer) sniffs which.
func (l Layer) Open() (io.ReadCloser, error) {
	if !knownLayerType(l.MediaType) {
		return nil, fmt.Errorf("unsupported layer media type %q (not a tar layer)", l.MediaType)
	}
	if l.open == nil {
		return nil, errors.New("layer has no content in this source")
	}
	return l.open()
}

// Streamed reports whether the layers can only be read in one pass with
// Stream (docker: sources), rather than opened one by one.
func (im *Image) Streamed() bool { return im.stream != nil }

// Stream reads every layer in one pass. visit gets each layer with a key;
// after Stream returns, Layers describes the image and StreamKeys()[i] is
// the key of layer i.
func (im *Image) Stream(ctx context.Context, visit func(key string, r io.Reader) error) error {
	if im.stream == nil {
		return errors.New("this source is not streamed")
	}
	return im.stream(ctx, visit)
}

// StreamKeys maps layer index to the key Stream passed to visit.
func (im *Image) StreamKeys() []string { return im.streamKeys }
