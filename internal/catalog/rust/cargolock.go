package rust

import (
	"errors"
	"fmt"

	"github.com/BurntSushi/toml"
	"github.com/moat-dev/moat/internal/catalog"
)

type cargoLock struct {
	Version int            `toml:"version"`
	Package []cargoPackage `toml:"package"`
}

type cargoPackage struct {
	Name     string `toml:"name"`
	Version  string `toml:"version"`
	Source   string `toml:"source"`
	Checksum string `toml:"checksum"`
}

// ParseCargoLock reads a Cargo.lock (all formats: the unversioned v1/v2 and
// "version = 3" or 4) and returns one package per [[package]]. Packages
// without a source (workspace members and path dependencies) get
// Metadata["source"] = "local". Entries lacking a name or version are
// skipped and reported in the error. Locations are left empty.
func ParseCargoLock(data []byte) ([]catalog.Package, error) {
	var lock cargoLock
	if _, err := toml.Decode(string(data), &lock); err != nil {
		return nil, fmt.Errorf("not a valid Cargo.lock: %w", err)
	}
	var pkgs []catalog.Package
	var errs []error
	seen := map[string]bool{}
	for i, cp := range lock.Package {
		if cp.Name == "" || cp.Version == "" {
			errs = append(errs, fmt.Errorf("[[package]] #%d (%q) lacks a name or version", i+1, cp.Name))
			continue
		}
		p := newPackage(cp.Name, cp.Version)
		p.Metadata[MetaSource] = cp.Source
		if cp.Source == "" {
			p.Metadata[MetaSource] = "local"
		}
		if cp.Checksum != "" {
			p.Metadata[MetaChecksum] = cp.Checksum
		}
		k := p.Key() + "\x00" + cp.Source
		if seen[k] {
			continue
		}
		seen[k] = true
		pkgs = append(pkgs, p)
	}
	if lock.Version > 4 {
		errs = append(errs, fmt.Errorf("Cargo.lock format version %d is newer than the versions known (1-4); packages may be incomplete", lock.Version))
	}
	return pkgs, errors.Join(errs...)
}
