// Package catalogtest is test support for the catalogers under
// internal/catalog: the helpers their tests share (parse content through a
// Cataloger as a catalog.File, render package lists, table tests and an
// allocation check for Wants, a Wants benchmark and fuzz scaffolding).
//
// It is imported only from _test.go files; it is not part of moat's
// runtime code.
package catalogtest

import (
	"context"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

// Parse checks that c wants path (mode 0644, the size of content), parses
// content as that file and checks that every package has type typ,
// ecosystem eco and the single location path. It returns what Parse
// returned.
func Parse(t testing.TB, c catalog.Cataloger, typ catalog.Type, eco, path string, content []byte) ([]catalog.Package, error) {
	t.Helper()
	if !c.Wants(path, 0o644, int64(len(content))) {
		t.Fatalf("Wants(%q) = false", path)
	}
	pkgs, err := c.Parse(context.Background(), catalog.NewFile(path, 0o644, content))
	for _, p := range pkgs {
		if p.Type != typ || p.Ecosystem != eco {
			t.Errorf("%s: type %q ecosystem %q", p.Name, p.Type, p.Ecosystem)
		}
		if len(p.Locations) != 1 || p.Locations[0].Path != path {
			t.Errorf("%s: locations %+v, want [%s]", p.Name, p.Locations, path)
		}
	}
	return pkgs, err
}

// Summary renders each package with render, in order.
func Summary(pkgs []catalog.Package, render func(catalog.Package) string) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, render(p))
	}
	return out
}

// NameVersion renders a package as "name@version".
func NameVersion(p catalog.Package) string { return p.Name + "@" + p.Version }

// CheckSummary fails t unless the packages, rendered with render, are want.
func CheckSummary(t testing.TB, got []catalog.Package, render func(catalog.Package) string, want []string) {
	t.Helper()
	g := Summary(got, render)
	if !slices.Equal(g, want) {
		t.Errorf("packages:\n got  %q\n want %q", g, want)
	}
}

// ReadTestdata returns the content of testdata/name.
func ReadTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AssertWants checks c.Wants(path, 0644, size) for every path of want.
func AssertWants(t testing.TB, c catalog.Cataloger, size int64, want map[string]bool) {
	t.Helper()
	for path, w := range want {
		if got := c.Wants(path, 0o644, size); got != w {
			t.Errorf("Wants(%q) = %v, want %v", path, got, w)
		}
	}
}

// AssertWantsAllocatesNothing checks that calling c.Wants(path, mode, size)
// for the given paths does not allocate.
func AssertWantsAllocatesNothing(t testing.TB, c catalog.Cataloger, mode fs.FileMode, size int64, paths ...string) {
	t.Helper()
	n := testing.AllocsPerRun(100, func() {
		for _, p := range paths {
			c.Wants(p, mode, size)
		}
	})
	if n != 0 {
		t.Errorf("Wants allocates %v times per run", n)
	}
}

// WantsBenchPaths are typical image paths of several ecosystems.
var WantsBenchPaths = []string{
	"/usr/share/doc/libc6/copyright",
	"/usr/lib/x86_64-linux-gnu/libssl.so.3",
	"/app/node_modules/express/lib/router/index.js",
	"/app/node_modules/express/package.json",
	"/usr/local/lib/python3.12/site-packages/requests-2.31.0.dist-info/METADATA",
	"/usr/local/bundle/specifications/rack-2.2.8.gemspec",
	"/var/www/html/vendor/composer/installed.json",
	"/app/WebApi.deps.json",
}

// BenchmarkWants measures the per-file cost of c.Wants on paths (it runs for
// every file of every layer) and fails if no path is wanted.
func BenchmarkWants(b *testing.B, c catalog.Cataloger, paths []string) {
	n := 0
	for b.Loop() {
		for _, p := range paths {
			if c.Wants(p, 0o644, 1000) {
				n++
			}
		}
	}
	if n == 0 {
		b.Fatal("no path wanted")
	}
}

// FuzzParse fuzzes parse with the file path path. Seeds starting with
// "testdata/" name files whose content is the seed; other seeds are the
// content itself. parse must not panic, and every package it returns must
// pass valid (a non-empty reason fails the fuzz case).
func FuzzParse(f *testing.F, parse func(path string, data []byte) ([]catalog.Package, error), path string, valid func(catalog.Package) string, seeds ...string) {
	f.Helper()
	for _, s := range seeds {
		if strings.HasPrefix(s, "testdata/") {
			b, err := os.ReadFile(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			continue
		}
		f.Add([]byte(s))
	}
	FuzzPackages(f, func(data []byte) ([]catalog.Package, error) { return parse(path, data) }, valid)
}

// FuzzPackages runs the fuzz target of f on parse (seeds are added by the
// caller): parse must not panic, and every package it returns must pass
// valid (a non-empty reason fails the fuzz case).
func FuzzPackages(f *testing.F, parse func(data []byte) ([]catalog.Package, error), valid func(catalog.Package) string) {
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, _ := parse(data)
		for _, p := range pkgs {
			if why := valid(p); why != "" {
				t.Fatalf("%s: %+v", why, p)
			}
		}
	})
}

// HasNameVersion is a FuzzParse check: every package has a name and a
// version.
func HasNameVersion(p catalog.Package) string {
	if p.Name == "" || p.Version == "" {
		return "package without name or version"
	}
	return ""
}

// ValidNameVersion returns a FuzzParse check that the name and version of
// every package pass the cataloger's own validName and validVersion.
func ValidNameVersion(validName, validVersion func(string) bool) func(catalog.Package) string {
	return func(p catalog.Package) string {
		if !validName(p.Name) || !validVersion(p.Version) {
			return "invalid package"
		}
		return ""
	}
}

// Describe renders a package as "name@version", then for each key in
// order: " key" when Metadata[key] is "true", or, for a key written
// "key=", " key=value" when Metadata[key] is not empty; then
// " lic=A<sep>B" when the package has licenses.
func Describe(p catalog.Package, licenseSep string, keys ...string) string {
	s := p.Name + "@" + p.Version
	for _, k := range keys {
		if name, ok := strings.CutSuffix(k, "="); ok {
			if v := p.Metadata[name]; v != "" {
				s += " " + name + "=" + v
			}
		} else if p.Metadata[k] == "true" {
			s += " " + k
		}
	}
	if len(p.Licenses) > 0 {
		s += " lic=" + strings.Join(p.Licenses, licenseSep)
	}
	return s
}

// RequireErr stops the test unless err matches wantErr: nil when wantErr
// is empty, else an error whose text contains wantErr.
func RequireErr(t testing.TB, err error, wantErr string) {
	t.Helper()
	if wantErr == "" && err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
		t.Fatalf("error %v, want one containing %q", err, wantErr)
	}
}

// AssertSplits checks a function that splits a string into a name and a
// version: for each input of want, split must give "name version", or
// report !ok when the wanted result is failed.
func AssertSplits(t testing.TB, split func(string) (name, version string, ok bool), failed string, want map[string]string) {
	t.Helper()
	for in, w := range want {
		n, v, ok := split(in)
		got := n + " " + v
		if !ok {
			got = failed
		}
		if got != w {
			t.Errorf("split(%q) = %q, want %q", in, got, w)
		}
	}
}
