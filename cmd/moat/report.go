package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/guard"
)

func newReportCmd() *cobra.Command {
	var a adminFlags
	var (
		staleDays     int
		baseRepo, out string
		liveTags      []string
	)
	cmd := &cobra.Command{
		Use:   "report [PROJECT]",
		Short: "Audit what the registry holds: stale images, grown findings, outdated bases, fixes, live tags",
		Long: `report lists, for a project or the whole registry, the images not rebuilt
for more than --stale-days, the images whose findings grew since they were
pushed, the images whose base layers are no longer what the tags of their
approved base image (--base-repository, matched by layer-digest prefix)
point to, the fixes available, and which images the --live-tags name.
--format html writes one self-contained page with charts of findings by
severity over time and of image age.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format := a.format
			if format != "table" && format != "json" && format != "html" {
				return fmt.Errorf("--format %q: want table, json or html", format)
			}
			a.format = "json"
			c, err := a.client()
			a.format = format
			if err != nil {
				return err
			}
			q := url.Values{"stale_days": {fmt.Sprint(staleDays)}, "base_repository": {baseRepo}, "live_tags": {strings.Join(liveTags, ",")}}
			if len(args) == 1 {
				q.Set("project", args[0])
			}
			var rep guard.Report
			if err := c.Do("GET", "guard/report?"+q.Encode(), nil, &rep); err != nil {
				return err
			}
			return writeOutput(out, cmd.OutOrStdout(), func(w io.Writer) error {
				switch format {
				case "json":
					return guard.WriteReportJSON(w, &rep)
				case "html":
					return guard.WriteReportHTML(w, &rep)
				}
				return guard.WriteReportTable(w, &rep)
			})
		},
	}
	a.register(cmd)
	f := cmd.Flags()
	f.IntVar(&staleDays, "stale-days", 30, "flag images not rebuilt for more than this many days")
	f.StringVar(&baseRepo, "base-repository", "", "repository of the approved base images (e.g. base/debian)")
	f.StringSliceVar(&liveTags, "live-tags", []string{"prod", "production", "live", "stable"}, "tags used as deployment pointers")
	f.StringVarP(&out, "output", "o", "", "write to this file instead of stdout")
	return cmd
}
