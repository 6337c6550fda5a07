package python

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// header is one field of a core-metadata file.
type header struct{ key, value string }

// parseHeaders reads the RFC 822 style header block of a METADATA or
// PKG-INFO file, stopping at the first blank line (the description body).
// Continuation lines (starting with a space or tab) extend the previous
// field. Lines that are neither are reported.
func parseHeaders(data []byte) ([]header, []string) {
	var hs []header
	var bad []string
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(hs) == 0 {
				bad = append(bad, fmt.Sprintf("line %d: continuation line before any field", lineNo))
				continue
			}
			h := &hs[len(hs)-1]
			h.value += "\n" + strings.TrimSpace(string(line))
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			bad = append(bad, fmt.Sprintf("line %d: expected \"Field: value\", got %q", lineNo, catalog.Clip(string(line))))
			continue
		}
		hs = append(hs, header{string(k), strings.TrimSpace(string(v))})
	}
	return hs, bad
}

// parseMetadata reads the core metadata of an installed distribution.
func parseMetadata(path string, data []byte) ([]catalog.Package, error) {
	hs, bad := parseHeaders(data)
	var name, version, license, expr string
	var classifiers []string
	for _, h := range hs {
		switch strings.ToLower(h.key) {
		case "name":
			name = h.value
		case "version":
			version = h.value
		case "license":
			license = h.value
		case "license-expression":
			expr = h.value
		case "classifier":
			if rest, ok := strings.CutPrefix(h.value, "License ::"); ok {
				parts := strings.Split(rest, "::")
				if l := strings.TrimSpace(parts[len(parts)-1]); l != "" && l != "OSI Approved" {
					classifiers = append(classifiers, l)
				}
			}
		}
	}
	var problem error
	if len(bad) > 0 {
		problem = errors.New(summarize(bad))
	}
	switch {
	case name == "" || version == "":
		return nil, errors.Join(errors.New("no Name or Version field in the metadata"), problem)
	case !validName(name):
		return nil, errors.Join(fmt.Errorf("invalid project name %q", catalog.Clip(name)), problem)
	case !validVersion(version):
		return nil, errors.Join(fmt.Errorf("invalid version %q", catalog.Clip(version)), problem)
	}
	var lic []string
	switch {
	case expr != "":
		lic = []string{expr}
	case usableLicense(license):
		lic = []string{license}
	default:
		lic = classifiers
	}
	return []catalog.Package{newPackage(path, name, version, lic, nil)}, problem
}

// usableLicense rejects empty and placeholder License fields and full
// license texts pasted into the field.
func usableLicense(l string) bool {
	switch strings.ToUpper(l) {
	case "", "UNKNOWN", "NONE", "N/A":
		return false
	}
	return len(l) <= 100 && !strings.Contains(l, "\n")
}
