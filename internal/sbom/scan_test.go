package sbom

import (
	"archive/zip"
	"bytes"
	"context"
	"testing"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/scan"
)

func jarWith(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// testImageLayout builds a small image with packages of several kinds and
// writes it as an OCI layout.
func testImageLayout(t *testing.T) string {
	t.Helper()
	l0 := it.Layer(t,
		it.Text("/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"),
		it.Text("/var/lib/dpkg/status",
			"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: libc\n\n"+
				"Package: bsdutils\nStatus: install ok installed\nArchitecture: amd64\nSource: util-linux (2.38.1-5)\nVersion: 1:2.38.1-5+b1\nDescription: bsd\n\n"),
	)
	l1 := it.Layer(t,
		it.Text("/app/node_modules/@scope/pkg/package.json", `{"name":"@scope/pkg","version":"1.2.3","license":"MIT"}`),
		it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.21","license":"(MIT OR Apache-2.0)"}`),
		it.Text("/usr/lib/python3/dist-packages/Requests-2.31.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nbody\n"),
		it.Text("/app/Gemfile.lock", "GEM\n  remote: https://rubygems.org/\n  specs:\n    rack (2.2.8)\n\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n  rack\n"),
		it.Text("/app/Cargo.lock", "version = 3\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.190\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"),
		it.Text("/app/lib/log4j-core-2.14.1.jar", jarWith(t, map[string]string{
			"META-INF/MANIFEST.MF": "Manifest-Version: 1.0\r\n\r\n",
			"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": "groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n",
		})),
	)
	img := it.Image(t,
		it.Step{Layer: l0, CreatedBy: "ADD rootfs.tar /"},
		it.Step{Layer: l1, CreatedBy: "COPY app /app\nRUN pip install requests"},
	)
	return it.WriteLayout(t, img, "")
}

func scanLayout(t *testing.T, dir string) *scan.Result {
	t.Helper()
	res, err := scan.Scan(context.Background(), "oci:"+dir, scan.Options{Catalogers: scan.Catalogers(), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Logf("scan warnings: %v", res.Warnings)
	}
	return res
}

// TestScannedImageRoundTrip scans an image built here with the real
// pipeline and catalogers, and checks that both SBOM formats are valid
// against their schemas and read back into the same packages.
func TestScannedImageRoundTrip(t *testing.T) {
	res := scanLayout(t, testImageLayout(t))
	byType := map[string]int{}
	for _, p := range res.Packages {
		byType[string(p.Type)]++
	}
	for typ, n := range map[string]int{"deb": 2, "npm": 2, "pypi": 1, "gem": 1, "cargo": 1, "maven": 1} {
		if byType[typ] != n {
			t.Errorf("scan found %d %s packages, want %d (all: %v)", byType[typ], typ, n, byType)
		}
	}

	s := Subject{Name: res.Subject.Name, Digest: res.Subject.Digest, ImageID: res.Subject.ImageID, Platform: res.Subject.Platform}
	if res.OS != nil {
		s.OSName, s.OSVersion = res.OS.ID, res.OS.VersionID
	}
	for _, l := range res.Layers {
		s.Layers = append(s.Layers, Layer{Index: l.Index, DiffID: l.DiffID, Digest: l.Digest, CreatedBy: l.CreatedBy, Size: l.Size})
	}

	var cdxOut, spdxOut bytes.Buffer
	if err := WriteCycloneDX(&cdxOut, s, res.Packages, testTool); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(cyclonedxSchema(t), cdxOut.Bytes()); err != nil {
		t.Errorf("CycloneDX of a scanned image invalid: %v", err)
	}
	if err := WriteSPDX(&spdxOut, s, res.Packages, testTool); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(spdxSchema(t), spdxOut.Bytes()); err != nil {
		t.Errorf("SPDX of a scanned image invalid: %v", err)
	}
	for name, out := range map[string][]byte{"CycloneDX": cdxOut.Bytes(), "SPDX": spdxOut.Bytes()} {
		gotS, got, err := Read(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		comparePackages(t, got, res.Packages)
		compareSubject(t, gotS, s)
	}
}
