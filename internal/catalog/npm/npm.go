// Package npm catalogs JavaScript packages: installed packages
// (node_modules/**/package.json) and the lock files of npm
// (package-lock.json and npm-shrinkwrap.json v1–v3), Yarn (classic and berry yarn.lock) and pnpm
// (pnpm-lock.yaml, lockfile versions 5, 6 and 9).
package npm

import (
	"context"
	"errors"
	"io/fs"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Size limits per file kind.
const (
	maxPackageJSON = 4 << 20
	maxLockFile    = 64 << 20
)

// Ecosystem is the OSV ecosystem of npm packages.
const Ecosystem = "npm"

type cataloger struct{}

// New returns the npm cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "npm" }

// Wants accepts package.json files inside a node_modules directory and the
// lock files of npm, Yarn and pnpm outside node_modules.
func (cataloger) Wants(p string, mode fs.FileMode, size int64) bool {
	switch {
	case strings.HasSuffix(p, "/package.json"):
		// Installed packages (under node_modules) and the project's own
		// package.json (an application installed in the image).
		return true
	case strings.HasSuffix(p, "/package-lock.json"),
		strings.HasSuffix(p, "/npm-shrinkwrap.json"),
		strings.HasSuffix(p, "/yarn.lock"),
		strings.HasSuffix(p, "/pnpm-lock.yaml"):
		return !strings.Contains(p, "/node_modules/")
	}
	return false
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) ([]catalog.Package, error) {
	base := f.Path[strings.LastIndexByte(f.Path, '/')+1:]
	limit := int64(maxLockFile)
	if base == "package.json" {
		limit = maxPackageJSON
	}
	data, err := f.Bytes(limit)
	if err != nil {
		return nil, err
	}
	var pkgs []catalog.Package
	switch base {
	case "package.json":
		pkgs, err = parsePackageJSON(f.Path, data)
	case "package-lock.json", "npm-shrinkwrap.json":
		pkgs, err = parsePackageLock(f.Path, base, data)
	case "yarn.lock":
		pkgs, err = parseYarnLock(f.Path, data)
	case "pnpm-lock.yaml":
		pkgs, err = parsePnpmLock(f.Path, data)
	default:
		return nil, errors.New("not a file the npm cataloger reads")
	}
	return pkgs, err
}

// collector gathers the packages of one file, merging duplicates: a package
// listed several times is a dev dependency only if every listing says so.
type collector struct {
	path     string
	lockfile string
	pkgs     []catalog.Package
	index    map[string]int
}

func newCollector(path, lockfile string) *collector {
	return &collector{path: path, lockfile: lockfile, index: map[string]int{}}
}

func (c *collector) add(name, version string, dev, optional bool, licenses []string) {
	if name == "" || version == "" {
		return
	}
	key := name + "\x00" + version
	if i, ok := c.index[key]; ok {
		p := &c.pkgs[i]
		if !dev {
			delete(p.Metadata, "dev")
		}
		if !optional {
			delete(p.Metadata, "optional")
		}
		return
	}
	md := map[string]string{}
	if c.lockfile != "" {
		md["lockfile"] = c.lockfile
	}
	if dev {
		md["dev"] = "true"
	}
	if optional {
		md["optional"] = "true"
	}
	if len(md) == 0 {
		md = nil
	}
	c.index[key] = len(c.pkgs)
	c.pkgs = append(c.pkgs, catalog.Package{
		Name:      name,
		Version:   version,
		Type:      catalog.TypeNpm,
		Ecosystem: Ecosystem,
		Licenses:  licenses,
		Locations: []catalog.Location{{Path: c.path}},
		Metadata:  md,
	})
}

func (c *collector) result() []catalog.Package {
	for i := range c.pkgs {
		if len(c.pkgs[i].Metadata) == 0 {
			c.pkgs[i].Metadata = nil
		}
	}
	catalog.SortByNameVersion(c.pkgs)
	return c.pkgs
}

// splitNameAt splits "name@rest" or "@scope/name@rest" at the '@' that ends
// the package name. ok is false when there is no such '@'.
func splitNameAt(s string) (name, rest string, ok bool) {
	from := 0
	if strings.HasPrefix(s, "@") {
		from = 1
	}
	i := strings.IndexByte(s[from:], '@')
	if i < 0 {
		return s, "", false
	}
	i += from
	return s[:i], s[i+1:], true
}

// validName is a loose check of an npm package name: non-empty, no spaces or
// control characters, a scope only in the "@scope/name" form.
func validName(n string) bool {
	if n == "" || len(n) > 214 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c == 0x7f || c == '"' || c == '\'' {
			return false
		}
	}
	if n[0] == '@' {
		slash := strings.IndexByte(n, '/')
		return slash > 1 && slash < len(n)-1 && strings.Count(n, "/") == 1
	}
	return !strings.Contains(n, "/")
}

// localVersion reports versions that point at local code rather than a
// published package.
func localVersion(v string) bool {
	return strings.HasPrefix(v, "file:") || strings.HasPrefix(v, "link:") ||
		strings.HasPrefix(v, "workspace:") || strings.HasPrefix(v, "portal:")
}
