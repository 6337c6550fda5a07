package match

import (
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
)

func sampleResult(t *testing.T) *Result {
	db := dbFrom(t, npmRec, pyFoldA, pyFoldB, mavenRec)
	return run(t, db,
		catalog.Package{Name: "lodash", Version: "4.17.20", Type: catalog.TypeNpm, Ecosystem: "npm", PURL: "pkg:npm/lodash@4.17.20"},
		catalog.Package{Name: "lodash", Version: "4.17.19", Type: catalog.TypeNpm, Ecosystem: "npm", PURL: "pkg:npm/lodash@4.17.19"},
		catalog.Package{Name: "Some_Package", Version: "1.0", Type: catalog.TypePyPI, Ecosystem: "PyPI", PURL: "pkg:pypi/some-package@1.0"},
		catalog.Package{Namespace: "com.fasterxml.jackson.core", Name: "jackson-databind", Version: "2.13.4", Type: catalog.TypeMaven, Ecosystem: "Maven",
			PURL: "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.13.4"},
	)
}

func names(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Package.Name+"@"+f.Package.Version)
	}
	return strings.Join(out, " ")
}

func TestIgnoreFile(t *testing.T) {
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	ig, err := ParseIgnoreFile(".moatignore.yaml", []byte(`
ignore:
  - id: ghsa-35jh-r3h4-6jhm        # the GHSA, any case
    package: lodash
    version: 4.17.20
    reason: template input is trusted
    expires: 2026-06-15              # still valid through that day
  - id: GHSA-aaaa-bbbb-cccc          # an alias of the CVE finding
    package: some-package            # PEP 503 spelling of Some_Package
    reason: not reachable
    expires: 2026-12-31
  - id: CVE-2022-42003
    reason: was fine last year
    expires: 2026-06-14              # expired yesterday
`), now)
	if err != nil {
		t.Fatal(err)
	}
	res := sampleResult(t)
	if len(res.Findings) != 4 {
		t.Fatalf("findings: %s", names(res.Findings))
	}
	res.Apply(ig)
	if names(res.Findings) != "jackson-databind@2.13.4 lodash@4.17.19" {
		t.Errorf("remaining: %s", names(res.Findings))
	}
	if len(res.Suppressed) != 2 || res.Suppressed[0].SuppressedBy.Kind != "ignore" || res.Suppressed[0].SuppressedBy.Reason == "" {
		t.Errorf("suppressed: %+v", res.Suppressed)
	}
	if len(res.Expired) != 1 || res.Expired[0].ID != "CVE-2022-42003" {
		t.Errorf("expired: %+v", res.Expired)
	}
	// the next day the first entry has expired too
	ig2, _ := ParseIgnoreFile("x", []byte("ignore:\n  - id: CVE-2021-23337\n    reason: r\n    expires: 2026-06-15\n"), now.Add(24*time.Hour))
	res = sampleResult(t)
	res.Apply(ig2)
	if len(res.Suppressed) != 0 || len(res.Expired) != 1 {
		t.Errorf("expired entry still applies: %+v", res.Suppressed)
	}
}

