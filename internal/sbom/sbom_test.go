package sbom

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/santhosh-tekuri/jsonschema/v6"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdxlib"
	"github.com/spdx/tools-golang/tagvalue"

	"github.com/moat-dev/moat/internal/catalog"
)

func TestCycloneDXValidAgainstSchema(t *testing.T) {
	schema := cyclonedxSchema(t)
	s := testSubject()
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, s, testPackages(s), testTool); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(schema, buf.Bytes()); err != nil {
		t.Fatalf("CycloneDX output is not valid against bom-1.6.schema.json: %v\n%s", err, buf.String())
	}

	// The validator is not lenient: a wrong component type is rejected.
	bad := bytes.Replace(buf.Bytes(), []byte(`"type": "library"`), []byte(`"type": "nonsense"`), 1)
	if bytes.Equal(bad, buf.Bytes()) {
		t.Fatal("test setup: no library component to corrupt")
	}
	if err := validateJSON(schema, bad); err == nil {
		t.Fatal("schema accepted a component of type \"nonsense\"")
	}

	// A plain directory scan (no digest, no OS, no layers) and no packages
	// are valid too.
	buf.Reset()
	if err := WriteCycloneDX(&buf, Subject{Name: "dir:/x"}, nil, ToolInfo{}); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(schema, buf.Bytes()); err != nil {
		t.Fatalf("empty CycloneDX output invalid: %v\n%s", err, buf.String())
	}
}

