// Package dotnet catalogs .NET packages from the *.deps.json files that the
// .NET SDK writes next to every application and library it publishes.
package dotnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Ecosystem is the OSV ecosystem of NuGet packages.
const Ecosystem = "NuGet"

const maxDepsJSON = 64 << 20

type cataloger struct{}

// New returns the .NET cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "dotnet" }

// Wants accepts *.deps.json files.
func (cataloger) Wants(p string, mode fs.FileMode, size int64) bool {
	return strings.HasSuffix(p, ".deps.json") && !strings.HasSuffix(p, "/.deps.json")
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) ([]catalog.Package, error) {
	data, err := f.Bytes(maxDepsJSON)
	if err != nil {
		return nil, err
	}
	return parseDepsJSON(f.Path, data)
}

type depsJSON struct {
	Libraries map[string]json.RawMessage `json:"libraries"`
}

type library struct {
	Type string `json:"type"`
	Path string `json:"path"`
}

// parseDepsJSON reports the "libraries" of type "package" (NuGet packages),
// keyed "Name/Version". Projects and reference assemblies are not packages.
func parseDepsJSON(path string, data []byte) ([]catalog.Package, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var d depsJSON
	if err := json.Unmarshal(data, &d); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			before := data[:min(se.Offset, int64(len(data)))]
			return nil, fmt.Errorf("invalid JSON at line %d: %v", bytes.Count(before, []byte("\n"))+1, err)
		}
		return nil, fmt.Errorf("unexpected JSON content: %v", err)
	}
	var pkgs []catalog.Package
	var bad []string
	for key, raw := range d.Libraries {
		var lib library
		if err := json.Unmarshal(raw, &lib); err != nil {
			bad = append(bad, fmt.Sprintf("library %q: %v", catalog.Clip(key), err))
			continue
		}
		if lib.Type != "package" {
			continue
		}
		name, version, ok := strings.Cut(key, "/")
		if !ok || !validName(name) || !validVersion(version) {
			bad = append(bad, fmt.Sprintf("library %q: expected \"Name/Version\"", catalog.Clip(key)))
			continue
		}
		var md map[string]string
		if lib.Path != "" {
			md = map[string]string{"path": lib.Path}
		}
		pkgs = append(pkgs, catalog.Package{
			Name:      name,
			Version:   version,
			Type:      catalog.TypeNuGet,
			Ecosystem: Ecosystem,
			Locations: []catalog.Location{{Path: path}},
			Metadata:  md,
		})
	}
	catalog.SortByNameVersion(pkgs)
	if len(bad) > 0 {
		slices.Sort(bad)
		const max = 5
		msg := strings.Join(bad[:min(len(bad), max)], "; ")
		if len(bad) > max {
			msg += fmt.Sprintf("; and %d more", len(bad)-max)
		}
		return pkgs, errors.New(msg)
	}
	return pkgs, nil
}

// validName accepts NuGet package IDs: letters, digits, '.', '-', '_'.
func validName(n string) bool { return catalog.ValidToken(n, 256, ".-_") }

// validVersion accepts NuGet versions: letters, digits, '.', '-', '+'.
func validVersion(v string) bool { return catalog.ValidToken(v, 128, ".-+") }
