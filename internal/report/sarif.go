package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/owenrumney/go-sarif/v2/sarif"

	"github.com/moat-dev/moat/internal/match"
)

// WriteSARIF writes the findings as SARIF 2.1.0 for code-scanning systems:
// one rule per vulnerability, one result per affected package, located at
// the file the package was found in.
func WriteSARIF(w io.Writer, r *ScanReport, toolVersion string) error {
	rep, err := sarif.New(sarif.Version210)
	if err != nil {
		return err
	}
	run := sarif.NewRunWithInformationURI("moat", "https://github.com/moat-dev/moat")
	run.Tool.Driver.Version = &toolVersion
	rules := map[string]bool{}
	if r.Vulnerabilities != nil {
		for _, f := range r.Vulnerabilities.Findings {
			if !rules[f.ID] {
				rules[f.ID] = true
				summary := f.Summary
				if summary == "" {
					summary = f.ID
				}
				rule := run.AddRule(f.ID).
					WithName(strings.ReplaceAll(f.ID, "-", "")).
					WithShortDescription(sarif.NewMultiformatMessageString(summary)).
					WithFullDescription(sarif.NewMultiformatMessageString(summary)).
					WithHelp(sarif.NewMultiformatMessageString(helpText(f)))
				if len(f.References) > 0 {
					rule.WithHelpURI(f.References[0])
				}
				props := sarif.NewPropertyBag()
				props.Add("tags", []string{"vulnerability", "security", f.Severity.String()})
				if f.CVSS != nil {
					props.Add("security-severity", fmt.Sprintf("%.1f", f.CVSS.Score))
				} else {
					props.Add("security-severity", defaultScore(f.Severity))
				}
				rule.WithProperties(props.Properties)
			}
			path := "image"
			if len(f.Package.Locations) > 0 {
				path = strings.TrimPrefix(f.Package.Locations[0].Path, "/")
			}
			msg := fmt.Sprintf("%s %s is affected by %s (%s)", f.Package.Name, f.Package.Version, f.ID, f.Severity)
			if len(f.FixedVersions) > 0 {
				msg += "; fixed in " + strings.Join(f.FixedVersions, ", ")
			}
			if f.Package.Layer >= 0 {
				msg += fmt.Sprintf("; layer %d", f.Package.Layer)
				if f.Package.CreatedBy != "" {
					msg += " (" + f.Package.CreatedBy + ")"
				}
			}
			run.CreateResultForRule(f.ID).
				WithLevel(level(f.Severity)).
				WithMessage(sarif.NewTextMessage(msg)).
				AddLocation(sarif.NewLocationWithPhysicalLocation(
					sarif.NewPhysicalLocation().WithArtifactLocation(sarif.NewSimpleArtifactLocation(path))))
		}
	}
	rep.AddRun(run)
	return rep.PrettyWrite(w)
}

func helpText(f match.Finding) string {
	s := fmt.Sprintf("Vulnerability %s in %s %s.", f.ID, f.Package.Name, f.Package.Version)
	if len(f.Aliases) > 0 {
		s += " Also known as " + strings.Join(f.Aliases, ", ") + "."
	}
	if len(f.FixedVersions) > 0 {
		s += " Upgrade to " + f.FixedVersions[0] + " or later."
	} else {
		s += " No fixed version is known."
	}
	return s
}

func level(s match.Severity) string {
	switch s {
	case match.Critical, match.High:
		return "error"
	case match.Medium:
		return "warning"
	}
	return "note"
}

func defaultScore(s match.Severity) string {
	switch s {
	case match.Critical:
		return "9.5"
	case match.High:
		return "8.0"
	case match.Medium:
		return "5.5"
	case match.Low:
		return "2.0"
	}
	return "0.0"
}