func TestCycloneDXContent(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, s, pkgs, testTool); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SpecVersion  string `json:"specVersion"`
		SerialNumber string `json:"serialNumber"`
		Metadata     struct {
			Timestamp string `json:"timestamp"`
			Tools     struct {
				Components []struct{ Name, Version string } `json:"components"`
			} `json:"tools"`
			Component struct {
				Type, Name, Version, Purl string
				BOMRef                    string `json:"bom-ref"`
				Properties                []struct{ Name, Value string }
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Type, Name, Version, Group, Purl string
			BOMRef                           string `json:"bom-ref"`
			Licenses                         []struct {
				Expression string
				License    struct{ ID, Name string }
			}
			Properties []struct{ Name, Value string }
		} `json:"components"`
		Dependencies []struct {
			Ref       string
			DependsOn []string `json:"dependsOn"`
		} `json:"dependencies"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SpecVersion != "1.6" {
		t.Errorf("specVersion %q", doc.SpecVersion)
	}
	if !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(doc.SerialNumber) {
		t.Errorf("serialNumber %q is not a random urn:uuid", doc.SerialNumber)
	}
	if _, err := time.Parse(time.RFC3339, doc.Metadata.Timestamp); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	if tc := doc.Metadata.Tools.Components; len(tc) != 1 || tc[0].Name != "moat" || tc[0].Version != "0.1.0-test" {
		t.Errorf("tools: %+v", tc)
	}
	mc := doc.Metadata.Component
	wantPURL := "pkg:oci/app@sha256:" + strings.Repeat("ab", 32) + "?arch=amd64&repository_url=registry.example.com%2Fteam%2Fapp&tag=1.2"
	if mc.Type != "container" || mc.Name != s.Name || mc.Version != s.Digest || mc.Purl != wantPURL {
		t.Errorf("metadata.component = %+v, want purl %s", mc, wantPURL)
	}
	subjectProps := map[string]string{}
	for _, p := range mc.Properties {
		subjectProps[p.Name] = p.Value
	}
	if subjectProps["moat:layer:1:createdBy"] != s.Layers[1].CreatedBy || subjectProps["moat:os:name"] != "debian" || subjectProps["moat:layer:2:size"] != "4000000" {
		t.Errorf("subject properties: %v", subjectProps)
	}

	// One OS component and one per package (two identical log4j
	// coordinates in two jars stay two components).
	if len(doc.Components) != len(pkgs)+1 {
		t.Fatalf("%d components, want %d", len(doc.Components), len(pkgs)+1)
	}
	if c := doc.Components[0]; c.Type != "operating-system" || c.Name != "debian" || c.Version != "12" {
		t.Errorf("OS component %+v", c)
	}
	refs := map[string]bool{}
	for i, c := range doc.Components[1:] {
		p := &pkgs[i]
		if c.BOMRef != BOMRef(p) || c.Type != "library" || c.Name != p.Name || c.Version != p.Version || c.Group != p.Namespace || c.Purl != p.PURL {
			t.Errorf("component %d = %+v for package %+v", i, c, p)
		}
		if refs[c.BOMRef] {
			t.Errorf("duplicate bom-ref %s", c.BOMRef)
		}
		refs[c.BOMRef] = true
	}
	libc := doc.Components[1]
	props := map[string]string{}
	for _, p := range libc.Properties {
		props[p.Name] = p.Value
	}
	for k, v := range map[string]string{
		"moat:ecosystem": "Debian:12", "moat:sourceName": "glibc", "moat:sourceVersion": "2.36-9+deb12u4",
		"moat:layer:index": "0", "moat:layer:diffID": s.Layers[0].DiffID, "moat:layer:createdBy": s.Layers[0].CreatedBy,
		"moat:location:0:path": "/var/lib/dpkg/status", "moat:location:0:layer": "1", "moat:type": "deb", "moat:arch": "amd64",
	} {
		if props[k] != v {
			t.Errorf("libc6 property %s = %q, want %q", k, props[k], v)
		}
	}
	// Licenses: SPDX IDs as id, other names as name, a single compound
	// expression as expression.
	if ls := libc.Licenses; len(ls) != 3 || ls[0].License.ID != "GPL-2.0-or-later" || ls[1].License.ID != "LGPL-2.1-or-later" || ls[2].License.Name != "Artistic License (Perl)" {
		t.Errorf("libc6 licenses %+v", ls)
	}
	var lodash, golang struct{ found bool }
	for _, c := range doc.Components {
		switch c.Name {
		case "lodash":
			lodash.found = true
			if len(c.Licenses) != 1 || c.Licenses[0].Expression != "MIT OR Apache-2.0" {
				t.Errorf("lodash licenses %+v", c.Licenses)
			}
		case "golang.org/x/net":
			golang.found = true
			md := map[string]string{}
			for _, p := range c.Properties {
				md[p.Name] = p.Value
			}
			if md["moat:metadata:mainModule"] != "example.com/server" || md["moat:metadata:goToolchain"] != "go1.21.3" {
				t.Errorf("Go metadata properties %v", md)
			}
		}
	}
	if !lodash.found || !golang.found {
		t.Error("lodash or golang.org/x/net missing")
	}
	// The image depends on the OS and every package.
	if len(doc.Dependencies) != 1 || doc.Dependencies[0].Ref != mc.BOMRef || len(doc.Dependencies[0].DependsOn) != len(pkgs)+1 {
		t.Fatalf("dependencies %+v", doc.Dependencies)
	}
	for _, d := range doc.Dependencies[0].DependsOn[1:] {
		if !refs[d] {
			t.Errorf("dependency on unknown ref %s", d)
		}
	}
}

func TestCycloneDXVulnerabilityHook(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	bom := BuildCycloneDX(s, pkgs, testTool)
	ref := BOMRef(&pkgs[6]) // golang.org/x/net
	bom.Vulnerabilities = &[]cdx.Vulnerability{{
		BOMRef: "GO-2023-2102",
		ID:     "GO-2023-2102",
		Source: &cdx.Source{Name: "OSV", URL: "https://osv.dev/vulnerability/GO-2023-2102"},
		Ratings: &[]cdx.VulnerabilityRating{{
			Severity: cdx.SeverityHigh, Method: cdx.ScoringMethodCVSSv31, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
		}},
		Affects: &[]cdx.Affects{{Ref: ref}},
	}}
	var buf bytes.Buffer
	if err := EncodeCycloneDX(&buf, bom); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(cyclonedxSchema(t), buf.Bytes()); err != nil {
		t.Fatalf("BOM with vulnerabilities invalid: %v", err)
	}
	if !strings.Contains(buf.String(), `"ref": "`+ref+`"`) {
		t.Fatal("affects ref not written")
	}
	// The package still reads back.
	_, got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	comparePackages(t, got, pkgs)
}

func TestCycloneDXRoundTrip(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, s, pkgs, testTool); err != nil {
		t.Fatal(err)
	}
	gotS, got, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	comparePackages(t, got, pkgs)
	compareSubject(t, gotS, s)
}

func TestCycloneDXXMLRoundTrip(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatXML)
	if err := enc.EncodeVersion(BuildCycloneDX(s, pkgs, testTool), cdx.SpecVersion1_6); err != nil {
		t.Fatal(err)
	}
	gotS, got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	comparePackages(t, got, pkgs)
	compareSubject(t, gotS, s)
}

func compareSubject(t *testing.T, got, want Subject) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("subject:\ngot  %s\nwant %s", g, w)
	}
}

func TestSPDXValidAndRoundTrip(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	var buf bytes.Buffer
	if err := WriteSPDX(&buf, s, pkgs, testTool); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()

	// tools-golang parses it back and finds every relationship target.
	doc, err := spdxjson.Read(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("tools-golang cannot read the output: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatalf("ValidateDocument: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" {
		t.Errorf("version %q license %q", doc.SPDXVersion, doc.DataLicense)
	}
	if !regexp.MustCompile(`^https://\S+-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(doc.DocumentNamespace) {
		t.Errorf("documentNamespace %q", doc.DocumentNamespace)
	}
	if c := doc.CreationInfo.Creators; len(c) != 1 || c[0].CreatorType != "Tool" || c[0].Creator != "moat-0.1.0-test" {
		t.Errorf("creators %+v", c)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 || described[0] != "Image" {
		t.Fatalf("described packages %v, %v", described, err)
	}
	// root, OS, and one per package
	if len(doc.Packages) != len(pkgs)+2 {
		t.Fatalf("%d packages, want %d", len(doc.Packages), len(pkgs)+2)
	}
	contains := map[string]bool{}
	for _, r := range doc.Relationships {
		if r.Relationship == "CONTAINS" && r.RefA.ElementRefID == "Image" {
			contains[string(r.RefB.ElementRefID)] = true
		}
	}
	idRE := regexp.MustCompile(`^[A-Za-z0-9.\-]+$`)
	licRefs := map[string]bool{}
	for _, ol := range doc.OtherLicenses {
		licRefs[ol.LicenseIdentifier] = true
		if ol.ExtractedText == "" {
			t.Errorf("extracted license %s has no text", ol.LicenseIdentifier)
		}
	}
	for i, sp := range doc.Packages[2:] {
		p := &pkgs[i]
		id := string(sp.PackageSPDXIdentifier)
		if id != SPDXID(BOMRef(p)) || !idRE.MatchString(id) {
			t.Errorf("SPDXID %q for %s", id, p.Name)
		}
		if !contains[id] {
			t.Errorf("no CONTAINS relationship to %s", id)
		}
		if sp.PackageDownloadLocation != "NOASSERTION" || sp.FilesAnalyzed || sp.PackageLicenseConcluded != "NOASSERTION" {
			t.Errorf("%s: download %q filesAnalyzed %v concluded %q", id, sp.PackageDownloadLocation, sp.FilesAnalyzed, sp.PackageLicenseConcluded)
		}
		if len(sp.PackageExternalReferences) != 1 || sp.PackageExternalReferences[0].Locator != p.PURL || sp.PackageExternalReferences[0].Category != "PACKAGE-MANAGER" {
			t.Errorf("%s: external refs %+v", id, sp.PackageExternalReferences)
		}
		if len(p.Locations) > 0 && !strings.Contains(sp.PackageSourceInfo, p.Locations[0].Path) {
			t.Errorf("%s: sourceInfo %q", id, sp.PackageSourceInfo)
		}
		for _, term := range regexp.MustCompile(`LicenseRef-[A-Za-z0-9.\-]+`).FindAllString(sp.PackageLicenseDeclared, -1) {
			if !licRefs[term] {
				t.Errorf("%s: %s has no hasExtractedLicensingInfos entry", id, term)
			}
		}
	}
	if got := doc.Packages[2].PackageLicenseDeclared; !strings.HasPrefix(got, "GPL-2.0-or-later AND LGPL-2.1-or-later AND LicenseRef-Artistic-License--Perl-") {
		t.Errorf("libc6 licenseDeclared %q", got)
	}

	gotS, got, err := Read(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	comparePackages(t, got, pkgs)
	compareSubject(t, gotS, s)
}

// Tag-value SPDX: element annotations are document-level entries naming
// the element (SPDXREF), and the reader orders packages by SPDXID.
func TestSPDXTagValueRoundTrip(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	doc := BuildSPDX(s, pkgs, testTool)
	for _, p := range doc.Packages {
		for _, a := range p.Annotations {
			a.AnnotationSPDXIdentifier = common.MakeDocElementID("", string(p.PackageSPDXIdentifier))
			doc.Annotations = append(doc.Annotations, &a)
		}
		p.Annotations = nil
	}
	var buf bytes.Buffer
	if err := tagvalue.Write(doc, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("SPDXVersion: SPDX-2.3")) {
		t.Fatalf("unexpected tag-value output:\n%s", buf.String())
	}
	gotS, got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	byRef := func(ps []catalog.Package) []catalog.Package {
		out := append([]catalog.Package(nil), ps...)
		sort.Slice(out, func(i, j int) bool { return BOMRef(&out[i]) < BOMRef(&out[j]) })
		return out
	}
	comparePackages(t, byRef(got), byRef(pkgs))
	compareSubject(t, gotS, s)
}

func TestDuplicatePackagesWrittenOnce(t *testing.T) {
	s := testSubject()
	p := testPackages(s)[0]
	pkgs := []catalog.Package{p, p}
	for _, write := range []func(*bytes.Buffer) error{
		func(b *bytes.Buffer) error { return WriteCycloneDX(b, s, pkgs, testTool) },
		func(b *bytes.Buffer) error { return WriteSPDX(b, s, pkgs, testTool) },
	} {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		_, got, err := Read(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("%d packages read back, want 1", len(got))
		}
	}
}

func TestBOMRef(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	seen := map[string]string{}
	for i := range pkgs {
		r := BOMRef(&pkgs[i])
		if r != BOMRef(&pkgs[i]) {
			t.Fatal("BOMRef is not stable")
		}
		if prev, ok := seen[r]; ok {
			t.Errorf("%s and %s share ref %s", prev, pkgs[i].Name, r)
		}
		seen[r] = pkgs[i].Name
		if !regexp.MustCompile(`^[a-z]+:[A-Za-z0-9._+/\-]+@[A-Za-z0-9._+/\-]*-[0-9a-f]{16}$`).MatchString(r) {
			t.Errorf("ref %q", r)
		}
	}
	// Layer facts do not change the identity of a package.
	p := pkgs[0]
	p.Layer, p.CreatedBy = 2, "other"
	if BOMRef(&p) != BOMRef(&pkgs[0]) {
		t.Error("layer changed the ref")
	}
	p.Version = "2.36-9+deb12u5"
	if BOMRef(&p) == BOMRef(&pkgs[0]) {
		t.Error("version did not change the ref")
	}
	if got := BOMRef(&pkgs[0]); !strings.HasPrefix(got, "deb:libc6@2.36-9+deb12u4-") {
		t.Errorf("libc6 ref %q", got)
	}
}

func TestPackagePURLBuiltWhenMissing(t *testing.T) {
	s := testSubject()
	p := catalog.Package{Name: "libc6", Version: "2.36-9", Type: catalog.TypeDeb, Arch: "amd64", SourceName: "glibc", SourceVersion: "2.36-9", Layer: -1}
	got := packagePURL(&p, &s)
	if got != "pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12&upstream=glibc" {
		t.Errorf("built purl %q", got)
	}
	s.OSName = ""
	if got := packagePURL(&catalog.Package{Name: "golang.org/x/net", Version: "v0.17.0", Type: catalog.TypeGo}, &s); got != "pkg:golang/golang.org/x/net@v0.17.0" {
		t.Errorf("go purl %q", got)
	}
}

func TestImagePURL(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	enc := d // packageurl-go leaves ':' unescaped in versions
	for _, tc := range []struct {
		s    Subject
		want string
	}{
		{Subject{Name: "alpine:3.20", Digest: d}, "pkg:oci/alpine@" + enc + "?repository_url=index.docker.io%2Flibrary%2Falpine&tag=3.20"},
		{Subject{Name: "ghcr.io/o/r@" + d, Digest: d}, "pkg:oci/r@" + enc + "?repository_url=ghcr.io%2Fo%2Fr"},
		{Subject{Name: "docker:myapp", Digest: d, Platform: "linux/arm64/v8"}, "pkg:oci/myapp@" + enc + "?arch=arm64&repository_url=index.docker.io%2Flibrary%2Fmyapp"},
		{Subject{Name: "oci-archive:/tmp/My.tar", Digest: d}, "pkg:oci/my@" + enc},
		{Subject{Name: "dir:/x", Digest: d}, ""},
		{Subject{Name: "alpine:3.20"}, ""},
	} {
		if got := ImagePURL(&tc.s); got != tc.want {
			t.Errorf("ImagePURL(%q) = %q, want %q", tc.s.Name, got, tc.want)
		}
	}
}

// spdxSchema compiles the official SPDX 2.3 JSON schema kept under
// testdata (see testdata/spdx-schema-2.3/README.md).
func spdxSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	const id = "http://spdx.org/rdf/terms/2.3"
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(id, loadJSON(t, filepath.Join("testdata", "spdx-schema-2.3", "spdx-schema.json"))); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compiling the SPDX 2.3 schema: %v", err)
	}
	return s
}

