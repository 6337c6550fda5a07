package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/fleet"
	"github.com/moat-dev/moat/internal/guard"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/signing/registrygate"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/vulndb"
)

func newServeCmd() *cobra.Command {
	var (
		addr, dataDir, storageURL  string
		database                   string
		s3                         storage.S3Config
		tlsCert, tlsKey            string
		dev, anonymous, strict     bool
		maxBlob                    int64
		shutdownTimeout, tokenTTL  time.Duration
		dbDir, policyFile          string
		noScan                     bool
		rescanInterval             time.Duration
		webhooks                   []string
		trustedKeys, masterKeyFile string
		previousMasterKeys         []string
		signAttestations           bool
		registryKeyFile            string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the private OCI registry (token auth, roles, audit)",
		Long: `serve runs an OCI Distribution 1.1 registry with Docker token
authentication and project roles. On first start it creates the
administrator "admin" with the password from MOAT_ADMIN_PASSWORD, or
generates one and prints it once.

S3 storage: --storage s3://bucket/prefix with --s3-endpoint, --s3-region and
credentials from --s3-access-key/--s3-secret-key or AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY.

Keys the server holds — the registry signing key and each project's trusted
keys — are stored in the metadata database encrypted (AES-256-GCM) under a
master key: MOAT_MASTER_KEY (base64 of 32 bytes), else --master-key-file,
created (mode 0600) on first start. Back it up: without it the stored keys
cannot be read. To rotate it, start the server with the new master key and
--previous-master-key-file OLD: every stored key is re-sealed under the new
one in a single transaction (audited as key.reseal), after which the old
key is no longer needed. Projects' trusted keys are managed with moat project trust
and moat project set --require-signature; --trusted-keys DIR imports key
files (DIR/PROJECT/*.pub) into the store at start.

With scanning on, --sign-attestations (the default) signs each scanned
image's CycloneDX SBOM and vulnerability findings as in-toto attestations
with the registry key; its public key is at GET /api/v1/signing/public-key
(moat project registry-key). The registry key is generated on first start,
or brought with --registry-key FILE (the organisation's key, or a rotation).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			if s3.AccessKey == "" {
				s3.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
			}
			if s3.SecretKey == "" {
				s3.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
			}
			if s3.Region == "" {
				s3.Region = os.Getenv("AWS_REGION")
			}
			if s3.Endpoint == "" {
				s3.Endpoint = os.Getenv("AWS_ENDPOINT_URL")
			}
			out := cmd.OutOrStdout()
			if (tlsCert == "") != (tlsKey == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			if dev && tlsCert == "" {
				host, _, _ := net.SplitHostPort(addr)
				if err := os.MkdirAll(dataDir, 0o750); err != nil {
					return err
				}
				c, k, created, err := registry.DevCertificate(dataDir, []string{host, "localhost", "127.0.0.1", "::1"})
				if err != nil {
					return fmt.Errorf("dev certificate: %w", err)
				}
				tlsCert, tlsKey = c, k
				if created {
					fmt.Fprintf(out, "moat: generated a self-signed certificate %s\n", c)
				}
				fmt.Fprintf(out, "moat: to trust it: docker: sudo mkdir -p /etc/docker/certs.d/%s && sudo cp %s /etc/docker/certs.d/%s/ca.crt\n", addr, c, addr)
				fmt.Fprintf(out, "moat:               system: sudo cp %s /usr/local/share/ca-certificates/moat-dev.crt && sudo update-ca-certificates\n", c)
			}
			if tlsCert == "" && !registry.IsLoopback(addr) {
				return registry.ErrPlainHTTP
			}
			inst, err := registry.Open(cmd.Context(), registry.Options{
				DataDir: dataDir, Database: database, Storage: storageURL, S3: s3, AllowAnonymous: anonymous, StrictManifests: strict,
				MaxBlobSize: maxBlob, TokenTTL: tokenTTL, AdminPassword: os.Getenv("MOAT_ADMIN_PASSWORD"), Log: log,
			})
			if err != nil {
				return err
			}
			defer inst.Close()
			if masterKeyFile == "" {
				masterKeyFile = filepath.Join(dataDir, "master.key")
			}
			mk, mkCreated, err := signing.LoadOrCreateMasterKey(masterKeyFile, os.Getenv(signing.MasterKeyEnv))
			if err != nil {
				return err
			}
			if mkCreated {
				fmt.Fprintf(out, "moat: created the master key %s (%s); back it up: the keys the server holds are sealed with it\n", masterKeyFile, mk.ID())
			}
			if len(previousMasterKeys) > 0 {
				if err := rotateMasterKey(cmd.Context(), out, inst, mk, previousMasterKeys); err != nil {
					return err
				}
			}
			trust, err := registrygate.NewTrust(cmd.Context(), inst.Store, mk, inst.Audit, log)
			if err != nil {
				return fmt.Errorf("%w (master key %s)", err, mk.ID())
			}
			inst.Signatures, inst.Trust = trust, trust
			if trustedKeys == "" {
				trustedKeys = filepath.Join(dataDir, "trusted-keys")
			}
			notes, err := trust.ImportDir(cmd.Context(), trustedKeys)
			if err != nil {
				return fmt.Errorf("--trusted-keys: %w", err)
			}
			for _, n := range notes {
				fmt.Fprintln(out, "moat:", n)
			}
			if registryKeyFile != "" {
				k, err := loadSigningKey(cmd, registryKeyFile)
				if err != nil {
					return fmt.Errorf("--registry-key: %w", err)
				}
				changed, err := trust.SetRegistryKey(cmd.Context(), k)
				if err != nil {
					return err
				}
				if changed {
					fmt.Fprintf(out, "moat: the registry signing key is now %s (from %s, sealed in the store; the file is no longer needed)\n", signing.Fingerprint(k.Public()), registryKeyFile)
				}
			}
			var attestKey crypto.Signer
			if signAttestations && !noScan {
				k, created, err := trust.LoadOrCreateRegistryKey(cmd.Context())
				if err != nil {
					return err
				}
				attestKey = k
				if created {
					fmt.Fprintf(out, "moat: created the registry signing key %s (scan-on-push attestations; public key at /api/v1/signing/public-key)\n", signing.Fingerprint(k.Public()))
				}
			}
			if inst.GeneratedPassword != "" {
				fmt.Fprintf(out, "moat: created administrator \"admin\" with password %s (shown once; set MOAT_ADMIN_PASSWORD to choose it)\n", inst.GeneratedPassword)
			}
			// Fleet events go out through the guard's webhook delivery once
			// it is open (it is opened after the fleet, which it wraps).
			var events atomic.Pointer[guard.Guard]
			onEvent := func(e fleet.Event) {
				if g := events.Load(); g != nil {
					g.Publish(context.Background(), "fleet."+e.Kind, "", e.Image, e)
				}
			}
			fl, closeFleet, err := openFleet(cmd.Context(), dataDir, dbDir, policyFile, inst, log, onEvent)
			if err != nil {
				return err
			}
			defer closeFleet()
			var handler http.Handler = fleet.Handler(fl, inst)
			if !noScan {
				gd, err := openGuard(cmd.Context(), dataDir, dbDir, rescanInterval, webhooks, inst, attestKey, log)
				if err != nil {
					return err
				}
				defer gd.Close()
				events.Store(gd)
				// Running containers are matched with the registry's
				// database and re-matched after every registry re-scan.
				fl.SetMatcher(gd)
				gd.OnRescan(func(ctx context.Context) {
					if _, err := fl.Rematch(ctx); err != nil && ctx.Err() == nil {
						log.Error("fleet: re-matching running containers failed", "error", err.Error())
					}
				})
				handler = gd.Handler(handler)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
			scheme := "https"
			if tlsCert == "" {
				scheme = "http"
				fmt.Fprintf(out, "moat: serving plain HTTP on loopback only (%s); use --tls-cert/--tls-key or --dev for TLS\n", ln.Addr())
			}
			fmt.Fprintf(out, "moat: registry listening on %s://%s (data in %s)\n", scheme, ln.Addr(), dataDir)
			errc := make(chan error, 1)
			go func() {
				if tlsCert != "" {
					errc <- srv.ServeTLS(ln, tlsCert, tlsKey)
				} else {
					errc <- srv.Serve(ln)
				}
			}()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
			defer signal.Stop(sig)
			select {
			case err := <-errc:
				return err
			case s := <-sig:
				log.Info("shutting down, finishing requests in flight", "signal", s.String(), "timeout", shutdownTimeout.String())
				ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					return fmt.Errorf("shutdown: %w", err)
				}
				log.Info("stopped")
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:5000", "listen address")
	f.StringVar(&dataDir, "data-dir", "./moat-data", "data directory (database, blobs, uploads, keys)")
	f.StringVar(&database, "database", os.Getenv("MOAT_DATABASE"), "metadata database: empty for SQLite in the data directory, or a postgres:// URL [MOAT_DATABASE]")
	f.StringVar(&storageURL, "storage", "", "blob storage: empty for the data directory, or s3://bucket/prefix")
	f.StringVar(&s3.Endpoint, "s3-endpoint", "", "S3 endpoint (host:port or URL; http:// for plain HTTP) [AWS_ENDPOINT_URL]")
	f.StringVar(&s3.Region, "s3-region", "", "S3 region [AWS_REGION]")
	f.StringVar(&s3.AccessKey, "s3-access-key", "", "S3 access key [AWS_ACCESS_KEY_ID]")
	f.StringVar(&s3.SecretKey, "s3-secret-key", "", "S3 secret key [AWS_SECRET_ACCESS_KEY]")
	f.BoolVar(&s3.Insecure, "s3-insecure", false, "plain HTTP to the S3 endpoint")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate (PEM)")
	f.StringVar(&tlsKey, "tls-key", "", "TLS private key (PEM)")
	f.BoolVar(&dev, "dev", false, "serve TLS with a generated self-signed certificate")
	f.BoolVar(&anonymous, "allow-anonymous", false, "let unauthenticated clients pull public projects")
	f.BoolVar(&strict, "strict-manifests", false, "reject image manifests whose layers were not pushed (OCI 1.1 allows such sparse manifests)")
	f.Int64Var(&maxBlob, "max-blob-size", 64<<30, "largest blob accepted, in bytes")
	f.DurationVar(&shutdownTimeout, "shutdown-timeout", 5*time.Minute, "how long SIGTERM waits for requests in flight (uploads) to finish")
	f.DurationVar(&tokenTTL, "token-ttl", 5*time.Minute, "lifetime of issued registry tokens")
	f.BoolVar(&noScan, "no-scan", false, "do not scan pushed images (no pull gate on vulnerabilities, no re-scan)")
	f.DurationVar(&rescanInterval, "rescan-interval", 24*time.Hour, "re-match every stored SBOM this often (0: only after the database changes)")
	f.StringArrayVar(&webhooks, "webhook", nil, "URL that receives events as JSON signed with MOAT_WEBHOOK_SECRET (repeatable)")
	f.StringVar(&dbDir, "db-dir", "", "vulnerability database directory (default $MOAT_DB_DIR, else ~/.cache/moat)")
	f.StringVar(&trustedKeys, "trusted-keys", "", "import per-project trusted keys from DIR/PROJECT/*.pub into the store at start; a project that gains keys gets require-signature on (default DATA-DIR/trusted-keys, when it exists)")
	f.StringVar(&masterKeyFile, "master-key-file", "", "master key that seals the keys the server holds, created 0600 on first start (default DATA-DIR/master.key; $"+signing.MasterKeyEnv+" takes precedence)")
	f.StringArrayVar(&previousMasterKeys, "previous-master-key-file", nil, "rotate the master key: re-seal the keys sealed under this earlier master key file under the current one at start (repeatable)")
	f.StringVar(&registryKeyFile, "registry-key", "", "make this private key (cosign or PEM; passphrase from MOAT_KEY_PASSWORD or COSIGN_PASSWORD) the registry signing key, sealed into the store (replaces a generated or earlier one; audited)")
	f.BoolVar(&signAttestations, "sign-attestations", true, "sign each scanned image's SBOM and vulnerability findings as in-toto attestations with the registry key (created on first start)")
	f.StringVar(&policyFile, "policy", "", "policy whose runtime rules judge the containers agents report (default: built-in least privilege)")
	return cmd
}

// rotateMasterKey re-seals the keys the server holds that are sealed under
// one of the previous master key files under mk, and says what it did.
func rotateMasterKey(ctx context.Context, out io.Writer, inst *registry.Instance, mk *signing.MasterKey, previousFiles []string) error {
	var prev []*signing.MasterKey
	for _, p := range previousFiles {
		k, err := signing.LoadMasterKeyFile(p)
		if err != nil {
			return fmt.Errorf("--previous-master-key-file: %w", err)
		}
		prev = append(prev, k)
	}
	n, err := registrygate.RotateMasterKey(ctx, inst.Store, mk, prev, inst.Audit)
	if err != nil {
		return err
	}
	if n > 0 {
		fmt.Fprintf(out, "moat: re-sealed %d stored keys under the master key %s; the previous master key is no longer needed\n", n, mk.ID())
	} else {
		fmt.Fprintf(out, "moat: every stored key is already sealed under the master key %s; --previous-master-key-file can go\n", mk.ID())
	}
	return nil
}

// openFleet opens the fleet view (agents' hosts, containers, findings on
// running containers, /metrics) beside the registry. Without a vulnerability
// database it stores SBOMs and matches once one exists.
func openFleet(ctx context.Context, dataDir, dbDir, policyFile string, inst *registry.Instance, log *slog.Logger, onEvent func(fleet.Event)) (*fleet.Server, func(), error) {
	fst, err := fleet.OpenSQLite(ctx, filepath.Join(dataDir, "fleet.db"))
	if err != nil {
		return nil, nil, fmt.Errorf("fleet store: %w", err)
	}
	closers := []func(){func() { fst.Close() }}
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	o := fleet.Options{Log: log, OnEvent: onEvent}
	if dir, err := vulndb.ResolveDir(dbDir); err == nil {
		if db, err := vulndb.Open(dir); err == nil {
			closers = append(closers, func() { db.Close() })
			o.Matcher = match.Matcher{DB: db}
		} else {
			log.Warn("no vulnerability database: findings on running containers wait for `moat db update`", "dir", dir, "error", err.Error())
		}
	}
	if policyFile != "" {
		p, err := policy.Load(policyFile)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		o.Checker = fleet.NewPolicyChecker(p)
	}
	return fleet.NewServer(fst, fleet.AccountAuth(inst.Auth), o), closeAll, nil
}
