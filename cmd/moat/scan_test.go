package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	it "github.com/moat-dev/moat/internal/imagetest"
)

func testLayout(t *testing.T) string {
	img := it.Image(t,
		it.Step{Layer: it.Layer(t,
			it.Text("/etc/os-release", "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
			it.Text("/var/lib/dpkg/status", "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\nSource: glibc\nArchitecture: amd64\n\n"),
		), CreatedBy: "ADD rootfs /"},
		it.Step{Layer: it.Layer(t,
			it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0","license":"WTFPL"}`),
		), CreatedBy: "COPY app /app"},
	)
	return "oci:" + it.WriteLayout(t, img, "")
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestScanFormats(t *testing.T) {
	t.Setenv("MOAT_DB_DIR", t.TempDir()) // no vulnerability data: packages only
	spec := testLayout(t)

	out, err := run(t, "scan", spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OS:        Debian GNU/Linux 12 (bookworm)", "Debian:12  1", "npm        1", "left-pad", "1 COPY app /app", "/app/node_modules/left-pad/package.json"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, "scan", spec, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema   string
		Packages []struct {
			Name, Version, Ecosystem, PURL string
			Layer                          int
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if doc.Schema != "moat.scan/v1" || len(doc.Packages) != 2 || doc.Packages[0].Name != "libc6" || doc.Packages[1].Layer != 1 || doc.Packages[1].PURL != "pkg:npm/left-pad@1.3.0" {
		t.Errorf("json document %+v", doc)
	}

	dir := t.TempDir()
	for _, f := range []string{"cyclonedx", "spdx"} {
		path := filepath.Join(dir, f+".json")
		if _, err := run(t, "scan", spec, "--format", f, "--output", path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if f == "cyclonedx" && m["specVersion"] != "1.6" {
			t.Errorf("cyclonedx specVersion %v", m["specVersion"])
		}
		if f == "spdx" && m["spdxVersion"] != "SPDX-2.3" {
			t.Errorf("spdx version %v", m["spdxVersion"])
		}
		if !strings.Contains(string(b), "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4") {
			t.Errorf("%s lacks the libc6 purl", f)
		}
	}
}

func TestScanErrors(t *testing.T) {
	if _, err := run(t, "scan", "oci:/nonexistent", "--format", "json"); err == nil {
		t.Error("missing layout: no error")
	}
	if _, err := run(t, "scan", testLayout(t), "--format", "xml"); err == nil || !strings.Contains(err.Error(), "unknown --format") {
		t.Errorf("bad format: %v", err)
	}
	// A failed scan must not leave a half-written output file.
	out := filepath.Join(t.TempDir(), "sbom.json")
	if _, err := run(t, "scan", "oci:/nonexistent", "--format", "cyclonedx", "--output", out); err == nil {
		t.Error("want error")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output file exists after a failed scan: %v", err)
	}
}
