package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/distro"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/progress"
	"github.com/moat-dev/moat/internal/report"
	"github.com/moat-dev/moat/internal/sbom"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/vulndb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type scanFlags struct {
	format   string
	output   string
	platform string
	insecure bool

	sbomFile       string
	dbDir          string
	noVulns        bool
	failOn         string
	severity       string
	ignoreUnfixed  bool
	ignoreFile     string
	vex            []string
	showSuppressed bool
	listPackages   bool
	maxAge         string
	cacheDir       string
}

func newScanCmd() *cobra.Command {
	var f scanFlags
	cmd := &cobra.Command{
		Use:   "scan IMAGE",
		Short: "List every package in an image, layer by layer, and write an SBOM",
		Long: `Scan reads an image once, layer by layer, and lists every package in it
with the layer that brought it in.

IMAGE is one of:
  registry.example.com/team/app:1.2     a registry reference (also @sha256:...)
  oci:PATH[:TAG]                         an OCI image layout directory
  oci-archive:PATH[:TAG]                 an OCI archive tarball
  docker-archive:PATH                    a docker save tarball
  docker:NAME                            an image held by the local Docker engine
  dir:PATH                               a root filesystem directory
A bare existing path is sniffed; anything else is a registry reference.
Registry credentials come from ~/.docker/config.json and credential helpers.

Every package is matched against the local OSV database (moat db update);
findings carry severity, the fixed versions and the layer that brought the
package in. --sbom FILE matches an existing CycloneDX or SPDX SBOM instead
of an image.

Formats: table (default), json (docs/scan-json.md), sarif (SARIF 2.1.0),
cyclonedx (CycloneDX 1.6 JSON, with a vulnerabilities section), spdx
(SPDX 2.3 JSON, packages only).

Exit codes: 0 no finding at or above --fail-on; 1 findings at or above
--fail-on remain after exceptions; 2 the scan could not be done.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.sbomFile != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := ""
			if len(args) == 1 {
				spec = args[0]
			}
			return runScan(cmd.Context(), spec, f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.format, "format", "f", "table", "output format: table, json, sarif, cyclonedx, spdx")
	fl.StringVarP(&f.output, "output", "o", "", "write the output to this file instead of standard output")
	fl.StringVar(&f.platform, "platform", "", "platform to pick from a multi-platform image (os/arch[/variant]; default: "+image.HostPlatform()+")")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry (for registries on loopback)")
	fl.StringVar(&f.sbomFile, "sbom", "", "match the packages of this CycloneDX or SPDX SBOM instead of scanning an image")
	fl.StringVar(&f.dbDir, "db-dir", "", "vulnerability database directory (default $MOAT_DB_DIR, else ~/.cache/moat)")
	fl.BoolVar(&f.noVulns, "no-vulns", false, "list packages only; do not match vulnerabilities")
	fl.StringVar(&f.failOn, "fail-on", "", "exit 1 when a finding at or above this severity remains after exceptions and --ignore-unfixed (--severity only narrows what is shown)")
	fl.StringVar(&f.severity, "severity", "", "show only these severities (comma-separated: critical,high,...)")
	fl.BoolVar(&f.ignoreUnfixed, "ignore-unfixed", false, "hide findings that have no fixed version")
	fl.StringVar(&f.ignoreFile, "ignore-file", "", "exceptions file (default "+match.DefaultIgnoreFile+" when it exists)")
	fl.StringSliceVar(&f.vex, "vex", nil, "OpenVEX document(s) whose not_affected/fixed statements suppress findings")
	fl.BoolVar(&f.showSuppressed, "show-suppressed", false, "list the findings that exceptions and VEX suppressed")
	fl.BoolVar(&f.listPackages, "packages", false, "also list every package in the table output")
	fl.StringVar(&f.maxAge, "max-age", "3d", "warn when the vulnerability data is older than this")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "keep per-layer results here (by diff ID) so shared layers are read once across scans")
	return cmd
}

func runScan(ctx context.Context, spec string, f scanFlags, stdout io.Writer) error {
	switch f.format {
	case "table", "json", "sarif", "cyclonedx", "spdx":
	default:
		return fmt.Errorf("unknown --format %q: use table, json, sarif, cyclonedx or spdx", f.format)
	}
	var failOn match.Severity
	if f.failOn != "" {
		s, err := match.ParseSeverity(f.failOn)
		if err != nil {
			return fmt.Errorf("--fail-on: %w", err)
		}
		failOn = s
		if f.noVulns {
			return errors.New("--fail-on needs vulnerability matching; drop --no-vulns")
		}
	}
	sevs, err := match.ParseSeverityList(f.severity)
	if err != nil {
		return fmt.Errorf("--severity: %w", err)
	}
	maxAge, err := dbParseAge(f.maxAge)
	if err != nil {
		return fmt.Errorf("--max-age: %w", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	// Load the exceptions first: a typo in them must not cost a whole scan.
	var exceptions []match.Exception
	if !f.noVulns {
		exceptions, err = loadExceptions(f)
		if err != nil {
			return err
		}
	}

	var res *scan.Result
	if f.sbomFile != "" {
		res, err = readSBOM(f.sbomFile)
	} else {
		res, err = scanImage(ctx, spec, f)
	}
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	rep := &report.ScanReport{Result: res}
	if !f.noVulns {
		v, err := matchVulns(ctx, res, f.dbDir, maxAge, exceptions, sevs, f.ignoreUnfixed, f.showSuppressed)
		if err != nil {
			if errors.Is(err, vulndb.ErrNoDatabase) && failOn == match.Unknown && f.format != "sarif" {
				// Without a gate, a missing database still yields the
				// package list; say how to get findings.
				fmt.Fprintln(os.Stderr, "warning:", err)
			} else {
				return err
			}
		}
		rep.Vulnerabilities = v
	}
	err = writeOutput(f.output, stdout, func(w io.Writer) error {
		tool := sbom.ToolInfo{Name: "moat", Version: version}
		switch f.format {
		case "json":
			return report.WriteJSON(w, rep)
		case "sarif":
			return report.WriteSARIF(w, rep, version)
		case "cyclonedx":
			bom := sbom.BuildCycloneDX(sbomSubject(res), res.Packages, tool)
			if rep.Vulnerabilities != nil {
				sbom.AddVulnerabilities(bom, rep.Vulnerabilities.Findings)
			}
			return sbom.EncodeCycloneDX(w, bom)
		case "spdx":
			return sbom.WriteSPDX(w, sbomSubject(res), res.Packages, tool)
		}
		if rep.Vulnerabilities == nil || f.listPackages {
			if err := report.PackagesTable(w, res, true); err != nil {
				return err
			}
		} else if err := report.PackagesTable(w, res, false); err != nil {
			return err
		}
		if rep.Vulnerabilities != nil {
			fmt.Fprintln(w)
			return report.FindingsTable(w, rep, f.showSuppressed)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if failOn != match.Unknown && rep.Vulnerabilities != nil {
		var hits []match.Finding
		for _, fd := range rep.Vulnerabilities.Gate() {
			if fd.Severity >= failOn {
				hits = append(hits, fd)
			}
		}
		if len(hits) > 0 {
			ids := []string{}
			for i, h := range hits {
				if i == 5 {
					ids = append(ids, "…")
					break
				}
				ids = append(ids, h.ID)
			}
			return &gateError{msg: fmt.Sprintf("%d finding(s) at or above %s: %s", len(hits), failOn, strings.Join(ids, ", "))}
		}
	}
	return nil
}

func scanImage(ctx context.Context, spec string, f scanFlags) (*scan.Result, error) {
	line := progress.New(os.Stderr)
	opts := scan.Options{Image: image.Options{Platform: f.platform, Insecure: f.insecure}}
	if f.cacheDir != "" {
		c, err := scan.NewDirCache(f.cacheDir)
		if err != nil {
			return nil, err
		}
		opts.Cache = c
	}
	if line.Enabled() {
		opts.Progress = func(p scan.Progress) {
			line.Printf("scanning %s: %d/%d layers read, %s", spec, p.LayersDone, p.LayersTotal, progress.Bytes(p.Bytes))
		}
	}
	res, err := scan.Scan(ctx, spec, opts)
	line.Done()
	return res, err
}

// readSBOM turns an SBOM into a scan result whose packages can be matched.
func readSBOM(path string) (*scan.Result, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--sbom: %w", err)
	}
	defer fh.Close()
	subj, pkgs, err := sbom.Read(fh)
	if err != nil {
		return nil, fmt.Errorf("--sbom %s: %w", path, err)
	}
	name := subj.Name
	if name == "" {
		name = path
	}
	res := &scan.Result{Schema: scan.SchemaVersion, Subject: scan.Subject{Name: name, Source: "sbom", Reference: path, Digest: subj.Digest, ImageID: subj.ImageID, Platform: subj.Platform}, Packages: pkgs}
	if subj.OSName != "" {
		res.OS = &distro.Release{ID: subj.OSName, VersionID: subj.OSVersion}
	}
	for _, l := range subj.Layers {
		res.Layers = append(res.Layers, scan.LayerInfo{Index: l.Index, DiffID: l.DiffID, Digest: l.Digest, CreatedBy: l.CreatedBy, Size: l.Size})
	}
	return res, nil
}

func loadExceptions(f scanFlags) ([]match.Exception, error) {
	var out []match.Exception
	path := f.ignoreFile
	if path == "" {
		if _, err := os.Stat(match.DefaultIgnoreFile); err == nil {
			path = match.DefaultIgnoreFile
		}
	}
	if path != "" {
		ig, err := match.LoadIgnoreFile(path, time.Now())
		if err != nil {
			return nil, fmt.Errorf("--ignore-file: %w", err)
		}
		out = append(out, ig)
	}
	for _, p := range f.vex {
		v, err := match.LoadVEX(p)
		if err != nil {
			return nil, fmt.Errorf("--vex: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// matchVulns matches the packages against the local database and applies
// exceptions and filters.
func matchVulns(ctx context.Context, res *scan.Result, dbFlag string, maxAge time.Duration, exceptions []match.Exception, sevs []match.Severity, ignoreUnfixed, showSuppressed bool) (*report.Vulnerabilities, error) {
	dir, err := vulndb.ResolveDir(dbFlag)
	if err != nil {
		return nil, err
	}
	st, err := vulndb.Status(dir)
	if err != nil {
		return nil, err
	}
	updated := map[string]time.Time{}
	now := time.Now()
	for _, s := range st {
		if s.Error != "" {
			fmt.Fprintln(os.Stderr, "warning:", s.Error)
			continue
		}
		updated[s.Ecosystem] = s.Fresh()
		if s.Stale(now, maxAge) {
			fmt.Fprintf(os.Stderr, "warning: %s vulnerability data is %s old (older than %s): run `moat db update`\n", s.Ecosystem, now.Sub(s.Fresh()).Round(time.Hour), maxAge)
		}
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	mr, err := match.Matcher{DB: db}.Match(ctx, res.Packages)
	if err != nil {
		return nil, err
	}
	for _, ex := range exceptions {
		if v, ok := ex.(*match.VEX); ok {
			v.Image = append(v.Image, res.Subject.Name, res.Subject.Reference)
			if res.Subject.Digest != "" {
				v.Image = append(v.Image, res.Subject.Digest)
			}
		}
	}
	mr.Apply(exceptions...)
	before := len(mr.Findings)
	mr.Filter(nil, ignoreUnfixed)
	gate := append([]match.Finding(nil), mr.Findings...)
	mr.Filter(sevs, false)
	v := report.NewVulnerabilities(gate)
	v.Database = report.DatabaseInfo(dir, updated)
	v.Findings = mr.Findings
	v.SuppressedCount = len(mr.Suppressed)
	v.ExpiredIgnores = mr.Expired
	v.HiddenCount = before - len(mr.Findings)
	v.Upgrades = mr.Upgrades()
	v.NoData = mr.NoData
	v.Warnings = mr.Warnings
	if v.Findings == nil {
		v.Findings = []match.Finding{}
	}
	for s, n := range mr.CountBySeverity() {
		v.Counts[s.String()] = n
	}
	if showSuppressed {
		v.Suppressed = mr.Suppressed
	}
	return v, nil
}

func sbomSubject(r *scan.Result) sbom.Subject {
	s := sbom.Subject{Name: r.Subject.Name, Digest: r.Subject.Digest, ImageID: r.Subject.ImageID, Platform: r.Subject.Platform}
	if r.OS != nil {
		s.OSName, s.OSVersion = r.OS.ID, r.OS.VersionID
	}
	for _, l := range r.Layers {
		s.Layers = append(s.Layers, sbom.Layer{Index: l.Index, DiffID: l.DiffID, Digest: l.Digest, CreatedBy: l.CreatedBy, Size: l.Size})
	}
	return s
}

// writeOutput writes to the named file atomically (a temporary file renamed
// into place, so a failed write never leaves half a report), or to stdout.
func writeOutput(path string, stdout io.Writer, fn func(io.Writer) error) error {
	if path == "" || path == "-" {
		return fn(stdout)
	}
	dir := "."
	if i := strings.LastIndex(path, "/"); i >= 0 {
		dir = path[:i+1]
	}
	tmp, err := os.CreateTemp(dir, ".moat-out-*")
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := fn(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
