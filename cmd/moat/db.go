package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/moat-dev/moat/internal/vulndb"
)

type dbFlags struct {
	dir        string
	source     string
	ecosystems string
	maxAge     string
	format     string
}

func newDBCmd() *cobra.Command {
	var f dbFlags
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Manage the vulnerability database (OSV data)",
		Long: `The vulnerability database holds OSV records in moat's own indexed format,
one file per ecosystem. It lives in --db-dir, else $MOAT_DB_DIR, else
$XDG_CACHE_HOME/moat (~/.cache/moat), and is shared by every moat command on
the machine. Updates swap files in atomically: a failed or interrupted update
leaves the previous database usable.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.dir, "db-dir", "", "database directory (default $"+vulndb.EnvDBDir+", else the user cache directory + /moat)")
	pf.StringVarP(&f.format, "format", "f", "table", "output format: table or json")

	update := &cobra.Command{
		Use:   "update",
		Short: "Download OSV data (<source>/<Ecosystem>/all.zip) for each ecosystem",
		Long: `Update downloads one all.zip per ecosystem from the public OSV bucket or a
mirror with the same layout (--source http(s)://... or file:///...). Requests
are conditional (ETag / Last-Modified), so unchanged ecosystems are not
downloaded again. Each zip is verified before it replaces the ecosystem's data.
Default ecosystems: ` + strings.Join(vulndb.DefaultEcosystems, ", ") + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDBUpdate(cmd, f) },
	}
	update.Flags().StringVar(&f.source, "source", vulndb.DefaultSource, "OSV bucket base URL (http://, https:// or file://)")
	update.Flags().StringVar(&f.ecosystems, "ecosystems", "", "comma-separated OSV ecosystems to fetch (default: all moat catalogs)")

	imp := &cobra.Command{
		Use:   "import PATH...",
		Short: "Load OSV zips or directories of OSV JSON (air-gapped sites)",
		Long: `Import reads OSV all.zip files, directories (searched recursively for *.json
and *.zip) or single JSON files, and replaces the data of every ecosystem found
in them. Malformed records are skipped with a warning naming them; withdrawn
records are dropped.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runDBImport(cmd, f, args) },
	}
	imp.Flags().StringVar(&f.ecosystems, "ecosystems", "", "comma-separated ecosystems to keep (default: all found)")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show each ecosystem's record count, update time and source",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runDBStatus(cmd, f) },
	}
	status.Flags().StringVar(&f.maxAge, "max-age", "3d", "warn when data is older than this (e.g. 72h, 3d)")

	cmd.AddCommand(update, imp, status)
	return cmd
}

func dbCheckFormat(f dbFlags) error {
	if f.format != "table" && f.format != "json" {
		return fmt.Errorf("unknown --format %q: use table or json", f.format)
	}
	return nil
}

func dbSplitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// dbParseAge reads a Go duration or a number of days ("3d").
func dbParseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad --max-age %q: want a duration such as 72h or 3d", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad --max-age %q: want a duration such as 72h or 3d", s)
	}
	return v, nil
}

func dbWarnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "warning: "+format+"\n", args...)
}

func runDBUpdate(cmd *cobra.Command, f dbFlags) error {
	if err := dbCheckFormat(f); err != nil {
		return err
	}
	dir, err := vulndb.ResolveDir(f.dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	opts := vulndb.UpdateOptions{
		Source:     f.source,
		Ecosystems: dbSplitList(f.ecosystems),
		Warn:       func(s string) { dbWarnf("%s", s) },
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		opts.Progress = os.Stderr
	}
	res, uerr := vulndb.Update(ctx, dir, opts)
	out := cmd.OutOrStdout()
	if f.format == "json" {
		if err := dbWriteJSON(out, map[string]any{"dir": dir, "source": f.source, "results": res}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ECOSYSTEM\tSTATUS\tRECORDS\tDOWNLOADED")
		for _, r := range res {
			st := r.Status
			if r.Error != "" {
				st += ": " + r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Ecosystem, st, r.Records, dbMB(r.Downloaded))
		}
		tw.Flush()
		fmt.Fprintln(out, "database:", dir)
	}
	for _, r := range res {
		if r.Status == vulndb.StatusNotFound {
			dbWarnf("%s: no all.zip at %s", r.Ecosystem, f.source)
		}
	}
	return uerr
}

func dbMB(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func runDBImport(cmd *cobra.Command, f dbFlags, paths []string) error {
	if err := dbCheckFormat(f); err != nil {
		return err
	}
	dir, err := vulndb.ResolveDir(f.dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	res, err := vulndb.Import(ctx, dir, paths, vulndb.ImportOptions{
		Ecosystems: dbSplitList(f.ecosystems),
		Warn:       func(s string) { dbWarnf("%s", s) },
	})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.format == "json" {
		return dbWriteJSON(out, map[string]any{"dir": dir, "result": res})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ECOSYSTEM\tRECORDS\tPACKAGES")
	for _, m := range res.Ecosystems {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", m.Ecosystem, m.Records, m.Keys)
	}
	tw.Flush()
	fmt.Fprintf(out, "imported into %s; %d withdrawn dropped, %d malformed skipped\n", dir, res.Withdrawn, len(res.Malformed))
	if len(res.Ecosystems) == 0 {
		return fmt.Errorf("no OSV records found in %s", strings.Join(paths, ", "))
	}
	return nil
}

type statusEntry struct {
	vulndb.EcosystemStatus
	Stale bool `json:"stale"`
}

func runDBStatus(cmd *cobra.Command, f dbFlags) error {
	if err := dbCheckFormat(f); err != nil {
		return err
	}
	maxAge, err := dbParseAge(f.maxAge)
	if err != nil {
		return err
	}
	dir, err := vulndb.ResolveDir(f.dir)
	if err != nil {
		return err
	}
	st, err := vulndb.Status(dir)
	if err != nil {
		return err
	}
	now := time.Now()
	entries := make([]statusEntry, len(st))
	for i, s := range st {
		entries[i] = statusEntry{EcosystemStatus: s, Stale: s.Error == "" && s.Stale(now, maxAge)}
	}
	out := cmd.OutOrStdout()
	if f.format == "json" {
		if err := dbWriteJSON(out, map[string]any{"dir": dir, "maxAge": maxAge.String(), "ecosystems": entries}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ECOSYSTEM\tRECORDS\tUPDATED\tAGE\tSOURCE\tETAG / LAST-MODIFIED")
		for _, e := range entries {
			if e.Error != "" {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tunreadable: %s\n", e.Ecosystem, e.Error)
				continue
			}
			tag := e.ETag
			if tag == "" {
				tag = e.LastModified
			}
			if tag == "" {
				tag = "-"
			}
			age := now.Sub(e.Fresh()).Round(time.Minute).String()
			if e.Stale {
				age += " (stale)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.Ecosystem, e.Records, e.Updated.Local().Format("2006-01-02 15:04"), age, e.Source, tag)
		}
		tw.Flush()
		fmt.Fprintln(out, "database:", dir)
	}
	for _, e := range entries {
		if e.Stale {
			dbWarnf("%s data is older than %s (last updated %s): run `moat db update`", e.Ecosystem, f.maxAge, e.Fresh().Local().Format(time.RFC3339))
		}
		if e.Error != "" {
			dbWarnf("%s", e.Error)
		}
	}
	return nil
}

func dbWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
