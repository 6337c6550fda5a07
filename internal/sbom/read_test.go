package sbom

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

func readFile(t *testing.T, name string) (Subject, []catalog.Package) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, pkgs, err := Read(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s, pkgs
}

func loc(path, diffID string) []catalog.Location {
	return []catalog.Location{{Path: path, Layer: -1, LayerDiffID: diffID}}
}

func TestReadSyftCycloneDX(t *testing.T) {
	s, got := readFile(t, "syft-cyclonedx.json")
	wantS := Subject{Name: "example/app", Digest: "sha256:9a3bd1c7e1f0c2d4b5a6978877665544332211ffeeddccbbaa00998877665544", OSName: "debian", OSVersion: "12"}
	compareSubject(t, s, wantS)
	d1 := "sha256:" + strings.Repeat("11", 32)
	d2 := "sha256:" + strings.Repeat("22", 32)
	d3 := "sha256:" + strings.Repeat("33", 32)
	want := []catalog.Package{
		{Name: "libc6", Version: "2.36-9+deb12u7", Type: "deb", Ecosystem: "Debian:12", Arch: "amd64",
			PURL:       "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&upstream=glibc&distro=debian-12",
			SourceName: "glibc", SourceVersion: "2.36-9+deb12u7", Licenses: []string{"GPL-2.0-only", "GFDL-1.3"},
			Locations: loc("/var/lib/dpkg/status", d1), Layer: -1, LayerDiffID: d1},
		{Name: "libssl3", Version: "3.0.14-1~deb12u2", Type: "deb", Ecosystem: "Debian:12", Arch: "amd64",
			PURL:       "pkg:deb/debian/libssl3@3.0.14-1~deb12u2?arch=amd64&distro=debian-12",
			SourceName: "openssl", SourceVersion: "3.0.14-1~deb12u2",
			Locations: loc("/var/lib/dpkg/status.d/libssl3", d2), Layer: -1, LayerDiffID: d2},
		// No distro qualifier: the OS component of the SBOM gives the release.
		{Name: "tzdata", Version: "2024a-0+deb12u1", Type: "deb", Ecosystem: "Debian:12", Arch: "all",
			PURL:       "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all",
			SourceName: "tzdata", SourceVersion: "2024a-0+deb12u1", Layer: -1},
		{Name: "github.com/sirupsen/logrus", Version: "v1.9.3", Type: "golang", Ecosystem: "Go",
			PURL: "pkg:golang/github.com/sirupsen/logrus@v1.9.3", Locations: loc("/usr/local/bin/app", d3), Layer: -1, LayerDiffID: d3},
		{Name: "log4j-core", Namespace: "org.apache.logging.log4j", Version: "2.14.1", Type: "maven", Ecosystem: "Maven",
			PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", Licenses: []string{"Apache-2.0"}, Layer: -1},
		{Name: "@types/node", Version: "20.11.0", Type: "npm", Ecosystem: "npm", PURL: "pkg:npm/%40types/node@20.11.0", Licenses: []string{"MIT"}, Layer: -1},
		{Name: "requests", Version: "2.31.0", Type: "pypi", Ecosystem: "PyPI", PURL: "pkg:pypi/requests@2.31.0", Layer: -1},
		{Name: "no-purl-thing", Version: "1.0", Layer: -1},
	}
	comparePackages(t, got, want)
}

func TestReadTrivyCycloneDX(t *testing.T) {
	s, got := readFile(t, "trivy-cyclonedx.json")
	compareSubject(t, s, Subject{Name: "registry.access.redhat.com/ubi9:9.3", Digest: "sha256:" + strings.Repeat("abcdef", 10) + "abcd", OSName: "redhat", OSVersion: "9.3"})
	want := []catalog.Package{
		{Name: "openssl-libs", Version: "3.0.7-27.el9", Release: "27.el9", Epoch: intp(1), Type: "rpm", Ecosystem: "Red Hat:enterprise_linux:9", Arch: "x86_64",
			PURL:       "pkg:rpm/redhat/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=redhat-9.3&epoch=1",
			SourceName: "openssl", SourceVersion: "3.0.7-27.el9", Licenses: []string{"ASL 2.0"},
			Layer: -1, LayerDiffID: "sha256:" + strings.Repeat("44", 32)},
		{Name: "bash", Version: "5.1-6ubuntu1.1", Type: "deb", Ecosystem: "Ubuntu:22.04:LTS", Arch: "amd64",
			PURL:       "pkg:deb/ubuntu/bash@5.1-6ubuntu1.1?arch=amd64&distro=ubuntu-22.04",
			SourceName: "bash", SourceVersion: "5.1-6ubuntu1.1", Layer: -1},
		// The deb epoch qualifier goes back into the dpkg version.
		{Name: "adduser", Version: "1:3.134", Type: "deb", Ecosystem: "Debian:12", Arch: "all",
			PURL:       "pkg:deb/debian/adduser@3.134?arch=all&distro=debian-12.5&epoch=1",
			SourceName: "adduser", SourceVersion: "1:3.134", Layer: -1},
		{Name: "busybox", Version: "1.36.1-r29", Type: "apk", Ecosystem: "Alpine:v3.20", Arch: "x86_64",
			PURL:       "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64&distro=3.20.1",
			SourceName: "busybox", SourceVersion: "1.36.1-r29", Layer: -1},
	}
	comparePackages(t, got, want)
}

func TestReadSyftSPDX(t *testing.T) {
	s, got := readFile(t, "syft-spdx.json")
	compareSubject(t, s, Subject{Name: "alpine", Digest: "sha256:" + strings.Repeat("beef", 16), OSName: "alpine", OSVersion: "3.20.3"})
	want := []catalog.Package{
		{Name: "busybox", Version: "1.36.1-r29", Type: "apk", Ecosystem: "Alpine:v3.20", Arch: "x86_64",
			PURL:       "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64&upstream=busybox&distro=alpine-3.20.3",
			SourceName: "busybox", SourceVersion: "1.36.1-r29", Licenses: []string{"GPL-2.0-only"}, Layer: -1,
			Locations: loc("/lib/apk/db/installed", "")},
		{Name: "musl", Version: "1.2.5-r0", Type: "apk", Ecosystem: "Alpine:v3.20", Arch: "x86_64",
			PURL:       "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3",
			SourceName: "musl", SourceVersion: "1.2.5-r0", Licenses: []string{"MIT", "musl extra"}, Layer: -1},
		{Name: "github.com/sirupsen/logrus", Version: "v1.9.3", Type: "golang", Ecosystem: "Go",
			PURL: "pkg:golang/github.com/sirupsen/logrus@v1.9.3", Layer: -1},
	}
	comparePackages(t, got, want)
}

func TestReadSPDXTagValue(t *testing.T) {
	s, got := readFile(t, "syft.spdx")
	compareSubject(t, s, Subject{Name: "debian", Digest: "sha256:" + strings.Repeat("c0ffee", 10) + "c0ff"})
	want := []catalog.Package{
		{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Type: "deb", Ecosystem: "Debian:12", Arch: "amd64",
			PURL:       "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&upstream=zlib&distro=debian-12",
			SourceName: "zlib", SourceVersion: "1:1.2.13.dfsg-1", Licenses: []string{"Zlib"}, Layer: -1,
			Locations: loc("/var/lib/dpkg/status", "")}, // from syft's sourceInfo
	}
	comparePackages(t, got, want)
}

func TestPackageFromPURL(t *testing.T) {
	for _, tc := range []struct {
		purl string
		want catalog.Package
	}{
		{"pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
			catalog.Package{Name: "openssl", Version: "3.0.11-1~deb12u2", Type: "deb", Ecosystem: "Debian:12", Arch: "amd64", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u2"}},
		{"pkg:deb/debian/libssl3@3.0.11-1~deb12u2%2Bb1?distro=debian-12.4&upstream=openssl%403.0.11-1~deb12u2",
			catalog.Package{Name: "libssl3", Version: "3.0.11-1~deb12u2+b1", Type: "deb", Ecosystem: "Debian:12", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u2"}},
		{"pkg:deb/ubuntu/libc6@2.35-0ubuntu3.6?distro=ubuntu-23.10&source=glibc",
			catalog.Package{Name: "libc6", Version: "2.35-0ubuntu3.6", Type: "deb", Ecosystem: "Ubuntu:23.10", SourceName: "glibc", SourceVersion: "2.35-0ubuntu3.6"}},
		{"pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&upstream=openssl&distro=alpine-3.20.1",
			catalog.Package{Name: "libcrypto3", Version: "3.3.2-r0", Type: "apk", Ecosystem: "Alpine:v3.20", Arch: "x86_64", SourceName: "openssl", SourceVersion: "3.3.2-r0"}},
		{"pkg:apk/wolfi/glibc@2.40-r3?arch=x86_64",
			catalog.Package{Name: "glibc", Version: "2.40-r3", Type: "apk", Ecosystem: "Wolfi", Arch: "x86_64", SourceName: "glibc", SourceVersion: "2.40-r3"}},
		{"pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1&upstream=openssl-3.0.7-27.el9.src.rpm&distro=rocky-9.3",
			catalog.Package{Name: "openssl-libs", Version: "3.0.7-27.el9", Release: "27.el9", Epoch: intp(1), Type: "rpm", Ecosystem: "Rocky Linux:9", Arch: "x86_64", SourceName: "openssl", SourceVersion: "3.0.7-27.el9"}},
		{"pkg:rpm/almalinux/bash@5.1.8-9.el9?epoch=0&distro=almalinux-9.4",
			catalog.Package{Name: "bash", Version: "5.1.8-9.el9", Release: "9.el9", Epoch: intp(0), Type: "rpm", Ecosystem: "AlmaLinux:9", SourceName: "bash", SourceVersion: "5.1.8-9.el9"}},
		{"pkg:golang/golang.org/x/net@v0.17.0",
			catalog.Package{Name: "golang.org/x/net", Version: "v0.17.0", Type: "golang", Ecosystem: "Go"}},
		{"pkg:golang/stdlib@1.21.3",
			catalog.Package{Name: "stdlib", Version: "v1.21.3", Type: "golang", Ecosystem: "Go"}},
		{"pkg:golang/stdlib@go1.22rc1",
			catalog.Package{Name: "stdlib", Version: "v1.22.0-rc.1", Type: "golang", Ecosystem: "Go"}},
		{"pkg:npm/%40babel/core@7.23.2",
			catalog.Package{Name: "@babel/core", Version: "7.23.2", Type: "npm", Ecosystem: "npm"}},
		{"pkg:npm/lodash@4.17.21",
			catalog.Package{Name: "lodash", Version: "4.17.21", Type: "npm", Ecosystem: "npm"}},
		{"pkg:pypi/django@4.2.7",
			catalog.Package{Name: "django", Version: "4.2.7", Type: "pypi", Ecosystem: "PyPI"}},
		{"pkg:maven/org.springframework/spring-core@5.3.30?type=jar",
			catalog.Package{Name: "spring-core", Namespace: "org.springframework", Version: "5.3.30", Type: "maven", Ecosystem: "Maven"}},
		{"pkg:gem/rack@2.2.8",
			catalog.Package{Name: "rack", Version: "2.2.8", Type: "gem", Ecosystem: "RubyGems"}},
		{"pkg:cargo/serde@1.0.190",
			catalog.Package{Name: "serde", Version: "1.0.190", Type: "cargo", Ecosystem: "crates.io"}},
		{"pkg:composer/symfony/http-kernel@v6.3.6",
			catalog.Package{Name: "symfony/http-kernel", Version: "v6.3.6", Type: "composer", Ecosystem: "Packagist"}},
		{"pkg:nuget/Newtonsoft.Json@13.0.1",
			catalog.Package{Name: "Newtonsoft.Json", Version: "13.0.1", Type: "nuget", Ecosystem: "NuGet"}},
		{"pkg:github/package-url/purl-spec@244fd47e07d1004",
			catalog.Package{Name: "purl-spec", Namespace: "package-url", Version: "244fd47e07d1004", Type: "github"}},
	} {
		got, err := PackageFromPURL(tc.purl)
		if err != nil {
			t.Errorf("%s: %v", tc.purl, err)
			continue
		}
		tc.want.PURL, tc.want.Layer = tc.purl, -1
		comparePackages(t, []catalog.Package{got}, []catalog.Package{tc.want})
	}
	for _, bad := range []string{"", "deb/debian/x@1", "pkg:", "pkg:deb", "pkg:%zz/x@1"} {
		if _, err := PackageFromPURL(bad); err == nil {
			t.Errorf("PackageFromPURL(%q) accepted", bad)
		}
	}
}

func TestEcosystemForDistro(t *testing.T) {
	for _, tc := range [][3]string{
		{"debian", "12.5", "Debian:12"},
		{"debian", "", "Debian"},
		{"ubuntu", "22.04", "Ubuntu:22.04:LTS"},
		{"ubuntu", "23.10", "Ubuntu:23.10"},
		{"alpine", "3.20.1", "Alpine:v3.20"},
		{"redhat", "9.3", "Red Hat:enterprise_linux:9"},
		{"redhat", "", "Red Hat"},
		{"rocky", "", "Rocky Linux"},
		{"almalinux", "9.4", "AlmaLinux:9"},
		{"wolfi", "", "Wolfi"},
		{"plan9", "4", ""},
	} {
		if got := EcosystemForDistro(tc[0], tc[1]); got != tc[2] {
			t.Errorf("EcosystemForDistro(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		unknown        bool
	}{
		{"empty", "", "empty input", true},
		{"spaces", "  \n\t", "empty input", true},
		{"text", "hello world", `input starts with "hello world"`, true},
		{"truncated JSON", `{"bomFormat":"CycloneDX","specVersion":"1.6","components":[`, "not valid JSON", false},
		{"JSON array", `[1,2]`, "input starts with", true},
		{"other JSON", `{"name":"x"}`, `neither "bomFormat" (CycloneDX) nor "spdxVersion" (SPDX)`, true},
		{"wrong bomFormat", `{"bomFormat":"SWID"}`, `bomFormat is "SWID"`, true},
		{"SPDX 3", `{"@context":"https://spdx.org/rdf/3.0.1/spdx-context.jsonld","@graph":[]}`, "SPDX 3", true},
		{"bad spec version", `{"bomFormat":"CycloneDX","specVersion":"9.9"}`, "reading CycloneDX JSON SBOM", false},
		{"components not array", `{"bomFormat":"CycloneDX","specVersion":"1.6","components":{"a":1}}`, "reading CycloneDX JSON SBOM", false},
		{"bad SPDX version", `{"spdxVersion":"SPDX-9.9"}`, "reading SPDX JSON SBOM", false},
		{"SPDX packages not array", `{"spdxVersion":"SPDX-2.3","packages":7}`, "reading SPDX JSON SBOM", false},
		{"XML not CycloneDX", `<?xml version="1.0"?><html></html>`, "not a CycloneDX BOM", true},
		{"SPDX RDF", `<?xml version="1.0"?><rdf:RDF xmlns:spdx="http://spdx.org/rdf/terms#"></rdf:RDF>`, "SPDX RDF/XML is not supported", true},
		{"broken CycloneDX XML", `<bom xmlns="http://cyclonedx.org/schema/bom/1.6"><components><component`, "reading CycloneDX XML SBOM", false},
		{"broken tag-value", "SPDXVersion: SPDX-2.3\nPackageName x\n", "reading SPDX tag-value SBOM: no colon found", false},
		{"tag-value relationship", "SPDXVersion: SPDX-2.3\nRelationship: SPDXRef-A\n", "invalid relationship format", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read(strings.NewReader(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if errors.Is(err, ErrUnknownFormat) != tc.unknown {
				t.Errorf("errors.Is(err, ErrUnknownFormat) = %v", !tc.unknown)
			}
		})
	}
}

// endless yields '{' followed by spaces forever.
type endless struct{ started bool }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	if !e.started && len(p) > 0 {
		p[0] = '{'
		e.started = true
	}
	return len(p), nil
}

func TestReadSizeLimit(t *testing.T) {
	_, _, err := Read(&endless{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// Exactly at the limit is still read (and then judged on content).
	_, _, err = Read(io.LimitReader(&endless{}, MaxSBOMSize))
	if err == nil || errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want a JSON error", err)
	}
}

func TestReadUTF8BOMAndWhitespace(t *testing.T) {
	s := testSubject()
	var buf bytes.Buffer
	buf.WriteString("\xef\xbb\xbf\n  ")
	if err := WriteSPDX(&buf, s, testPackages(s), testTool); err != nil {
		t.Fatal(err)
	}
	if _, pkgs, err := Read(&buf); err != nil || len(pkgs) != len(testPackages(s)) {
		t.Fatalf("read %d packages, %v", len(pkgs), err)
	}
}

func TestReadTrivySPDX(t *testing.T) {
	s, got := readFile(t, "trivy-spdx.json")
	compareSubject(t, s, Subject{Name: "debian:12", Digest: "sha256:" + strings.Repeat("feed", 16), OSName: "debian", OSVersion: "12.5"})
	want := []catalog.Package{
		{Name: "libssl3", Version: "3.0.11-1~deb12u2", Type: "deb", Ecosystem: "Debian:12", Arch: "amd64",
			PURL:       "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12.5",
			SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u2", Licenses: []string{"Apache-2.0"},
			Layer: -1, LayerDiffID: "sha256:" + strings.Repeat("55", 32)},
	}
	comparePackages(t, got, want)
}

// The hand-written foreign CycloneDX fixtures are valid CycloneDX 1.6, so
// the reader is tested on documents other tools may really write.
func TestForeignFixturesAreValidCycloneDX(t *testing.T) {
	schema := cyclonedxSchema(t)
	for _, name := range []string{"syft-cyclonedx.json", "trivy-cyclonedx.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := validateJSON(schema, b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// SPDX 2.2 JSON goes through tools-golang's conversion to the 2.3 model.
func TestReadSPDX22(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "syft-spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"SPDX-2.3"`), []byte(`"SPDX-2.2"`), 1)
	_, got, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_, want := readFile(t, "syft-spdx.json")
	// SPDX 2.2 has no primaryPackagePurpose: the OS package becomes a
	// package without a type (which matching ignores).
	want = append(want, catalog.Package{Name: "alpine", Version: "3.20.3", Layer: -1})
	comparePackages(t, got, want)
}
