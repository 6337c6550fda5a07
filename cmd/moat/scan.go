package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/progress"
	"github.com/moat-dev/moat/internal/report"
	"github.com/moat-dev/moat/internal/sbom"
	"github.com/moat-dev/moat/internal/scan"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type scanFlags struct {
	format   string
	output   string
	platform string
	insecure bool
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

Formats: table (default), json (docs/scan-json.md), cyclonedx (CycloneDX 1.6
JSON), spdx (SPDX 2.3 JSON).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), args[0], f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.format, "format", "f", "table", "output format: table, json, cyclonedx, spdx")
	fl.StringVarP(&f.output, "output", "o", "", "write the output to this file instead of standard output")
	fl.StringVar(&f.platform, "platform", "", "platform to pick from a multi-platform image (os/arch[/variant]; default: "+image.HostPlatform()+")")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to the registry (for registries on loopback)")
	return cmd
}

func runScan(ctx context.Context, spec string, f scanFlags, stdout io.Writer) error {
	switch f.format {
	case "table", "json", "cyclonedx", "spdx":
	default:
		return fmt.Errorf("unknown --format %q: use table, json, cyclonedx or spdx", f.format)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	line := progress.New(os.Stderr)
	opts := scan.Options{Image: image.Options{Platform: f.platform, Insecure: f.insecure}}
	if line.Enabled() {
		opts.Progress = func(p scan.Progress) {
			line.Printf("scanning %s: %d/%d layers read, %s", spec, p.LayersDone, p.LayersTotal, progress.Bytes(p.Bytes))
		}
	}
	res, err := scan.Scan(ctx, spec, opts)
	line.Done()
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	return writeOutput(f.output, stdout, func(w io.Writer) error {
		switch f.format {
		case "json":
			return report.WriteJSON(w, res)
		case "cyclonedx":
			return sbom.WriteCycloneDX(w, sbomSubject(res), res.Packages, sbom.ToolInfo{Name: "moat", Version: version})
		case "spdx":
			return sbom.WriteSPDX(w, sbomSubject(res), res.Packages, sbom.ToolInfo{Name: "moat", Version: version})
		}
		return report.PackagesTable(w, res)
	})
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
