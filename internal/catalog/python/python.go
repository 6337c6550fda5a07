// Package python catalogs Python packages: installed distributions
// (*.dist-info/METADATA, *.egg-info/PKG-INFO, *.egg-info files) and the lock
// files of Poetry (poetry.lock), uv (uv.lock), Pipenv (Pipfile.lock) and pip
// (requirements*.txt, pinned versions only).
package python

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Ecosystem is the OSV ecosystem of Python packages.
const Ecosystem = "PyPI"

// Size limits per file kind.
const (
	maxMetadata = 1 << 20
	maxLockFile = 64 << 20
)

type cataloger struct{}

// New returns the Python cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "python" }

type kind int

const (
	kindNone kind = iota
	kindMetadata
	kindPoetry
	kindPipfile
	kindRequirements
	kindUV
)

func classify(p string) kind {
	switch {
	case strings.HasSuffix(p, ".dist-info/METADATA"),
		strings.HasSuffix(p, ".egg-info/PKG-INFO"),
		strings.HasSuffix(p, "/EGG-INFO/PKG-INFO"),
		strings.HasSuffix(p, ".egg-info"):
		return kindMetadata
	}
	base := p[strings.LastIndexByte(p, '/')+1:]
	var k kind
	switch {
	case base == "poetry.lock":
		k = kindPoetry
	case base == "uv.lock":
		k = kindUV
	case base == "Pipfile.lock":
		k = kindPipfile
	case strings.HasPrefix(base, "requirements") && strings.HasSuffix(base, ".txt"):
		k = kindRequirements
	default:
		return kindNone
	}
	// Lock files shipped inside installed packages describe their own
	// development, not what is installed in the image.
	if strings.Contains(p, "/site-packages/") || strings.Contains(p, "/dist-packages/") ||
		strings.Contains(p, "/node_modules/") {
		return kindNone
	}
	return k
}

// Wants accepts installed-distribution metadata and Python lock files.
func (cataloger) Wants(p string, mode fs.FileMode, size int64) bool {
	return classify(p) != kindNone
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) ([]catalog.Package, error) {
	k := classify(f.Path)
	limit := int64(maxLockFile)
	if k == kindMetadata {
		limit = maxMetadata
	}
	data, err := f.Bytes(limit)
	if err != nil {
		return nil, err
	}
	switch k {
	case kindMetadata:
		return parseMetadata(f.Path, data)
	case kindPoetry:
		return parsePoetryLock(f.Path, data)
	case kindPipfile:
		return parsePipfileLock(f.Path, data)
	case kindRequirements:
		return parseRequirements(f.Path, data)
	case kindUV:
		return parseUVLock(f.Path, data)
	}
	return nil, errors.New("not a file the python cataloger reads")
}

// NormalizeName returns the PEP 503 normalized form of a project name:
// lowercase, with every run of '-', '_' and '.' replaced by a single '-'.
func NormalizeName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	sep := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_' || c == '.':
			sep = true
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		b.WriteByte(c)
	}
	if sep {
		b.WriteByte('-')
	}
	return b.String()
}

// validName reports whether n is a valid project name (PEP 508):
// ASCII letters, digits, '-', '_', '.', starting and ending alphanumeric.
func validName(n string) bool {
	if n == "" || len(n) > 256 {
		return false
	}
	alnum := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return alnum(n[0]) && alnum(n[len(n)-1])
}

// validVersion is a loose check: no spaces or control characters.
func validVersion(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] == 0x7f {
			return false
		}
	}
	return true
}

func newPackage(path, name, version string, licenses []string, md map[string]string) catalog.Package {
	if md == nil {
		md = map[string]string{}
	}
	md["normalized"] = NormalizeName(name)
	return catalog.Package{
		Name:      name,
		Version:   version,
		Type:      catalog.TypePyPI,
		Ecosystem: Ecosystem,
		Licenses:  licenses,
		Locations: []catalog.Location{{Path: path}},
		Metadata:  md,
	}
}

// collector gathers the packages of one lock file, merging duplicates (dev
// only when every listing is dev).
type collector struct {
	path, lockfile string
	pkgs           []catalog.Package
	index          map[string]int
}

func newCollector(path, lockfile string) *collector {
	return &collector{path: path, lockfile: lockfile, index: map[string]int{}}
}

func (c *collector) add(name, version string, dev bool, extra map[string]string) {
	key := NormalizeName(name) + "\x00" + version
	if i, ok := c.index[key]; ok {
		if !dev {
			delete(c.pkgs[i].Metadata, "dev")
		}
		return
	}
	md := map[string]string{"lockfile": c.lockfile}
	for k, v := range extra {
		md[k] = v
	}
	if dev {
		md["dev"] = "true"
	}
	c.index[key] = len(c.pkgs)
	c.pkgs = append(c.pkgs, newPackage(c.path, name, version, nil, md))
}

func (c *collector) result() []catalog.Package {
	slices.SortFunc(c.pkgs, func(a, b catalog.Package) int {
		return cmp.Or(cmp.Compare(a.Metadata["normalized"], b.Metadata["normalized"]), cmp.Compare(a.Version, b.Version))
	})
	return c.pkgs
}

// summarize joins the first few problems of a file into one message.
func summarize(problems []string) string {
	const max = 5
	if len(problems) <= max {
		return strings.Join(problems, "; ")
	}
	return strings.Join(problems[:max], "; ") + "; and more"
}
