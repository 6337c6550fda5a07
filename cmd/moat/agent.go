package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/agent"
)

func newAgentCmd() *cobra.Command {
	var (
		cfg      agent.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Report this Docker host's containers, their privileges and resource use to moat serve",
		Long: `agent runs on a Docker host. It keeps the inventory of the host's containers
(image digest, runtime security settings) from the Docker Engine API,
following its event stream, samples resource use, flags noisy neighbours,
catalogues images the server has no SBOM for (one at a time, with a pause),
and reports to the fleet API of moat serve.

It authenticates with a robot account: --token "robot$NAME:SECRET" (or
MOAT_AGENT_TOKEN). When the engine or the server is unreachable it retries
with backoff and catches up; changes made meanwhile are not lost.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Token == "" {
				cfg.Token = os.Getenv("MOAT_AGENT_TOKEN")
			}
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
			cfg.Version = version
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			if ctx == nil {
				ctx = context.Background()
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", envOr("MOAT_SERVER", "http://127.0.0.1:5000"), "moat serve URL [MOAT_SERVER]")
	f.StringVar(&cfg.Token, "token", "", `robot account credential "robot$NAME:SECRET" [MOAT_AGENT_TOKEN]`)
	f.StringVar(&cfg.CACert, "ca-cert", "", "extra trusted CA certificate for the server")
	f.StringVar(&cfg.DockerHost, "docker-host", "", "Docker engine socket path or URL (default DOCKER_HOST or /var/run/docker.sock)")
	f.StringArrayVar(&cfg.Labels, "label", nil, "only containers with this label (KEY or KEY=VALUE; repeatable)")
	f.StringVar(&cfg.HostName, "host-name", "", "name of this host on the server (default: the engine's host name)")
	f.DurationVar(&cfg.StatsInterval, "stats-interval", 30*time.Second, "resource sampling interval (negative: off)")
	f.DurationVar(&cfg.Heartbeat, "heartbeat", 30*time.Second, "report at least this often")
	f.BoolVar(&cfg.NoScan, "no-scan", false, "do not catalogue images the server has no SBOM for")
	f.DurationVar(&cfg.ScanPause, "scan-pause", 30*time.Second, "pause between two image scans")
	f.StringVar(&cfg.ScanTempDir, "scan-temp-dir", "", "where scans spill large files (default the system temp dir)")
	f.Float64Var(&cfg.Noisy.HostShare, "noisy-host-share", 0.5, "noisy neighbour: share (0-1) of the host's CPU or memory")
	f.Float64Var(&cfg.Noisy.LimitShare, "noisy-limit-share", 0.9, "noisy neighbour: share (0-1) of the container's own CPU, memory or PID limit")
	f.DurationVar(&cfg.Noisy.Window, "noisy-window", 2*time.Minute, "noisy neighbour: for longer than this")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve the agent's Prometheus metrics on this address (e.g. 127.0.0.1:9464)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
