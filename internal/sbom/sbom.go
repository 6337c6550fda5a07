// Package sbom writes moat's scan results as standard SBOM documents
// (CycloneDX 1.6 JSON and SPDX 2.3 JSON) and reads SBOMs back into catalog
// packages usable for vulnerability matching.
//
// # moat properties
//
// Facts that the standard fields cannot carry are kept as name/value
// properties in the "moat:" namespace. In CycloneDX they are component (or
// metadata.component) properties; in SPDX they are one annotation per element
// (annotator "Tool: moat-VERSION", type OTHER) whose comment holds one
// property per line as NAME=QUOTED, QUOTED being a Go/JSON-style quoted
// string.
//
// Package properties:
//
//	moat:type                 catalog type (deb, apk, rpm, golang, npm, ...)
//	moat:ecosystem            OSV ecosystem ("Debian:12", "Go", ...)
//	moat:namespace            Maven group ID (SPDX only; CycloneDX uses group)
//	moat:sourceName           source package (dpkg Source:, apk origin, source RPM)
//	moat:sourceVersion        source package version
//	moat:epoch                RPM epoch
//	moat:release              RPM/dpkg/apk release
//	moat:arch                 architecture
//	moat:layer:index          index of the layer that brought the package in
//	moat:layer:diffID         that layer's diff ID
//	moat:layer:createdBy      that layer's history line
//	moat:location:N:path      Nth file the package was found in
//	moat:location:N:layer     layer index that last wrote that file
//	moat:location:N:layerDiffID  diff ID of that layer
//	moat:metadata:KEY         Package.Metadata[KEY]
//
// Subject (image) properties:
//
//	moat:image:id             config digest
//	moat:image:platform       "linux/amd64"
//	moat:os:name, moat:os:version   detected OS release
//	moat:layer:N:diffID, moat:layer:N:digest, moat:layer:N:createdBy,
//	moat:layer:N:size         the Nth layer of the image
package sbom

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Subject describes what was scanned.
type Subject struct {
	// Name is the image as the user named it, e.g.
	// "registry.example.com/team/app:1.2" or "dir:/x".
	Name string
	// Digest is the manifest digest "sha256:..." when known.
	Digest string
	// ImageID is the config digest when known.
	ImageID string
	// Platform is "os/arch[/variant]".
	Platform string
	// OSName and OSVersion are the detected OS release ("debian", "12").
	OSName, OSVersion string
	// Layers of the image, bottom first.
	Layers []Layer
}

// Layer is one layer of the scanned image.
type Layer struct {
	Index     int
	DiffID    string
	Digest    string
	CreatedBy string
	Size      int64
}

// ToolInfo names the tool that wrote the SBOM.
type ToolInfo struct {
	Name    string // "moat" when empty
	Version string
}

func (t ToolInfo) name() string {
	if t.Name == "" {
		return "moat"
	}
	return t.Name
}

func (t ToolInfo) version() string {
	if t.Version == "" {
		return "unknown"
	}
	return t.Version
}

// Property name prefixes and names; see the package documentation.
const (
	propPrefix        = "moat:"
	propType          = "moat:type"
	propEcosystem     = "moat:ecosystem"
	propNamespace     = "moat:namespace"
	propSourceName    = "moat:sourceName"
	propSourceVersion = "moat:sourceVersion"
	propEpoch         = "moat:epoch"
	propRelease       = "moat:release"
	propArch          = "moat:arch"
	propLayerIndex    = "moat:layer:index"
	propLayerDiffID   = "moat:layer:diffID"
	propLayerCreated  = "moat:layer:createdBy"
	propLocation      = "moat:location:"
	propMetadata      = "moat:metadata:"

	propImageID   = "moat:image:id"
	propPlatform  = "moat:image:platform"
	propOSName    = "moat:os:name"
	propOSVersion = "moat:os:version"
	propLayerN    = "moat:layer:"
)

type property struct{ name, value string }

// BOMRef returns a stable bom-ref for p: readable (type, name, version)
// and unique through a hash over the package key and its primary location.
// Two packages get the same ref only when they have the same type,
// namespace, name, version and primary file, i.e. when they are the same
// package. Refs use letters, digits and ".-_+/:@"; SPDXID maps them to the
// characters SPDX identifiers allow.
func BOMRef(p *catalog.Package) string {
	h := sha256.New()
	h.Write([]byte(p.Key()))
	h.Write([]byte{0})
	if len(p.Locations) > 0 {
		h.Write([]byte(p.Locations[0].Path))
	}
	sum := hex.EncodeToString(h.Sum(nil)[:8])
	name := p.Name
	if p.Namespace != "" {
		name = p.Namespace + "/" + p.Name
	}
	typ := string(p.Type)
	if typ == "" {
		typ = "unknown"
	}
	return refSafe(typ) + ":" + refSafe(name) + "@" + refSafe(p.Version) + "-" + sum
}

