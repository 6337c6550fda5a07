package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/fleet"
)

func newRunningCmd() *cobra.Command {
	var (
		a          adminFlags
		violations bool
		host       string
	)
	cmd := &cobra.Command{
		Use:   "running",
		Short: "List running containers reported by moat agents, with findings and least-privilege violations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			path := "fleet/running"
			if host != "" {
				path += "?host=" + url.QueryEscape(host)
			}
			var rcs []fleet.RunningContainer
			if err := c.Do("GET", path, nil, &rcs); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if violations {
				kept := []fleet.RunningContainer{}
				var rows [][]string
				for _, rc := range rcs {
					if len(rc.Violations) == 0 {
						continue
					}
					kept = append(kept, rc)
					for _, v := range rc.Violations {
						rows = append(rows, []string{rc.Host, rc.Name, v.Rule, v.Message, v.Fix})
					}
				}
				return a.output(out, kept, []string{"HOST", "CONTAINER", "RULE", "VIOLATION", "FIX"}, rows)
			}
			var rows [][]string
			for _, rc := range rcs {
				sev := func(s string) string { return strconv.Itoa(rc.Findings[s]) }
				scanned := "yes"
				if !rc.Scanned {
					scanned = "pending"
				}
				cpu, mem, flags := "-", "-", []string{}
				if st := rc.Stats; st != nil {
					cpu = fmt.Sprintf("%.1f%%", st.CPUPercent)
					mem = humanBytes(st.MemoryBytes)
					if st.MemoryLimit > 0 {
						mem += "/" + humanBytes(st.MemoryLimit)
					}
					if st.Noisy {
						flags = append(flags, "noisy")
					}
				}
				if rc.Runtime.NoLimits() {
					flags = append(flags, "no-limits")
				}
				rows = append(rows, []string{rc.Host, rc.Name, rc.Image, scanned, sev("CRITICAL"), sev("HIGH"), sev("MEDIUM"), sev("LOW"), sev("UNKNOWN"),
					strconv.Itoa(len(rc.Violations)), cpu, mem, strings.Join(flags, ",")})
			}
			return a.output(out, rcs, []string{"HOST", "CONTAINER", "IMAGE", "SCANNED", "CRIT", "HIGH", "MED", "LOW", "UNK", "VIOLATIONS", "CPU", "MEM", "FLAGS"}, rows)
		},
	}
	a.register(cmd)
	cmd.Flags().BoolVar(&violations, "violations", false, "list each least-privilege violation of the running containers")
	cmd.Flags().StringVar(&host, "host", "", "only this host")
	return cmd
}

func newExposureCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{
		Use:   "exposure VULN-ID",
		Short: "List running containers exposed to a vulnerability (CVE, GHSA, GO-, ... any alias)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var ex fleet.Exposure
			if err := c.Do("GET", "fleet/exposure/"+url.PathEscape(args[0]), nil, &ex); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if a.format == "table" && len(ex.Containers) == 0 {
				fmt.Fprintf(out, "no running container is exposed to %s\n", args[0])
				return nil
			}
			var rows [][]string
			for _, e := range ex.Containers {
				layer := "-"
				if e.Layer >= 0 {
					layer = strconv.Itoa(e.Layer)
					if e.CreatedBy != "" {
						cb := e.CreatedBy
						if len(cb) > 40 {
							cb = cb[:40] + "…"
						}
						layer += " " + cb
					}
				}
				fixed := strings.Join(e.FixedVersions, ", ")
				if fixed == "" {
					fixed = "(no fix)"
				}
				rows = append(rows, []string{e.Host, e.Container, e.Image, e.Vulnerability, e.Severity, e.Package, e.Version, fixed, layer})
			}
			return a.output(out, ex, []string{"HOST", "CONTAINER", "IMAGE", "VULNERABILITY", "SEVERITY", "PACKAGE", "VERSION", "FIXED IN", "LAYER"}, rows)
		},
	}
	a.register(cmd)
	return cmd
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
