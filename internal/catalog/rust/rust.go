// Package rust finds Rust crates in Cargo.lock files and in executables built
// with cargo-auditable, which embed their dependency list in a .dep-v0
// section.
package rust

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Size bounds of the executables this cataloger looks at.
const (
	MinExecutableSize = 1 << 10
	MaxExecutableSize = 1 << 30
)

// MaxLockSize bounds a Cargo.lock.
const MaxLockSize = 16 << 20

// Metadata keys set on packages.
const (
	// MetaSource is where a crate comes from: the Cargo.lock "source"
	// ("registry+https://github.com/rust-lang/crates.io-index",
	// "git+https://...") or the cargo-auditable source ("crates.io", "git",
	// "local", "registry"); "local" for path and workspace crates.
	MetaSource = "source"
	// MetaChecksum is the Cargo.lock checksum of a registry crate.
	MetaChecksum = "checksum"
	// MetaKind is "build" for a build-time-only dependency of a binary.
	MetaKind = "kind"
	// MetaRoot is "true" on the crate a binary was built from.
	MetaRoot = "root"
)

type cataloger struct{}

// New returns the Rust cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "rust" }

// Wants selects files named Cargo.lock and executables.
func (cataloger) Wants(p string, mode fs.FileMode, size int64) bool {
	if isCargoLock(p) {
		return true
	}
	return mode&0o111 != 0 && size >= MinExecutableSize && size <= MaxExecutableSize
}

func isCargoLock(p string) bool {
	return p == "Cargo.lock" || strings.HasSuffix(p, "/Cargo.lock")
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) (pkgs []catalog.Package, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			pkgs, err = nil, fmt.Errorf("%s: reading Rust packages failed: %v", f.Path, r)
		}
	}()
	if isCargoLock(f.Path) {
		data, err := f.Bytes(MaxLockSize)
		if err != nil {
			return nil, err
		}
		pkgs, err := ParseCargoLock(data)
		setLocation(pkgs, f.Path)
		if err != nil {
			err = fmt.Errorf("%s: %w", f.Path, err)
		}
		return pkgs, err
	}
	pkgs, err = ParseAuditableBinary(f.ReaderAt())
	setLocation(pkgs, f.Path)
	if err != nil {
		err = fmt.Errorf("%s: %w", f.Path, err)
	}
	return pkgs, err
}

func setLocation(pkgs []catalog.Package, p string) {
	loc := []catalog.Location{{Path: p}}
	for i := range pkgs {
		pkgs[i].Locations = loc
	}
}

func newPackage(name, version string) catalog.Package {
	return catalog.Package{
		Name:      name,
		Version:   version,
		Type:      catalog.TypeCargo,
		Ecosystem: "crates.io",
		Metadata:  map[string]string{},
	}
}
