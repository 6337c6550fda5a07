package sbom

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// The generated identifier list must be the one the CycloneDX schema of
// the module in go.mod accepts (rerun `go generate` after an upgrade).
func TestLicenseIDsMatchCycloneDXSchema(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(cyclonedxSchemaDir(t), "spdx.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	sort.Strings(schema.Enum)
	if !reflect.DeepEqual(schema.Enum, spdxLicenseIDs) {
		t.Fatalf("licenses_gen.go is out of date (%d IDs, schema has %d): run go generate ./internal/sbom", len(spdxLicenseIDs), len(schema.Enum))
	}
}

func TestNormalizeExpression(t *testing.T) {
	for _, tc := range []struct {
		in, norm     string
		ok, compound bool
	}{
		{"MIT", "MIT", true, false},
		{"mit", "MIT", true, false},
		{"apache-2.0", "Apache-2.0", true, false},
		{"MIT OR Apache-2.0", "MIT OR Apache-2.0", true, true},
		{"((MIT OR Apache-2.0))", "MIT OR Apache-2.0", true, true},
		{"(MIT)", "MIT", true, false},
		{"(MIT) OR (ISC)", "(MIT) OR (ISC)", true, true},
		{"(MIT OR Apache-2.0) AND BSD-3-Clause", "(MIT OR Apache-2.0) AND BSD-3-Clause", true, true},
		{"GPL-2.0-only WITH Classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0", true, true},
		{"GPL-2.0+", "GPL-2.0+", true, false},
		{"LGPL-2.1+", "LGPL-2.1+", true, false},
		{"LicenseRef-my-lic.1", "LicenseRef-my-lic.1", true, false},
		{"DocumentRef-x:LicenseRef-y", "DocumentRef-x:LicenseRef-y", true, false},
		{"MIT and Apache-2.0", "", false, false}, // operators are upper case
		{"GPL", "", false, false},
		{"Apache 2.0", "", false, false},
		{"BSD-3-Clause OR", "", false, false},
		{"(MIT", "", false, false},
		{"MIT)", "", false, false},
		{"MIT WITH MIT-exception-nonexistent", "", false, false},
		{"LicenseRef-", "", false, false},
		{"LicenseRef-a_b", "", false, false},
		{"Public Domain", "", false, false},
		{"", "", false, false},
	} {
		norm, ok, compound := normalizeExpression(tc.in)
		if norm != tc.norm || ok != tc.ok || compound != tc.compound {
			t.Errorf("normalizeExpression(%q) = %q, %v, %v; want %q, %v, %v", tc.in, norm, ok, compound, tc.norm, tc.ok, tc.compound)
		}
	}
}

func TestSPDXLicenseDeclared(t *testing.T) {
	ex := map[string]string{}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "NOASSERTION"},
		{[]string{"mit"}, "MIT"},
		{[]string{"MIT OR Apache-2.0"}, "MIT OR Apache-2.0"},
		{[]string{"MIT", "MIT OR Apache-2.0"}, "MIT AND (MIT OR Apache-2.0)"},
		{[]string{"GPL"}, licenseRefFor("GPL")},
		{[]string{"MIT", "MIT"}, "MIT"},
	} {
		if got := spdxLicenseDeclared(tc.in, ex); got != tc.want {
			t.Errorf("spdxLicenseDeclared(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if ex[licenseRefFor("GPL")] != "GPL" {
		t.Errorf("extracted licenses %v", ex)
	}
	if a, b := licenseRefFor("GPL v2"), licenseRefFor("GPL-v2"); a == b || !validRefID(a) || !validRefID(b) {
		t.Errorf("license refs %q %q", a, b)
	}
	if r := licenseRefFor("äöü"); !validRefID(r) {
		t.Errorf("license ref %q", r)
	}
	// Reading splits what the writer joined.
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"MIT AND (MIT OR Apache-2.0)", []string{"MIT", "MIT OR Apache-2.0"}},
		{"MIT OR Apache-2.0", []string{"MIT OR Apache-2.0"}},
		{"(MIT) AND (BSD-2-Clause OR ISC) AND Zlib", []string{"MIT", "BSD-2-Clause OR ISC", "Zlib"}},
		{"(MIT AND ISC) OR Zlib", []string{"(MIT AND ISC) OR Zlib"}},
		{"(MIT) OR (ISC)", []string{"(MIT) OR (ISC)"}},
	} {
		if got := splitTopLevelAnd(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitTopLevelAnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
