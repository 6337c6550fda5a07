package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
)

// Options configure a registry instance.
type Options struct {
	DataDir string
	// Database is "" (SQLite in DataDir) or a PostgreSQL URL
	// ("postgres://user:password@host/db").
	Database string
	// Storage is "" (blobs under DataDir) or "s3://bucket/prefix"; S3 holds
	// the endpoint, region and credentials for the latter.
	Storage        string
	S3             storage.S3Config
	AllowAnonymous bool
	// StrictManifests rejects image manifests whose layers were not pushed.
	StrictManifests bool
	MaxBlobSize     int64
	TokenTTL        time.Duration
	// AdminPassword is used when the first start creates "admin"; empty
	// means generate one (returned in Instance.GeneratedPassword).
	AdminPassword string
	Log           *slog.Logger
}

// Instance is a registry with its database, storage and audit recorder.
type Instance struct {
	*Server
	// GeneratedPassword is the administrator password created on first
	// start when none was given; it is shown once and never stored.
	GeneratedPassword string
}

// Open creates the data directory, database, blob storage and token key,
// and the administrator on first start.
func Open(ctx context.Context, o Options) (*Instance, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return nil, err
	}
	var st *store.Store
	var err error
	switch {
	case o.Database == "" || o.Database == "sqlite":
		st, err = store.OpenSQLite(ctx, filepath.Join(o.DataDir, "moat.db"))
	case strings.HasPrefix(o.Database, "postgres://") || strings.HasPrefix(o.Database, "postgresql://"):
		st, err = store.OpenPostgres(ctx, o.Database)
	default:
		err = fmt.Errorf("database %q: want empty (SQLite) or a postgres:// URL", o.Database)
	}
	if err != nil {
		return nil, err
	}
	var blobs storage.Driver
	if o.Storage == "" || o.Storage == "fs" {
		blobs, err = storage.NewFS(filepath.Join(o.DataDir, "blobs"))
	} else {
		var cfg storage.S3Config
		cfg, err = storage.ParseS3URL(o.Storage)
		if err == nil {
			cfg.Endpoint, cfg.Region, cfg.AccessKey, cfg.SecretKey, cfg.Insecure = o.S3.Endpoint, o.S3.Region, o.S3.AccessKey, o.S3.SecretKey, o.S3.Insecure
			blobs, err = storage.NewS3(ctx, cfg)
		}
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	as, err := auth.NewService(st, filepath.Join(o.DataDir, "token-key.pem"), "moat")
	if err != nil {
		st.Close()
		return nil, err
	}
	as.AllowAnonymous = o.AllowAnonymous
	if o.TokenTTL > 0 {
		as.TokenTTL = o.TokenTTL
	}
	inst := &Instance{}
	users, err := st.ListUsers(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	if len(users) == 0 {
		pw := o.AdminPassword
		if pw == "" {
			pw = auth.RandomSecret(18)
			inst.GeneratedPassword = pw
		}
		h, err := auth.HashPassword(pw)
		if err == nil {
			_, err = st.CreateUser(ctx, "admin", h, true)
		}
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("create administrator: %w", err)
		}
	}
	rec := audit.NewRecorder(st, o.Log)
	srv, err := New(Config{Store: st, Blobs: blobs, Auth: as, Audit: rec, Log: o.Log,
		UploadDir: filepath.Join(o.DataDir, "uploads"), MaxBlobSize: o.MaxBlobSize, StrictManifests: o.StrictManifests})
	if err != nil {
		rec.Close()
		st.Close()
		return nil, err
	}
	inst.Server = srv
	return inst, nil
}

// Close flushes audit events and closes the database.
func (i *Instance) Close() error {
	i.Audit.Close()
	return i.Store.Close()
}

// DevCertificate returns a self-signed certificate for hosts under dir,
// creating it on first use; it is valid for one year.
func DevCertificate(dir string, hosts []string) (certPath, keyPath string, created bool, err error) {
	certPath, keyPath = filepath.Join(dir, "dev-cert.pem"), filepath.Join(dir, "dev-key.pem")
	if _, err := os.Stat(certPath); err == nil {
		return certPath, keyPath, false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", false, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "moat dev registry"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else if h != "" {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return "", "", false, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", false, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", false, err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", false, err
	}
	return certPath, keyPath, true, nil
}

// IsLoopback reports whether a listen address binds only loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrPlainHTTP is returned when plain HTTP is requested on a non-loopback
// address.
var ErrPlainHTTP = errors.New("plain HTTP is only served on a loopback address: give --tls-cert/--tls-key or --dev")
