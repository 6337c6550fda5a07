package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/dockerauthz"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
)

type authzFlags struct {
	policy, name, dir, dockerHost, dbDir string
	factsTimeout, reload                 time.Duration
	facts                                factsFlags
}

func newAuthzCmd() *cobra.Command {
	var f authzFlags
	cmd := &cobra.Command{
		Use:   "authz --policy FILE",
		Short: "Serve the policy as a Docker Engine authorization plugin",
		Long: `Authz serves a Docker Engine authorization plugin on
/run/docker/plugins/NAME.sock. Start dockerd with --authorization-plugin=NAME
(or "authorization-plugins": ["NAME"] in daemon.json) and every container
create request is checked against the policy: an unapproved image or
registry, privileged mode, host namespaces, Docker socket and other host
path mounts, root where the policy forbids it, capabilities, limits, and
the other runtime rules a create request can express. A denied request
fails in the docker CLI with "authorization denied by plugin NAME: ..."
and moat's reasons. Privileged exec sessions are denied when the policy
forbids privileged mode; every other API request is allowed.

Image facts (USER, labels, layers) come from the same Docker engine
(--docker-host). Findings for vulnerability rules come from the moat
registry the image was pulled from when it has scanned it (its stored
findings, asked again after --registry-findings-ttl), else from a scan of
the engine's image with the vulnerability database (--db-dir), kept in the
on-disk facts cache by image ID. The policy is reloaded when the file changes and on
SIGHUP; a policy that does not load leaves the previous one in force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runAuthz(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.policy, "policy", "p", "moat-policy.yaml", "policy file")
	fl.StringVar(&f.name, "name", "moat", "plugin name (dockerd --authorization-plugin=NAME)")
	fl.StringVar(&f.dir, "plugin-dir", dockerauthz.PluginDir, "directory dockerd discovers plugin sockets in")
	fl.StringVar(&f.dockerHost, "docker-host", "unix:///var/run/docker.sock", "the Docker engine to read image facts from")
	fl.DurationVar(&f.factsTimeout, "facts-timeout", 5*time.Second, "bound on the image lookups of one request")
	fl.DurationVar(&f.reload, "reload-interval", 2*time.Second, "how often the policy file is checked for changes")
	fl.StringVar(&f.dbDir, "db-dir", "", "vulnerability database directory (default $MOAT_DB_DIR or ~/.cache/moat)")
	f.facts.register(cmd, true)
	return cmd
}

func runAuthz(ctx context.Context, f authzFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	pol, err := policy.Load(f.policy)
	if err != nil {
		return err
	}
	prov := &imagefacts.Provider{Docker: f.dockerHost}
	if err := f.facts.provider(prov, func(msg string) { log.Warn(msg) }, true); err != nil {
		return err
	}
	if db := openDBIfAny(f.dbDir); db != nil {
		defer db.Close()
		prov.DB = db
	}
	p := &dockerauthz.Plugin{Facts: prov, FactsTimeout: f.factsTimeout, Log: log}
	p.SetPolicy(pol)
	go policy.Watch(ctx, f.policy, f.reload, func(np *policy.Policy) {
		p.SetPolicy(np)
		log.Info("policy reloaded", "file", f.policy, "rules", len(np.Rules))
	}, func(err error) {
		log.Error("policy not reloaded; the previous policy stays in force", "error", err.Error())
	})
	l, path, err := dockerauthz.Listen(f.dir, f.name)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("moat authz serving", "socket", path, "policy", f.policy, "rules", len(pol.Rules))
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