// refSafe keeps letters, digits and ".-_+/" and replaces anything else,
// so that refs stay printable and short.
func refSafe(s string) string {
	if len(s) > 128 {
		s = s[:128]
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '-', r == '_', r == '+', r == '/':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// spdxIDSafe maps s to the characters allowed in an SPDX identifier
// (letters, digits, '.', '-').
func spdxIDSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// packageProperties lists the moat facts about p that are written as
// properties. withNamespace adds moat:namespace (for SPDX, which has no
// group field).
func packageProperties(p *catalog.Package, withNamespace bool) []property {
	var ps []property
	add := func(n, v string) {
		if v != "" {
			ps = append(ps, property{n, v})
		}
	}
	add(propType, string(p.Type))
	add(propEcosystem, p.Ecosystem)
	if withNamespace {
		add(propNamespace, p.Namespace)
	}
	add(propSourceName, p.SourceName)
	add(propSourceVersion, p.SourceVersion)
	if p.Epoch != nil {
		add(propEpoch, strconv.Itoa(*p.Epoch))
	}
	add(propRelease, p.Release)
	add(propArch, p.Arch)
	add(propLayerIndex, strconv.Itoa(p.Layer))
	add(propLayerDiffID, p.LayerDiffID)
	add(propLayerCreated, p.CreatedBy)
	for i, l := range p.Locations {
		pre := propLocation + strconv.Itoa(i) + ":"
		add(pre+"path", l.Path)
		add(pre+"layer", strconv.Itoa(l.Layer))
		add(pre+"layerDiffID", l.LayerDiffID)
	}
	keys := make([]string, 0, len(p.Metadata))
	for k := range p.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ps = append(ps, property{propMetadata + k, p.Metadata[k]})
	}
	return ps
}

// subjectProperties lists the facts about the subject written as properties.
func subjectProperties(s *Subject) []property {
	var ps []property
	add := func(n, v string) {
		if v != "" {
			ps = append(ps, property{n, v})
		}
	}
	add(propImageID, s.ImageID)
	add(propPlatform, s.Platform)
	add(propOSName, s.OSName)
	add(propOSVersion, s.OSVersion)
	for _, l := range s.Layers {
		pre := propLayerN + strconv.Itoa(l.Index) + ":"
		add(pre+"diffID", l.DiffID)
		add(pre+"digest", l.Digest)
		add(pre+"createdBy", l.CreatedBy)
		if l.Size > 0 {
			add(pre+"size", strconv.FormatInt(l.Size, 10))
		}
	}
	return ps
}

// applyPackageProperty sets the field of p named by a moat property. It
// reports whether the name was a moat package property.
func applyPackageProperty(p *catalog.Package, name, value string) bool {
	switch name {
	case propType:
		p.Type = catalog.Type(value)
	case propEcosystem:
		p.Ecosystem = value
	case propNamespace:
		p.Namespace = value
	case propSourceName:
		p.SourceName = value
	case propSourceVersion:
		p.SourceVersion = value
	case propEpoch:
		if e, err := strconv.Atoi(value); err == nil {
			p.Epoch = &e
		}
	case propRelease:
		p.Release = value
	case propArch:
		p.Arch = value
	case propLayerIndex:
		if n, err := strconv.Atoi(value); err == nil {
			p.Layer = n
		}
	case propLayerDiffID:
		p.LayerDiffID = value
	case propLayerCreated:
		p.CreatedBy = value
	default:
		switch {
		case strings.HasPrefix(name, propMetadata):
			if p.Metadata == nil {
				p.Metadata = map[string]string{}
			}
			p.Metadata[strings.TrimPrefix(name, propMetadata)] = value
		case strings.HasPrefix(name, propLocation):
			rest := strings.TrimPrefix(name, propLocation)
			idx, field, ok := strings.Cut(rest, ":")
			if !ok {
				return false
			}
			// Locations are numbered from 0 without gaps; an index
			// beyond the next one is ignored so that input size bounds
			// the work.
			i, err := strconv.Atoi(idx)
			if err != nil || i < 0 || i > len(p.Locations) {
				return false
			}
			if i == len(p.Locations) {
				p.Locations = append(p.Locations, catalog.Location{Layer: -1})
			}
			l := &p.Locations[i]
			switch field {
			case "path":
				l.Path = value
			case "layer":
				if n, err := strconv.Atoi(value); err == nil {
					l.Layer = n
				}
			case "layerDiffID":
				l.LayerDiffID = value
			default:
				return false
			}
		default:
			return false
		}
	}
	return true
}

// subjectReader applies subject properties to s; layers are found by
// index through a map so that many layer properties stay linear.
type subjectReader struct {
	s     *Subject
	layer map[int]int // layer index → position in s.Layers
}

// apply sets the field of s named by a moat subject property and reports
// whether it was one.
func (r *subjectReader) apply(name, value string) bool {
	s := r.s
	switch name {
	case propImageID:
		s.ImageID = value
	case propPlatform:
		s.Platform = value
	case propOSName:
		s.OSName = value
	case propOSVersion:
		s.OSVersion = value
	default:
		if !strings.HasPrefix(name, propLayerN) {
			return false
		}
		idx, field, ok := strings.Cut(strings.TrimPrefix(name, propLayerN), ":")
		if !ok {
			return false
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i > 100000 {
			return false
		}
		if r.layer == nil {
			r.layer = map[int]int{}
			for k, l := range s.Layers {
				r.layer[l.Index] = k
			}
		}
		k, ok := r.layer[i]
		if !ok {
			s.Layers = append(s.Layers, Layer{Index: i})
			k = len(s.Layers) - 1
			r.layer[i] = k
		}
		l := &s.Layers[k]
		switch field {
		case "diffID":
			l.DiffID = value
		case "digest":
			l.Digest = value
		case "createdBy":
			l.CreatedBy = value
		case "size":
			if n, err := strconv.ParseInt(value, 10, 64); err == nil {
				l.Size = n
			}
		default:
			return false
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// uniquePackages returns pkgs without exact duplicates (same bom-ref) and
// the ref of each kept package.
func uniquePackages(pkgs []catalog.Package) ([]*catalog.Package, []string) {
	seen := make(map[string]bool, len(pkgs))
	out := make([]*catalog.Package, 0, len(pkgs))
	refs := make([]string, 0, len(pkgs))
	for i := range pkgs {
		ref := BOMRef(&pkgs[i])
		if seen[ref] {
			continue
		}
		seen[ref] = true
		out = append(out, &pkgs[i])
		refs = append(refs, ref)
	}
	return out, refs
}
