package dotnet

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

func parseFile(t *testing.T, path string, data []byte) ([]string, []catalog.Package, error) {
	t.Helper()
	c := New()
	if !c.Wants(path, 0o644, int64(len(data))) {
		t.Fatalf("Wants(%q) = false", path)
	}
	pkgs, err := c.Parse(context.Background(), catalog.NewFile(path, 0o644, data))
	var out []string
	for _, p := range pkgs {
		if p.Type != catalog.TypeNuGet || p.Ecosystem != "NuGet" {
			t.Errorf("%s: type %q ecosystem %q", p.Name, p.Type, p.Ecosystem)
		}
		if len(p.Locations) != 1 || p.Locations[0].Path != path {
			t.Errorf("%s: locations %+v", p.Name, p.Locations)
		}
		out = append(out, p.Name+"@"+p.Version)
	}
	return out, pkgs, err
}

func TestWants(t *testing.T) {
	c := New()
	for path, want := range map[string]bool{
		"/app/WebApi.deps.json": true,
		"/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.0/Microsoft.NETCore.App.deps.json": true,
		"/app/WebApi.runtimeconfig.json": false,
		"/app/deps.json":                 false,
		"/app/.deps.json":                false,
	} {
		if got := c.Wants(path, 0o644, 10); got != want {
			t.Errorf("Wants(%q) = %v, want %v", path, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.Wants("/app/WebApi.deps.json", 0o644, 1) }); n != 0 {
		t.Errorf("Wants allocates %v times", n)
	}
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
	data, err := os.ReadFile("testdata/WebApi.deps.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"libraries":{"a/1":{"type":"package","path":"a/1"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, _ := parseDepsJSON("/x.deps.json", data)
		for _, p := range pkgs {
			if !validName(p.Name) || !validVersion(p.Version) {
				t.Fatalf("invalid package: %+v", p)
			}
		}
	})
}
