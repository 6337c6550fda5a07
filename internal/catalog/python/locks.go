package python

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/moat-dev/moat/internal/catalog"
)

type poetryLock struct {
	Package []poetryPackage `toml:"package"`
}

type poetryPackage struct {
	Name     string   `toml:"name"`
	Version  string   `toml:"version"`
	Category string   `toml:"category"` // lock-version 1.x: "main" or "dev"
	Groups   []string `toml:"groups"`   // Poetry 2: dependency groups
	Optional bool     `toml:"optional"`
	Source   struct {
		Type string `toml:"type"`
	} `toml:"source"`
}

// parsePoetryLock reads poetry.lock. A package is a dev dependency when its
// category is "dev" (lock format 1.x) or when it belongs to groups other than
// "main" only (Poetry 2). Packages from local directories are skipped.
func parsePoetryLock(path string, data []byte) ([]catalog.Package, error) {
	var lock poetryLock
	if _, err := toml.Decode(string(data), &lock); err != nil {
		return nil, fmt.Errorf("invalid TOML: %w", err)
	}
	c := newCollector(path, "poetry.lock")
	var bad []string
	for i, p := range lock.Package {
		if !validName(p.Name) || !validVersion(p.Version) {
			bad = append(bad, fmt.Sprintf("package %d: invalid name %q or version %q", i+1, catalog.Clip(p.Name), catalog.Clip(p.Version)))
			continue
		}
		if p.Source.Type == "directory" || p.Source.Type == "file" {
			continue
		}
		dev := p.Category == "dev" || (len(p.Groups) > 0 && !slices.Contains(p.Groups, "main"))
		var extra map[string]string
		if p.Optional {
			extra = map[string]string{"optional": "true"}
		}
		if len(p.Groups) > 0 {
			if extra == nil {
				extra = map[string]string{}
			}
			extra["groups"] = strings.Join(p.Groups, ",")
		}
		c.add(p.Name, p.Version, dev, extra)
	}
	if len(bad) > 0 {
		return c.result(), errors.New(summarize(bad))
	}
	return c.result(), nil
}

type pipfileLock struct {
	Default map[string]pipfileEntry `json:"default"`
	Develop map[string]pipfileEntry `json:"develop"`
}

type pipfileEntry struct {
	Version string `json:"version"`
}

// parsePipfileLock reads Pipfile.lock: "default" packages and "develop" (dev)
// packages pinned with "==". Entries without a pin (VCS, editable, path) are
// skipped.
func parsePipfileLock(path string, data []byte) ([]catalog.Package, error) {
	var lock pipfileLock
	decErr := json.Unmarshal(data, &lock)
	if decErr != nil {
		decErr = catalog.JSONError(data, decErr)
		if lock.Default == nil && lock.Develop == nil {
			return nil, decErr
		}
	}
	c := newCollector(path, "Pipfile.lock")
	var bad []string
	for _, sec := range []struct {
		m   map[string]pipfileEntry
		dev bool
	}{{lock.Default, false}, {lock.Develop, true}} {
		names := make([]string, 0, len(sec.m))
		for n := range sec.m {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, name := range names {
			v, ok := strings.CutPrefix(sec.m[name].Version, "==")
			if !ok {
				continue
			}
			v = strings.TrimPrefix(v, "=") // "===" arbitrary equality
			if !validName(name) || !validVersion(v) {
				bad = append(bad, fmt.Sprintf("invalid name %q or version %q", catalog.Clip(name), catalog.Clip(v)))
				continue
			}
			c.add(name, v, sec.dev, nil)
		}
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

// parseRequirements reads a pip requirements file and reports the
// requirements pinned to one version ("name==1.2.3", also with extras and
// environment markers). Options (-r, -c, -e, --index-url, ...), URLs, paths
// and unpinned requirements are skipped.
func parseRequirements(path string, data []byte) ([]catalog.Package, error) {
	c := newCollector(path, path[strings.LastIndexByte(path, '/')+1:])
	var bad []string
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSuffix(lines[i], "\r")
		// Backslash continuation joins the next line.
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + strings.TrimSuffix(lines[i], "\r")
		}
		line = stripComment(line)
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '-' {
			continue
		}
		name, version, ok, err := parsePin(line)
		if err != nil {
			bad = append(bad, fmt.Sprintf("line %d: %v", lineNo, err))
			continue
		}
		if ok {
			c.add(name, version, false, nil)
		}
	}
	if len(bad) > 0 {
		return c.result(), errors.New(summarize(bad))
	}
	return c.result(), nil
}

// stripComment removes a '#' comment at the start of the line or after
// whitespace (a '#' inside a URL fragment is kept, as pip does).
func stripComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

// parsePin reads one requirement line. ok is false for requirements that
// are valid but not pinned to a single version.
func parsePin(line string) (name, version string, ok bool, err error) {
	if strings.Contains(line, "://") || line[0] == '.' || line[0] == '/' || line[0] == '~' || line[0] == '$' {
		return "", "", false, nil // URLs, paths, variables
	}
	req, _, _ := strings.Cut(line, ";") // environment markers
	// Per-requirement options such as --hash follow the specifier.
	if j := strings.Index(req, " -"); j >= 0 {
		req = req[:j]
	}
	if j := strings.Index(req, "\t-"); j >= 0 {
		req = req[:j]
	}
	req = strings.TrimSpace(req)
	end := 0
	for end < len(req) && (isNameByte(req[end])) {
		end++
	}
	name = req[:end]
	rest := strings.TrimSpace(req[end:])
	if !validName(name) {
		return "", "", false, fmt.Errorf("not a requirement: %q", catalog.Clip(line))
	}
	if strings.HasPrefix(rest, "[") {
		close := strings.IndexByte(rest, ']')
		if close < 0 {
			return "", "", false, fmt.Errorf("unclosed extras in %q", catalog.Clip(line))
		}
		rest = strings.TrimSpace(rest[close+1:])
	}
	if strings.HasPrefix(rest, "@") {
		return "", "", false, nil // direct reference "name @ url"
	}
	spec, isPin := strings.CutPrefix(rest, "==")
	if !isPin {
		return "", "", false, nil
	}
	spec = strings.TrimPrefix(spec, "=") // "===" arbitrary equality
	spec = strings.TrimSpace(spec)
	if strings.ContainsAny(spec, ",<>!~=") || strings.HasSuffix(spec, ".*") {
		return "", "", false, nil // a range, not a pin
	}
	if !validVersion(spec) {
		return "", "", false, fmt.Errorf("invalid version in %q", catalog.Clip(line))
	}
	return name, spec, true, nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
