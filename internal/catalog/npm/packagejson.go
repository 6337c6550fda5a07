package npm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

type packageJSON struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Private  bool            `json:"private"`
	License  json.RawMessage `json:"license"`
	Licenses json.RawMessage `json:"licenses"`
}

// parsePackageJSON reads the package.json of an installed package, or of a
// project outside node_modules (an application in the image; marked with
// Metadata["project"], and "private" when it says so). Files without a name
// or a version (nested package.json files that only set "type" or "main")
// declare no package.
func parsePackageJSON(path string, data []byte) ([]catalog.Package, error) {
	var pj packageJSON
	if err := json.Unmarshal(data, &pj); err != nil {
		return nil, catalog.JSONError(data, err)
	}
	if pj.Name == "" || pj.Version == "" {
		return nil, nil
	}
	if !validName(pj.Name) {
		return nil, fmt.Errorf("invalid package name %q", pj.Name)
	}
	lic := licenses(pj.License)
	if len(lic) == 0 {
		lic = licenses(pj.Licenses)
	}
	c := newCollector(path, "")
	c.add(pj.Name, strings.TrimSpace(pj.Version), false, false, lic)
	pkgs := c.result()
	if !strings.Contains(path, "/node_modules/") {
		for i := range pkgs {
			if pkgs[i].Metadata == nil {
				pkgs[i].Metadata = map[string]string{}
			}
			pkgs[i].Metadata["project"] = "true"
			if pj.Private {
				pkgs[i].Metadata["private"] = "true"
			}
		}
	}
	return pkgs, nil
}

// licenses reads a license declaration in any of the forms found in the
// wild: "MIT", {"type": "MIT", "url": ...}, or an array of either.
func licenses(raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var out []string
	addOne := func(r json.RawMessage) {
		var s string
		if json.Unmarshal(r, &s) == nil {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
			return
		}
		var o struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if json.Unmarshal(r, &o) == nil {
			s := strings.TrimSpace(o.Type)
			if s == "" {
				s = strings.TrimSpace(o.Name)
			}
			if s != "" {
				out = append(out, s)
			}
		}
	}
	if raw[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) == nil {
			for _, r := range arr {
				addOne(r)
			}
		}
		return out
	}
	addOne(raw)
	return out
}
