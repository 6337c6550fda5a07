package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

// npmRecord copies the shape of a real GHSA record, with a CVSS 3.1 vector.
const npmRecord = `{
  "schema_version": "1.6.0",
  "id": "GHSA-p6mc-m468-83gw",
  "aliases": ["CVE-2020-8203"],
  "summary": "Prototype Pollution in lodash",
  "modified": "2024-01-01T00:00:00Z",
  "published": "2020-07-15T19:15:48Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "3.7.0"}, {"fixed": "4.17.19"}]}]}],
  "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2020-8203"}]
}`

// vulnDB imports the real PyPI data and one npm record into a fresh database.
func vulnDB(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	recs := filepath.Join(t.TempDir(), "npm")
	os.MkdirAll(recs, 0o755)
	if err := os.WriteFile(filepath.Join(recs, "GHSA-p6mc-m468-83gw.json"), []byte(npmRecord), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vulndb.Import(context.Background(), dir, []string{filepath.Join(testenv.OSVData(t), "PyPI", "all.zip"), recs}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func vulnImage(t *testing.T) string {
	img := it.Image(t,
		it.Step{Layer: it.Layer(t,
			it.Text("/usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\nLicense: Apache 2.0\n"),
		), CreatedBy: "RUN pip install requests==2.19.0"},
		it.Step{Layer: it.Layer(t,
			it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.15","license":"MIT"}`),
			it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0"}`),
		), CreatedBy: "COPY app /app"},
	)
	return "oci:" + it.WriteLayout(t, img, "")
}

type jsonReport struct {
	Vulnerabilities struct {
		Findings []struct {
			ID            string
			Aliases       []string
			Severity      string
			FixedVersions []string
			CVSS          *struct{ Score float64 }
			Package       struct {
				Name      string
				Layer     int
				CreatedBy string
			}
		}
		Counts          map[string]int
		SuppressedCount int
		Suppressed      []struct{ ID string }
		ExpiredIgnores  []struct{ ID string }
		Upgrades        []struct {
			Name, To string
			Fixes    int
		}
	}
}

func scanJSON(t *testing.T, args ...string) (jsonReport, error) {
	t.Helper()
	out, err := run(t, append([]string{"scan", "--format", "json"}, args...)...)
	var r jsonReport
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Fatalf("json: %v\n%s", jerr, out)
	}
	return r, err
}

func TestScanFindings(t *testing.T) {
	db := vulnDB(t)
	img := vulnImage(t)

	r, err := scanJSON(t, img, "--db-dir", db)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range r.Vulnerabilities.Findings {
		got[f.ID] = f.Package.Name + " " + f.Severity + " " + strings.Join(f.FixedVersions, ",")
	}
	want := map[string]string{
		"CVE-2018-18074": "requests UNKNOWN 2.20.0",
		"CVE-2023-32681": "requests UNKNOWN 2.31.0",
		"CVE-2020-8203":  "lodash CRITICAL 4.17.19",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: got %q, want %q (all: %v)", id, got[id], w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("findings %v", got)
	}
	for _, f := range r.Vulnerabilities.Findings {
		if f.ID == "CVE-2020-8203" {
			if f.CVSS == nil || f.CVSS.Score != 9.8 || f.Package.Layer != 1 || f.Package.CreatedBy != "COPY app /app" {
				t.Errorf("lodash finding %+v", f)
			}
			if strings.Join(f.Aliases, ",") != "GHSA-p6mc-m468-83gw" {
				t.Errorf("aliases %v", f.Aliases)
			}
		}
	}
	up := r.Vulnerabilities.Upgrades
	if len(up) != 2 || up[0].Name != "requests" || up[0].To != "2.31.0" || up[0].Fixes != 2 {
		t.Errorf("upgrades %+v", up)
	}

	// The CI gate: exit 1 (gateError) at or above the threshold only.
	if _, err := run(t, "scan", img, "--db-dir", db, "--fail-on", "critical"); !isGate(err) || !strings.Contains(err.Error(), "CVE-2020-8203") {
		t.Errorf("--fail-on critical: %v", err)
	}
	if _, err := run(t, "scan", img, "--db-dir", db, "--fail-on", "critical", "--severity", "unknown"); !isGate(err) {
		t.Errorf("--severity narrows the display, never the gate: %v", err)
	}

	// Exceptions: an ignore entry (by alias) and an expired one; VEX.
	dir := t.TempDir()
	ign := filepath.Join(dir, "ignore.yaml")
	os.WriteFile(ign, []byte(`ignore:
  - id: GHSA-p6mc-m468-83gw
    reason: lodash is only used at build time
    expires: 2999-01-01
  - id: CVE-2018-18074
    reason: old decision
    expires: 2020-01-01
`), 0o644)
	r, err = scanJSON(t, img, "--db-dir", db, "--ignore-file", ign, "--fail-on", "critical", "--show-suppressed")
	if err != nil {
		t.Fatalf("the only critical finding is excepted, yet: %v", err)
	}
	if r.Vulnerabilities.SuppressedCount != 1 || len(r.Vulnerabilities.Suppressed) != 1 || r.Vulnerabilities.Suppressed[0].ID != "CVE-2020-8203" {
		t.Errorf("suppressed %+v", r.Vulnerabilities)
	}
	if len(r.Vulnerabilities.ExpiredIgnores) != 1 || r.Vulnerabilities.ExpiredIgnores[0].ID != "CVE-2018-18074" {
		t.Errorf("expired %+v", r.Vulnerabilities.ExpiredIgnores)
	}
	if len(r.Vulnerabilities.Findings) != 2 {
		t.Errorf("an expired exception must not suppress: %+v", r.Vulnerabilities.Findings)
	}

	vex := filepath.Join(dir, "app.vex.json")
	os.WriteFile(vex, []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1","author":"sec","timestamp":"2026-01-01T00:00:00Z","version":1,
"statements":[{"vulnerability":{"name":"CVE-2023-32681"},"products":[{"@id":"pkg:pypi/requests@2.19.0"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`), 0o644)
	r, err = scanJSON(t, img, "--db-dir", db, "--vex", vex)
	if err != nil {
		t.Fatal(err)
	}
	if r.Vulnerabilities.SuppressedCount != 1 || len(r.Vulnerabilities.Findings) != 2 {
		t.Errorf("VEX: %+v", r.Vulnerabilities)
	}

	// SARIF and CycloneDX carry the findings.
	out, err := run(t, "scan", img, "--db-dir", db, "--format", "sarif")
	if err != nil {
		t.Fatal(err)
	}
	var sarif struct {
		Version string
		Runs    []struct {
			Results []struct {
				RuleID string
				Level  string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &sarif); err != nil || sarif.Version != "2.1.0" || len(sarif.Runs) != 1 || len(sarif.Runs[0].Results) != 3 {
		t.Fatalf("sarif %v: %s", err, out)
	}
	cdxPath := filepath.Join(dir, "bom.json")
	if _, err := run(t, "scan", img, "--db-dir", db, "--format", "cyclonedx", "--output", cdxPath); err != nil {
		t.Fatal(err)
	}
	var bom struct {
		Components []struct {
			BOMRef string `json:"bom-ref"`
			Name   string
		}
		Vulnerabilities []struct {
			ID      string
			Affects []struct{ Ref string }
		}
	}
	b, _ := os.ReadFile(cdxPath)
	if err := json.Unmarshal(b, &bom); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for _, c := range bom.Components {
		refs[c.BOMRef] = c.Name
	}
	if len(bom.Vulnerabilities) != 3 {
		t.Fatalf("cyclonedx vulnerabilities: %+v", bom.Vulnerabilities)
	}
	for _, v := range bom.Vulnerabilities {
		if len(v.Affects) != 1 || refs[v.Affects[0].Ref] == "" {
			t.Errorf("%s affects %+v: not a component bom-ref", v.ID, v.Affects)
		}
	}

	// --sbom: the SBOM alone gives the same findings.
	r, err = scanJSON(t, "--sbom", cdxPath, "--db-dir", db)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Vulnerabilities.Findings) != 3 {
		t.Errorf("--sbom findings %+v", r.Vulnerabilities.Findings)
	}
}

func TestScanWithoutDatabase(t *testing.T) {
	img := vulnImage(t)
	empty := t.TempDir()
	_, err := run(t, "scan", img, "--db-dir", empty, "--fail-on", "high")
	if err == nil || isGate(err) || !strings.Contains(err.Error(), "moat db update") {
		t.Fatalf("a gate without data must be an error (exit 2) that says how to get data: %v", err)
	}
	out, err := run(t, "scan", img, "--db-dir", empty)
	if err != nil || !strings.Contains(out, "PyPI") {
		t.Fatalf("without a gate the package list still comes: %v\n%s", err, out)
	}
}

func isGate(err error) bool {
	var g *gateError
	return errors.As(err, &g)
}
