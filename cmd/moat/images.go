package main

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/guard"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/report"
	"github.com/moat-dev/moat/internal/vulndb"
)

// openGuard starts scanning on push, the vulnerability pull gate, re-scans
// and webhooks beside the registry.
func openGuard(ctx context.Context, dataDir, dbDir string, rescan time.Duration, webhooks []string, inst *registry.Instance, attestKey crypto.Signer, log *slog.Logger) (*guard.Guard, error) {
	dir, err := vulndb.ResolveDir(dbDir)
	if err != nil {
		dir = ""
	}
	g, err := guard.Open(ctx, guard.Options{
		Store: inst.Store, Blobs: inst.Blobs, Auth: inst.Auth, Audit: inst.Audit,
		DataDir: filepath.Join(dataDir, "guard"), DBDir: dir, RescanInterval: rescan,
		Webhooks: webhooks, WebhookSecret: os.Getenv("MOAT_WEBHOOK_SECRET"), Version: version, Log: log, AttestKey: attestKey,
	})
	if err != nil {
		return nil, err
	}
	inst.OnPush, inst.Gate = g, g
	g.Start()
	return g, nil
}

func newImagesCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{
		Use:   "images [PROJECT]",
		Short: "List the registry's images with their scan status and findings per severity",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			path := "guard/images"
			if len(args) == 1 {
				path += "?project=" + url.QueryEscape(args[0])
			}
			var ims []guard.Image
			if err := c.Do("GET", path, nil, &ims); err != nil {
				return err
			}
			var rows [][]string
			for _, im := range ims {
				tags := strings.Join(im.Tags, ",")
				if tags == "" {
					tags = "-"
				}
				st := im.Status
				if im.Status == "failed" {
					st += ": " + im.Error
				}
				rows = append(rows, []string{im.Repository, tags, shortDigest(im.Digest), orDash(im.Platform), st,
					count(im, "CRITICAL"), count(im, "HIGH"), count(im, "MEDIUM"), count(im, "LOW"), count(im, "UNKNOWN"),
					im.Pushed.Format("2006-01-02 15:04")})
			}
			return a.output(cmd.OutOrStdout(), ims, []string{"REPOSITORY", "TAGS", "DIGEST", "PLATFORM", "STATUS", "CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN", "PUSHED"}, rows)
		},
	}
	a.register(cmd)
	return cmd
}

func count(im guard.Image, sev string) string {
	if im.Status != "scanned" {
		return "-"
	}
	return fmt.Sprint(im.Counts[sev])
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// splitRef splits REPO:TAG or REPO@DIGEST (a leading registry host is
// dropped: the server is --server).
func splitRef(s string) (repo, ref string, err error) {
	if i := strings.Index(s, "@"); i > 0 {
		repo, ref = s[:i], s[i+1:]
	} else if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		repo, ref = s[:i], s[i+1:]
	} else {
		repo, ref = s, "latest"
	}
	if first, rest, ok := strings.Cut(repo, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		repo = rest
	}
	if repo == "" || ref == "" {
		return "", "", fmt.Errorf("%q: want REPOSITORY:TAG or REPOSITORY@DIGEST", s)
	}
	return repo, ref, nil
}

