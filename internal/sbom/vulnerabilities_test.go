package sbom

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/moat-dev/moat/internal/match"
)

// TestAddVulnerabilitiesValid checks the vulnerabilities section moat scan
// writes against the CycloneDX 1.6 schema, and that every affects ref is a
// component's bom-ref.
func TestAddVulnerabilitiesValid(t *testing.T) {
	s := testSubject()
	pkgs := testPackages(s)
	findings := []match.Finding{
		{ID: "CVE-2023-44487", Aliases: []string{"GHSA-qppj-fm5r-hxr3", "GO-2023-2102"}, Package: pkgs[6],
			Summary: "HTTP/2 rapid reset", Severity: match.High, FixedVersions: []string{"v0.17.0"},
			CVSS:       &match.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", Score: 7.5},
			References: []string{"https://nvd.nist.gov/vuln/detail/CVE-2023-44487"}, Published: "2023-10-10T14:15:10Z"},
		{ID: "CVE-2023-44487", Package: pkgs[0], Severity: match.High},
		{ID: "PYSEC-2018-28", Package: pkgs[1], Severity: match.Unknown},
	}
	bom := BuildCycloneDX(s, pkgs, testTool)
	AddVulnerabilities(bom, findings)
	var buf bytes.Buffer
	if err := EncodeCycloneDX(&buf, bom); err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(cyclonedxSchema(t), buf.Bytes()); err != nil {
		t.Fatalf("vulnerabilities section invalid against bom-1.6.schema.json: %v", err)
	}
	var doc struct {
		Components []struct {
			BOMRef string `json:"bom-ref"`
		}
		Vulnerabilities []struct {
			ID      string
			Ratings []struct {
				Score  float64
				Method string
			}
			Affects []struct{ Ref string }
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	for _, c := range doc.Components {
		refs[c.BOMRef] = true
	}
	if len(doc.Vulnerabilities) != 2 {
		t.Fatalf("want one entry per vulnerability (2), got %d", len(doc.Vulnerabilities))
	}
	v := doc.Vulnerabilities[0]
	if v.ID != "CVE-2023-44487" || len(v.Affects) != 2 || v.Ratings[0].Score != 7.5 || v.Ratings[0].Method != "CVSSv31" {
		t.Errorf("first vulnerability %+v", v)
	}
	for _, v := range doc.Vulnerabilities {
		for _, a := range v.Affects {
			if !refs[a.Ref] {
				t.Errorf("%s affects %s, which is no component's bom-ref", v.ID, a.Ref)
			}
		}
	}
}
