package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moat-dev/moat/internal/match"
)

// ReportOptions select what `moat report` audits.
type ReportOptions struct {
	// Project limits the report to one project ("" for the registry).
	Project string
	// StaleDays flags images not rebuilt (config created) for longer.
	StaleDays int
	// BaseRepository holds the approved base images: an image whose first
	// layers are those of one of its images is built on it, and is
	// outdated when that base image is no longer what its tag points to.
	BaseRepository string
	// LiveTags are the tags used as deployment pointers ("prod", ...).
	LiveTags []string
	// Now is the report time (default time.Now()).
	Now time.Time
}

// Report is the audit of what is in the registry.
type Report struct {
	Generated      time.Time     `json:"generated"`
	Project        string        `json:"project,omitempty"`
	StaleDays      int           `json:"stale_days"`
	BaseRepository string        `json:"base_repository,omitempty"`
	LiveTags       []string      `json:"live_tags,omitempty"`
	Images         []ReportImage `json:"images"`
	// Timeline counts the current findings by the day they were first
	// seen, cumulatively, per severity.
	Timeline []TimelinePoint `json:"timeline"`
	// AgeBuckets counts images by days since they were built.
	AgeBuckets []AgeBucket `json:"age_buckets"`
	Summary    Summary     `json:"summary"`
}

// ReportImage is one image's audit.
type ReportImage struct {
	Repository string         `json:"repository"`
	Digest     string         `json:"digest"`
	Platform   string         `json:"platform,omitempty"`
	Tags       []string       `json:"tags,omitempty"`
	LiveTags   []string       `json:"live_tags,omitempty"`
	Status     string         `json:"status"`
	Pushed     time.Time      `json:"pushed"`
	Created    time.Time      `json:"created,omitzero"`
	AgeDays    int            `json:"age_days"`
	Stale      bool           `json:"stale"`
	Counts     map[string]int `json:"counts"`
	Findings   int            `json:"findings"`
	// PushFindings were found by the first match; Grown is true when
	// there are more now.
	PushFindings int             `json:"push_findings"`
	Grown        bool            `json:"grown"`
	Fixable      int             `json:"fixable"`
	Upgrades     []match.Upgrade `json:"upgrades,omitempty"`
	// Base is the base image (repository@digest) the image is built on,
	// BaseTags its tags; BaseOutdated is true when none of the tags points
	// to it any more, NewestBase is what they point to now.
	Base         string   `json:"base,omitempty"`
	BaseTags     []string `json:"base_tags,omitempty"`
	BaseOutdated bool     `json:"base_outdated"`
	NewestBase   string   `json:"newest_base,omitempty"`
}

// TimelinePoint is the number of findings known on a day, per severity.
type TimelinePoint struct {
	Day    string         `json:"day"`
	Counts map[string]int `json:"counts"`
}

// AgeBucket counts images of an age range.
type AgeBucket struct {
	Label  string `json:"label"`
	Images int    `json:"images"`
}

// Summary totals the report.
type Summary struct {
	Images       int `json:"images"`
	Stale        int `json:"stale"`
	Grown        int `json:"grown"`
	BaseOutdated int `json:"base_outdated"`
	Fixable      int `json:"fixable"`
	Live         int `json:"live"`
}