func newFindingsCmd() *cobra.Command {
	var a adminFlags
	var showSuppressed bool
	cmd := &cobra.Command{
		Use:   "findings REF",
		Short: "Show the stored findings of an image in the registry (as moat scan shows them)",
		Long: `findings shows the latest findings of REPOSITORY:TAG or REPOSITORY@DIGEST
(each platform image of an index) after the project's exceptions, in the
formats of moat scan: table, json or sarif.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format := a.format
			if format != "table" && format != "json" && format != "sarif" {
				return fmt.Errorf("--format %q: want table, json or sarif", format)
			}
			a.format = "json"
			c, err := a.client()
			a.format = format
			if err != nil {
				return err
			}
			repo, ref, err := splitRef(args[0])
			if err != nil {
				return err
			}
			var fs []guard.ImageFindings
			if err := c.Do("GET", "guard/findings?repository="+url.QueryEscape(repo)+"&ref="+url.QueryEscape(ref), nil, &fs); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch format {
			case "json":
				if len(fs) == 1 {
					return report.WriteJSON(w, fs[0].Report)
				}
				var reps []*report.ScanReport
				for _, f := range fs {
					reps = append(reps, f.Report)
				}
				return report.WriteJSON(w, reps)
			case "sarif":
				merged := &report.ScanReport{}
				for _, f := range fs {
					if f.Report == nil {
						continue
					}
					if merged.Result == nil {
						merged.Result = f.Report.Result
					}
					if f.Report.Vulnerabilities != nil {
						if merged.Vulnerabilities == nil {
							merged.Vulnerabilities = f.Report.Vulnerabilities
						} else {
							merged.Vulnerabilities.Findings = append(merged.Vulnerabilities.Findings, f.Report.Vulnerabilities.Findings...)
						}
					}
				}
				if merged.Result == nil {
					return fmt.Errorf("%s has no stored scan yet", args[0])
				}
				return report.WriteSARIF(w, merged, version)
			}
			for i, f := range fs {
				if i > 0 {
					fmt.Fprintln(w)
				}
				fmt.Fprintf(w, "%s@%s", f.Image.Repository, f.Image.Digest)
				if f.Image.Platform != "" {
					fmt.Fprintf(w, " (%s)", f.Image.Platform)
				}
				fmt.Fprintf(w, ": %s\n", f.Image.Status)
				switch {
				case f.Image.Status == "failed":
					fmt.Fprintf(w, "scan failed: %s\n", f.Image.Error)
				case f.Report == nil || f.Report.Vulnerabilities == nil:
					fmt.Fprintln(w, "no findings yet (the scan has not finished or the registry has no vulnerability database)")
				default:
					if err := report.FindingsTable(w, f.Report, showSuppressed); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	a.register(cmd)
	cmd.Flags().BoolVar(&showSuppressed, "show-suppressed", false, "also list findings the project's exceptions suppress")
	return cmd
}

// withGuardProjectFlags adds the pull-gate settings to `moat project set`.
func withGuardProjectFlags(project *cobra.Command) *cobra.Command {
	var set *cobra.Command
	for _, c := range project.Commands() {
		if c.Name() == "set" {
			set = c
		}
	}
	if set == nil {
		return project
	}
	var (
		blockSeverity, addException, pkg, reason, expires string
		removeException                                   []string
		blockUnscanned                                    bool
	)
	f := set.Flags()
	f.StringVar(&blockSeverity, "block-severity", "", "refuse pulls of images with a finding at or above this severity (critical, high, medium, low, unknown; none to stop)")
	f.BoolVar(&blockUnscanned, "block-unscanned", false, "refuse pulls until an image's first scan finished")
	f.StringVar(&addException, "add-exception", "", "vulnerability ID the pull gate ignores in this project (with --reason and --expires, optionally --package)")
	f.StringVar(&pkg, "package", "", "narrow --add-exception to a package")
	f.StringVar(&reason, "reason", "", "why --add-exception is acceptable")
	f.StringVar(&expires, "expires", "", "when --add-exception ends (YYYY-MM-DD)")
	f.StringArrayVar(&removeException, "remove-exception", nil, "remove the exceptions for a vulnerability ID")
	inner := set.RunE
	set.RunE = func(cmd *cobra.Command, args []string) error {
		if err := inner(cmd, args); err != nil {
			return err
		}
		var u guard.SettingsUpdate
		changed := false
		if cmd.Flags().Changed("block-severity") {
			u.BlockSeverity, changed = &blockSeverity, true
		}
		if cmd.Flags().Changed("block-unscanned") {
			u.BlockUnscanned, changed = &blockUnscanned, true
		}
		if addException != "" {
			u.AddExceptions, changed = []guard.Exception{{ID: addException, Package: pkg, Reason: reason, Expires: expires}}, true
		}
		if len(removeException) > 0 {
			u.RemoveExceptions, changed = removeException, true
		}
		if !changed {
			return nil
		}
		var a adminFlags
		fl := cmd.Flags()
		a.server, _ = fl.GetString("server")
		a.user, _ = fl.GetString("username")
		a.password, _ = fl.GetString("password")
		a.caCert, _ = fl.GetString("ca-cert")
		a.format, _ = fl.GetString("format")
		c, err := a.client()
		if err != nil {
			return err
		}
		var s guard.Settings
		if err := c.Do("PATCH", "guard/projects/"+url.PathEscape(args[0]), u, &s); err != nil {
			return err
		}
		var ex []string
		for _, e := range s.Exceptions {
			ex = append(ex, e.ID+" (until "+e.Expires+")")
		}
		return a.output(cmd.OutOrStdout(), s, []string{"PROJECT", "BLOCK SEVERITY", "BLOCK UNSCANNED", "EXCEPTIONS"},
			[][]string{{s.Project, orDash(strings.ToLower(s.BlockSeverity)), yesNo(s.BlockUnscanned), orDash(strings.Join(ex, ", "))}})
	}
	return project
}

func newEventsCmd() *cobra.Command {
	var a adminFlags
	var after int64
	var typ string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List registry events (new findings, scans) and their webhook deliveries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"after": {fmt.Sprint(after)}}
			if typ != "" {
				q.Set("type", typ)
			}
			var evs []guard.Event
			if err := c.Do("GET", "guard/events?"+q.Encode(), nil, &evs); err != nil {
				return err
			}
			var rows [][]string
			for _, e := range evs {
				var ds []string
				for _, d := range e.Deliveries {
					ds = append(ds, fmt.Sprintf("%s %s (%d attempts)", d.URL, d.State, d.Attempts))
				}
				rows = append(rows, []string{fmt.Sprint(e.ID), e.Time.Format(time.RFC3339), e.Type, e.Repository + "@" + shortDigest(e.Digest),
					string(e.Data), orDash(strings.Join(ds, "; "))})
			}
			return a.output(cmd.OutOrStdout(), evs, []string{"ID", "TIME", "TYPE", "IMAGE", "DATA", "DELIVERIES"}, rows)
		},
	}
	a.register(cmd)
	cmd.Flags().Int64Var(&after, "after", 0, "only events after this ID")
	cmd.Flags().StringVar(&typ, "type", "", "only events of this type (new-finding, scan-completed, scan-failed)")
	return cmd
}
