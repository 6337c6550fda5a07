package rust

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/moat-dev/moat/internal/catalog"
)

// SectionName is the section cargo-auditable writes the dependency list to.
const SectionName = ".dep-v0"

// Limits on the embedded dependency list.
const (
	MaxSectionSize = 8 << 20 // compressed
	MaxJSONSize    = 8 << 20 // decompressed
)

// ParseAuditableBinary looks for a cargo-auditable dependency list in an ELF,
// PE or Mach-O executable. Files of other formats, and executables without
// the section, give no packages and no error.
func ParseAuditableBinary(r io.ReaderAt) ([]catalog.Package, error) {
	sec, err := depSection(r)
	if err != nil || sec == nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(sec, MaxSectionSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the %s section: %w", SectionName, err)
	}
	if len(data) > MaxSectionSize {
		return nil, fmt.Errorf("the %s section is larger than %d bytes", SectionName, MaxSectionSize)
	}
	return DecodeDepV0(data)
}

// depSection returns a reader over the .dep-v0 section, or nil.
func depSection(r io.ReaderAt) (io.Reader, error) {
	var magic [4]byte
	if n, _ := r.ReadAt(magic[:], 0); n < 4 {
		return nil, nil
	}
	switch {
	case bytes.Equal(magic[:], []byte("\x7fELF")):
		f, err := elf.NewFile(r)
		if err != nil {
			return nil, nil // not an executable this cataloger can read
		}
		s := f.Section(SectionName)
		if s == nil {
			return nil, nil
		}
		if s.Type == elf.SHT_NOBITS {
			return nil, fmt.Errorf("the %s section has no content", SectionName)
		}
		return s.Open(), nil
	case magic[0] == 'M' && magic[1] == 'Z':
		f, err := pe.NewFile(r)
		if err != nil {
			return nil, nil
		}
		if s := f.Section(SectionName); s != nil {
			return s.Open(), nil
		}
	case bytes.Equal(magic[:3], []byte("\xfe\xed\xfa")), bytes.Equal(magic[1:], []byte("\xfa\xed\xfe")):
		f, err := macho.NewFile(r)
		if err != nil {
			return nil, nil
		}
		if s := f.Section(SectionName); s != nil {
			return s.Open(), nil
		}
	case bytes.Equal(magic[:], []byte("\xca\xfe\xba\xbe")):
		f, err := macho.NewFatFile(r)
		if err != nil {
			return nil, nil // also Java class files
		}
		for _, a := range f.Arches {
			if s := a.Section(SectionName); s != nil {
				return s.Open(), nil
			}
		}
	}
	return nil, nil
}

type depV0 struct {
	Packages []depPackage `json:"packages"`
}

type depPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Source  string `json:"source"`
	Kind    string `json:"kind"`
	Root    bool   `json:"root"`
}

// DecodeDepV0 decompresses (zlib) and decodes the JSON dependency list of
// cargo-auditable: {"packages":[{"name","version","source","kind",
// "dependencies","root"}]}. Locations are left empty.
func DecodeDepV0(compressed []byte) ([]catalog.Package, error) {
	zr, err := zlib.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("the %s section is not zlib data: %w", SectionName, err)
	}
	defer zr.Close()
	js, err := io.ReadAll(io.LimitReader(zr, MaxJSONSize+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing the %s section: %w", SectionName, err)
	}
	if len(js) > MaxJSONSize {
		return nil, fmt.Errorf("the %s section decompresses to more than %d bytes", SectionName, MaxJSONSize)
	}
	var d depV0
	if err := json.Unmarshal(js, &d); err != nil {
		return nil, fmt.Errorf("the %s section is not a cargo-auditable dependency list: %w", SectionName, err)
	}
	var pkgs []catalog.Package
	var errs []error
	seen := map[string]bool{}
	for i, dp := range d.Packages {
		if dp.Name == "" || dp.Version == "" {
			errs = append(errs, fmt.Errorf("%s package #%d (%q) lacks a name or version", SectionName, i+1, dp.Name))
			continue
		}
		p := newPackage(dp.Name, dp.Version)
		if dp.Source != "" {
			p.Metadata[MetaSource] = dp.Source
		}
		if dp.Kind == "build" {
			p.Metadata[MetaKind] = "build"
		}
		if dp.Root {
			p.Metadata[MetaRoot] = "true"
		}
		k := p.Key() + "\x00" + dp.Source + "\x00" + dp.Kind
		if seen[k] {
			continue
		}
		seen[k] = true
		pkgs = append(pkgs, p)
	}
	return pkgs, errors.Join(errs...)
}
