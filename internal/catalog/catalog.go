// Package catalog defines what a package is and how catalogers find packages
// in the files of an image.
//
// The image walker (internal/image) streams every layer once. For each regular
// file it asks every Cataloger whether it Wants the file (a cheap test on the
// path, mode and size); the content of wanted files is handed to Parse, once per
// layer that wrote the file. The scan pipeline (internal/scan) then keeps only
// the results of files visible in the final, squashed filesystem and fills in
// the layer that introduced each package, the OSV ecosystem and the purl
// (see Finalize).
package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
)

// Type is the kind of package, named like the purl type that describes it.
type Type string

const (
	TypeDeb      Type = "deb"
	TypeApk      Type = "apk"
	TypeRPM      Type = "rpm"
	TypeGo       Type = "golang"
	TypeNpm      Type = "npm"
	TypePyPI     Type = "pypi"
	TypeMaven    Type = "maven"
	TypeGem      Type = "gem"
	TypeCargo    Type = "cargo"
	TypeComposer Type = "composer"
	TypeNuGet    Type = "nuget"
)

// OSPackage reports whether packages of type t belong to the distribution
// (their OSV ecosystem depends on the detected OS release).
func (t Type) OSPackage() bool { return t == TypeDeb || t == TypeApk || t == TypeRPM }

// Location is a file a package was found in.
type Location struct {
	// Path is absolute and clean, as seen inside the image ("/usr/lib/...").
	// For a package found inside an archive (a jar in a jar) the archive
	// path is joined with "!/" ("/app/app.jar!/BOOT-INF/lib/x.jar").
	Path string `json:"path"`
	// Layer is the index (0 = bottom) of the layer that last wrote Path;
	// -1 when the source has no layers (a plain directory).
	Layer int `json:"layer"`
	// LayerDiffID is the uncompressed digest of that layer ("sha256:...").
	LayerDiffID string `json:"layerDiffID,omitempty"`
}

