package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	packageurl "github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/tagvalue"

	"github.com/moat-dev/moat/internal/catalog"
)

// MaxSBOMSize is the largest SBOM Read accepts.
const MaxSBOMSize = 256 << 20

// ErrTooLarge is returned (wrapped) for input larger than MaxSBOMSize.
var ErrTooLarge = errors.New("SBOM is larger than 256 MiB")

// ErrUnknownFormat is returned (wrapped) when the input is neither
// CycloneDX (JSON or XML) nor SPDX (JSON or tag-value).
var ErrUnknownFormat = errors.New("not a CycloneDX or SPDX SBOM")

// Read reads a CycloneDX (JSON or XML) or SPDX 2.x (JSON or tag-value)
// SBOM. It returns what the SBOM says about its subject and its packages,
// with type, ecosystem, namespace and source package filled in for
// vulnerability matching: from moat's own properties for SBOMs moat wrote,
// else from each package URL (see PackageFromPURL) and the operating system
// the SBOM names. Components that are not packages (the image itself, the
// operating system, files) are not returned as packages.
func Read(r io.Reader) (Subject, []catalog.Package, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSBOMSize+1))
	if err != nil {
		return Subject{}, nil, fmt.Errorf("reading SBOM: %w", err)
	}
	if len(data) > MaxSBOMSize {
		return Subject{}, nil, ErrTooLarge
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return Subject{}, nil, fmt.Errorf("empty input: %w", ErrUnknownFormat)
	}
	switch trimmed[0] {
	case '{':
		kind, err := sniffJSON(trimmed)
		if err != nil {
			return Subject{}, nil, err
		}
		if strings.HasPrefix(kind, "SPDX") {
			return readSPDX(trimmed, kind)
		}
		return readCycloneDX(trimmed, cdx.BOMFileFormatJSON)
	case '<':
		head := trimmed[:min(len(trimmed), 4096)]
		switch {
		case bytes.Contains(head, []byte("cyclonedx.org/schema/bom")):
			return readCycloneDX(trimmed, cdx.BOMFileFormatXML)
		case bytes.Contains(head, []byte("spdx.org/rdf")):
			return Subject{}, nil, fmt.Errorf("SPDX RDF/XML is not supported, use SPDX JSON or tag-value: %w", ErrUnknownFormat)
		}
		return Subject{}, nil, fmt.Errorf("XML document is not a CycloneDX BOM (no cyclonedx.org/schema/bom namespace): %w", ErrUnknownFormat)
	}
	if looksLikeTagValue(trimmed) {
		return readSPDX(trimmed, "")
	}
	return Subject{}, nil, fmt.Errorf("input starts with %q: %w", truncate(string(trimmed[:min(len(trimmed), 32)])), ErrUnknownFormat)
}

// sniffJSON tells CycloneDX from SPDX by the top-level keys. Both formats
// put their marker key first in practice, so only a few tokens are read.
func sniffJSON(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	notJSON := func(err error) error { return fmt.Errorf("SBOM is not valid JSON: %w", err) }
	if _, err := dec.Token(); err != nil { // '{'
		return "", notJSON(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", notJSON(err)
		}
		key, _ := tok.(string)
		switch key {
		case "bomFormat":
			var f any
			if err := dec.Decode(&f); err != nil {
				return "", notJSON(err)
			}
			if f != "CycloneDX" {
				b, _ := json.Marshal(f)
				return "", fmt.Errorf("JSON bomFormat is %s, want \"CycloneDX\": %w", truncate(string(b)), ErrUnknownFormat)
			}
			return "cyclonedx", nil
		case "spdxVersion":
			var v any
			if err := dec.Decode(&v); err != nil {
				return "", notJSON(err)
			}
			if vs, ok := v.(string); ok && strings.HasPrefix(vs, "SPDX-") {
				return vs, nil
			}
			b, _ := json.Marshal(v)
			return "", fmt.Errorf("JSON spdxVersion is %s, want \"SPDX-2.x\": %w", truncate(string(b)), ErrUnknownFormat)
		case "@context":
			return "", fmt.Errorf("JSON-LD document (SPDX 3?) is not supported: %w", ErrUnknownFormat)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", notJSON(err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return "", notJSON(err)
	}
	return "", fmt.Errorf("JSON document has neither \"bomFormat\" (CycloneDX) nor \"spdxVersion\" (SPDX): %w", ErrUnknownFormat)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// looksLikeTagValue reports whether the first non-comment line is the
// SPDXVersion tag.
func looksLikeTagValue(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		return bytes.HasPrefix(line, []byte("SPDXVersion:"))
	}
	return false
}

// guard turns a panic in a third-party decoder into an error.
func guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed %s (decoder failed: %v)", what, r)
		}
	}()
	return f()
}

