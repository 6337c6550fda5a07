package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

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
	facts    factsFlags
}

// factsFlags are the image-facts options of check, admit and authz.
type factsFlags struct {
	cacheDir      string
	noCache       bool
	cacheMB       int64
	noRegistry    bool
	registryTTL   time.Duration
	withTTLOption bool
}

func (f *factsFlags) register(cmd *cobra.Command, longRunning bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.cacheDir, "facts-cache", "", "directory of the on-disk image facts cache (default $"+imagefacts.EnvCacheDir+" or ~/.cache/moat/facts)")
	fl.BoolVar(&f.noCache, "no-facts-cache", false, "do not keep scanned image facts on disk (every run scans again)")
	fl.Int64Var(&f.cacheMB, "facts-cache-size", imagefacts.DefaultCacheMaxBytes>>20, "bound on the facts cache directory in MiB (least recently used entries go first)")
	fl.BoolVar(&f.noRegistry, "no-registry-findings", false, "scan every image here, even when a moat registry shares the findings it stored")
	if longRunning {
		f.withTTLOption = true
		fl.DurationVar(&f.registryTTL, "registry-findings-ttl", 5*time.Minute, "how long findings from a moat registry are reused before it is asked again")
	}
}

// provider configures the image facts provider: moat registries' stored
// findings, and with cache the on-disk facts cache and the layer cache
// (only scans are cached, so a policy without vulnerability rules needs
// none). Warnings go to warn.
func (f *factsFlags) provider(p *imagefacts.Provider, warn func(string), cache bool) error {
	p.NoRegistryFindings, p.Warn = f.noRegistry, warn
	if f.withTTLOption {
		p.RegistryTTL = f.registryTTL
	}
	if f.noCache || !cache {
		return nil
	}
	if f.cacheMB < 0 {
		return fmt.Errorf("--facts-cache-size %d: want a number of MiB (0 for the default), or --no-facts-cache", f.cacheMB)
	}
	dir, err := imagefacts.ResolveCacheDir(f.cacheDir)
	if err != nil {
		return err
	}
	c, err := imagefacts.OpenDiskCache(dir, f.cacheMB<<20)
	if err != nil {
		return fmt.Errorf("%w (choose another --facts-cache or give --no-facts-cache)", err)
	}
	p.Cache, p.LayerCache = c, c.LayerCache()
	return nil
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
image facts (config, layers). Findings for vulnerability rules come from
the registry when it is a moat registry that has scanned the image (its
stored findings, read with your docker login credentials); any other image
is scanned here with the vulnerability database (moat db update) and the
result is kept in the facts cache by digest, so the next check of the same
image does not scan again. The output says where each image's facts came
from.

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
	f.facts.register(cmd, false)
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
	if err := f.facts.provider(prov, func(msg string) { fmt.Fprintln(stderr, "warning:", msg) }, needsVulns(pol)); err != nil {
		return err
	}
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
			fmt.Fprintln(stderr, "warning: no vulnerability database (run moat db update); vulnerability rules pass only for images whose findings a moat registry shares")
		}
	}
	seen := &factsLog{FactsProvider: prov}
	var outs []policy.Outcome
	var skipped []string
	for _, t := range targets {
		ws, sk, err := checkTargets(ctx, t)
		if err != nil {
			return err
		}
		skipped = append(skipped, sk...)
		for _, w := range ws {
			res := pol.Evaluate(ctx, w, policy.Options{Facts: seen})
			outs = append(outs, policy.Outcome{Object: w.ObjectName(), Source: w.Source, Result: res})
		}
	}
	rep := policy.NewReport(f.policy, outs, skipped)
	images := seen.images()
	err = writeOutput(f.output, stdout, func(w io.Writer) error {
		switch f.format {
		case "json":
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(checkReport{Report: rep, Images: images})
		case "sarif":
			return rep.WriteSARIF(w, pol, version)
		}
		if err := writeImagesTable(w, images); err != nil {
			return err
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

// checkReport is the moat.check/v1 report with where each image's facts
// came from.
type checkReport struct {
	*policy.Report
	Images []checkImage `json:"images,omitempty"`
}

// checkImage says what moat check knew about one image and from where.
type checkImage struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest,omitempty"`
	// FactsSource is "registry" (a moat registry's stored findings),
	// "scan" (scanned here) or "" (no vulnerability data).
	FactsSource  string         `json:"factsSource,omitempty"`
	Cached       bool           `json:"cached,omitempty"`
	Note         string         `json:"note,omitempty"`
	VulnsScanned bool           `json:"vulnerabilitiesScanned"`
	Counts       map[string]int `json:"counts,omitempty"`
	Error        string         `json:"error,omitempty"`
}

// factsLog records the image facts an evaluation looked up.
type factsLog struct {
	policy.FactsProvider
	mu    sync.Mutex
	order []string
	seen  map[string]checkImage
}

func (l *factsLog) ImageFacts(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	f, err := l.FactsProvider.ImageFacts(ctx, ref)
	ci := checkImage{Reference: ref}
	if err != nil {
		ci.Error = err.Error()
	} else if f != nil {
		ci.Digest, ci.FactsSource, ci.Cached, ci.Note, ci.VulnsScanned = f.Digest, f.FactsSource, f.FactsCached, f.FactsNote, f.VulnsScanned
		if f.VulnsScanned {
			ci.Counts = map[string]int{}
			for i := range f.Findings {
				ci.Counts[f.Findings[i].Severity.String()]++
			}
		}
	}
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]checkImage{}
	}
	if _, ok := l.seen[ref]; !ok {
		l.order = append(l.order, ref)
	}
	l.seen[ref] = ci
	l.mu.Unlock()
	return f, err
}

func (l *factsLog) images() []checkImage {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]checkImage, 0, len(l.order))
	for _, r := range l.order {
		out = append(out, l.seen[r])
	}
	return out
}

// writeImagesTable lists the images whose facts were read, before the
// violations.
func writeImagesTable(w io.Writer, ims []checkImage) error {
	if len(ims) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tDIGEST\tFACTS\tFINDINGS\tNOTE")
	for _, im := range ims {
		src, findings := im.FactsSource, "-"
		switch {
		case im.Error != "":
			src = "error"
		case src == "":
			src = "config only"
		case im.Cached:
			src += " (cached)"
		}
		if im.VulnsScanned {
			findings = fmt.Sprintf("%dC %dH %dM %dL %dU", im.Counts["CRITICAL"], im.Counts["HIGH"], im.Counts["MEDIUM"], im.Counts["LOW"], im.Counts["UNKNOWN"])
		}
		note := im.Note
		if im.Error != "" {
			note = im.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Reference, orDash(shortDigest(im.Digest)), src, findings, orDash(note))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}
