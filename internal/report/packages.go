// Package report renders moat results for people (tables) and machines
// (JSON, SARIF).
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/moat-dev/moat/internal/scan"
)

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// PackagesTable writes a scan result for people: what was scanned, the
// packages per ecosystem, then (with list) every package with the layer
// that brought it in.
func PackagesTable(w io.Writer, r *scan.Result, list bool) error {
	s := r.Subject
	fmt.Fprintf(w, "Image:     %s\n", s.Name)
	if s.Digest != "" {
		fmt.Fprintf(w, "Digest:    %s\n", s.Digest)
	}
	if s.Platform != "" {
		fmt.Fprintf(w, "Platform:  %s\n", s.Platform)
	}
	if r.OS != nil {
		osName := r.OS.String()
		if r.OS.Distroless {
			osName += " (distroless)"
		}
		fmt.Fprintf(w, "OS:        %s\n", osName)
	} else {
		fmt.Fprintf(w, "OS:        not detected (no os-release: scratch or static image)\n")
	}
	fmt.Fprintf(w, "Layers:    %d   Files: %d   Packages: %d\n\n", len(r.Layers), r.Stats.Files, len(r.Packages))

	counts := map[string]int{}
	for _, p := range r.Packages {
		eco := p.Ecosystem
		if eco == "" {
			eco = string(p.Type)
		}
		counts[eco]++
	}
	ecos := make([]string, 0, len(counts))
	for e := range counts {
		ecos = append(ecos, e)
	}
	sort.Strings(ecos)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ECOSYSTEM\tPACKAGES")
	for _, e := range ecos {
		fmt.Fprintf(tw, "%s\t%d\n", e, counts[e])
	}
	tw.Flush()
	fmt.Fprintln(w)

	if list && len(r.Packages) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tTYPE\tLAYER\tPATH")
		for _, p := range r.Packages {
			name := p.Name
			if p.Namespace != "" {
				name = p.Namespace + ":" + p.Name
			}
			layer := "-"
			if p.Layer >= 0 {
				layer = fmt.Sprintf("%d %s", p.Layer, truncate(p.CreatedBy, 40))
			}
			path := ""
			if len(p.Locations) > 0 {
				path = p.Locations[0].Path
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, p.Version, p.Type, strings.TrimSpace(layer), path)
		}
		tw.Flush()
	}
	if list && len(r.Warnings) > 0 {
		fmt.Fprintf(w, "\n%d warning(s):\n", len(r.Warnings))
		for _, m := range r.Warnings {
			fmt.Fprintf(w, "  - %s\n", m)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.TrimPrefix(s, "/bin/sh -c ")
	s = strings.TrimPrefix(s, "#(nop) ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
