package sbom

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"

	"github.com/moat-dev/moat/internal/catalog"
)

const (
	noAssertion      = "NOASSERTION"
	spdxRootID       = "Image"
	spdxPackagePfx   = "Package-"
	spdxNamespaceURL = "https://moat-dev.github.io/spdx/"
)

// SPDXID returns the SPDX identifier (without the "SPDXRef-" prefix) that
// WriteSPDX gives the package with bom-ref ref.
func SPDXID(ref string) string { return spdxPackagePfx + spdxIDSafe(ref) }

// BuildSPDX returns the SPDX 2.3 document describing s and pkgs.
func BuildSPDX(s Subject, pkgs []catalog.Package, tool ToolInfo) *spdx.Document {
	created := time.Now().UTC().Format(time.RFC3339)
	toolID := tool.name() + "-" + tool.version()
	docName := s.Name
	if docName == "" {
		docName = "unknown"
	}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      docName,
		DocumentNamespace: spdxNamespaceURL + strings.Trim(spdxIDSafe(docName), "-") + "-" + newUUID(),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: toolID}},
			Created:  created,
		},
	}
	annotation := func(ps []property) []spdx.Annotation {
		if len(ps) == 0 {
			return nil
		}
		return []spdx.Annotation{{
			Annotator:         common.Annotator{AnnotatorType: "Tool", Annotator: toolID},
			AnnotationDate:    created,
			AnnotationType:    "OTHER",
			AnnotationComment: encodeProperties(ps),
		}}
	}

	root := &spdx.Package{
		PackageName:               docName,
		PackageSPDXIdentifier:     spdxRootID,
		PackageVersion:            s.Digest,
		PackageDownloadLocation:   noAssertion,
		FilesAnalyzed:             false,
		IsFilesAnalyzedTagPresent: true,
		PackageLicenseConcluded:   noAssertion,
		PackageLicenseDeclared:    noAssertion,
		PackageCopyrightText:      noAssertion,
		PrimaryPackagePurpose:     "CONTAINER",
		Annotations:               annotation(subjectProperties(&s)),
	}
	if hex, ok := strings.CutPrefix(s.Digest, "sha256:"); ok && len(hex) == 64 {
		root.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: hex}}
	}
	if purl := ImagePURL(&s); purl != "" {
		root.PackageExternalReferences = []*spdx.PackageExternalReference{{
			Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl,
		}}
	}
	doc.Packages = append(doc.Packages, root)
	doc.Relationships = append(doc.Relationships, &spdx.Relationship{
		RefA:         common.MakeDocElementID("", "DOCUMENT"),
		RefB:         common.MakeDocElementID("", spdxRootID),
		Relationship: common.TypeRelationshipDescribe,
	})

	if s.OSName != "" {
		osID := common.ElementID("OperatingSystem-" + spdxIDSafe(s.OSName+"-"+s.OSVersion))
		doc.Packages = append(doc.Packages, &spdx.Package{
			PackageName:               s.OSName,
			PackageSPDXIdentifier:     osID,
			PackageVersion:            s.OSVersion,
			PackageDownloadLocation:   noAssertion,
			FilesAnalyzed:             false,
			IsFilesAnalyzedTagPresent: true,
			PackageLicenseConcluded:   noAssertion,
			PackageLicenseDeclared:    noAssertion,
			PackageCopyrightText:      noAssertion,
			PrimaryPackagePurpose:     "OPERATING_SYSTEM", // the JSON schema spells it with "_"
		})
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA:         common.MakeDocElementID("", spdxRootID),
			RefB:         common.MakeDocElementID("", string(osID)),
			Relationship: common.TypeRelationshipContains,
		})
	}

	extracted := map[string]string{} // LicenseRef → original name
	unique, refs := uniquePackages(pkgs)
	for i, p := range unique {
		id := SPDXID(refs[i])
		sp := &spdx.Package{
			PackageName:               p.Name,
			PackageSPDXIdentifier:     common.ElementID(id),
			PackageVersion:            p.Version,
			PackageDownloadLocation:   noAssertion,
			FilesAnalyzed:             false,
			IsFilesAnalyzedTagPresent: true,
			PackageLicenseConcluded:   noAssertion,
			PackageLicenseDeclared:    spdxLicenseDeclared(p.Licenses, extracted),
			PackageCopyrightText:      noAssertion,
			PackageSourceInfo:         sourceInfo(p),
			PrimaryPackagePurpose:     "LIBRARY",
			Annotations:               annotation(packageProperties(p, true)),
		}
		if sp.PackageName == "" {
			sp.PackageName = "unknown"
		}
		if purl := packagePURL(p, &s); purl != "" {
			sp.PackageExternalReferences = []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl,
			}}
		}
		doc.Packages = append(doc.Packages, sp)
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA:         common.MakeDocElementID("", spdxRootID),
			RefB:         common.MakeDocElementID("", id),
			Relationship: common.TypeRelationshipContains,
		})
	}
	ids := make([]string, 0, len(extracted))
	for id := range extracted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		doc.OtherLicenses = append(doc.OtherLicenses, &spdx.OtherLicense{
			LicenseIdentifier: id,
			ExtractedText:     extracted[id],
			LicenseName:       extracted[id],
			LicenseComment:    "License named by the package metadata; not an SPDX license identifier.",
		})
	}
	return doc
}

// WriteSPDX writes an SPDX 2.3 JSON SBOM of s and pkgs to w.
func WriteSPDX(w io.Writer, s Subject, pkgs []catalog.Package, tool ToolInfo) error {
	if err := spdxjson.Write(BuildSPDX(s, pkgs, tool), w, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return fmt.Errorf("writing SPDX: %w", err)
	}
	return nil
}

// spdxLicenseDeclared joins the licenses into one SPDX expression. Valid
// SPDX expressions are kept (canonical case); anything else becomes a
// LicenseRef- recorded in extracted.
func spdxLicenseDeclared(ls []string, extracted map[string]string) string {
	var terms []string
	seen := map[string]bool{}
	for _, l := range ls {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		term := ""
		if norm, ok, compound := normalizeExpression(l); ok {
			term = norm
			if compound && len(ls) > 1 {
				term = "(" + norm + ")"
			}
		} else {
			term = licenseRefFor(l)
			extracted[term] = l
		}
		if !seen[term] {
			seen[term] = true
			terms = append(terms, term)
		}
	}
	if len(terms) == 0 {
		return noAssertion
	}
	return strings.Join(terms, " AND ")
}

// sourceInfo says, for people, where the package was found.
func sourceInfo(p *catalog.Package) string {
	var b strings.Builder
	if len(p.Locations) > 0 {
		b.WriteString("found in " + p.Locations[0].Path)
	}
	if p.Layer >= 0 {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString("layer " + strconv.Itoa(p.Layer))
		if p.LayerDiffID != "" {
			b.WriteString(" (" + p.LayerDiffID + ")")
		}
		if p.CreatedBy != "" {
			b.WriteString(" created by: " + p.CreatedBy)
		}
	}
	return b.String()
}

// encodeProperties writes one NAME=QUOTED line per property.
func encodeProperties(ps []property) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(p.value))
	}
	return b.String()
}

// decodeProperties parses what encodeProperties wrote; lines that are not
// moat properties are ignored.
func decodeProperties(s string) []property {
	var ps []property
	for _, line := range strings.Split(s, "\n") {
		n, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(n, propPrefix) {
			continue
		}
		u, err := strconv.Unquote(v)
		if err != nil {
			continue
		}
		ps = append(ps, property{n, u})
	}
	return ps
}