func TestIgnoreFileErrors(t *testing.T) {
	now := time.Now()
	for _, c := range []struct{ in, want string }{
		{"ignore:\n  - id: X\n    expires: 2030-01-01\n", "needs a reason"},
		{"ignore:\n  - reason: r\n    expires: 2030-01-01\n", "needs an id"},
		{"ignore:\n  - id: X\n    reason: r\n", "needs an expiry date"},
		{"ignore:\n  - id: X\n    reason: r\n    expires: next week\n", "is not a date"},
		{"ignore:\n  - id: X\n    reason: r\n    expires: 2030-01-01\n    pakage: typo\n", "pakage"},
		{"ignore: [", "yaml"},
	} {
		_, err := ParseIgnoreFile("f.yaml", []byte(c.in), now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
	if f, err := ParseIgnoreFile("empty", nil, now); err != nil || len(f.Rules) != 0 {
		t.Errorf("empty file: %v", err)
	}
}

const vexDoc = `{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "https://example.com/vex/1",
  "author": "sec@example.com",
  "timestamp": "2026-01-01T00:00:00Z",
  "version": 1,
  "statements": [
    {"vulnerability": {"name": "CVE-2021-23337"},
     "products": [{"@id": "pkg:oci/app@sha256%3A` + digestHex + `",
                   "subcomponents": [{"@id": "pkg:npm/lodash@4.17.20"}]}],
     "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
    {"vulnerability": {"name": "CVE-2021-9999", "aliases": ["PYSEC-2021-1"]},
     "products": [{"@id": "pkg:pypi/some-package"}],
     "status": "fixed"},
    {"vulnerability": {"name": "CVE-2021-9999"},
     "products": [{"@id": "pkg:pypi/some-package"}],
     "status": "affected", "timestamp": "2025-01-01T00:00:00Z"},
    {"vulnerability": {"name": "CVE-2022-42003"},
     "products": [{"@id": "registry.example.com/app@sha256:` + digestHex + `"}],
     "status": "under_investigation"}
  ]
}`

const digestHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestVEX(t *testing.T) {
	v, err := ParseVEX("app.vex.json", []byte(vexDoc))
	if err != nil {
		t.Fatal(err)
	}
	v.Image = []string{"registry.example.com/app:1.0", "sha256:" + digestHex}
	res := sampleResult(t)
	res.Apply(v)
	// lodash 4.17.20 (image subcomponent) and some-package (fixed; the
	// older "affected" statement is overridden) are suppressed;
	// under_investigation suppresses nothing; lodash 4.17.19 is not a
	// listed subcomponent
	if names(res.Findings) != "jackson-databind@2.13.4 lodash@4.17.19" {
		t.Errorf("remaining: %s", names(res.Findings))
	}
	got := map[string]string{}
	for _, s := range res.Suppressed {
		got[s.Package.Name] = s.SuppressedBy.Status
	}
	if got["lodash"] != "not_affected" || got["Some_Package"] != "fixed" || len(got) != 2 {
		t.Errorf("suppressed: %v", got)
	}
	// without the image identity the image statement does not apply
	v.Image = nil
	res = sampleResult(t)
	res.Apply(v)
	if len(res.Suppressed) != 1 {
		t.Errorf("suppressed without image: %d", len(res.Suppressed))
	}
}

func TestVEXErrorsAndOldFormat(t *testing.T) {
	old := `{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-2021-23337","products":["pkg:npm/lodash@4.17.19"],"status":"not_affected"}]}`
	v, err := ParseVEX("old.json", []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	res := sampleResult(t)
	res.Apply(v)
	if len(res.Suppressed) != 1 || res.Suppressed[0].Package.Version != "4.17.19" {
		t.Errorf("old format: %+v", res.Suppressed)
	}
	for _, c := range []struct{ in, want string }{
		{`{`, "not an OpenVEX JSON"},
		{`{"@context":"https://cyclonedx.org"}`, "not an OpenVEX document"},
		{`{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"X"},"products":[{"@id":"p"}],"status":"maybe"}]}`, "unknown status"},
		{`{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"X"},"status":"fixed"}]}`, "names no product"},
		{`{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{},"products":["p"],"status":"fixed"}]}`, "names no vulnerability"},
	} {
		if _, err := ParseVEX("v.json", []byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
	}
}

func FuzzParseIgnoreFile(f *testing.F) {
	f.Add([]byte("ignore:\n  - id: CVE-1\n    reason: r\n    expires: 2030-01-01\n"))
	f.Add([]byte("ignore: []"))
	f.Add([]byte("- a\n- b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseIgnoreFile("fuzz", data, time.Unix(0, 0))
	})
}

func FuzzParseVEX(f *testing.F) {
	f.Add([]byte(vexDoc))
	f.Add([]byte(`{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"X","products":["p"],"status":"fixed","subcomponents":["s"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVEX("fuzz", data)
		if err == nil {
			v.Image = []string{"sha256:" + digestHex}
			fd := &Finding{ID: "X", Package: catalog.Package{PURL: "pkg:npm/p@1"}}
			v.Suppresses(fd)
		}
	})
}
