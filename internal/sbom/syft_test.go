package sbom

import (
	"fmt"
	"github.com/moat-dev/moat/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

// syftBinary finds syft (built by scripts/peers/syft.sh) in
// $MOAT_TEST_TOOLS, ~/.cache/moat-tools/bin or PATH. When CI=true and it is
// missing, the script builds it; otherwise the test is skipped.
func syftBinary(t *testing.T) string {
	t.Helper()
	find := func() string { return testenv.LookTool("syft") }
	if p := find(); p != "" {
		return p
	}
	if os.Getenv("CI") != "true" {
		t.Skip("syft not found in $MOAT_TEST_TOOLS, ~/.cache/moat-tools/bin or PATH (run scripts/peers/syft.sh)")
	}
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "peers", "syft.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building syft: %v\n%s", err, out)
	}
	if p := find(); p != "" {
		return p
	}
	t.Fatal("scripts/peers/syft.sh ran but syft is still not found")
	return ""
}

// TestReadSyftOutput reads the four SBOM formats a real syft writes for an
// image built here, and checks that the packages come out the way moat's
// own scan of the same image has them (for the kinds syft catalogs in
// images).
func TestReadSyftOutput(t *testing.T) {
	syft := syftBinary(t)
	layout := testImageLayout(t)
	res := scanLayout(t, layout)

	out := t.TempDir()
	formats := map[string]string{
		"cyclonedx-json": "bom.cdx.json", "cyclonedx-xml": "bom.cdx.xml",
		"spdx-json": "bom.spdx.json", "spdx-tag-value": "bom.spdx",
	}
	args := []string{"scan", "oci-dir:" + layout, "-q"}
	for f, name := range formats {
		args = append(args, "-o", f+"="+filepath.Join(out, name))
	}
	cmd := exec.Command(syft, args...)
	cmd.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false", "HOME="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("syft: %v\n%s", err, b)
	}

	// What matching needs, as moat's scan has it.
	key := func(p *catalog.Package) string {
		name := p.Name
		if p.Type == catalog.TypePyPI {
			name = strings.ToLower(name)
		}
		path := ""
		if len(p.Locations) > 0 {
			path = p.Locations[0].Path
		}
		return fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s", p.Type, p.Namespace, name, p.Version, p.Ecosystem, p.SourceName, p.SourceVersion, path)
	}
	var want []string
	for i := range res.Packages {
		switch res.Packages[i].Type {
		case catalog.TypeDeb, catalog.TypeNpm, catalog.TypePyPI, catalog.TypeMaven:
			want = append(want, key(&res.Packages[i]))
		}
	}
	sort.Strings(want)
	if len(want) != 6 {
		t.Fatalf("moat scan: %d packages of the kinds syft finds, want 6: %v", len(want), want)
	}
	for _, name := range formats {
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		s, pkgs, err := Read(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Digest != res.Subject.Digest && s.Digest != res.Subject.ImageID {
			t.Errorf("%s: subject digest %q, moat has manifest %q config %q", name, s.Digest, res.Subject.Digest, res.Subject.ImageID)
		}
		var got []string
		for i := range pkgs {
			got = append(got, key(&pkgs[i]))
		}
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: packages\n got %s\nwant %s", name, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
		}
		// CycloneDX from syft names the layer of each file.
		if strings.HasPrefix(name, "bom.cdx") {
			diff := map[string]string{}
			for _, p := range res.Packages {
				diff[p.Name] = p.LayerDiffID
			}
			for _, p := range pkgs {
				if d, ok := diff[p.Name]; ok && p.LayerDiffID != d {
					t.Errorf("%s: %s layer %q, moat says %q", name, p.Name, p.LayerDiffID, d)
				}
			}
		}
	}
}