// Package is one installed package found in an image.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Type    Type   `json:"type"`
	// Ecosystem is the OSV ecosystem string ("Debian:12", "Alpine:v3.20",
	// "Go", "npm", "PyPI", "Maven", ...). Filled by Finalize for OS packages.
	Ecosystem string `json:"ecosystem"`
	// PURL is the package URL. Filled by Finalize.
	PURL string `json:"purl"`

	// Namespace qualifies Name where the ecosystem has one: the Maven group
	// ID, the npm scope is part of Name instead ("@scope/name").
	Namespace string `json:"namespace,omitempty"`

	// SourceName and SourceVersion name the source package for OS packages
	// (dpkg Source:, apk origin, the source RPM). Debian advisories are keyed
	// by source package.
	SourceName    string `json:"sourceName,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	// Epoch is the RPM epoch when set (nil when absent; 0 is a real epoch).
	Epoch *int `json:"epoch,omitempty"`
	// Release and Arch for RPM and dpkg/apk packages.
	Release string `json:"release,omitempty"`
	Arch    string `json:"arch,omitempty"`

	Licenses []string `json:"licenses,omitempty"`

	// Locations are the files the package was found in; the first is the
	// primary one.
	Locations []Location `json:"locations"`

	// Layer is the index of the layer that brought the package in at this
	// version (for a database rewritten by later layers, the lowest layer in
	// which the same name and version were already present); -1 without
	// layers. LayerDiffID and CreatedBy describe that layer.
	Layer       int    `json:"layer"`
	LayerDiffID string `json:"layerDiffID,omitempty"`
	CreatedBy   string `json:"createdBy,omitempty"`

	// Metadata holds ecosystem specifics worth keeping (e.g. "goToolchain",
	// "mainModule", "dev" for lock-file dev dependencies). Keys are stable and
	// documented in docs/scan-json.md.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Key identifies a package within one file: two packages with the same key
// found in the same file are the same package.
func (p *Package) Key() string {
	return string(p.Type) + "\x00" + p.Namespace + "\x00" + p.Name + "\x00" + p.Version
}

// Cataloger finds packages of one ecosystem.
type Cataloger interface {
	// Name is a short stable identifier ("dpkg", "npm", ...).
	Name() string
	// Wants is called for every regular file of every layer, so it must be
	// cheap: decide from the clean absolute path, the mode and the size.
	Wants(path string, mode fs.FileMode, size int64) bool
	// Parse reads one wanted file and returns the packages it declares.
	// It may return packages together with an error for a file that is
	// partly malformed: the packages are kept and the error is reported
	// as a warning naming the image, layer and file. Parse never panics on
	// bad input and must bound its own work (nested archives, huge files).
	Parse(ctx context.Context, f *File) ([]Package, error)
}

// MaxInMemory is the size up to which a wanted file is held in memory;
// larger files are spilled to the scan's private temporary directory.
const MaxInMemory = 32 << 20

// File is the content of one wanted file as handed to Parse.
type File struct {
	Path string
	Mode fs.FileMode
	Size int64

	data    []byte   // content when held in memory
	spilled *os.File // content when spilled to the private temp dir
	tmpDir  string
	once    sync.Once
	local   string
	lerr    error
}

// NewFile wraps in-memory content; used by the walker and by tests.
func NewFile(p string, mode fs.FileMode, data []byte) *File {
	return &File{Path: p, Mode: mode, Size: int64(len(data)), data: data}
}

// NewSpilledFile wraps content already written to a temporary file; the
// caller owns and removes it.
func NewSpilledFile(p string, mode fs.FileMode, f *os.File, size int64, tmpDir string) *File {
	return &File{Path: p, Mode: mode, Size: size, spilled: f, tmpDir: tmpDir}
}

// SetTempDir names the private directory LocalPath may write to.
func (f *File) SetTempDir(dir string) { f.tmpDir = dir }

// Reader returns a reader over the whole content, from the start.
func (f *File) Reader() io.Reader {
	if f.spilled != nil {
		return io.NewSectionReader(f.spilled, 0, f.Size)
	}
	return bytes.NewReader(f.data)
}

// ReaderAt gives random access (zip archives, executables).
func (f *File) ReaderAt() io.ReaderAt {
	if f.spilled != nil {
		return f.spilled
	}
	return bytes.NewReader(f.data)
}

// Bytes returns the content when it is held in memory; for spilled files it
// reads the content, refusing files larger than limit.
func (f *File) Bytes(limit int64) ([]byte, error) {
	if f.spilled == nil {
		if int64(len(f.data)) > limit {
			return nil, fmt.Errorf("%s: %d bytes is larger than the %d bytes this parser accepts", f.Path, len(f.data), limit)
		}
		return f.data, nil
	}
	if f.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes is larger than the %d bytes this parser accepts", f.Path, f.Size, limit)
	}
	b := make([]byte, f.Size)
	_, err := f.spilled.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// LocalPath returns a path on the local filesystem holding the content, for
// libraries that only open files by name (the rpm database). The file lives
// in the scan's private temporary directory and is removed with it.
func (f *File) LocalPath() (string, error) {
	f.once.Do(func() {
		if f.spilled != nil {
			f.local = f.spilled.Name()
			return
		}
		if f.tmpDir == "" {
			f.lerr = errors.New("no private temporary directory for " + f.Path)
			return
		}
		dir, err := os.MkdirTemp(f.tmpDir, "file-")
		if err != nil {
			f.lerr = err
			return
		}
		p := dir + "/" + path.Base(f.Path)
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			f.lerr = err
			return
		}
		f.local = p
	})
	return f.local, f.lerr
}

// Problems collects what was wrong in a partly malformed file, so a parser
// can keep the good records and report the bad ones in one error.
type Problems []string

// Addf records one problem.
func (p *Problems) Addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// Err returns nil without problems, else one error naming the first five
// ("malformed WHAT: a; b; ...; and N more").
func (p Problems) Err(what string) error {
	if len(p) == 0 {
		return nil
	}
	shown := p
	if len(shown) > 5 {
		shown = append(append(Problems{}, p[:5]...), fmt.Sprintf("and %d more", len(p)-5))
	}
	return fmt.Errorf("malformed %s: %s", what, strings.Join(shown, "; "))
}
