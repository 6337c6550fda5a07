package npm

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

// summary renders a package as "name@version [dev] [optional] [lic=A,B]".
func summary(p catalog.Package) string {
	return catalogtest.Describe(p, ",", "dev", "optional")
}

func parseFile(t *testing.T, path string, data []byte) ([]catalog.Package, error) {
	t.Helper()
	return catalogtest.Parse(t, New(), catalog.TypeNpm, "npm", path, data)
}

func TestProjectPackageJSON(t *testing.T) {
	pkgs, err := parsePackageJSON("/app/package.json", []byte(`{"name":"shop","version":"1.4.2","private":true,"license":"UNLICENSED"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 1 || pkgs[0].Name != "shop" || pkgs[0].Metadata["project"] != "true" || pkgs[0].Metadata["private"] != "true" {
		t.Fatalf("project package.json: %+v", pkgs)
	}
	pkgs, _ = parsePackageJSON("/app/node_modules/x/package.json", []byte(`{"name":"x","version":"1.0.0"}`))
	if len(pkgs) != 1 || pkgs[0].Metadata["project"] != "" {
		t.Fatalf("installed package marked as project: %+v", pkgs)
	}
}

func TestWants(t *testing.T) {
	c := New()
	catalogtest.AssertWants(t, c, 100, map[string]bool{
		"/app/node_modules/express/package.json":                     true,
		"/app/node_modules/@types/node/package.json":                 true,
		"/usr/lib/node_modules/npm/node_modules/semver/package.json": true,
		"/app/package.json":                                          true,
		"/app/package-lock.json":                                     true,
		"/app/yarn.lock":                                             true,
		"/app/pnpm-lock.yaml":                                        true,
		"/app/node_modules/.package-lock.json":                       false,
		"/app/node_modules/foo/package-lock.json":                    false,
		"/app/node_modules/foo/yarn.lock":                            false,
		"/app/node_modules/foo/pnpm-lock.yaml":                       false,
		"/app/mypackage.json":                                        false,
		"/app/node_modules/foo/notpackage.json":                      false,
		"/app/xpackage-lock.json":                                    false,
		"/etc/passwd":                                                false,
	})
}

func TestWantsAllocatesNothing(t *testing.T) {
	catalogtest.AssertWantsAllocatesNothing(t, New(), 0o644, 100,
		"/app/node_modules/@types/node/package.json",
		"/usr/share/doc/x/copyright")
}

func TestPackageJSON(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string
		wantErr    string
	}{
		{"string license", `{"name":"express","version":"4.18.2","license":"MIT","dependencies":{"debug":"2.6.9"}}`,
			[]string{"express@4.18.2 lic=MIT"}, ""},
		{"scoped, object license", `{"name":"@babel/core","version":"7.23.6","license":{"type":"MIT","url":"https://opensource.org/licenses/MIT"}}`,
			[]string{"@babel/core@7.23.6 lic=MIT"}, ""},
		{"legacy licenses array", `{"name":"pause","version":"0.0.1","licenses":[{"type":"MIT","url":"x"},{"type":"Apache-2.0"}]}`,
			[]string{"pause@0.0.1 lic=MIT,Apache-2.0"}, ""},
		{"license array of strings", `{"name":"x","version":"1.0.0","license":["MIT","ISC"]}`,
			[]string{"x@1.0.0 lic=MIT,ISC"}, ""},
		{"expression", `{"name":"y","version":"1.0.0","license":"(MIT OR Apache-2.0)"}`,
			[]string{"y@1.0.0 lic=(MIT OR Apache-2.0)"}, ""},
		{"no license", `{"name":"z","version":"0.1.0"}`, []string{"z@0.1.0"}, ""},
		{"nested without name", `{"type":"module"}`, nil, ""},
		{"nested without version", `{"name":"inner","private":true}`, nil, ""},
		{"bad json", `{"name":"x","version":`, nil, "invalid JSON at line 1"},
		{"bad name type", `{"name":1,"version":"1.0.0"}`, nil, "unexpected JSON number"},
		{"invalid name", `{"name":"a b","version":"1.0.0"}`, nil, "invalid package name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkgs, err := parseFile(t, "/app/node_modules/x/package.json", []byte(tt.json))
			catalogtest.RequireErr(t, err, tt.wantErr)
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
			for _, p := range pkgs {
				if p.Metadata != nil {
					t.Errorf("installed package has metadata %v", p.Metadata)
				}
			}
		})
	}
}

func TestPackageLock(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"package-lock-v1.json", []string{
			"@babel/code-frame@7.12.13 dev",
			"debug@2.6.9",
			"fsevents@2.3.2 dev optional",
			"ms@2.0.0",
			"ms@2.1.3",
			"string-width@4.2.3",
		}},
		{"package-lock-v3.json", []string{
			"@types/node@20.10.5 dev lic=MIT",
			"debug@2.6.9 lic=MIT",
			"debug@4.3.4 dev lic=MIT",
			"express@4.18.2 lic=MIT",
			"fsevents@2.3.3 dev optional lic=MIT",
			"string-width@4.2.3 lic=MIT",
			"typescript@5.3.3 dev lic=Apache-2.0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkgs, err := parseFile(t, "/app/package-lock.json", catalogtest.ReadTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
			for _, p := range pkgs {
				if p.Metadata["lockfile"] != "package-lock.json" {
					t.Errorf("%s: lockfile metadata %q", p.Name, p.Metadata["lockfile"])
				}
			}
		})
	}
}

func TestPackageLockV2PrefersPackages(t *testing.T) {
	// Version 2 carries both maps; "packages" is authoritative.
	lock := `{"lockfileVersion":2,
	"packages":{"":{"name":"a"},"node_modules/left-pad":{"version":"1.3.0"}},
	"dependencies":{"left-pad":{"version":"1.3.0"},"ghost":{"version":"9.9.9"}}}`
	pkgs, err := parseFile(t, "/srv/package-lock.json", []byte(lock))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"left-pad@1.3.0"})
}

func TestPackageLockDuplicatesMergeDev(t *testing.T) {
	// The same package at two paths, once as a dev dependency: not dev.
	lock := `{"lockfileVersion":3,"packages":{
	"node_modules/a/node_modules/ms":{"version":"2.1.3","dev":true},
	"node_modules/b/node_modules/ms":{"version":"2.1.3"}}}`
	pkgs, err := parseFile(t, "/srv/package-lock.json", []byte(lock))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"ms@2.1.3"})
}

func TestPackageLockPartlyMalformed(t *testing.T) {
	lock := `{"lockfileVersion":3,"packages":{
	"node_modules/good":{"version":"1.0.0"},
	"node_modules/bad name":{"version":"1.0.0"}}}`
	pkgs, err := parseFile(t, "/srv/package-lock.json", []byte(lock))
	if err == nil || !strings.Contains(err.Error(), `invalid package name in "node_modules/bad name"`) {
		t.Errorf("error = %v", err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"good@1.0.0"})

	_, err = parseFile(t, "/srv/package-lock.json", []byte(`{"lockfileVersion":3,"packages":{`))
	if err == nil || !strings.Contains(err.Error(), "invalid JSON at line 1") {
		t.Errorf("truncated file: error = %v", err)
	}
}

func TestYarnLock(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"yarn-classic.lock", []string{
			"@babel/code-frame@7.12.13",
			"debug@2.6.9",
			"debug@4.3.4",
			"lodash@4.17.21",
			"string-width@4.2.3",
		}},
		{"yarn-berry.lock", []string{
			"@babel/code-frame@7.23.5",
			"semver@7.6.0",
			"string-width@4.2.3",
			"typescript@5.3.3",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkgs, err := parseFile(t, "/app/yarn.lock", catalogtest.ReadTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
		})
	}
}

func TestYarnClassicMalformed(t *testing.T) {
	lock := "# yarn lockfile v1\n\nleft-pad@^1.3.0:\n  version \"1.3.0\"\n\nno-version@^1:\n  resolved \"x\"\n\ngarbage line\n  version \"1\"\n"
	pkgs, err := parseFile(t, "/app/yarn.lock", []byte(lock))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"left-pad@1.3.0"})
	if err == nil || !strings.Contains(err.Error(), `entry "no-version@^1:" has no version`) ||
		!strings.Contains(err.Error(), "line 9: expected an entry header") {
		t.Errorf("error = %v", err)
	}
}

func TestPnpmLock(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"pnpm-lock-v5.yaml", []string{
			"@emotion/react@11.10.5",
			"fsevents@2.3.2 dev optional",
			"lodash._baseiteratee@4.7.0",
			"react@18.2.0",
			"typescript@4.9.4 dev",
		}},
		{"pnpm-lock-v6.yaml", []string{
			"@emotion/react@11.11.1",
			"@types/react@18.2.45 dev",
			"my-fork@1.2.0",
			"react@18.2.0",
			"vitest@1.0.4 dev",
		}},
		{"pnpm-lock-v9.yaml", []string{
			"@emotion/react@11.11.4",
			"ansi-regex@5.0.1",
			"js-tokens@4.0.0",
			"loose-envify@1.4.0",
			"react@18.2.0", // a dev dependency of the project, but also needed by @emotion/react
			"vitest@1.6.0 dev",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkgs, err := parseFile(t, "/app/pnpm-lock.yaml", catalogtest.ReadTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
		})
	}
}

func TestPnpmKey(t *testing.T) {
	catalogtest.AssertSplits(t, parsePnpmKey, "fail", map[string]string{
		"/lodash/4.17.21":                              "lodash 4.17.21",
		"/@babel/core/7.20.0":                          "@babel/core 7.20.0",
		"/@emotion/react/11.10.5_react@18.2.0":         "@emotion/react 11.10.5",
		"/foo/1.0.0_@types+react@18.0.26+react@18.2.0": "foo 1.0.0",
		"/lodash@4.17.21":                              "lodash 4.17.21",
		"/@babel/core@7.20.0":                          "@babel/core 7.20.0",
		"/foo@1.0.0(react@18.2.0)(react-dom@18.2.0)":   "foo 1.0.0",
		"lodash@4.17.21":                               "lodash 4.17.21",
		"@babel/core@7.20.0":                           "@babel/core 7.20.0",
		"foo@1.0.0(@types/react@18.2.45)":              "foo 1.0.0",
		"/nover":                                       "fail",
	})
}

func TestPnpmMalformed(t *testing.T) {
	_, err := parseFile(t, "/app/pnpm-lock.yaml", []byte("lockfileVersion: '9.0'\npackages:\n  a: [\n"))
	if err == nil || !strings.Contains(err.Error(), "invalid YAML") {
		t.Errorf("error = %v", err)
	}
	pkgs, err := parseFile(t, "/app/pnpm-lock.yaml", []byte("lockfileVersion: '9.0'\npackages:\n  ok@1.0.0: {}\n  'bad name@1.0.0': {}\n"))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"ok@1.0.0"})
	if err == nil || !strings.Contains(err.Error(), `key "bad name@1.0.0"`) {
		t.Errorf("error = %v", err)
	}
}

func TestSizeLimit(t *testing.T) {
	big := make([]byte, maxPackageJSON+1)
	_, err := parseFile(t, "/app/node_modules/x/package.json", big)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error = %v", err)
	}
}

func TestShrinkwrapAndSpilledFile(t *testing.T) {
	data := catalogtest.ReadTestdata(t, "package-lock-v3.json")
	tmp, err := os.CreateTemp(t.TempDir(), "spill-")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	f := catalog.NewSpilledFile("/srv/npm-shrinkwrap.json", 0o644, tmp, int64(len(data)), t.TempDir())
	pkgs, err := New().Parse(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 7 || pkgs[0].Metadata["lockfile"] != "npm-shrinkwrap.json" || pkgs[0].Locations[0].Path != "/srv/npm-shrinkwrap.json" {
		t.Errorf("got %d packages, first %+v", len(pkgs), pkgs[0])
	}
}

func TestLockFilesToleratePartialDamage(t *testing.T) {
	// Duplicate keys (hand-edited files) and one undecodable entry must not
	// lose the other packages.
	berry := "__metadata:\n  version: 6\n\n\"a@npm:1.0.0\":\n  version: 1.0.0\n  resolution: \"a@npm:1.0.0\"\n\n\"a@npm:1.0.0\":\n  version: 1.0.0\n  resolution: \"a@npm:1.0.0\"\n\n\"b@npm:2.0.0\":\n  version: [2]\n  resolution: \"b@npm:2.0.0\"\n\n\"c@npm:3.0.0\":\n  version: 3.0.0\n  resolution: \"c@npm:3.0.0\"\n"
	pkgs, err := parseFile(t, "/app/yarn.lock", []byte(berry))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"a@1.0.0", "c@3.0.0"})
	if err == nil || !strings.Contains(err.Error(), `line 12: entry "b@npm:2.0.0"`) {
		t.Errorf("error = %v", err)
	}

	pnpm := "lockfileVersion: '6.0'\npackages:\n  /a@1.0.0:\n    dev: false\n  /b@2.0.0:\n    dev: [oops]\n  /c@3.0.0:\n    dev: true\n"
	pkgs, err = parseFile(t, "/app/pnpm-lock.yaml", []byte(pnpm))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"a@1.0.0", "c@3.0.0 dev"})
	if err == nil || !strings.Contains(err.Error(), `line 5: packages entry "/b@2.0.0"`) {
		t.Errorf("error = %v", err)
	}

	// A v2-style key inside a v1 tree.
	pkgs, err = parseFile(t, "/app/package-lock.json", []byte(`{"lockfileVersion":1,"dependencies":{"node_modules/async":{"version":"3.2.4","dev":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"async@3.2.4 dev"})
}

func TestPnpmMultiDocument(t *testing.T) {
	lock := "---\nlockfileVersion: '9.0'\nimporters:\n  .:\n    configDependencies: {}\n\n---\nlockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      left-pad:\n        specifier: ^1.3.0\n        version: 1.3.0\npackages:\n  left-pad@1.3.0:\n    resolution: {integrity: sha512-x}\nsnapshots:\n  left-pad@1.3.0: {}\n"
	pkgs, err := parseFile(t, "/app/pnpm-lock.yaml", []byte(lock))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"left-pad@1.3.0"})
}

// TestRealLockFilesAgree parses the lock files that npm, pnpm 8 and 9 and
// Yarn 1 and 4 wrote for the same project: they must describe the same
// packages, and pnpm's dev flags (computed from the dependency graph for
// lockfile 9) must match npm's.
func TestRealLockFilesAgree(t *testing.T) {
	parse := func(file, as string) (all, dev []string) {
		t.Helper()
		pkgs, err := parseFile(t, "/app/"+as, catalogtest.ReadTestdata(t, "real/"+file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range pkgs {
			all = append(all, p.Name+"@"+p.Version)
			if p.Metadata["dev"] == "true" {
				dev = append(dev, p.Name+"@"+p.Version)
			}
		}
		return all, dev
	}
	npmAll, npmDev := parse("package-lock.json", "package-lock.json")
	if len(npmAll) != 175 || len(npmDev) != 96 {
		t.Fatalf("package-lock.json: %d packages, %d dev; want 175, 96", len(npmAll), len(npmDev))
	}
	for _, tt := range []struct{ file, as string }{
		{"pnpm-lock-v9.yaml", "pnpm-lock.yaml"},
		{"pnpm-lock-v6.yaml", "pnpm-lock.yaml"},
	} {
		all, dev := parse(tt.file, tt.as)
		if !slices.Equal(all, npmAll) {
			t.Errorf("%s: packages differ from package-lock.json:\n%q", tt.file, all)
		}
		if !slices.Equal(dev, npmDev) {
			t.Errorf("%s: dev packages differ from package-lock.json:\n%q", tt.file, dev)
		}
	}
	if all, _ := parse("yarn-v1.lock", "yarn.lock"); !slices.Equal(all, npmAll) {
		t.Errorf("yarn-v1.lock: packages differ from package-lock.json:\n%q", all)
	}
	// Yarn 4 also locks node-gyp (and its dependencies), which it adds
	// implicitly for packages with native builds.
	berry, _ := parse("yarn-berry.lock", "yarn.lock")
	for _, p := range npmAll {
		if !slices.Contains(berry, p) {
			t.Errorf("yarn-berry.lock lacks %s", p)
		}
	}
	if len(berry) != 195 || !slices.Contains(berry, "node-gyp@13.1.0") {
		t.Errorf("yarn-berry.lock: %d packages, want 195 including node-gyp", len(berry))
	}
}
