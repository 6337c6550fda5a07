package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/scan"
)

// ScanReport is what `moat scan` reports: the packages of the scan and,
// when a vulnerability database was used, the findings.
type ScanReport struct {
	*scan.Result
	Vulnerabilities *Vulnerabilities `json:"vulnerabilities,omitempty"`
}

// Vulnerabilities is the vulnerability section of a scan report.
type Vulnerabilities struct {
	Database Database        `json:"database"`
	Findings []match.Finding `json:"findings"`
	// Counts per severity of Findings.
	Counts map[string]int `json:"counts"`
	// SuppressedCount findings were removed by the ignore file or VEX;
	// Suppressed lists them when asked (--show-suppressed).
	SuppressedCount int                       `json:"suppressedCount"`
	Suppressed      []match.SuppressedFinding `json:"suppressed,omitempty"`
	ExpiredIgnores  []match.IgnoreRule        `json:"expiredIgnores,omitempty"`
	// HiddenCount findings were filtered out by --severity/--ignore-unfixed.
	HiddenCount int             `json:"hiddenCount"`
	Upgrades    []match.Upgrade `json:"upgrades,omitempty"`
	NoData      []string        `json:"noData,omitempty"`
	Warnings    []string        `json:"warnings,omitempty"`

	gate []match.Finding
}

// NewVulnerabilities returns a section whose gate (what --fail-on judges)
// is gate: the findings after exceptions, before display filters.
func NewVulnerabilities(gate []match.Finding) *Vulnerabilities {
	return &Vulnerabilities{gate: gate, Counts: map[string]int{}}
}

// Gate returns the findings the CI gate judges.
func (v *Vulnerabilities) Gate() []match.Finding {
	if v.gate != nil {
		return v.gate
	}
	return v.Findings
}

// Database says which data the findings come from.
type Database struct {
	Dir        string            `json:"dir"`
	Ecosystems map[string]string `json:"ecosystems"` // ecosystem → last update (RFC 3339)
}

var severityOrder = []match.Severity{match.Critical, match.High, match.Medium, match.Low, match.Unknown}

// FindingsTable writes the vulnerability section for people: counts, the
// findings grouped by severity then package, the upgrades that clear the
// most, and what was suppressed.
func FindingsTable(w io.Writer, r *ScanReport, showSuppressed bool) error {
	v := r.Vulnerabilities
	var parts []string
	for _, s := range severityOrder {
		parts = append(parts, fmt.Sprintf("%s: %d", s, v.Counts[s.String()]))
	}
	fmt.Fprintf(w, "Vulnerabilities: %d (%s)\n", len(v.Findings), strings.Join(parts, ", "))
	if v.SuppressedCount > 0 || v.HiddenCount > 0 {
		fmt.Fprintf(w, "Suppressed by exceptions: %d   Hidden by filters: %d\n", v.SuppressedCount, v.HiddenCount)
	}
	fmt.Fprintln(w)
	for _, sev := range severityOrder {
		var group []match.Finding
		for _, f := range v.Findings {
			if f.Severity == sev {
				group = append(group, f)
			}
		}
		if len(group) == 0 {
			continue
		}
		sort.SliceStable(group, func(i, j int) bool {
			if group[i].Package.Name != group[j].Package.Name {
				return group[i].Package.Name < group[j].Package.Name
			}
			return group[i].ID < group[j].ID
		})
		fmt.Fprintf(w, "%s (%d)\n", sev, len(group))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PACKAGE\tVERSION\tVULNERABILITY\tSCORE\tFIXED IN\tLAYER\tPATH\tSUMMARY")
		for _, f := range group {
			fixed := strings.Join(f.FixedVersions, ", ")
			if fixed == "" {
				fixed = "no fix"
			}
			score := "-"
			if f.CVSS != nil {
				score = fmt.Sprintf("%.1f", f.CVSS.Score)
			}
			id := f.ID
			if len(f.Aliases) > 0 {
				id += " (" + strings.Join(firstN(f.Aliases, 2), ", ") + ")"
			}
			layer := "-"
			if f.Package.Layer >= 0 {
				layer = fmt.Sprintf("%d %s", f.Package.Layer, truncate(f.Package.CreatedBy, 30))
			}
			name := f.Package.Name
			if f.Package.Namespace != "" {
				name = f.Package.Namespace + ":" + name
			}
			path := "-"
			if len(f.Package.Locations) > 0 {
				path = truncateLeft(f.Package.Locations[0].Path, 40)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, f.Package.Version, id, score, fixed, strings.TrimSpace(layer), path, truncate(f.Summary, 50))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if len(v.Upgrades) > 0 {
		fmt.Fprintln(w, "Upgrades that fix the most:")
		for i, u := range v.Upgrades {
			if i == 10 {
				fmt.Fprintf(w, "  … and %d more (see --format json)\n", len(v.Upgrades)-10)
				break
			}
			fmt.Fprintf(w, "  %s\n", u)
		}
		fmt.Fprintln(w)
	}
	if showSuppressed && len(v.Suppressed) > 0 {
		fmt.Fprintln(w, "Suppressed:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  PACKAGE\tVERSION\tVULNERABILITY\tBY\tREASON")
		for _, s := range v.Suppressed {
			by := s.SuppressedBy.Kind + " " + s.SuppressedBy.Source
			reason := s.SuppressedBy.Reason
			if s.SuppressedBy.Status != "" {
				reason = strings.TrimSpace(s.SuppressedBy.Status + " " + s.SuppressedBy.Justification + " " + reason)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Package.Name, s.Package.Version, s.ID, by, reason)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	for _, e := range v.ExpiredIgnores {
		fmt.Fprintf(w, "Expired exception (no longer applies): %s %s expired %s: %s\n", e.ID, e.Package, e.Expires, e.Reason)
	}
	if len(v.NoData) > 0 {
		fmt.Fprintf(w, "No vulnerability data for: %s (run `moat db update --ecosystems ...`)\n", strings.Join(v.NoData, ", "))
	}
	return nil
}

func truncateLeft(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string{}, s[:n]...), "…")
}

// DatabaseInfo formats ecosystem update times.
func DatabaseInfo(dir string, updated map[string]time.Time) Database {
	d := Database{Dir: dir, Ecosystems: map[string]string{}}
	for e, t := range updated {
		d.Ecosystems[e] = t.UTC().Format(time.RFC3339)
	}
	return d
}
