// Package ruby catalogs Ruby gems: installed gem specifications
// (.../specifications/*.gemspec, including default gems) and Bundler's
// Gemfile.lock.
package ruby

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Ecosystem is the OSV ecosystem of Ruby gems.
const Ecosystem = "RubyGems"

// Size limits per file kind.
const (
	maxGemspec  = 1 << 20
	maxLockFile = 64 << 20
)

type cataloger struct{}

// New returns the Ruby cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "ruby" }

func isGemspec(p string) bool {
	return strings.HasSuffix(p, ".gemspec") && strings.Contains(p, "/specifications/")
}

func isGemfileLock(p string) bool {
	// A Gemfile.lock inside an installed gem describes that gem's own
	// development, not what the image runs.
	return strings.HasSuffix(p, "/Gemfile.lock") && !strings.Contains(p, "/gems/") &&
		!strings.Contains(p, "/node_modules/")
}

// Wants accepts installed gemspecs and Gemfile.lock files.
func (cataloger) Wants(p string, mode fs.FileMode, size int64) bool {
	return isGemspec(p) || isGemfileLock(p)
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) ([]catalog.Package, error) {
	switch {
	case isGemspec(f.Path):
		data, err := f.Bytes(maxGemspec)
		if err != nil {
			return nil, err
		}
		return parseGemspec(f.Path, data)
	case isGemfileLock(f.Path):
		data, err := f.Bytes(maxLockFile)
		if err != nil {
			return nil, err
		}
		return parseGemfileLock(f.Path, data)
	}
	return nil, errors.New("not a file the ruby cataloger reads")
}

func newPackage(path, name, version string, licenses []string, md map[string]string) catalog.Package {
	if len(md) == 0 {
		md = nil
	}
	return catalog.Package{
		Name:      name,
		Version:   version,
		Type:      catalog.TypeGem,
		Ecosystem: Ecosystem,
		Licenses:  licenses,
		Locations: []catalog.Location{{Path: path}},
		Metadata:  md,
	}
}

// validName: gem names are ASCII letters, digits, '.', '-' and '_'.
func validName(n string) bool { return catalog.ValidToken(n, 200, ".-_") }

// validVersion: gem versions are ASCII letters, digits, '.' and '-'.
func validVersion(v string) bool {
	return catalog.ValidToken(v, 100, ".-") && '0' <= v[0] && v[0] <= '9'
}

// parseGemspec reads the Ruby source of an installed gem specification,
// as RubyGems writes it:
//
//	# stub: rake 13.0.6 ruby lib
//	Gem::Specification.new do |s|
//	  s.name = "rake".freeze
//	  s.version = "13.0.6"
//	  s.licenses = ["MIT".freeze]
//
// It does not run Ruby: it recognises assignments of string literals to the
// name, version, license(s) and platform attributes, falling back to the
// "# stub:" line for the name and version.
func parseGemspec(path string, data []byte) ([]catalog.Package, error) {
	var name, version, platform, stubName, stubVersion string
	var licenses []string
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		if rest, ok := strings.CutPrefix(t, "# stub:"); ok {
			if fs := strings.Fields(rest); len(fs) >= 2 {
				stubName, stubVersion = fs[0], fs[1]
			}
			continue
		}
		field, expr, ok := assignment(t)
		if !ok {
			continue
		}
		switch field {
		case "name":
			if name == "" {
				name = first(stringLiterals(expr))
			}
		case "version":
			if version == "" {
				version = first(stringLiterals(expr))
			}
		case "platform":
			if platform == "" {
				platform = first(stringLiterals(expr))
			}
		case "license", "licenses":
			// An array literal may span several lines.
			for n := 0; n < 50 && strings.Count(expr, "[") > strings.Count(expr, "]") && i+1 < len(lines); n++ {
				i++
				expr += " " + strings.TrimSpace(lines[i])
			}
			if licenses == nil {
				for _, l := range stringLiterals(expr) {
					if l = strings.TrimSpace(l); l != "" {
						licenses = append(licenses, l)
					}
				}
			}
		}
	}
	if name == "" {
		name = stubName
	}
	if version == "" {
		version = stubVersion
	}
	switch {
	case name == "" || version == "":
		return nil, errors.New("no name or version assignment in the gemspec")
	case !validName(name):
		return nil, fmt.Errorf("invalid gem name %q", catalog.Clip(name))
	case !validVersion(version):
		return nil, fmt.Errorf("invalid gem version %q", catalog.Clip(version))
	}
	var md map[string]string
	if platform != "" && platform != "ruby" {
		md = map[string]string{"platform": platform}
	}
	return []catalog.Package{newPackage(path, name, version, licenses, md)}, nil
}

