// Package imagetest builds container images inside tests: layers written
// with archive/tar, images assembled with go-containerregistry, and written
// out as an OCI layout, an OCI archive or a docker save tarball, or pushed to
// a registry. Nothing comes from a public registry.
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one tar entry.
type File struct {
	Path     string
	Body     string
	Mode     int64 // default 0644 (0755 for dirs)
	Type     byte  // tar.TypeReg by default
	Linkname string
}

// Dir, Symlink, Hardlink, Whiteout and Opaque build special entries.
func Dir(p string) File               { return File{Path: p, Type: tar.TypeDir} }
func Symlink(p, target string) File   { return File{Path: p, Type: tar.TypeSymlink, Linkname: target} }
func Hardlink(p, target string) File  { return File{Path: p, Type: tar.TypeLink, Linkname: target} }
func Whiteout(p string) File          { d, b := filepath.Split(p); return File{Path: d + ".wh." + b} }
func Opaque(dir string) File          { return File{Path: strings.TrimSuffix(dir, "/") + "/.wh..wh..opq"} }
func Exec(p string, body []byte) File { return File{Path: p, Body: string(body), Mode: 0o755} }
func Text(p, body string) File        { return File{Path: p, Body: body} }

// Tar writes the entries as an uncompressed tar.
func Tar(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Typeflag: typ, Mode: mode, Linkname: f.Linkname, ModTime: time.Unix(1700000000, 0)}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", f.Path, err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, f.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is a gzip-compressed layer of the entries.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	b := Tar(t, files...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ZstdLayer is a zstd-compressed layer of the entries.
func ZstdLayer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	b := Tar(t, files...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompression("zstd"), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Step is a layer with the history line that made it.
type Step struct {
	Layer     v1.Layer
	CreatedBy string
}

// Image assembles an OCI image from layers, bottom first.
func Image(t testing.TB, steps ...Step) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, s := range steps {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: s.Layer, MediaType: mustMT(t, s.Layer), History: v1.History{CreatedBy: s.CreatedBy, Created: v1.Time{Time: time.Unix(1700000000, 0)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(1700000000, 0)}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustMT(t testing.TB, l v1.Layer) types.MediaType {
	mt, err := l.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	if mt == types.DockerLayer {
		return types.OCILayer
	}
	return mt
}

// WithPlatform returns img with its config's platform set.
func WithPlatform(t testing.TB, img v1.Image, os, arch, variant string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = os, arch, variant
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// WriteLayout writes img (or an index) to a new OCI layout directory.
func WriteLayout(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteIndexLayout writes a multi-platform index to a new OCI layout.
func WriteIndexLayout(t testing.TB, idx v1.ImageIndex) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Index builds a multi-platform index of images (their config platform is
// copied into the descriptors).
func Index(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, adds...)
}

// WriteOCIArchive writes img as an OCI archive (a tar of an OCI layout).
func WriteOCIArchive(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := WriteLayout(t, img, "")
	out := filepath.Join(t.TempDir(), "image.oci.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// WriteDockerArchive writes img as a docker save tarball tagged tag.
func WriteDockerArchive(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.docker.tar")
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		t.Fatal(err)
	}
	return out
}