func TestSPDXValidAgainstSchema(t *testing.T) {
	schema := spdxSchema(t)
	s := testSubject()
	var buf bytes.Buffer
	if err := WriteSPDX(&buf, s, testPackages(s), testTool); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(schema, buf.Bytes()); err != nil {
		t.Fatalf("SPDX output is not valid against the SPDX 2.3 schema: %v", err)
	}
	// The schema is strict: the tag-value spelling of a purpose and an
	// unknown field are rejected.
	for old, bad := range map[string]string{
		`"primaryPackagePurpose": "OPERATING_SYSTEM"`: `"primaryPackagePurpose": "OPERATING-SYSTEM"`,
		`"downloadLocation": "NOASSERTION"`:           `"downloadLocations": "NOASSERTION"`,
	} {
		mod := bytes.Replace(buf.Bytes(), []byte(old), []byte(bad), 1)
		if bytes.Equal(mod, buf.Bytes()) {
			t.Fatalf("test setup: %s not in output", old)
		}
		if err := validateJSON(schema, mod); err == nil {
			t.Errorf("schema accepted %s", bad)
		}
	}
	buf.Reset()
	if err := WriteSPDX(&buf, Subject{Name: "dir:/x"}, nil, ToolInfo{}); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(schema, buf.Bytes()); err != nil {
		t.Fatalf("empty SPDX output invalid: %v\n%s", err, buf.String())
	}
}
