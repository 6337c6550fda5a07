// Package gobinary finds the Go modules compiled into Go executables, from the
// build information the Go linker embeds (debug/buildinfo).
package gobinary

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"runtime/debug"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Size bounds of the files this cataloger looks at. Smaller files cannot be
// Go executables; larger ones are not worth reading.
const (
	MinSize = 1 << 10
	MaxSize = 1 << 30
)

// Metadata keys set on packages.
const (
	MetaMainModule  = "mainModule"   // "true" on the main module
	MetaDevel       = "devel"        // "true" when the version is "(devel)"
	MetaReplaces    = "replaces"     // "path@version" a dependency replaced
	MetaLocal       = "localReplace" // local directory a dependency was replaced by
	MetaSum         = "sum"          // go.sum hash of the module
	MetaGoToolchain = "goToolchain"  // raw GoVersion ("go1.22.3 X:boringcrypto")
	MetaMainPackage = "mainPackage"  // import path of the main package
)

// buildSettings are the build settings copied to the main module's Metadata.
var buildSettings = []string{"GOOS", "GOARCH", "GOAMD64", "GOARM", "CGO_ENABLED", "vcs", "vcs.revision", "vcs.time", "vcs.modified", "-buildmode"}

type cataloger struct{}

// New returns the Go binary cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "gobinary" }

// Wants selects regular files with an execute bit and a plausible size.
func (cataloger) Wants(_ string, mode fs.FileMode, size int64) bool {
	return mode&0o111 != 0 && size >= MinSize && size <= MaxSize
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) (pkgs []catalog.Package, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			pkgs, err = nil, fmt.Errorf("%s: reading Go build information failed: %v", f.Path, r)
		}
	}()
	return Parse(f.Path, f.ReaderAt(), f.Size)
}

// Executable formats recognised by IsExecutable.
const (
	FormatNone  = ""
	FormatELF   = "elf"
	FormatPE    = "pe"
	FormatMachO = "macho"
)

// Format sniffs the first bytes of r and names the executable format, or
// FormatNone.
func Format(r io.ReaderAt) string {
	var b [4]byte
	if n, _ := r.ReadAt(b[:], 0); n < 4 {
		return FormatNone
	}
	switch {
	case bytes.Equal(b[:], []byte("\x7fELF")):
		return FormatELF
	case b[0] == 'M' && b[1] == 'Z':
		return FormatPE
	case bytes.Equal(b[:3], []byte("\xfe\xed\xfa")) && (b[3] == 0xce || b[3] == 0xcf),
		bytes.Equal(b[1:], []byte("\xfa\xed\xfe")) && (b[0] == 0xce || b[0] == 0xcf),
		bytes.Equal(b[:], []byte("\xca\xfe\xba\xbe")), bytes.Equal(b[:], []byte("\xca\xfe\xba\xbf")):
		// Fat Mach-O shares CAFEBABE with Java class files; buildinfo
		// rejects those as an unrecognised format, handled below.
		return FormatMachO
	}
	return FormatNone
}

// Parse reads the build information of the executable in r (size bytes) and
// returns its modules. Files that are not executables, and executables not
// built by Go, give no packages and no error.
func Parse(path string, r io.ReaderAt, size int64) ([]catalog.Package, error) {
	format := Format(r)
	if format == FormatNone {
		return nil, nil
	}
	if format == FormatELF && !elfMayBeGo(r) {
		return nil, nil
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		switch err.Error() {
		case "not a Go executable", "unrecognized file format":
			// Not Go, or (for CAFEBABE) a Java class file. Malformed
			// headers of a real executable are not worth a warning
			// either: such a file is simply not a Go program.
			return nil, nil
		}
		return nil, fmt.Errorf("%s: reading Go build information: %w", path, err)
	}
	return Packages(path, bi), nil
}

// elfMayBeGo cheaply rules out ELF files that have section headers but no
// .go.buildinfo section (every Go toolchain since 1.13 writes one, and
// stripping symbols keeps it), sparing a scan of their data segment.
func elfMayBeGo(r io.ReaderAt) bool {
	ef, err := elf.NewFile(r)
	if err != nil {
		return true // let buildinfo decide and report
	}
	defer ef.Close()
	if len(ef.Sections) <= 1 {
		return true // no section headers (sstrip): search the data segment
	}
	return ef.Section(".go.buildinfo") != nil
}