// ---- CycloneDX ----

func readCycloneDX(data []byte, format cdx.BOMFileFormat) (Subject, []catalog.Package, error) {
	what := "CycloneDX JSON SBOM"
	if format == cdx.BOMFileFormatXML {
		what = "CycloneDX XML SBOM"
	}
	var bom cdx.BOM
	if err := guard(what, func() error {
		if format == cdx.BOMFileFormatJSON {
			return json.Unmarshal(data, &bom) // what cdx's JSON decoder does, without a copy
		}
		return cdx.NewBOMDecoder(bytes.NewReader(data), format).Decode(&bom)
	}); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return Subject{}, nil, fmt.Errorf("reading %s: not valid JSON: %w", what, err)
		}
		return Subject{}, nil, fmt.Errorf("reading %s: %w", what, err)
	}
	var s Subject
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		mc := bom.Metadata.Component
		s.Name = mc.Name
		if looksLikeDigest(mc.Version) {
			s.Digest = mc.Version
		}
		if s.Digest == "" {
			s.Digest = digestFromOCIPURL(mc.PackageURL)
		}
		if mc.Properties != nil {
			sr := subjectReader{s: &s}
			for _, p := range *mc.Properties {
				sr.apply(p.Name, p.Value)
			}
		}
	}
	var pkgs []catalog.Package
	var walk func(cs *[]cdx.Component, depth int)
	walk = func(cs *[]cdx.Component, depth int) {
		if cs == nil || depth > 32 {
			return
		}
		for i := range *cs {
			c := &(*cs)[i]
			switch c.Type {
			case cdx.ComponentTypeOS:
				if s.OSName == "" {
					s.OSName, s.OSVersion = strings.ToLower(c.Name), c.Version
				}
			case cdx.ComponentTypeLibrary, cdx.ComponentTypeApplication, cdx.ComponentTypeFramework, "":
				if c.Name != "" {
					pkgs = append(pkgs, cdxPackage(c))
				}
			}
			walk(c.Components, depth+1)
		}
	}
	walk(bom.Components, 0)
	finish(&s, pkgs)
	return s, pkgs, nil
}

// digestFromOCIPURL returns the digest a pkg:oci package URL names.
func digestFromOCIPURL(purl string) string {
	if !strings.HasPrefix(purl, "pkg:oci/") {
		return ""
	}
	u, err := packageurl.FromString(purl)
	if err != nil || !looksLikeDigest(u.Version) {
		return ""
	}
	return u.Version
}

func looksLikeDigest(v string) bool {
	alg, hex, ok := strings.Cut(v, ":")
	return ok && alg != "" && len(hex) >= 32 && !strings.ContainsAny(hex, ":/ ")
}

