package python

import (
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

// summary renders a package as "name@version [dev] [optional] [lic=A|B]".
func summary(p catalog.Package) string {
	return catalogtest.Describe(p, "|", "dev", "optional")
}

func parseFile(t *testing.T, path string, data []byte) ([]catalog.Package, error) {
	t.Helper()
	pkgs, err := catalogtest.Parse(t, New(), catalog.TypePyPI, "PyPI", path, data)
	for _, p := range pkgs {
		if p.Metadata["normalized"] != NormalizeName(p.Name) {
			t.Errorf("%s: normalized %q", p.Name, p.Metadata["normalized"])
		}
	}
	return pkgs, err
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"Flask_SQLAlchemy":   "flask-sqlalchemy",
		"zope.interface":     "zope-interface",
		"Foo.-_Bar":          "foo-bar",
		"requests":           "requests",
		"PyYAML":             "pyyaml",
		"backports.zoneinfo": "backports-zoneinfo",
		"a__b--c..d":         "a-b-c-d",
		"":                   "",
	} {
		if got := NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWants(t *testing.T) {
	c := New()
	catalogtest.AssertWants(t, c, 100, map[string]bool{
		"/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA":           true,
		"/usr/local/lib/python3.11/site-packages/Flask-3.0.0.dist-info/METADATA": true,
		"/usr/lib/python3/dist-packages/chardet-5.1.0.egg-info/PKG-INFO":         true,
		"/usr/lib/python3/dist-packages/distro_info-1.5.egg-info":                true,
		"/usr/lib/python3.11/site-packages/foo-1.0-py3.11.egg/EGG-INFO/PKG-INFO": true,
		"/usr/lib/python3/dist-packages/six-1.16.0.dist-info/RECORD":             false,
		"/app/poetry.lock":                                          true,
		"/app/Pipfile.lock":                                         true,
		"/app/requirements.txt":                                     true,
		"/app/requirements-dev.txt":                                 true,
		"/app/requirements_prod.txt":                                true,
		"/app/requirements.in":                                      false,
		"/app/dev-requirements.txt":                                 false,
		"/usr/lib/python3/site-packages/somepkg/requirements.txt":   false,
		"/usr/local/lib/python3.11/site-packages/tests/poetry.lock": false,
		"/app/Pipfile":                                              false,
	})
}

func TestWantsAllocatesNothing(t *testing.T) {
	catalogtest.AssertWantsAllocatesNothing(t, New(), 0o644, 100,
		"/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
		"/usr/share/doc/x/copyright")
}

func TestMetadata(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
		wantErr    string
	}{
		{"dist-info with classifier license", string(catalogtest.ReadTestdata(t, "METADATA")),
			[]string{"Flask_SQLAlchemy@3.1.1 lic=BSD License"}, ""},
		{"license expression wins", "Metadata-Version: 2.4\nName: attrs\nVersion: 24.2.0\nLicense-Expression: MIT\nLicense: Something else\nClassifier: License :: OSI Approved :: MIT License\n",
			[]string{"attrs@24.2.0 lic=MIT"}, ""},
		{"license field", "Metadata-Version: 1.1\r\nName: six\r\nVersion: 1.16.0\r\nLicense: MIT\r\n\r\nbody\r\n",
			[]string{"six@1.16.0 lic=MIT"}, ""},
		{"UNKNOWN license and no classifier", "Metadata-Version: 1.0\nName: zope.interface\nVersion: 6.1\nLicense: UNKNOWN\n",
			[]string{"zope.interface@6.1"}, ""},
		{"license text falls back to classifiers", "Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.2\nLicense: Copyright (c) 2005-2023, NumPy Developers.\n        All rights reserved.\n        Redistribution and use in source and binary forms...\nClassifier: License :: OSI Approved :: BSD License\nClassifier: License :: Public Domain\n",
			[]string{"numpy@1.26.2 lic=BSD License|Public Domain"}, ""},
		{"missing version", "Metadata-Version: 2.1\nName: broken\n", nil, "no Name or Version"},
		{"bad name", "Name: not a name\nVersion: 1.0\n", nil, "invalid project name"},
		{"garbage line keeps the package", "Name: ok\nthis is not a header\nVersion: 1.0\n",
			[]string{"ok@1.0"}, `line 2: expected "Field: value"`},
		{"empty", "", nil, "no Name or Version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkgs, err := parseFile(t, "/usr/lib/python3/dist-packages/x-1.0.dist-info/METADATA", []byte(tt.text))
			catalogtest.RequireErr(t, err, tt.wantErr)
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
		})
	}
}

