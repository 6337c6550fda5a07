package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/vulndb"
	"github.com/moat-dev/moat/internal/workload"
)

type checkFlags struct {
	policy   string
	format   string
	output   string
	platform string
	dbDir    string
	insecure bool
}

func newCheckCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check --policy FILE TARGET...",
		Short: "Check images and workload files against a policy",
		Long: `Check evaluates a moat policy (docs/policy.md) against each TARGET:

  a workload file    Kubernetes YAML or JSON (Pods, Deployments, StatefulSets,
                     DaemonSets, ReplicaSets, Jobs, CronJobs; several documents
                     and Lists) or a docker-compose file
  an image reference registry.example.com/team/app:1.2 (image rules only,
                     plus runAsNonRoot from the image USER)

Images named by workloads are read from their registry when a rule needs
image facts (config, layers) and scanned when a vulnerability rule needs
findings and a database is present (moat db update).

Exit codes: 0 no enforce violation, 1 an enforce rule is violated,
2 the check could not run (bad policy, unreadable file, ...).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), args, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.policy, "policy", "p", "moat-policy.yaml", "policy file")
	fl.StringVarP(&f.format, "format", "f", "table", "output format: table, json, sarif")
	fl.StringVarP(&f.output, "output", "o", "", "write the output to this file instead of standard output")
	fl.StringVar(&f.platform, "platform", "", "platform to read from multi-platform images (default: "+image.HostPlatform()+")")
	fl.StringVar(&f.dbDir, "db-dir", "", "vulnerability database directory (default $MOAT_DB_DIR or ~/.cache/moat)")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to registries")
	return cmd
}

func runCheck(ctx context.Context, targets []string, f checkFlags, stdout, stderr io.Writer) error {
	switch f.format {
	case "table", "json", "sarif":
	default:
		return fmt.Errorf("unknown --format %q: use table, json or sarif", f.format)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	pol, err := policy.Load(f.policy)
	if err != nil {
		return err
	}
	prov := &imagefacts.Provider{Image: image.Options{Platform: f.platform, Insecure: f.insecure}}
	if needsVulns(pol) {
		dir, err := vulndb.ResolveDir(f.dbDir)
		if err == nil {
			db, err := vulndb.Open(dir)
			if err == nil {
				defer db.Close()
				prov.DB = db
			} else if !errors.Is(err, vulndb.ErrNoDatabase) {
				return err
			}
		}
		if prov.DB == nil {
			fmt.Fprintln(stderr, "warning: no vulnerability database (run moat db update); vulnerability rules cannot pass")
		}
	}
	var outs []policy.Outcome
	var skipped []string
	for _, t := range targets {
		ws, sk, err := checkTargets(ctx, t)
		if err != nil {
			return err
		}
		skipped = append(skipped, sk...)
		for _, w := range ws {
			res := pol.Evaluate(ctx, w, policy.Options{Facts: prov})
			outs = append(outs, policy.Outcome{Object: w.ObjectName(), Source: w.Source, Result: res})
		}
	}
	rep := policy.NewReport(f.policy, outs, skipped)
	err = writeOutput(f.output, stdout, func(w io.Writer) error {
		switch f.format {
		case "json":
			return rep.WriteJSON(w)
		case "sarif":
			return rep.WriteSARIF(w, pol, version)
		}
		return rep.WriteTable(w)
	})
	if err != nil {
		return err
	}
	if rep.Summary.Denied {
		return &gateError{msg: fmt.Sprintf("policy %s denies: %d enforce violations", f.policy, rep.Summary.Enforce)}
	}
	return nil
}

func needsVulns(p *policy.Policy) bool {
	for _, r := range p.Rules {
		if r.Family == "vulnerabilities" {
			return true
		}
	}
	return false
}

// checkTargets turns one argument into workloads: a file is decoded, any
// other argument is an image reference.
func checkTargets(ctx context.Context, t string) ([]*workload.Workload, []string, error) {
	if st, err := os.Stat(t); err == nil && !st.IsDir() {
		data, err := os.ReadFile(t)
		if err != nil {
			return nil, nil, err
		}
		var d *workload.Decoded
		if workload.IsCompose(data) {
			d, err = workload.DecodeCompose(ctx, t, data, workload.EnvMap())
		} else {
			d, err = workload.DecodeKubernetes(t, strings.NewReader(string(data)))
		}
		if err != nil {
			return nil, nil, err
		}
		return d.Workloads, d.Skipped, nil
	}
	if _, err := policy.ParseImageRef(t); err != nil {
		return nil, nil, fmt.Errorf("%s: not a file, and %v", t, err)
	}
	return []*workload.Workload{{Kind: "Image", Name: t, Source: t, Containers: []workload.Container{{Name: t, Type: "image", Image: t}}}}, nil, nil
}
