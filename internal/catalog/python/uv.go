package python

import (
	"errors"
	"fmt"

	"github.com/BurntSushi/toml"

	"github.com/moat-dev/moat/internal/catalog"
)

type uvLock struct {
	Package []uvPackage `toml:"package"`
}

type uvPackage struct {
	Name                 string             `toml:"name"`
	Version              string             `toml:"version"`
	Source               map[string]any     `toml:"source"`
	Dependencies         []uvDep            `toml:"dependencies"`
	OptionalDependencies map[string][]uvDep `toml:"optional-dependencies"`
	DevDependencies      map[string][]uvDep `toml:"dev-dependencies"`
}

type uvDep struct {
	Name    string `toml:"name"`
	Version string `toml:"version"` // only when several versions are locked
}

// local reports packages that are the project itself or its workspace
// members, or come from a local path rather than an index.
func (p *uvPackage) local() bool {
	for _, k := range []string{"editable", "virtual", "directory", "path"} {
		if _, ok := p.Source[k]; ok {
			return true
		}
	}
	return false
}

// parseUVLock reads uv.lock. Workspace members (editable or virtual
// sources) and local paths are not reported; a package is a dev dependency
// when it is reachable only from the dev-dependencies of workspace members.
func parseUVLock(path string, data []byte) ([]catalog.Package, error) {
	var lock uvLock
	if _, err := toml.Decode(string(data), &lock); err != nil {
		return nil, fmt.Errorf("invalid TOML: %w", err)
	}
	// Index packages by name and name@version for the dependency walk.
	byName := map[string][]int{}
	for i, p := range lock.Package {
		n := NormalizeName(p.Name)
		byName[n] = append(byName[n], i)
	}
	resolve := func(d uvDep) []int {
		cands := byName[NormalizeName(d.Name)]
		if d.Version == "" {
			return cands
		}
		for _, i := range cands {
			if lock.Package[i].Version == d.Version {
				return []int{i}
			}
		}
		return nil
	}
	walk := func(seen []bool, roots []uvDep) {
		var stack []int
		for _, d := range roots {
			stack = append(stack, resolve(d)...)
		}
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[i] {
				continue
			}
			seen[i] = true
			p := &lock.Package[i]
			for _, d := range p.Dependencies {
				stack = append(stack, resolve(d)...)
			}
			for _, ds := range p.OptionalDependencies {
				for _, d := range ds {
					stack = append(stack, resolve(d)...)
				}
			}
		}
	}
	prod := make([]bool, len(lock.Package))
	dev := make([]bool, len(lock.Package))
	var prodRoots, devRoots []uvDep
	hasMembers := false
	for i := range lock.Package {
		p := &lock.Package[i]
		if !p.local() {
			continue
		}
		hasMembers = true
		prodRoots = append(prodRoots, p.Dependencies...)
		for _, ds := range p.OptionalDependencies {
			prodRoots = append(prodRoots, ds...)
		}
		for _, ds := range p.DevDependencies {
			devRoots = append(devRoots, ds...)
		}
	}
	walk(prod, prodRoots)
	walk(dev, devRoots)

	c := newCollector(path, "uv.lock")
	var bad []string
	for i, p := range lock.Package {
		if p.local() {
			continue
		}
		if !validName(p.Name) || !validVersion(p.Version) {
			bad = append(bad, fmt.Sprintf("package %d: invalid name %q or version %q", i+1, catalog.Clip(p.Name), catalog.Clip(p.Version)))
			continue
		}
		c.add(p.Name, p.Version, hasMembers && dev[i] && !prod[i], nil)
	}
	if len(bad) > 0 {
		return c.result(), errors.New(summarize(bad))
	}
	return c.result(), nil
}
