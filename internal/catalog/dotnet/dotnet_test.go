package dotnet

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

func parseFile(t *testing.T, path string, data []byte) ([]string, []catalog.Package, error) {
	t.Helper()
	pkgs, err := catalogtest.Parse(t, New(), catalog.TypeNuGet, "NuGet", path, data)
	return catalogtest.Summary(pkgs, catalogtest.NameVersion), pkgs, err
}

func TestWants(t *testing.T) {
	c := New()
	catalogtest.AssertWants(t, c, 10, map[string]bool{
		"/app/WebApi.deps.json": true,
		"/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.0/Microsoft.NETCore.App.deps.json": true,
		"/app/WebApi.runtimeconfig.json": false,
		"/app/deps.json":                 false,
		"/app/.deps.json":                false,
	})
	catalogtest.AssertWantsAllocatesNothing(t, c, 0o644, 1, "/app/WebApi.deps.json")
}

func TestDepsJSON(t *testing.T) {
	data, err := os.ReadFile("testdata/WebApi.deps.json")
	if err != nil {
		t.Fatal(err)
	}
	got, pkgs, err := parseFile(t, "/app/WebApi.deps.json", data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Microsoft.NETCore.Platforms@1.1.0",
		"Newtonsoft.Json@13.0.3",
		"Serilog.AspNetCore@8.0.0",
		"System.Text.Json@8.0.0-preview.7.23375.6",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if pkgs[1].Metadata["path"] != "newtonsoft.json/13.0.3" {
		t.Errorf("metadata %v", pkgs[1].Metadata)
	}
}

func TestDepsJSONMalformed(t *testing.T) {
	got, _, err := parseFile(t, "/app/x.deps.json", []byte(`{"libraries":{"Good/1.0.0":{"type":"package"},"NoVersion":{"type":"package"},"Bad/1.0.0":{"type":3}}}`))
	if !slices.Equal(got, []string{"Good@1.0.0"}) {
		t.Errorf("got %q", got)
	}
	if err == nil || !strings.Contains(err.Error(), `library "NoVersion": expected "Name/Version"`) || !strings.Contains(err.Error(), `library "Bad/1.0.0"`) {
		t.Errorf("error = %v", err)
	}
	_, _, err = parseFile(t, "/app/x.deps.json", []byte("{\n  \"libraries\": {\n"))
	if err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("error = %v", err)
	}
}

func FuzzDepsJSON(f *testing.F) {
	catalogtest.FuzzParse(f, parseDepsJSON, "/x.deps.json", catalogtest.ValidNameVersion(validName, validVersion),
		"testdata/WebApi.deps.json", `{"libraries":{"a/1":{"type":"package","path":"a/1"}}}`)
}