// assignment recognises "recv.field = expr" where recv is a plain
// identifier (the block variable) and "=" is not part of "==".
func assignment(t string) (field, expr string, ok bool) {
	i := 0
	for i < len(t) && isIdent(t[i]) {
		i++
	}
	if i == 0 || i >= len(t) || t[i] != '.' {
		return "", "", false
	}
	i++
	j := i
	for j < len(t) && isIdent(t[j]) {
		j++
	}
	field = t[i:j]
	rest := strings.TrimLeft(t[j:], " \t")
	if field == "" || !strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "==") {
		return "", "", false
	}
	return field, rest[1:], true
}

func isIdent(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

func first(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}

// stringLiterals returns the string literals of a one-line Ruby
// expression: "..." and '...' (with backslash escapes), %q{...} / %Q(...) /
// %{...} and the words of %w[...] / %W(...), in order. A '#' outside a
// literal ends the expression (a comment).
func stringLiterals(expr string) []string {
	var out []string
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '#':
			return out
		case '"', '\'':
			s, end := quoted(expr, i+1, c)
			out = append(out, s)
			i = end
		case '%':
			j := i + 1
			kind := byte('q')
			if j < len(expr) && strings.IndexByte("qQwW", expr[j]) >= 0 {
				kind = expr[j]
				j++
			}
			if j >= len(expr) {
				return out
			}
			closer, ok := delimiters[expr[j]]
			if !ok {
				continue // the modulo operator
			}
			end := strings.IndexByte(expr[j+1:], closer)
			if end < 0 {
				end = len(expr) - j - 1
			}
			body := expr[j+1 : j+1+end]
			if kind == 'w' || kind == 'W' {
				out = append(out, strings.Fields(body)...)
			} else {
				out = append(out, body)
			}
			i = j + 1 + end
		}
	}
	return out
}

var delimiters = map[byte]byte{'{': '}', '(': ')', '[': ']', '<': '>', '|': '|', '!': '!', '/': '/'}

// quoted reads a literal starting after its opening quote q and returns its
// content and the index of the closing quote (or the end of the input).
func quoted(s string, from int, q byte) (string, int) {
	var b strings.Builder
	for i := from; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == q:
			return b.String(), i
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), len(s)
}

// parseGemfileLock reads the gems resolved from gem servers: the "specs:"
// entries of every GEM section, "    name (version)" or
// "    name (version-platform)". GIT and PATH sections (gems built from
// source checkouts) are not reported.
func parseGemfileLock(path string, data []byte) ([]catalog.Package, error) {
	var pkgs []catalog.Package
	seen := map[string]bool{}
	var bad []string
	section, inSpecs := "", false
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] != ' ' {
			section, inSpecs = strings.TrimSpace(line), false
			continue
		}
		if section != "GEM" {
			continue
		}
		if strings.TrimSpace(line) == "specs:" && strings.HasPrefix(line, "  s") {
			inSpecs = true
			continue
		}
		if !inSpecs || !strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "     ") {
			continue // remote:, or the dependencies of a spec (6 spaces)
		}
		entry := line[4:]
		name, rest, ok := strings.Cut(entry, " (")
		if !ok || !strings.HasSuffix(rest, ")") {
			bad = append(bad, fmt.Sprintf("line %d: expected \"name (version)\", got %q", n, catalog.Clip(entry)))
			continue
		}
		v := strings.TrimSuffix(rest, ")")
		version, platform := splitPlatform(v)
		if !validName(name) || !validVersion(version) {
			bad = append(bad, fmt.Sprintf("line %d: invalid gem name or version in %q", n, catalog.Clip(entry)))
			continue
		}
		key := name + "\x00" + version
		if seen[key] {
			continue // the same version for several platforms
		}
		seen[key] = true
		md := map[string]string{"lockfile": "Gemfile.lock"}
		if platform != "" {
			md["platform"] = platform
		}
		pkgs = append(pkgs, newPackage(path, name, version, nil, md))
	}
	catalog.SortByNameVersion(pkgs)
	if len(bad) > 0 {
		const max = 5
		msg := strings.Join(bad[:min(len(bad), max)], "; ")
		if len(bad) > max {
			msg += fmt.Sprintf("; and %d more", len(bad)-max)
		}
		return pkgs, errors.New(msg)
	}
	return pkgs, nil
}

// splitPlatform separates the platform Bundler appends to the version of a
// platform-specific gem ("1.15.4-x86_64-linux", "9.4.3.0-java"). A hyphen
// that does not introduce a platform is part of the version ("1.0.0-rc1").
func splitPlatform(v string) (version, platform string) {
	version, platform, ok := strings.Cut(v, "-")
	if !ok {
		return v, ""
	}
	switch {
	case strings.Contains(platform, "-"), // cpu-os[-version]
		platform == "java", platform == "jruby", platform == "dalvik",
		strings.HasPrefix(platform, "universal"),
		strings.Contains(platform, "mingw"), strings.Contains(platform, "mswin"):
		return version, platform
	}
	return v, ""
}
