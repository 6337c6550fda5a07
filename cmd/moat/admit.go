package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/admission"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/vulndb"
)

type admitFlags struct {
	policy, listen, cert, key, dbDir string
	exclude                          []string
	factsTimeout, reload             time.Duration
	insecure                         bool
	facts                            factsFlags
}

func newAdmitCmd() *cobra.Command {
	var f admitFlags
	cmd := &cobra.Command{
		Use:   "admit --policy FILE --tls-cert CERT --tls-key KEY",
		Short: "Serve the policy as a Kubernetes admission webhook",
		Long: `Admit serves a Kubernetes admission webhook over HTTPS (AdmissionReview
admission.k8s.io/v1):

  POST /validate   evaluates Pods and workload controllers against the policy;
                   enforce violations deny with moat's message, warn violations
                   come back as warnings, audit violations as audit annotations
  POST /mutate     pins image tags to digests (JSONPatch)
  GET  /healthz    ok once a policy is loaded

Image facts are read from registries on demand: the stored findings of a
moat registry that has scanned the image (asked again after
--registry-findings-ttl), else a scan here with the vulnerability database,
kept in the on-disk facts cache by digest. Lookups are bounded by --facts-timeout
(keep it well inside the webhook's timeoutSeconds); each rule's onError
decides whether a lookup that fails or times out denies (fail closed) or
allows with a warning (fail open). The policy is reloaded when the file
changes and on SIGHUP; a policy that does not load is reported and the
previous one stays in force. Manifests: deploy/kubernetes/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runAdmit(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.policy, "policy", "p", "moat-policy.yaml", "policy file")
	fl.StringVar(&f.listen, "listen", ":8443", "address to listen on")
	fl.StringVar(&f.cert, "tls-cert", "", "serving certificate (PEM)")
	fl.StringVar(&f.key, "tls-key", "", "serving key (PEM)")
	fl.StringSliceVar(&f.exclude, "exclude-namespace", []string{"kube-system", "kube-public", "kube-node-lease"}, "namespaces never checked (globs; repeatable)")
	fl.DurationVar(&f.factsTimeout, "facts-timeout", 3*time.Second, "bound on the image lookups of one review")
	fl.DurationVar(&f.reload, "reload-interval", 2*time.Second, "how often the policy file is checked for changes")
	fl.StringVar(&f.dbDir, "db-dir", "", "vulnerability database directory (default $MOAT_DB_DIR or ~/.cache/moat)")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to registries")
	f.facts.register(cmd, true)
	return cmd
}

func runAdmit(ctx context.Context, f admitFlags) error {
	if f.cert == "" || f.key == "" {
		return errors.New("admission webhooks are HTTPS only: give --tls-cert and --tls-key")
	}
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
	prov := &imagefacts.Provider{Image: image.Options{Insecure: f.insecure}}
	if err := f.facts.provider(prov, func(msg string) { log.Warn(msg) }, true); err != nil {
		return err
	}
	if db := openDBIfAny(f.dbDir); db != nil {
		defer db.Close()
		prov.DB = db
	}
	s := &admission.Server{Facts: prov, Resolver: prov, ExcludeNamespaces: f.exclude, FactsTimeout: f.factsTimeout, Log: log}
	s.SetPolicy(pol)
	go admission.WatchPolicy(ctx, s, f.policy, f.reload,
		func(p *policy.Policy) { log.Info("policy reloaded", "file", f.policy, "rules", len(p.Rules)) },
		func(err error) {
			log.Error("policy not reloaded; the previous policy stays in force", "error", err.Error())
		})
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return fmt.Errorf("TLS key pair: %w", err)
	}
	srv := &http.Server{Addr: f.listen, Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS("", "") }()
	log.Info("moat admit serving", "listen", f.listen, "policy", f.policy, "rules", len(pol.Rules))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// openDBIfAny opens the vulnerability database when there is one.
func openDBIfAny(flag string) *vulndb.DB {
	dir, err := vulndb.ResolveDir(flag)
	if err != nil {
		return nil
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		return nil
	}
	return db
}
