package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Outcome is the evaluation of one object, for reports.
type Outcome struct {
	Object string  `json:"object"`
	Source string  `json:"source,omitempty"`
	Result *Result `json:"result"`
}

// Report is what `moat check` prints.
type Report struct {
	Schema   string    `json:"schema"`
	Policy   string    `json:"policy"`
	Outcomes []Outcome `json:"outcomes"`
	Skipped  []string  `json:"skipped,omitempty"`
	Summary  Summary   `json:"summary"`
}

// Summary counts violations by action.
type Summary struct {
	Objects  int  `json:"objects"`
	Enforce  int  `json:"enforce"`
	Warn     int  `json:"warn"`
	Audit    int  `json:"audit"`
	Exempted int  `json:"exempted"`
	Denied   bool `json:"denied"`
}

// ReportSchema names the JSON format of Report.
const ReportSchema = "moat.check/v1"

// NewReport summarizes outcomes.
func NewReport(policyFile string, outs []Outcome, skipped []string) *Report {
	r := &Report{Schema: ReportSchema, Policy: policyFile, Outcomes: outs, Skipped: skipped}
	r.Summary.Objects = len(outs)
	for _, o := range outs {
		for _, v := range o.Result.Violations {
			switch v.Action {
			case Enforce:
				r.Summary.Enforce++
			case Warn:
				r.Summary.Warn++
			case Audit:
				r.Summary.Audit++
			}
		}
		r.Summary.Exempted += len(o.Result.Exempted)
	}
	r.Summary.Denied = r.Summary.Enforce > 0
	return r
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes one line per violation with its fix, then a summary.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	n := 0
	for _, o := range r.Outcomes {
		for _, v := range o.Result.Violations {
			if n == 0 {
				fmt.Fprintln(tw, "ACTION\tRULE\tOBJECT\tCONTAINER\tFIELD\tMESSAGE")
			}
			n++
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(string(v.Action)), v.Rule, v.Object, dash(v.Container), dash(v.Field), v.Message)
			if v.Fix != "" {
				fmt.Fprintf(tw, "\t\t\t\t\t  fix: %s\n", v.Fix)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, o := range r.Outcomes {
		for _, note := range o.Result.Notes {
			fmt.Fprintln(w, "note:", note)
		}
		for _, v := range o.Result.Exempted {
			fmt.Fprintf(w, "exempted: %s (%s)\n", v.String(), v.ExemptedBy)
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "skipped:", s)
	}
	s := r.Summary
	verdict := "PASS"
	if s.Denied {
		verdict = "DENY"
	}
	_, err := fmt.Fprintf(w, "%s: %d objects checked against %s: %d enforce, %d warn, %d audit violations, %d exempted\n", verdict, s.Objects, r.Policy, s.Enforce, s.Warn, s.Audit, s.Exempted)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteSARIF writes SARIF 2.1.0: one rule per policy rule, one result per
// violation (enforce → error, warn → warning, audit → note).
func (r *Report) WriteSARIF(w io.Writer, p *Policy, toolVersion string) error {
	type msg struct {
		Text string `json:"text"`
	}
	type rule struct {
		ID               string            `json:"id"`
		Name             string            `json:"name"`
		ShortDescription msg               `json:"shortDescription"`
		Properties       map[string]string `json:"properties,omitempty"`
	}
	type artifact struct {
		URI string `json:"uri"`
	}
	type physical struct {
		ArtifactLocation artifact `json:"artifactLocation"`
	}
	type logical struct {
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind,omitempty"`
	}
	type location struct {
		PhysicalLocation *physical `json:"physicalLocation,omitempty"`
		LogicalLocations []logical `json:"logicalLocations,omitempty"`
	}
	type result struct {
		RuleID     string            `json:"ruleId"`
		Level      string            `json:"level"`
		Message    msg               `json:"message"`
		Locations  []location        `json:"locations,omitempty"`
		Properties map[string]string `json:"properties,omitempty"`
	}
	var rules []rule
	for _, pr := range p.Rules {
		rules = append(rules, rule{ID: pr.Name, Name: pr.Name, ShortDescription: msg{Text: fmt.Sprintf("%s rule (%s)", pr.Family, pr.Action)}, Properties: map[string]string{"action": string(pr.Action), "family": pr.Family}})
	}
	results := []result{}
	for _, o := range r.Outcomes {
		for _, v := range o.Result.Violations {
			level := map[Action]string{Enforce: "error", Warn: "warning", Audit: "note"}[v.Action]
			text := v.Message
			if v.Fix != "" {
				text += ". Fix: " + v.Fix
			}
			loc := location{LogicalLocations: []logical{{FullyQualifiedName: strings.TrimSuffix(v.Object+"/"+v.Field, "/"), Kind: "object"}}}
			if src := sourceFile(v.Source); src != "" {
				loc.PhysicalLocation = &physical{ArtifactLocation: artifact{URI: src}}
			}
			props := map[string]string{"check": v.Check, "object": v.Object}
			if v.Container != "" {
				props["container"] = v.Container
			}
			if v.Image != "" {
				props["image"] = v.Image
			}
			results = append(results, result{RuleID: v.Rule, Level: level, Message: msg{Text: text}, Locations: []location{loc}, Properties: props})
		}
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].RuleID < results[j].RuleID })
	doc := map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool":    map[string]any{"driver": map[string]any{"name": "moat", "version": toolVersion, "informationUri": "https://github.com/moat-dev/moat", "rules": rules}},
			"results": results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func sourceFile(src string) string {
	if i := strings.LastIndex(src, "#"); i >= 0 {
		src = src[:i]
	}
	return src
}
