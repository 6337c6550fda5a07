package sbom

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moat-dev/moat/internal/catalog"
)

func intp(i int) *int { return &i }

var testTool = ToolInfo{Name: "moat", Version: "0.1.0-test"}

// testSubject is an image as the scan pipeline describes it.
func testSubject() Subject {
	return Subject{
		Name:      "registry.example.com/team/app:1.2",
		Digest:    "sha256:" + strings.Repeat("ab", 32),
		ImageID:   "sha256:" + strings.Repeat("cd", 32),
		Platform:  "linux/amd64",
		OSName:    "debian",
		OSVersion: "12",
		Layers: []Layer{
			{Index: 0, DiffID: "sha256:" + strings.Repeat("01", 32), Digest: "sha256:" + strings.Repeat("11", 32), CreatedBy: "/bin/sh -c #(nop) ADD file:abc in / ", Size: 29_000_000},
			{Index: 1, DiffID: "sha256:" + strings.Repeat("02", 32), Digest: "sha256:" + strings.Repeat("12", 32), CreatedBy: "RUN /bin/sh -c apt-get update &&\n    apt-get install -y curl # buildkit", Size: 12_345},
			{Index: 2, DiffID: "sha256:" + strings.Repeat("03", 32), Digest: "sha256:" + strings.Repeat("13", 32), CreatedBy: "COPY app /app # buildkit", Size: 4_000_000},
		},
	}
}