func cdxPackage(c *cdx.Component) catalog.Package {
	var props []cdx.Property
	if c.Properties != nil {
		props = *c.Properties
	}
	ours := false
	for _, pr := range props {
		if pr.Name == propType {
			ours = true
		}
	}
	p := basePackage(ours, c.Name, c.Version, c.Group, c.PackageURL)
	if ours {
		for _, pr := range props {
			applyPackageProperty(&p, pr.Name, pr.Value)
		}
	} else {
		applyForeignProperties(&p, props)
	}
	if c.Licenses != nil {
		for _, l := range *c.Licenses {
			switch {
			case l.Expression != "":
				p.Licenses = append(p.Licenses, l.Expression)
			case l.License != nil && l.License.ID != "":
				p.Licenses = append(p.Licenses, l.License.ID)
			case l.License != nil && l.License.Name != "":
				p.Licenses = append(p.Licenses, l.License.Name)
			}
		}
	}
	return p
}

// basePackage starts a package from the standard fields: for moat's own
// SBOMs the fields are taken as they are; for others the package URL says
// what the package is.
func basePackage(ours bool, name, version, group, purl string) catalog.Package {
	if !ours && purl != "" {
		if p, err := PackageFromPURL(purl); err == nil {
			if p.Name == "" {
				p.Name = name
			}
			if p.Version == "" {
				p.Version = version
			}
			return p
		}
	}
	return catalog.Package{Name: name, Version: version, Namespace: group, PURL: purl, Layer: -1}
}

// applyForeignProperties reads the location and source facts that syft and
// Trivy record as CycloneDX properties.
func applyForeignProperties(p *catalog.Package, props []cdx.Property) {
	var srcName, srcVersion, srcRelease, srcEpoch, syftSrc, syftSrcVersion string
	for _, pr := range props {
		n, v := pr.Name, pr.Value
		switch {
		case strings.HasPrefix(n, "syft:location:"):
			idx, field, ok := strings.Cut(strings.TrimPrefix(n, "syft:location:"), ":")
			i, err := strconv.Atoi(idx)
			if !ok || err != nil || i < 0 || i > len(p.Locations) {
				continue // numbered from 0 without gaps
			}
			if i == len(p.Locations) {
				p.Locations = append(p.Locations, catalog.Location{Layer: -1})
			}
			switch field {
			case "path":
				p.Locations[i].Path = v
			case "layerID":
				p.Locations[i].LayerDiffID = v
			}
		case n == "syft:metadata:source":
			syftSrc = v
		case n == "syft:metadata:sourceVersion":
			syftSrcVersion = v
		case n == "aquasecurity:trivy:LayerDiffID":
			p.LayerDiffID = v
		case n == "aquasecurity:trivy:FilePath":
			if len(p.Locations) == 0 {
				p.Locations = append(p.Locations, catalog.Location{Path: v, Layer: -1})
			}
		case n == "aquasecurity:trivy:SrcName":
			srcName = v
		case n == "aquasecurity:trivy:SrcVersion":
			srcVersion = v
		case n == "aquasecurity:trivy:SrcRelease":
			srcRelease = v
		case n == "aquasecurity:trivy:SrcEpoch":
			srcEpoch = v
		}
	}
	if srcName == "" && syftSrc != "" && p.Type.OSPackage() {
		p.SourceName, p.SourceVersion = syftSrc, syftSrcVersion
		if p.SourceVersion == "" {
			p.SourceVersion = p.Version // syft leaves it out when it is the same
		}
	}
	if srcName != "" {
		p.SourceName = srcName
		p.SourceVersion = srcVersion
		if srcRelease != "" && srcVersion != "" {
			p.SourceVersion += "-" + srcRelease
		}
		// dpkg versions carry their epoch; rpm keeps it apart.
		if p.Type == catalog.TypeDeb && srcEpoch != "" && srcEpoch != "0" && srcVersion != "" && !strings.Contains(srcVersion, ":") {
			p.SourceVersion = srcEpoch + ":" + p.SourceVersion
		}
	}
	if p.LayerDiffID == "" && len(p.Locations) > 0 {
		p.LayerDiffID = p.Locations[0].LayerDiffID
	}
}