// Report audits the images of a project (or the registry) that visible
// allows.
func (g *Guard) Report(ctx context.Context, o ReportOptions, visible func(repo string) bool) (*Report, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.StaleDays <= 0 {
		o.StaleDays = 30
	}
	ims, err := g.Images(ctx, o.Project, visible)
	if err != nil {
		return nil, err
	}
	g.addTags(ctx, ims)
	rep := &Report{Generated: o.Now.UTC(), Project: o.Project, StaleDays: o.StaleDays, BaseRepository: o.BaseRepository, LiveTags: o.LiveTags, Images: []ReportImage{}}
	// Approved base images and what their tags point to now.
	var bases []Image
	if o.BaseRepository != "" {
		all, err := g.Images(ctx, "", func(r string) bool { return r == o.BaseRepository })
		if err != nil {
			return nil, err
		}
		g.addTags(ctx, all)
		bases = all
		// Longest base first, so the most specific base wins.
		sort.SliceStable(bases, func(i, j int) bool { return len(bases[i].Layers) > len(bases[j].Layers) })
	}
	live := map[string]bool{}
	for _, t := range o.LiveTags {
		live[t] = true
	}
	firstSeen := map[string]map[string]int{} // day -> severity -> new findings
	for _, im := range ims {
		if im.Repository == o.BaseRepository {
			continue
		}
		ri := ReportImage{Repository: im.Repository, Digest: im.Digest, Platform: im.Platform, Tags: im.Tags, Status: im.Status,
			Pushed: im.Pushed, Created: im.Created, Counts: im.Counts, PushFindings: im.PushFindings}
		built := im.Created
		if built.IsZero() {
			built = im.Pushed
		}
		ri.AgeDays = int(o.Now.Sub(built).Hours() / 24)
		ri.Stale = ri.AgeDays > o.StaleDays
		for _, t := range im.Tags {
			if live[t] {
				ri.LiveTags = append(ri.LiveTags, t)
			}
		}
		if im.Status == "scanned" {
			fs, first, err := g.storedFindings(ctx, im.Repository, im.Digest)
			if err != nil {
				return nil, err
			}
			ri.Findings = len(fs)
			ri.Grown = im.PushFindings >= 0 && len(fs) > im.PushFindings
			for i := range fs {
				if fs[i].Fixed() {
					ri.Fixable++
				}
				day := first[findingKey(&fs[i])].Format("2006-01-02")
				if firstSeen[day] == nil {
					firstSeen[day] = map[string]int{}
				}
				firstSeen[day][fs[i].Severity.String()]++
			}
			ri.Upgrades = im.Upgrades
		}
		for _, b := range bases {
			if len(b.Layers) == 0 || len(b.Layers) > len(im.Layers) || !prefix(b.Layers, im.Layers) {
				continue
			}
			ri.Base, ri.BaseTags = b.Repository+"@"+b.Digest, b.Tags
			ri.BaseOutdated = len(b.Tags) == 0
			// The newest base: what the newest-pushed tagged base image of
			// the same layer lineage is; with tags, any base the tags now
			// name that is not this one.
			if len(b.Tags) == 0 {
				var newest *Image
				for k := range bases {
					c := &bases[k]
					if len(c.Tags) > 0 && (newest == nil || c.Pushed.After(newest.Pushed)) {
						newest = c
					}
				}
				if newest != nil {
					ri.NewestBase = newest.Repository + ":" + strings.Join(newest.Tags, ",") + "@" + newest.Digest
				}
			}
			break
		}
		rep.Images = append(rep.Images, ri)
		rep.Summary.Images++
		if ri.Stale {
			rep.Summary.Stale++
		}
		if ri.Grown {
			rep.Summary.Grown++
		}
		if ri.BaseOutdated {
			rep.Summary.BaseOutdated++
		}
		if ri.Fixable > 0 {
			rep.Summary.Fixable++
		}
		if len(ri.LiveTags) > 0 {
			rep.Summary.Live++
		}
	}
	var days []string
	for d := range firstSeen {
		days = append(days, d)
	}
	sort.Strings(days)
	cum := map[string]int{}
	for _, d := range days {
		for s, n := range firstSeen[d] {
			cum[s] += n
		}
		c := map[string]int{}
		for s, n := range cum {
			c[s] = n
		}
		rep.Timeline = append(rep.Timeline, TimelinePoint{Day: d, Counts: c})
	}
	buckets := []struct {
		label string
		max   int
	}{{"< 7 days", 7}, {"7–30 days", 30}, {"30–90 days", 90}, {"90–180 days", 180}, {"180–365 days", 365}, {"> 1 year", 1 << 30}}
	for _, b := range buckets {
		rep.AgeBuckets = append(rep.AgeBuckets, AgeBucket{Label: b.label})
	}
	for _, ri := range rep.Images {
		for i, b := range buckets {
			if ri.AgeDays < b.max {
				rep.AgeBuckets[i].Images++
				break
			}
		}
	}
	return rep, nil
}

func prefix(p, s []string) bool {
	for i := range p {
		if p[i] != s[i] {
			return false
		}
	}
	return true
}

// WriteReportJSON writes the report as indented JSON.
func WriteReportJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteReportTable writes the report for people.
func WriteReportTable(w io.Writer, r *Report) error {
	fmt.Fprintf(w, "%d images: %d not rebuilt for %d days, %d with more findings than at push, %d on an outdated base, %d with fixes available, %d live\n\n",
		r.Summary.Images, r.Summary.Stale, r.StaleDays, r.Summary.Grown, r.Summary.BaseOutdated, r.Summary.Fixable, r.Summary.Live)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tTAGS\tLIVE\tAGE\tFINDINGS (AT PUSH)\tFIXABLE\tBASE\tFLAGS")
	for _, im := range r.Images {
		var flags []string
		if im.Stale {
			flags = append(flags, "stale")
		}
		if im.Grown {
			flags = append(flags, "findings-grew")
		}
		if im.BaseOutdated {
			flags = append(flags, "base-outdated")
		}
		push := "-"
		if im.PushFindings >= 0 {
			push = fmt.Sprint(im.PushFindings)
		}
		base := "-"
		if im.Base != "" {
			base = shortRef(im.Base)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%dd\t%d (%s)\t%d\t%s\t%s\n", shortRef(im.Repository+"@"+im.Digest), dash(strings.Join(im.Tags, ",")),
			dash(strings.Join(im.LiveTags, ",")), im.AgeDays, im.Findings, push, im.Fixable, base, dash(strings.Join(flags, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var ups []string
	for _, im := range r.Images {
		for _, u := range im.Upgrades {
			ups = append(ups, fmt.Sprintf("  %s: %s", shortRef(im.Repository+"@"+im.Digest), u.String()))
		}
	}
	if len(ups) > 0 {
		fmt.Fprintln(w, "\nFixes available:")
		fmt.Fprintln(w, strings.Join(ups, "\n"))
	}
	return nil
}

func shortRef(s string) string {
	if i := strings.Index(s, "@sha256:"); i >= 0 && len(s) > i+20 {
		return s[:i+20]
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
