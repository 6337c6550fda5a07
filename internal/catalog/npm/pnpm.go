package npm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/catalog"
)

type pnpmLock struct {
	LockfileVersion string
	Packages        map[string]pnpmPkg
	Snapshots       map[string]pnpmSnapshot
	Importers       map[string]pnpmImporterV9
}

type pnpmPkg struct {
	Name     string `yaml:"name"`
	Version  string `yaml:"version"`
	Dev      *bool  `yaml:"dev"`
	Optional bool   `yaml:"optional"`
}

type pnpmSnapshot struct {
	Dependencies         map[string]string `yaml:"dependencies"`
	OptionalDependencies map[string]string `yaml:"optionalDependencies"`
}

type pnpmDepRef struct {
	Version string `yaml:"version"`
}

type pnpmImporterV9 struct {
	Dependencies         map[string]pnpmDepRef `yaml:"dependencies"`
	OptionalDependencies map[string]pnpmDepRef `yaml:"optionalDependencies"`
	DevDependencies      map[string]pnpmDepRef `yaml:"devDependencies"`
}

// parsePnpmLock reads pnpm-lock.yaml. Package keys come in three shapes:
// "/name/1.2.3_peer@1.0.0" (lockfile 5.x), "/name@1.2.3(peer@1.0.0)" (6.x)
// and "name@1.2.3" (9.x, with peer variants under "snapshots").
func parsePnpmLock(path string, data []byte) ([]catalog.Package, error) {
	lock, bad, err := decodePnpm(data)
	if err != nil {
		return nil, err
	}
	c := newCollector(path, "pnpm-lock.yaml")
	var devOnly map[string]bool
	if lock.Snapshots != nil && lock.Importers != nil {
		devOnly = pnpmDevOnly(lock)
	}
	for key, p := range lock.Packages {
		name, version, ok := parsePnpmKey(key)
		if p.Name != "" && p.Version != "" {
			name, version, ok = p.Name, p.Version, true
		} else if ok && p.Version != "" {
			version = p.Version
		}
		if !ok || !validName(name) {
			bad = append(bad, fmt.Sprintf("cannot read a package name and version from key %q", catalog.Clip(key)))
			continue
		}
		if version == "" || localVersion(version) || strings.Contains(version, ":") {
			continue // links, local directories, tarball and git URLs without a version
		}
		dev := false
		if p.Dev != nil {
			dev = *p.Dev
		} else if devOnly != nil {
			dev = devOnly[name+"@"+version]
		}
		c.add(name, version, dev, p.Optional, nil)
	}
	pkgs := c.result()
	if len(bad) > 0 {
		return pkgs, errors.New(summarize(bad))
	}
	return pkgs, nil
}

// decodePnpm decodes the lock file document (pnpm 10 may precede it with a
// separate document for configuration dependencies). Entries are decoded one
// by one so that a bad entry is reported without losing the others.
func decodePnpm(data []byte) (*pnpmLock, []string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root *yaml.Node
	for i := 0; i < 8; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("invalid YAML: %w", err)
		}
		m := mapping(&doc)
		if m == nil {
			continue
		}
		root = m
		if lookup(m, "packages") != nil {
			break
		}
	}
	if root == nil {
		return nil, nil, errors.New("no YAML mapping in the file")
	}
	lock := &pnpmLock{}
	var bad []string
	if n := lookup(root, "lockfileVersion"); n != nil {
		lock.LockfileVersion = n.Value
	}
	lock.Packages = decodeEntries[pnpmPkg](lookup(root, "packages"), "packages", &bad)
	lock.Snapshots = decodeEntries[pnpmSnapshot](lookup(root, "snapshots"), "snapshots", &bad)
	if lock.Snapshots != nil {
		lock.Importers = decodeEntries[pnpmImporterV9](lookup(root, "importers"), "importers", &bad)
	}
	return lock, bad, nil
}

// mapping returns the mapping node n is or holds (through a document or an
// alias), or nil.
func mapping(n *yaml.Node) *yaml.Node {
	for range 4 {
		if n == nil {
			return nil
		}
		switch n.Kind {
		case yaml.MappingNode:
			return n
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return nil
		}
	}
	return nil
}

