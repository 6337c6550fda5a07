package sbom

import (
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	packageurl "github.com/package-url/packageurl-go"

	"github.com/moat-dev/moat/internal/catalog"
)

// CycloneDX schema URL for the spec version moat writes.
const cycloneDXSchema1_6 = "http://cyclonedx.org/schema/bom-1.6.schema.json"

// BuildCycloneDX returns the CycloneDX 1.6 BOM describing s and pkgs,
// without encoding it. Callers may add sections (vulnerabilities, whose
// affects[].ref are BOMRef values of the packages) before EncodeCycloneDX.
// Exact duplicates (same BOMRef) are written once.
func BuildCycloneDX(s Subject, pkgs []catalog.Package, tool ToolInfo) *cdx.BOM {
	bom := cdx.NewBOM()
	bom.JSONSchema = cycloneDXSchema1_6
	bom.SpecVersion = cdx.SpecVersion1_6
	bom.SerialNumber = "urn:uuid:" + newUUID()
	bom.Version = 1

	image := subjectComponent(&s)
	bom.Metadata = &cdx.Metadata{
		Timestamp: time.Now().UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type:    cdx.ComponentTypeApplication,
			Name:    tool.name(),
			Version: tool.version(),
		}}},
		Component: image,
	}

	unique, refs := uniquePackages(pkgs)
	comps := make([]cdx.Component, 0, len(unique)+1)
	dependsOn := make([]string, 0, len(unique)+1)
	if s.OSName != "" {
		ref := "os:" + refSafe(s.OSName) + "@" + refSafe(s.OSVersion)
		comps = append(comps, cdx.Component{
			BOMRef:  ref,
			Type:    cdx.ComponentTypeOS,
			Name:    s.OSName,
			Version: s.OSVersion,
		})
		dependsOn = append(dependsOn, ref)
	}
	for i, p := range unique {
		comps = append(comps, packageComponent(p, refs[i], &s))
		dependsOn = append(dependsOn, refs[i])
	}
	bom.Components = &comps
	deps := []cdx.Dependency{{Ref: image.BOMRef}}
	if len(dependsOn) > 0 {
		deps[0].Dependencies = &dependsOn
	}
	bom.Dependencies = &deps
	return bom
}

// EncodeCycloneDX writes bom as indented JSON, as it is: sections added
// to a BOM from BuildCycloneDX must use CycloneDX 1.6 features only (the
// encoder's down-conversion deep-copies the whole BOM, which is slow for
// large images).
func EncodeCycloneDX(w io.Writer, bom *cdx.BOM) error {
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(bom); err != nil {
		return fmt.Errorf("writing CycloneDX: %w", err)
	}
	return nil
}

// WriteCycloneDX writes a CycloneDX 1.6 JSON SBOM of s and pkgs to w.
func WriteCycloneDX(w io.Writer, s Subject, pkgs []catalog.Package, tool ToolInfo) error {
	return EncodeCycloneDX(w, BuildCycloneDX(s, pkgs, tool))
}

// subjectRef is the bom-ref of the scanned image.
func subjectRef(s *Subject) string {
	if s.Digest != "" {
		return "image:" + refSafe(s.Digest)
	}
	return "image"
}

func subjectComponent(s *Subject) *cdx.Component {
	c := &cdx.Component{
		BOMRef:     subjectRef(s),
		Type:       cdx.ComponentTypeContainer,
		Name:       s.Name,
		Version:    s.Digest,
		PackageURL: ImagePURL(s),
	}
	if c.Name == "" {
		c.Name = "unknown"
	}
	if props := subjectProperties(s); len(props) > 0 {
		c.Properties = cdxProperties(props)
	}
	return c
}

// ImagePURL returns the pkg:oci package URL of the subject, or "" when its
// manifest digest is unknown or it is not an image (dir:).
func ImagePURL(s *Subject) string {
	if s.Digest == "" || strings.HasPrefix(s.Name, "dir:") {
		return ""
	}
	ref := s.Name
	var q []packageurl.Qualifier
	repoName := ""
	for _, pfx := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if rest, ok := strings.CutPrefix(ref, pfx); ok {
			base := path.Base(strings.TrimRight(rest, "/"))
			base = strings.TrimSuffix(strings.TrimSuffix(base, ".tar"), ".tgz")
			repoName = strings.ToLower(base)
			ref = ""
			break
		}
	}
	ref = strings.TrimPrefix(ref, "docker:")
	if ref != "" {
		if r, err := name.ParseReference(ref); err == nil {
			repo := r.Context()
			repoName = path.Base(repo.RepositoryStr())
			q = append(q, packageurl.Qualifier{Key: "repository_url", Value: repo.Name()})
			if t, ok := r.(name.Tag); ok && strings.Contains(ref, ":"+t.TagStr()) {
				q = append(q, packageurl.Qualifier{Key: "tag", Value: t.TagStr()})
			}
		} else {
			repoName = strings.ToLower(path.Base(ref))
		}
	}
	if repoName == "" || repoName == "." || repoName == "/" {
		repoName = "image"
	}
	if s.Platform != "" {
		if os, arch, ok := strings.Cut(s.Platform, "/"); ok && os != "" {
			a, _, _ := strings.Cut(arch, "/")
			q = append(q, packageurl.Qualifier{Key: "arch", Value: a})
		}
	}
	return packageurl.NewPackageURL("oci", "", repoName, s.Digest, q, "").ToString()
}

func packageComponent(p *catalog.Package, ref string, s *Subject) cdx.Component {
	c := cdx.Component{
		BOMRef:     ref,
		Type:       cdx.ComponentTypeLibrary,
		Name:       p.Name,
		Version:    p.Version,
		Group:      p.Namespace,
		PackageURL: packagePURL(p, s),
	}
	if c.Name == "" {
		c.Name = "unknown"
	}
	if l := cdxLicenses(p.Licenses); l != nil {
		c.Licenses = l
	}
	if props := packageProperties(p, false); len(props) > 0 {
		c.Properties = cdxProperties(props)
	}
	return c
}

func cdxProperties(ps []property) *[]cdx.Property {
	out := make([]cdx.Property, len(ps))
	for i, p := range ps {
		out[i] = cdx.Property{Name: p.name, Value: p.value}
	}
	return &out
}

// cdxLicenses maps license strings: a single compound SPDX expression is
// written as an expression, known SPDX identifiers as license IDs, anything
// else as license names. (CycloneDX does not allow mixing expressions with
// license objects, so several licenses are always license objects.)
func cdxLicenses(ls []string) *cdx.Licenses {
	var out cdx.Licenses
	if len(ls) == 1 {
		if norm, ok, compound := normalizeExpression(ls[0]); ok && compound {
			out = append(out, cdx.LicenseChoice{Expression: norm})
			return &out
		}
	}
	seen := map[string]bool{}
	for _, l := range ls {
		l = strings.TrimSpace(l)
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		if norm, ok, compound := normalizeExpression(l); ok && !compound {
			l = norm // "(mit)" → "MIT"
		}
		if id, ok := canonicalLicenseID(l); ok {
			out = append(out, cdx.LicenseChoice{License: &cdx.License{ID: id}})
		} else {
			out = append(out, cdx.LicenseChoice{License: &cdx.License{Name: l}})
		}
	}
	if len(out) == 0 {
		return nil
	}
	return &out
}
