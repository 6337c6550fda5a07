package npm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/catalog"
)

// parseYarnLock reads a yarn.lock of Yarn classic (v1, its own format) or
// Yarn berry (v2 and later, YAML with a __metadata entry).
func parseYarnLock(path string, data []byte) ([]catalog.Package, error) {
	if isBerry(data) {
		return parseYarnBerry(path, data)
	}
	return parseYarnClassic(path, data)
}

func isBerry(data []byte) bool {
	return bytes.HasPrefix(data, []byte("__metadata:")) || bytes.Contains(data, []byte("\n__metadata:"))
}

// parseYarnClassic reads the Yarn v1 format:
//
//	"@babel/code-frame@^7.0.0", "@babel/code-frame@^7.10.4":
//	  version "7.12.13"
//	  resolved "https://registry.yarnpkg.com/..."
func parseYarnClassic(path string, data []byte) ([]catalog.Package, error) {
	c := newCollector(path, "yarn.lock")
	var bad []string
	var (
		inEntry bool
		header  string
		hline   int
		name    string
		skip    bool
		version string
	)
	flush := func() {
		if !inEntry || skip {
			return
		}
		if version == "" {
			bad = append(bad, fmt.Sprintf("line %d: entry %q has no version", hline, header))
			return
		}
		c.add(name, version, false, false, nil)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(strings.TrimLeft(line, " "), "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent == 0 {
			flush()
			inEntry, header, hline, name, skip, version = true, line, n, "", false, ""
			spec, ok := strings.CutSuffix(line, ":")
			if !ok {
				bad = append(bad, fmt.Sprintf("line %d: expected an entry header ending in ':', got %q", n, catalog.Clip(line)))
				inEntry = false
				continue
			}
			first, _, _ := strings.Cut(spec, ",")
			nm, rng, ok := splitNameAt(unquote(strings.TrimSpace(first)))
			if ok {
				if alias, isAlias := strings.CutPrefix(rng, "npm:"); isAlias {
					if real, _, ok2 := splitNameAt(alias); ok2 {
						nm = real // "alias@npm:real@^1.0.0"
					}
				}
			}
			switch {
			case !ok || !validName(nm):
				bad = append(bad, fmt.Sprintf("line %d: cannot read a package name from %q", n, catalog.Clip(first)))
				inEntry = false
			case localVersion(rng):
				skip = true
			}
			name = nm
			continue
		}
		if !inEntry || indent != 2 {
			continue
		}
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		if unquote(key) == "version" {
			version = unquote(strings.TrimSpace(val))
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		bad = append(bad, fmt.Sprintf("line %d: %v", n+1, err))
	}
	pkgs := c.result()
	if len(bad) > 0 {
		return pkgs, errors.New(summarize(bad))
	}
	return pkgs, nil
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

type berryEntry struct {
	Version    string `yaml:"version"`
	Resolution string `yaml:"resolution"`
	LinkType   string `yaml:"linkType"`
}

// parseYarnBerry reads the YAML lock file of Yarn 2 and later. Only packages
// resolved from the npm registry are reported: workspaces, links, portals and
// patched copies (whose unpatched package is listed too) are not.
func parseYarnBerry(path string, data []byte) ([]catalog.Package, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	root := mapping(&doc)
	if root == nil {
		return nil, errors.New("the YAML document is not a mapping of entries")
	}
	c := newCollector(path, "yarn.lock")
	var bad []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, node := root.Content[i], root.Content[i+1]
		key := k.Value
		if key == "__metadata" {
			continue
		}
		var e berryEntry
		if err := node.Decode(&e); err != nil {
			bad = append(bad, fmt.Sprintf("line %d: entry %q: %v", k.Line, catalog.Clip(key), oneLine(err)))
			continue
		}
		res := e.Resolution
		if res == "" {
			bad = append(bad, fmt.Sprintf("line %d: entry %q has no resolution", k.Line, catalog.Clip(key)))
			continue
		}
		name, ref, ok := splitNameAt(res)
		if !ok || !validName(name) {
			bad = append(bad, fmt.Sprintf("line %d: cannot read a package name from resolution %q", k.Line, catalog.Clip(res)))
			continue
		}
		v, isNpm := strings.CutPrefix(ref, "npm:")
		if !isNpm {
			continue
		}
		if e.Version != "" {
			v = e.Version
		}
		c.add(name, v, false, false, nil)
	}
	pkgs := c.result()
	if len(bad) > 0 {
		return pkgs, errors.New(summarize(bad))
	}
	return pkgs, nil
}