// Packages turns build information into packages: the main module, every
// dependency (replacement applied) and the Go standard library as "stdlib".
func Packages(path string, bi *buildinfo.BuildInfo) []catalog.Package {
	loc := []catalog.Location{{Path: path}}
	var pkgs []catalog.Package
	if bi.Main.Path != "" {
		p := modulePackage(loc, &bi.Main)
		p.Metadata[MetaMainModule] = "true"
		if bi.Path != "" && bi.Path != bi.Main.Path {
			p.Metadata[MetaMainPackage] = bi.Path
		}
		for _, s := range bi.Settings {
			for _, k := range buildSettings {
				if s.Key == k && s.Value != "" {
					p.Metadata[k] = s.Value
				}
			}
		}
		pkgs = append(pkgs, p)
	}
	for _, d := range bi.Deps {
		if d == nil || d.Path == "" {
			continue
		}
		pkgs = append(pkgs, modulePackage(loc, d))
	}
	if bi.GoVersion != "" {
		pkgs = append(pkgs, catalog.Package{
			Name:      "stdlib",
			Version:   GoVersionToSemver(bi.GoVersion),
			Type:      catalog.TypeGo,
			Ecosystem: "Go",
			Locations: loc,
			Metadata:  map[string]string{MetaGoToolchain: bi.GoVersion},
		})
	}
	return pkgs
}

func modulePackage(loc []catalog.Location, m *debug.Module) catalog.Package {
	p := catalog.Package{
		Name:      m.Path,
		Version:   m.Version,
		Type:      catalog.TypeGo,
		Ecosystem: "Go",
		Locations: loc,
		Metadata:  map[string]string{},
	}
	sum := m.Sum
	if r := m.Replace; r != nil && r.Path != "" {
		orig := m.Path
		if m.Version != "" {
			orig += "@" + m.Version
		}
		p.Metadata[MetaReplaces] = orig
		if isLocalPath(r.Path) {
			// A directory on the build machine: the module keeps its
			// name but its code is not any published version.
			p.Version = "(devel)"
			p.Metadata[MetaLocal] = r.Path
		} else {
			p.Name, p.Version = r.Path, r.Version
		}
		sum = r.Sum
	}
	if p.Version == "" || p.Version == "(devel)" {
		p.Version = "(devel)"
		p.Metadata[MetaDevel] = "true"
	}
	if sum != "" {
		p.Metadata[MetaSum] = sum
	}
	return p
}

// isLocalPath reports whether a replacement path names a directory (go.mod
// replace directives with a path starting with ./ ../ or /, or a Windows
// drive) rather than a module.
func isLocalPath(p string) bool {
	return strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") ||
		p == "." || p == ".." || strings.HasPrefix(p, `.\`) || strings.HasPrefix(p, `..\`) ||
		(len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/'))
}

// GoVersionToSemver converts a Go toolchain version as recorded in binaries
// to the semantic version form of the Go vulnerability database, with a "v"
// prefix: "go1.22.3" → "v1.22.3", "go1.21" → "v1.21.0", "go1.23rc1" →
// "v1.23.0-rc.1", "go1.22.3 X:boringcrypto" → "v1.22.3". Development builds
// and unrecognised strings are returned unchanged.
func GoVersionToSemver(v string) string {
	raw := v
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		v = v[:i] // " X:experiment" suffixes
	}
	v, ok := strings.CutPrefix(v, "go")
	if !ok {
		return raw
	}
	// Split the prerelease ("rc1", "beta2") off the numeric part.
	num, pre := v, ""
	for _, tag := range []string{"rc", "beta", "alpha"} {
		if i := strings.Index(v, tag); i > 0 {
			num, pre = v[:i], v[i:]
			break
		}
	}
	parts := strings.Split(num, ".")
	if len(parts) == 0 || len(parts) > 3 {
		return raw
	}
	for _, p := range parts {
		if !isDigits(p) {
			return raw
		}
	}
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	out := "v" + strings.Join(parts, ".")
	if pre != "" {
		// "rc1" → "rc.1" so that rc10 sorts after rc9, as the Go
		// vulnerability database writes prereleases ("1.21.0-rc.4").
		i := len(pre)
		for i > 0 && pre[i-1] >= '0' && pre[i-1] <= '9' {
			i--
		}
		if i == len(pre) || !isDigits(pre[i:]) {
			return raw
		}
		out += "-" + pre[:i] + "." + pre[i:]
	}
	return out
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
