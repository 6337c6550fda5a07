package sbom

import (
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/moat-dev/moat/internal/match"
)

// AddVulnerabilities fills the CycloneDX 1.6 vulnerabilities section of a
// BOM built by BuildCycloneDX: one entry per vulnerability, whose affects
// point at the bom-refs of the affected package components.
func AddVulnerabilities(bom *cdx.BOM, findings []match.Finding) {
	byID := map[string]int{}
	var vulns []cdx.Vulnerability
	for _, f := range findings {
		ref := BOMRef(&f.Package)
		i, ok := byID[f.ID]
		if !ok {
			v := cdx.Vulnerability{
				BOMRef:      "vuln:" + f.ID,
				ID:          f.ID,
				Source:      vulnSource(f.ID),
				Description: f.Summary,
				Published:   f.Published,
				Updated:     f.Modified,
			}
			rating := cdx.VulnerabilityRating{Severity: cdxSeverity(f.Severity)}
			if f.CVSS != nil {
				score := f.CVSS.Score
				rating.Score = &score
				rating.Vector = f.CVSS.Vector
				rating.Method = cvssMethod(f.CVSS.Vector)
			}
			v.Ratings = &[]cdx.VulnerabilityRating{rating}
			if len(f.Aliases) > 0 {
				var refs []cdx.VulnerabilityReference
				for _, a := range f.Aliases {
					refs = append(refs, cdx.VulnerabilityReference{ID: a, Source: vulnSource(a)})
				}
				v.References = &refs
			}
			if len(f.FixedVersions) > 0 {
				v.Recommendation = "Upgrade " + f.Package.Name + " to " + strings.Join(f.FixedVersions, " or ")
			}
			if len(f.References) > 0 {
				var adv []cdx.Advisory
				for _, u := range f.References {
					adv = append(adv, cdx.Advisory{URL: u})
				}
				v.Advisories = &adv
			}
			v.Affects = &[]cdx.Affects{}
			vulns = append(vulns, v)
			i = len(vulns) - 1
			byID[f.ID] = i
		}
		aff := vulns[i].Affects
		dup := false
		for _, a := range *aff {
			if a.Ref == ref {
				dup = true
			}
		}
		if !dup {
			status := cdx.VulnerabilityStatusAffected
			*aff = append(*aff, cdx.Affects{Ref: ref, Range: &[]cdx.AffectedVersions{{Version: f.Package.Version, Status: status}}})
		}
	}
	if len(vulns) > 0 {
		bom.Vulnerabilities = &vulns
	}
}

func cdxSeverity(s match.Severity) cdx.Severity {
	switch s {
	case match.Critical:
		return cdx.SeverityCritical
	case match.High:
		return cdx.SeverityHigh
	case match.Medium:
		return cdx.SeverityMedium
	case match.Low:
		return cdx.SeverityLow
	}
	return cdx.SeverityUnknown
}

func cvssMethod(vector string) cdx.ScoringMethod {
	switch {
	case strings.HasPrefix(vector, "CVSS:4"):
		return cdx.ScoringMethodCVSSv4
	case strings.HasPrefix(vector, "CVSS:3.1"):
		return cdx.ScoringMethodCVSSv31
	case strings.HasPrefix(vector, "CVSS:3"):
		return cdx.ScoringMethodCVSSv3
	}
	return cdx.ScoringMethodOther
}

func vulnSource(id string) *cdx.Source {
	switch {
	case strings.HasPrefix(id, "CVE-"):
		return &cdx.Source{Name: "NVD", URL: "https://nvd.nist.gov/vuln/detail/" + id}
	case strings.HasPrefix(id, "GHSA-"):
		return &cdx.Source{Name: "GitHub", URL: "https://github.com/advisories/" + id}
	}
	return &cdx.Source{Name: "OSV", URL: "https://osv.dev/vulnerability/" + id}
}