func TestEggInfoFileAndPKGINFO(t *testing.T) {
	text := []byte("Metadata-Version: 1.2\nName: distro-info\nVersion: 1.5+deb12u1\nLicense: ISC\n")
	for _, p := range []string{
		"/usr/lib/python3/dist-packages/distro_info-1.5+deb12u1.egg-info",
		"/usr/lib/python3/dist-packages/distro_info-1.5+deb12u1.egg-info/PKG-INFO",
	} {
		pkgs, err := parseFile(t, p, text)
		if err != nil {
			t.Fatal(err)
		}
		catalogtest.CheckSummary(t, pkgs, summary, []string{"distro-info@1.5+deb12u1 lic=ISC"})
		if pkgs[0].Metadata["normalized"] != "distro-info" {
			t.Errorf("normalized = %q", pkgs[0].Metadata["normalized"])
		}
	}
}

func TestPoetryLock(t *testing.T) {
	pkgs, err := parseFile(t, "/app/poetry.lock", catalogtest.ReadTestdata(t, "poetry.lock"))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"certifi@2023.7.22", "pytest@7.4.2 dev", "typing_extensions@4.8.0 optional"})
	if pkgs[2].Metadata["normalized"] != "typing-extensions" || pkgs[0].Metadata["lockfile"] != "poetry.lock" {
		t.Errorf("metadata %v / %v", pkgs[2].Metadata, pkgs[0].Metadata)
	}

	pkgs, err = parseFile(t, "/app/poetry.lock", catalogtest.ReadTestdata(t, "poetry2.lock"))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"idna@3.10", "requests@2.32.3", "ruff@0.9.6 dev"})

	_, err = parseFile(t, "/app/poetry.lock", []byte("[[package]]\nname = \"x\"\nversion = \n"))
	if err == nil || !strings.Contains(err.Error(), "invalid TOML") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error = %v", err)
	}
	pkgs, err = parseFile(t, "/app/poetry.lock", []byte("[[package]]\nname = \"good\"\nversion = \"1.0\"\n[[package]]\nname = \"bad name\"\nversion = \"1.0\"\n"))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"good@1.0"})
	if err == nil || !strings.Contains(err.Error(), `package 2: invalid name "bad name"`) {
		t.Errorf("error = %v", err)
	}
}

func TestPipfileLock(t *testing.T) {
	pkgs, err := parseFile(t, "/app/Pipfile.lock", catalogtest.ReadTestdata(t, "Pipfile.lock"))
	if err != nil {
		t.Fatal(err)
	}
	// asgiref is in both sections: not a dev dependency.
	catalogtest.CheckSummary(t, pkgs, summary, []string{"asgiref@3.7.2", "django@5.0.1", "pytest@7.4.4 dev"})

	_, err = parseFile(t, "/app/Pipfile.lock", []byte(`{"default": {"a": {"version": "==1"}`))
	if err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("error = %v", err)
	}
}

func TestRequirements(t *testing.T) {
	pkgs, err := parseFile(t, "/app/requirements.txt", catalogtest.ReadTestdata(t, "requirements.txt"))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{
		"cryptography@41.0.5",
		"Django@4.2.7",
		"numpy@1.26.2",
		"Pillow@10.1.0",
		"requests@2.31.0",
		"uvicorn@0.24.0",
		"zope.interface@6.1",
	})
	if pkgs[0].Metadata["lockfile"] != "requirements.txt" {
		t.Errorf("lockfile = %q", pkgs[0].Metadata["lockfile"])
	}

	pkgs, err = parseFile(t, "/app/requirements-dev.txt", []byte("pytest==7.4.3\n<<<<<<< HEAD\nblack==23.1.0\n"))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"black@23.1.0", "pytest@7.4.3"})
	if err == nil || !strings.Contains(err.Error(), "line 2: not a requirement") {
		t.Errorf("error = %v", err)
	}
	if pkgs[0].Metadata["lockfile"] != "requirements-dev.txt" {
		t.Errorf("lockfile = %q", pkgs[0].Metadata["lockfile"])
	}
}

func TestSizeLimit(t *testing.T) {
	_, err := parseFile(t, "/x/a-1.dist-info/METADATA", make([]byte, maxMetadata+1))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error = %v", err)
	}
}

func TestUVLock(t *testing.T) {
	pkgs, err := parseFile(t, "/app/uv.lock", catalogtest.ReadTestdata(t, "uv.lock"))
	if err != nil {
		t.Fatal(err)
	}
	// idna is a dev dependency of the project but also needed by anyio.
	catalogtest.CheckSummary(t, pkgs, summary, []string{
		"anyio@4.6.2.post1",
		"colorama@0.4.6 dev",
		"idna@3.10",
		"iniconfig@2.0.0 dev",
		"pytest@8.3.3 dev",
		"rich@13.9.4",
		"sniffio@1.3.1",
	})
	if pkgs[0].Metadata["lockfile"] != "uv.lock" {
		t.Errorf("metadata %v", pkgs[0].Metadata)
	}
	_, err = parseFile(t, "/app/uv.lock", []byte("[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \n"))
	if err == nil || !strings.Contains(err.Error(), "invalid TOML") {
		t.Errorf("error = %v", err)
	}
}