// testPackages covers every package kind moat catalogs, filled in by
// catalog.Finalize the way the scan pipeline does.
func testPackages(s Subject) []catalog.Package {
	l := s.Layers
	pkgs := []catalog.Package{
		{Name: "libc6", Version: "2.36-9+deb12u4", Type: catalog.TypeDeb, SourceName: "glibc", SourceVersion: "2.36-9+deb12u4", Arch: "amd64",
			Licenses:  []string{"GPL-2.0-or-later", "LGPL-2.1-or-later", "Artistic License (Perl)"},
			Locations: []catalog.Location{{Path: "/var/lib/dpkg/status", Layer: 1, LayerDiffID: l[1].DiffID}},
			Layer:     0, LayerDiffID: l[0].DiffID, CreatedBy: l[0].CreatedBy},
		{Name: "curl", Version: "7.88.1-10+deb12u5", Type: catalog.TypeDeb, SourceName: "curl", SourceVersion: "7.88.1-10+deb12u5", Arch: "amd64",
			Licenses:  []string{"curl"},
			Locations: []catalog.Location{{Path: "/var/lib/dpkg/status", Layer: 1, LayerDiffID: l[1].DiffID}},
			Layer:     1, LayerDiffID: l[1].DiffID, CreatedBy: l[1].CreatedBy},
		{Name: "libssl3", Version: "3.0.11-1~deb12u2+b1", Type: catalog.TypeDeb, SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u2", Arch: "amd64",
			Locations: []catalog.Location{{Path: "/var/lib/dpkg/status", Layer: 1, LayerDiffID: l[1].DiffID}},
			Layer:     1, LayerDiffID: l[1].DiffID, CreatedBy: l[1].CreatedBy},
		{Name: "musl", Version: "1.2.5-r0", Type: catalog.TypeApk, SourceName: "musl", SourceVersion: "1.2.5-r0", Arch: "x86_64", Ecosystem: "Alpine:v3.20",
			PURL:      "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.1",
			Licenses:  []string{"MIT"},
			Locations: []catalog.Location{{Path: "/lib/apk/db/installed", Layer: 0, LayerDiffID: l[0].DiffID}},
			Layer:     0, LayerDiffID: l[0].DiffID},
		{Name: "openssl-libs", Version: "3.0.7-27.el9", Release: "27.el9", Epoch: intp(1), Arch: "x86_64", Type: catalog.TypeRPM,
			SourceName: "openssl", SourceVersion: "3.0.7-27.el9", Ecosystem: "Rocky Linux:9",
			PURL:      "pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1&distro=rocky-9.3&upstream=openssl%403.0.7-27.el9",
			Licenses:  []string{"Apache-2.0"},
			Locations: []catalog.Location{{Path: "/var/lib/rpm/rpmdb.sqlite", Layer: 0, LayerDiffID: l[0].DiffID}},
			Layer:     0, LayerDiffID: l[0].DiffID},
		{Name: "zero-epoch", Version: "1.0-1", Release: "1", Epoch: intp(0), Type: catalog.TypeRPM, Ecosystem: "Rocky Linux:9",
			PURL:      "pkg:rpm/rocky/zero-epoch@1.0-1?epoch=0&distro=rocky-9.3",
			Locations: []catalog.Location{{Path: "/var/lib/rpm/rpmdb.sqlite", Layer: 0, LayerDiffID: l[0].DiffID}},
			Layer:     0, LayerDiffID: l[0].DiffID},
		{Name: "golang.org/x/net", Version: "v0.17.0", Type: catalog.TypeGo,
			Locations: []catalog.Location{{Path: "/app/server", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID, CreatedBy: l[2].CreatedBy,
			Metadata: map[string]string{"mainModule": "example.com/server", "goToolchain": "go1.21.3"}},
		{Name: "stdlib", Version: "v1.21.3", Type: catalog.TypeGo,
			Locations: []catalog.Location{{Path: "/app/server", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID, CreatedBy: l[2].CreatedBy},
		{Name: "@babel/core", Version: "7.23.2", Type: catalog.TypeNpm, Licenses: []string{"MIT"},
			Locations: []catalog.Location{
				{Path: "/app/node_modules/@babel/core/package.json", Layer: 2, LayerDiffID: l[2].DiffID},
				{Path: "/app/package-lock.json", Layer: 2, LayerDiffID: l[2].DiffID},
			},
			Layer: 2, LayerDiffID: l[2].DiffID, CreatedBy: l[2].CreatedBy, Metadata: map[string]string{"dev": "true"}},
		{Name: "lodash", Version: "4.17.21", Type: catalog.TypeNpm, Licenses: []string{"MIT OR Apache-2.0"},
			Locations: []catalog.Location{{Path: "/app/node_modules/lodash/package.json", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
		{Name: "requests", Version: "2.31.0", Type: catalog.TypePyPI, Licenses: []string{"Apache 2.0"},
			Locations: []catalog.Location{{Path: "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA", Layer: 1, LayerDiffID: l[1].DiffID}},
			Layer:     1, LayerDiffID: l[1].DiffID},
		{Name: "log4j-core", Namespace: "org.apache.logging.log4j", Version: "2.14.1", Type: catalog.TypeMaven, Licenses: []string{"Apache-2.0"},
			Locations: []catalog.Location{{Path: "/app/app.jar!/BOOT-INF/lib/log4j-core-2.14.1.jar", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
		// Same coordinates in another jar: a different package.
		{Name: "log4j-core", Namespace: "org.apache.logging.log4j", Version: "2.14.1", Type: catalog.TypeMaven,
			Locations: []catalog.Location{{Path: "/opt/other.jar!/lib/log4j-core-2.14.1.jar", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
		{Name: "rack", Version: "2.2.8", Type: catalog.TypeGem, Licenses: []string{"MIT"},
			Locations: []catalog.Location{{Path: "/app/Gemfile.lock", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
		{Name: "serde", Version: "1.0.190", Type: catalog.TypeCargo, Licenses: []string{"MIT OR Apache-2.0"},
			Locations: []catalog.Location{{Path: "/app/Cargo.lock", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
		{Name: "symfony/http-kernel", Version: "v6.3.6", Type: catalog.TypeComposer, Licenses: []string{"MIT", "GPL-2.0-only WITH Classpath-exception-2.0"},
			Locations: []catalog.Location{{Path: "/app/composer.lock", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
		{Name: "Newtonsoft.Json", Version: "13.0.1", Type: catalog.TypeNuGet, Licenses: []string{"MIT"},
			Locations: []catalog.Location{{Path: "/app/app.deps.json", Layer: 2, LayerDiffID: l[2].DiffID}},
			Layer:     2, LayerDiffID: l[2].DiffID},
	}
	rel := catalog.Distro{Ecosystem: "Debian:12", Namespace: "debian", Qualifier: "debian-12"}
	for i := range pkgs {
		catalog.Finalize(&pkgs[i], rel)
	}
	return pkgs
}

// normalize makes packages comparable: sorted metadata maps, no empty
// slices, licenses in canonical case.
func normalize(pkgs []catalog.Package) []catalog.Package {
	out := make([]catalog.Package, len(pkgs))
	for i, p := range pkgs {
		if len(p.Metadata) == 0 {
			p.Metadata = nil
		}
		if len(p.Licenses) == 0 {
			p.Licenses = nil
		} else {
			ls := make([]string, len(p.Licenses))
			for j, l := range p.Licenses {
				if n, ok, _ := normalizeExpression(l); ok {
					l = n
				}
				ls[j] = l
			}
			p.Licenses = ls
		}
		if len(p.Locations) == 0 {
			p.Locations = nil
		}
		out[i] = p
	}
	return out
}

func comparePackages(t *testing.T, got, want []catalog.Package) {
	t.Helper()
	got, want = normalize(got), normalize(want)
	if len(got) != len(want) {
		t.Fatalf("got %d packages, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, _ := json.MarshalIndent(got[i], "", " ")
			w, _ := json.MarshalIndent(want[i], "", " ")
			t.Errorf("package %d differs:\ngot  %s\nwant %s", i, g, w)
		}
	}
}

func sortedLicenses(ls []string) []string {
	c := append([]string(nil), ls...)
	sort.Strings(c)
	return c
}

var (
	moduleDirOnce sync.Once
	moduleDir     string
	moduleDirErr  error
)

// cyclonedxSchemaDir returns the schema folder of the cyclonedx-go module
// this package is built with.
func cyclonedxSchemaDir(t *testing.T) string {
	t.Helper()
	moduleDirOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go").Output()
		if err != nil {
			moduleDirErr = err
			return
		}
		moduleDir = strings.TrimSpace(string(out))
	})
	if moduleDirErr != nil || moduleDir == "" {
		t.Fatalf("locating the cyclonedx-go module: %v", moduleDirErr)
	}
	return filepath.Join(moduleDir, "schema")
}

func loadJSON(t *testing.T, path string) any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// cyclonedxSchema compiles bom-1.6.schema.json with the two schemas it
// references, all from the cyclonedx-go module.
func cyclonedxSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	dir := cyclonedxSchemaDir(t)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	// The module ships the JSF schema as jsf-0.82.schemax.json; the BOM
	// schema refers to it as jsf-0.82.schema.json.
	resources := map[string]string{
		"http://cyclonedx.org/schema/bom-1.6.schema.json":  "bom-1.6.schema.json",
		"http://cyclonedx.org/schema/spdx.schema.json":     "spdx.schema.json",
		"http://cyclonedx.org/schema/jsf-0.82.schema.json": "jsf-0.82.schemax.json",
	}
	for url, file := range resources {
		if err := c.AddResource(url, loadJSON(t, filepath.Join(dir, file))); err != nil {
			t.Fatalf("adding %s: %v", file, err)
		}
	}
	s, err := c.Compile("http://cyclonedx.org/schema/bom-1.6.schema.json")
	if err != nil {
		t.Fatalf("compiling the CycloneDX 1.6 schema: %v", err)
	}
	return s
}

func validateJSON(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}
