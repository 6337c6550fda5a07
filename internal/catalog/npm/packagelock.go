package npm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

type packageLock struct {
	LockfileVersion int                 `json:"lockfileVersion"`
	Packages        map[string]lockPkg  `json:"packages"`
	Dependencies    map[string]*lockDep `json:"dependencies"`
}

// lockPkg is an entry of the "packages" map of lockfile versions 2 and 3.
type lockPkg struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Dev      bool            `json:"dev"`
	Optional bool            `json:"optional"`
	Link     bool            `json:"link"`
	License  json.RawMessage `json:"license"`
}

// lockDep is an entry of the nested "dependencies" tree of lockfile version 1.
type lockDep struct {
	Version      string              `json:"version"`
	Dev          bool                `json:"dev"`
	Optional     bool                `json:"optional"`
	Dependencies map[string]*lockDep `json:"dependencies"`
}

const nodeModules = "node_modules/"

// parsePackageLock reads package-lock.json (and npm-shrinkwrap-like files of
// the same format). Versions 2 and 3 are read from the "packages" map, version
// 1 from the nested "dependencies" tree.
func parsePackageLock(path, lockfile string, data []byte) ([]catalog.Package, error) {
	var lock packageLock
	decErr := json.Unmarshal(data, &lock)
	if decErr != nil {
		decErr = catalog.JSONError(data, decErr)
		if lock.Packages == nil && lock.Dependencies == nil {
			return nil, decErr
		}
	}
	c := newCollector(path, lockfile)
	var bad []string
	if lock.Packages != nil {
		for key, p := range lock.Packages {
			if key == "" || p.Link {
				continue // the root project and links to workspace folders
			}
			i := strings.LastIndex(key, nodeModules)
			if i < 0 || (i > 0 && key[i-1] != '/') {
				continue // a workspace's own folder, not an installed package
			}
			name := key[i+len(nodeModules):]
			if p.Name != "" {
				name = p.Name // an alias: the key names the alias
			}
			if !validName(name) {
				bad = append(bad, fmt.Sprintf("invalid package name in %q", key))
				continue
			}
			if p.Version == "" || localVersion(p.Version) {
				continue
			}
			c.add(name, p.Version, p.Dev, p.Optional, licenses(p.License))
		}
	} else {
		walkV1(c, lock.Dependencies, &bad)
	}
	pkgs := c.result()
	if decErr != nil {
		return pkgs, decErr
	}
	if len(bad) > 0 {
		return pkgs, errors.New(summarize(bad))
	}
	return pkgs, nil
}

// walkV1 walks the nested dependencies of a version 1 lock file. JSON
// nesting is bounded by the decoder, so the recursion is too.
func walkV1(c *collector, deps map[string]*lockDep, bad *[]string) {
	for name, d := range deps {
		if d == nil {
			continue
		}
		version := d.Version
		realName := name
		if i := strings.LastIndex(name, nodeModules); i >= 0 {
			realName = name[i+len(nodeModules):] // a v2-style key in a v1 tree
		}
		if rest, ok := strings.CutPrefix(version, "npm:"); ok {
			// "alias": {"version": "npm:real-name@1.2.3"}
			n, v, ok := splitNameAt(rest)
			if !ok {
				*bad = append(*bad, fmt.Sprintf("invalid alias version %q of %q", version, name))
				continue
			}
			realName, version = n, v
		}
		switch {
		case !validName(realName):
			*bad = append(*bad, fmt.Sprintf("invalid package name %q", realName))
		case version == "" || localVersion(version):
		default:
			c.add(realName, version, d.Dev, d.Optional, nil)
		}
		walkV1(c, d.Dependencies, bad)
	}
}

// summarize joins the first few problems of a file into one message.
func summarize(problems []string) string {
	const max = 5
	problems = slices.Clone(problems)
	slices.Sort(problems)
	problems = slices.Compact(problems)
	if len(problems) <= max {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more problems", strings.Join(problems[:max], "; "), len(problems)-max)
}