// lookup returns the value of key in mapping m, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// decodeEntries decodes each value of mapping n into a T, keyed by its key.
// Undecodable entries are reported in bad. A missing section gives nil.
func decodeEntries[T any](n *yaml.Node, section string, bad *[]string) map[string]T {
	m := mapping(n)
	if m == nil {
		if n != nil && n.Tag != "!!null" {
			*bad = append(*bad, fmt.Sprintf("line %d: %s is not a mapping", n.Line, section))
		}
		return nil
	}
	out := make(map[string]T, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		var t T
		if err := v.Decode(&t); err != nil {
			*bad = append(*bad, fmt.Sprintf("line %d: %s entry %q: %v", k.Line, section, catalog.Clip(k.Value), oneLine(err)))
			continue
		}
		out[k.Value] = t
	}
	return out
}

// oneLine flattens yaml.v3's multi-line error messages.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// parsePnpmKey extracts the package name and version from a key of the
// "packages" map in any lockfile version, dropping peer-dependency suffixes.
func parsePnpmKey(key string) (name, version string, ok bool) {
	k, slashed := strings.CutPrefix(key, "/")
	if !slashed {
		// 9.x: name@version, possibly with a peer suffix in snapshots.
		k, _, _ = strings.Cut(k, "(")
		return splitNameAt(k)
	}
	// Decide between 5.x "/name/version" and 6.x "/name@version".
	rest := k
	if strings.HasPrefix(rest, "@") {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[i+1:]
		}
	}
	at, slash := strings.IndexByte(rest, '@'), strings.IndexByte(rest, '/')
	if at >= 0 && (slash < 0 || at < slash) {
		k, _, _ = strings.Cut(k, "(")
		return splitNameAt(k)
	}
	i := strings.LastIndexByte(k, '/')
	if i <= 0 {
		return "", "", false
	}
	name, version = k[:i], k[i+1:]
	version, _, _ = strings.Cut(version, "_")
	version, _, _ = strings.Cut(version, "(")
	return name, version, name != "" && version != ""
}

// pnpmDevOnly computes, for lockfile 9.x (which no longer marks dev
// packages), the packages reachable only from devDependencies of the
// importers. Keys are "name@version".
func pnpmDevOnly(lock *pnpmLock) map[string]bool {
	prod := map[string]bool{}
	dev := map[string]bool{}
	var walk func(seen map[string]bool, snapKey string)
	walk = func(seen map[string]bool, snapKey string) {
		// Iterative to bound stack depth on adversarial input.
		stack := []string{snapKey}
		for len(stack) > 0 {
			k := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[k] {
				continue
			}
			seen[k] = true
			s, ok := lock.Snapshots[k]
			if !ok {
				continue
			}
			for n, v := range s.Dependencies {
				stack = append(stack, snapshotKey(n, v))
			}
			for n, v := range s.OptionalDependencies {
				stack = append(stack, snapshotKey(n, v))
			}
		}
	}
	for _, imp := range lock.Importers {
		for n, r := range imp.Dependencies {
			walk(prod, snapshotKey(n, r.Version))
		}
		for n, r := range imp.OptionalDependencies {
			walk(prod, snapshotKey(n, r.Version))
		}
	}
	for _, imp := range lock.Importers {
		for n, r := range imp.DevDependencies {
			walk(dev, snapshotKey(n, r.Version))
		}
	}
	out := map[string]bool{}
	strip := func(k string) string { base, _, _ := strings.Cut(k, "("); return base }
	prodBase := map[string]bool{}
	for k := range prod {
		prodBase[strip(k)] = true
	}
	for k := range dev {
		if b := strip(k); !prodBase[b] {
			out[b] = true
		}
	}
	return out
}

// snapshotKey is the snapshots key a dependency reference points to:
// "name@ref", or ref itself for an alias ("string-width@4.2.3").
func snapshotKey(name, ref string) string {
	if n, _, ok := splitNameAt(ref); ok && n != "" && !strings.HasPrefix(ref, "link:") && !strings.HasPrefix(ref, "file:") {
		base, _, _ := strings.Cut(ref, "(")
		if strings.Contains(base, "@") {
			return ref
		}
	}
	return name + "@" + ref
}
