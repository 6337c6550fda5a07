// Package apk catalogs Alpine packages from the apk installed database.
package apk

import (
	"bufio"
	"context"
	"io/fs"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

const maxDB = 256 << 20

type cataloger struct{}

// New returns the apk cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "apk" }

func (cataloger) Wants(p string, _ fs.FileMode, _ int64) bool {
	return p == "/lib/apk/db/installed" || p == "/usr/lib/apk/db/installed"
}

func (cataloger) Parse(_ context.Context, f *catalog.File) ([]catalog.Package, error) {
	b, err := f.Bytes(maxDB)
	if err != nil {
		return nil, err
	}
	return ParseInstalled(string(b), f.Path)
}

// ParseInstalled parses the apk installed database: blank-line separated
// records of single-letter keys (P name, V version, A arch, o origin,
// L license).
func ParseInstalled(s, path string) ([]catalog.Package, error) {
	var pkgs []catalog.Package
	var bad catalog.Problems
	cur := catalog.Package{}
	line, start := 0, 1
	flush := func() {
		if cur.Name == "" && cur.Version == "" {
			cur = catalog.Package{}
			return
		}
		if cur.Name == "" || cur.Version == "" {
			bad.Addf("record at line %d has no P: or V:", start)
		} else {
			cur.Type = catalog.TypeApk
			if cur.SourceName == "" {
				cur.SourceName = cur.Name
			}
			cur.SourceVersion = cur.Version
			cur.Locations = []catalog.Location{{Path: path}}
			pkgs = append(pkgs, cur)
		}
		cur = catalog.Package{}
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
		if len(l) < 2 || l[1] != ':' {
			bad.Addf("line %d is not KEY:VALUE", line)
			continue
		}
		v := l[2:]
		switch l[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'A':
			cur.Arch = v
		case 'o':
			cur.SourceName = v
		case 'L':
			if v != "" {
				cur.Licenses = strings.Fields(v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		bad.Addf("line %d: %v", line+1, err)
	}
	flush()
	return pkgs, bad.Err("apk database")
}
