// Package dpkg catalogs Debian packages from the dpkg status database
// (/var/lib/dpkg/status) and from distroless per-package files
// (/var/lib/dpkg/status.d/*).
package dpkg

import (
	"bufio"
	"context"
	"io/fs"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

const maxStatus = 256 << 20

type cataloger struct{}

// New returns the dpkg cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "dpkg" }

func (cataloger) Wants(p string, _ fs.FileMode, _ int64) bool {
	if p == "/var/lib/dpkg/status" {
		return true
	}
	if strings.HasPrefix(p, "/var/lib/dpkg/status.d/") {
		rest := p[len("/var/lib/dpkg/status.d/"):]
		return rest != "" && !strings.Contains(rest, "/") && !strings.HasSuffix(rest, ".md5sums")
	}
	return false
}

func (cataloger) Parse(_ context.Context, f *catalog.File) ([]catalog.Package, error) {
	b, err := f.Bytes(maxStatus)
	if err != nil {
		return nil, err
	}
	return ParseStatus(string(b), f.Path)
}

// ParseStatus parses dpkg status content: RFC 822-style paragraphs. Only
// packages whose status says they are installed are returned; paragraphs
// without a name or version are reported in the error and skipped.
func ParseStatus(s, path string) ([]catalog.Package, error) {
	var pkgs []catalog.Package
	var bad catalog.Problems
	fields := map[string]string{}
	last := ""
	line := 0
	start := 1
	flush := func() {
		if len(fields) == 0 {
			return
		}
		defer func() { fields = map[string]string{}; last = "" }()
		name, ver := fields["package"], fields["version"]
		if st, ok := fields["status"]; ok {
			parts := strings.Fields(st)
			if len(parts) != 3 || (parts[2] != "installed") {
				return // removed, config-files only, half-installed, ...
			}
		}
		if name == "" || ver == "" {
			bad.Addf("paragraph at line %d has no Package or Version", start)
			return
		}
		p := catalog.Package{
			Name: name, Version: ver, Type: catalog.TypeDeb,
			Arch:      fields["architecture"],
			Locations: []catalog.Location{{Path: path}},
		}
		p.SourceName, p.SourceVersion = name, ver
		if src := fields["source"]; src != "" {
			sn, sv, found := strings.Cut(src, " ")
			p.SourceName = sn
			if found {
				sv = strings.TrimSpace(sv)
				sv = strings.TrimSuffix(strings.TrimPrefix(sv, "("), ")")
				if sv != "" {
					p.SourceVersion = sv
				}
			}
		}
		pkgs = append(pkgs, p)
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line++
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			flush()
			start = line + 1
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if last != "" && last != "description" && last != "conffiles" {
				fields[last] += "\n" + strings.TrimSpace(l)
			}
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			bad.Addf("line %d is not a field", line)
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		fields[last] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		bad.Addf("line %d: %v", line+1, err)
	}
	flush()
	return pkgs, bad.Err("dpkg status")
}
