package guard

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
)

// severity colours of the charts.
var sevColors = []struct{ sev, color string }{
	{"CRITICAL", "#7b1fa2"}, {"HIGH", "#d32f2f"}, {"MEDIUM", "#f57c00"}, {"LOW", "#fbc02d"}, {"UNKNOWN", "#9e9e9e"},
}

// timelineSVG draws the cumulative findings per severity as stacked bars
// per day.
func timelineSVG(r *Report) template.HTML {
	const w, h, pad = 720.0, 240.0, 40.0
	pts := r.Timeline
	if len(pts) > 60 {
		pts = pts[len(pts)-60:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" role="img" aria-label="Findings by severity over time">`, w, h)
	if len(pts) == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">no findings</text></svg>`, w/2, h/2)
		return template.HTML(b.String())
	}
	max := 1
	for _, p := range pts {
		t := 0
		for _, n := range p.Counts {
			t += n
		}
		if t > max {
			max = t
		}
	}
	bw := (w - 2*pad) / float64(len(pts))
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, pad, h-pad, w-pad, h-pad)
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="end">%d</text>`, pad-4, pad+4, max)
	for i, p := range pts {
		x := pad + float64(i)*bw
		y := h - pad
		for _, sc := range sevColors {
			n := p.Counts[sc.sev]
			if n == 0 {
				continue
			}
			bh := float64(n) / float64(max) * (h - 2*pad)
			y -= bh
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %d</title></rect>`,
				x+1, y, bw-2, bh, sc.color, template.HTMLEscapeString(p.Day), sc.sev, n)
		}
		if i == 0 || i == len(pts)-1 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="11" text-anchor="middle">%s</text>`, x+bw/2, h-pad+16, template.HTMLEscapeString(p.Day))
		}
	}
	for i, sc := range sevColors {
		fmt.Fprintf(&b, `<rect x="%g" y="8" width="10" height="10" fill="%s"/><text x="%g" y="17" font-size="11">%s</text>`, pad+float64(i)*110, sc.color, pad+float64(i)*110+14, sc.sev)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// ageSVG draws images per age bucket as bars.
func ageSVG(r *Report) template.HTML {
	const w, h, pad = 720.0, 220.0, 40.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" role="img" aria-label="Images by age">`, w, h)
	max := 1
	for _, a := range r.AgeBuckets {
		if a.Images > max {
			max = a.Images
		}
	}
	n := len(r.AgeBuckets)
	if n == 0 {
		n = 1
	}
	bw := (w - 2*pad) / float64(n)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, pad, h-pad, w-pad, h-pad)
	for i, a := range r.AgeBuckets {
		bh := float64(a.Images) / float64(max) * (h - 2*pad)
		x := pad + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1976d2"><title>%s: %d</title></rect>`, x+8, h-pad-bh, bw-16, bh, template.HTMLEscapeString(a.Label), a.Images)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%d</text>`, x+bw/2, h-pad-bh-4, a.Images)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="11" text-anchor="middle">%s</text>`, x+bw/2, h-pad+16, template.HTMLEscapeString(a.Label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// reportTmpl is parsed on first use, not at process start.
var reportTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"join":  strings.Join,
		"short": shortRef,
		"sev":   func(m map[string]int, s string) int { return m[s] },
		"date":  func(t interface{ Format(string) string }) string { return t.Format("2006-01-02") },
		// replaced per report by WriteReportHTML
		"timeline": func() template.HTML { return "" },
		"age":      func() template.HTML { return "" },
	}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>moat report{{if .Project}}: {{.Project}}{{end}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f5f5f5}
.flag{display:inline-block;padding:0 6px;border-radius:8px;background:#ffe0b2;margin-right:4px}
.summary span{margin-right:1.5em}
</style></head><body>
<h1>moat report{{if .Project}}: {{.Project}}{{end}}</h1>
<p>Generated {{.Generated.Format "2006-01-02 15:04 MST"}}{{if .BaseRepository}}; approved base images in <code>{{.BaseRepository}}</code>{{end}}.</p>
<p class="summary" id="summary"><span>{{.Summary.Images}} images</span><span>{{.Summary.Stale}} not rebuilt for {{.StaleDays}} days</span><span>{{.Summary.Grown}} with more findings than at push</span><span>{{.Summary.BaseOutdated}} on an outdated base</span><span>{{.Summary.Fixable}} with fixes available</span><span>{{.Summary.Live}} live</span></p>
<h2>Findings by severity over time</h2>
{{timeline}}
<h2>Image age</h2>
{{age}}
<h2>Images</h2>
<table id="images"><thead><tr><th>Image</th><th>Tags</th><th>Live</th><th>Built</th><th>Age</th><th>Critical</th><th>High</th><th>Medium</th><th>Low</th><th>At push</th><th>Fixable</th><th>Base</th><th>Flags</th></tr></thead><tbody>
{{range .Images}}<tr><td><code>{{short (printf "%s@%s" .Repository .Digest)}}</code>{{if .Platform}} ({{.Platform}}){{end}}</td><td>{{join .Tags ", "}}</td><td>{{join .LiveTags ", "}}</td><td>{{if not .Created.IsZero}}{{date .Created}}{{end}}</td><td>{{.AgeDays}} d</td>
<td>{{sev .Counts "CRITICAL"}}</td><td>{{sev .Counts "HIGH"}}</td><td>{{sev .Counts "MEDIUM"}}</td><td>{{sev .Counts "LOW"}}</td><td>{{if ge .PushFindings 0}}{{.PushFindings}}{{else}}–{{end}}</td><td>{{.Fixable}}</td>
<td>{{if .Base}}<code>{{short .Base}}</code>{{if .NewestBase}} → <code>{{short .NewestBase}}</code>{{end}}{{end}}</td>
<td>{{if .Stale}}<span class="flag">stale</span>{{end}}{{if .Grown}}<span class="flag">findings grew</span>{{end}}{{if .BaseOutdated}}<span class="flag">base outdated</span>{{end}}</td></tr>
{{end}}</tbody></table>
<h2>Fixes available</h2>
<ul id="fixes">{{range .Images}}{{$im := .}}{{range .Upgrades}}<li><code>{{short (printf "%s@%s" $im.Repository $im.Digest)}}</code>: upgrade {{.Name}} {{.From}} → {{.To}} (fixes {{.Fixes}})</li>{{end}}{{end}}</ul>
</body></html>
`))
})

// WriteReportHTML writes the report as one self-contained HTML page with
// inline SVG charts (no scripts, styles or images from elsewhere).
func WriteReportHTML(w io.Writer, r *Report) error {
	t, err := reportTmpl().Clone()
	if err != nil {
		return err
	}
	t.Funcs(template.FuncMap{"timeline": func() template.HTML { return timelineSVG(r) }, "age": func() template.HTML { return ageSVG(r) }})
	return t.Execute(w, r)
}