// finish fills what can be derived from the subject: layer indexes from
// diff IDs and OS ecosystems from the operating system the SBOM names.
func finish(s *Subject, pkgs []catalog.Package) {
	sort.SliceStable(s.Layers, func(i, j int) bool { return s.Layers[i].Index < s.Layers[j].Index })
	byDiff := map[string]Layer{}
	for _, l := range s.Layers {
		if l.DiffID != "" {
			byDiff[l.DiffID] = l
		}
	}
	osEco := EcosystemForDistro(s.OSName, s.OSVersion)
	for i := range pkgs {
		p := &pkgs[i]
		if p.Layer < 0 && p.LayerDiffID != "" {
			if l, ok := byDiff[p.LayerDiffID]; ok {
				p.Layer = l.Index
				if p.CreatedBy == "" {
					p.CreatedBy = l.CreatedBy
				}
			}
		}
		for j := range p.Locations {
			loc := &p.Locations[j]
			if loc.Layer < 0 && loc.LayerDiffID != "" {
				if l, ok := byDiff[loc.LayerDiffID]; ok {
					loc.Layer = l.Index
				}
			}
		}
		if p.Type.OSPackage() && osEco != "" && !strings.Contains(p.Ecosystem, ":") {
			// A purl without a distro qualifier: use the OS of the SBOM
			// when it is the same distribution (or the purl names none).
			if p.Ecosystem == "" || strings.HasPrefix(osEco, p.Ecosystem) {
				p.Ecosystem = osEco
			}
		}
	}
}

// ---- SPDX ----

// readSPDX reads SPDX JSON of the given spdxVersion, or tag-value when
// jsonVersion is "".
func readSPDX(data []byte, jsonVersion string) (Subject, []catalog.Package, error) {
	what := "SPDX JSON SBOM"
	if jsonVersion == "" {
		what = "SPDX tag-value SBOM"
	}
	var doc *spdx.Document
	err := guard(what, func() error {
		var err error
		switch jsonVersion {
		case "":
			doc, err = tagvalue.Read(bytes.NewReader(data))
		case spdx.Version:
			// The current model is SPDX 2.3: decode straight into it
			// rather than through tools-golang's version detection and
			// conversion, which parse the document twice more.
			doc = new(spdx.Document)
			err = json.Unmarshal(data, doc)
		default:
			doc, err = spdxjson.Read(bytes.NewReader(data))
		}
		return err
	})
	if err != nil {
		return Subject{}, nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if doc == nil {
		return Subject{}, nil, fmt.Errorf("reading %s: empty document", what)
	}

	// Annotations: per package (JSON) and document-level ones naming an
	// element (tag-value).
	notes := map[common.ElementID][]string{}
	for _, a := range doc.Annotations {
		if a != nil {
			id := a.AnnotationSPDXIdentifier.ElementRefID
			notes[id] = append(notes[id], a.AnnotationComment)
		}
	}
	for _, p := range doc.Packages {
		if p == nil {
			continue
		}
		for _, a := range p.Annotations {
			notes[p.PackageSPDXIdentifier] = append(notes[p.PackageSPDXIdentifier], a.AnnotationComment)
		}
	}
	props := func(id common.ElementID) []property {
		var ps []property
		for _, c := range notes[id] {
			ps = append(ps, decodeProperties(c)...)
		}
		return ps
	}

	roots := map[common.ElementID]bool{}
	for _, r := range doc.Relationships {
		if r == nil {
			continue
		}
		switch r.Relationship {
		case common.TypeRelationshipDescribe:
			if r.RefA.ElementRefID == doc.SPDXIdentifier || r.RefA.ElementRefID == "DOCUMENT" {
				roots[r.RefB.ElementRefID] = true
			}
		case common.TypeRelationshipDescribeBy:
			if r.RefB.ElementRefID == doc.SPDXIdentifier || r.RefB.ElementRefID == "DOCUMENT" {
				roots[r.RefA.ElementRefID] = true
			}
		}
	}
	otherLicenses := map[string]string{}
	for _, ol := range doc.OtherLicenses {
		if ol == nil {
			continue
		}
		n := ol.LicenseName
		if n == "" || n == noAssertion {
			n = ol.LicenseIdentifier
		}
		otherLicenses[ol.LicenseIdentifier] = n
	}

	var s Subject
	var pkgs []catalog.Package
	subjectSet := false
	for _, sp := range doc.Packages {
		if sp == nil {
			continue
		}
		purpose := strings.ToUpper(strings.ReplaceAll(sp.PrimaryPackagePurpose, "_", "-"))
		switch {
		case roots[sp.PackageSPDXIdentifier] && (!subjectSet):
			subjectSet = true
			s.Name = sp.PackageName
			if looksLikeDigest(sp.PackageVersion) {
				s.Digest = sp.PackageVersion
			}
			if s.Digest == "" {
				for _, ref := range sp.PackageExternalReferences {
					if ref != nil && ref.RefType == common.TypePackageManagerPURL {
						s.Digest = digestFromOCIPURL(ref.Locator)
					}
				}
			}
			sr := subjectReader{s: &s}
			for _, pr := range props(sp.PackageSPDXIdentifier) {
				sr.apply(pr.name, pr.value)
			}
			continue
		case roots[sp.PackageSPDXIdentifier], purpose == "CONTAINER", purpose == "FILE":
			continue
		case purpose == "OPERATING-SYSTEM":
			if s.OSName == "" {
				s.OSName, s.OSVersion = strings.ToLower(sp.PackageName), sp.PackageVersion
			}
			continue
		}
		if sp.PackageName == "" {
			continue
		}
		purl := ""
		for _, ref := range sp.PackageExternalReferences {
			if ref != nil && ref.RefType == common.TypePackageManagerPURL {
				purl = ref.Locator
				break
			}
		}
		ps := props(sp.PackageSPDXIdentifier)
		ours := false
		for _, pr := range ps {
			if pr.name == propType {
				ours = true
			}
		}
		p := basePackage(ours, sp.PackageName, sp.PackageVersion, "", purl)
		if ours {
			for _, pr := range ps {
				applyPackageProperty(&p, pr.name, pr.value)
			}
		} else {
			applyForeignProperties(&p, trivyAnnotations(notes[sp.PackageSPDXIdentifier]))
			if len(p.Locations) == 0 {
				// syft: "acquired package info from DPKG DB: /var/lib/dpkg/status"
				if i := strings.LastIndex(sp.PackageSourceInfo, ": /"); i >= 0 {
					if path := strings.TrimSpace(sp.PackageSourceInfo[i+2:]); path != "" && !strings.ContainsAny(path, " \n,") {
						p.Locations = []catalog.Location{{Path: path, Layer: -1}}
					}
				}
			}
		}
		lic := sp.PackageLicenseDeclared
		if isNoLicense(lic) {
			lic = sp.PackageLicenseConcluded
		}
		if !isNoLicense(lic) {
			for _, term := range splitTopLevelAnd(lic) {
				if n, ok := otherLicenses[term]; ok {
					term = n
				}
				p.Licenses = append(p.Licenses, term)
			}
		}
		pkgs = append(pkgs, p)
	}
	finish(&s, pkgs)
	return s, pkgs, nil
}

// trivyAnnotations turns the "Key: value" annotation comments Trivy writes
// in SPDX into the property names it uses in CycloneDX.
func trivyAnnotations(comments []string) []cdx.Property {
	var ps []cdx.Property
	for _, c := range comments {
		k, v, ok := strings.Cut(c, ": ")
		if !ok {
			continue
		}
		switch k {
		case "LayerDiffID", "SrcName", "SrcVersion", "SrcRelease", "SrcEpoch", "FilePath":
			ps = append(ps, cdx.Property{Name: "aquasecurity:trivy:" + k, Value: strings.TrimSpace(v)})
		}
	}
	return ps
}

func isNoLicense(l string) bool {
	l = strings.TrimSpace(l)
	return l == "" || l == noAssertion || l == "NONE"
}
