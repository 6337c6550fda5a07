package image

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// CertsDirsEnv names the environment variable that replaces the default
// certs.d directories: a list separated by colons (os.PathListSeparator).
const CertsDirsEnv = "MOAT_CERTS_D"

// CertsDirs, when non-nil, replaces the certs.d directories searched by
// registry transports made without their own list (tests point it at a
// temporary directory).
var CertsDirs []string

// DefaultCertsDirs are the certs.d directories searched for a registry's
// TLS material, in order: CertsDirs when set, else $MOAT_CERTS_D when set,
// else the user's containers directory, /etc/containers/certs.d and
// /etc/docker/certs.d (the order podman, skopeo and buildah use; docker
// reads only the last). The first directory holding a subdirectory for a
// registry is the one used for it.
func DefaultCertsDirs() []string {
	if CertsDirs != nil {
		return CertsDirs
	}
	if v, ok := os.LookupEnv(CertsDirsEnv); ok {
		var dirs []string
		for _, d := range filepath.SplitList(v) {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
		return dirs
	}
	var dirs []string
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		dirs = append(dirs, filepath.Join(home, ".config", "containers", "certs.d"))
	}
	return append(dirs, "/etc/containers/certs.d", "/etc/docker/certs.d")
}

// RegistryTransport is an http.RoundTripper for registry clients that
// honours the per-registry certs.d directories docker, podman and skopeo
// read: for a request to HOST[:PORT] over HTTPS, the directory
// <certs.d>/HOST:PORT (for port 443 also <certs.d>/HOST) supplies extra CA
// roots (*.crt, added to the system pool) and client certificates
// (NAME.cert with NAME.key). Hosts without such a directory use Base as it
// is. The transport for each host is built once, on its first request, and
// kept; a directory whose files cannot be used makes every request to that
// host fail with an error naming the file (and is read again on the next
// request, so a fixed file takes effect).
type RegistryTransport struct {
	// Base is cloned for hosts with a certs.d directory and used as it is
	// for the others; its TLS settings (InsecureSkipVerify for --insecure,
	// RootCAs) are kept. Nil means go-containerregistry's default.
	Base *http.Transport
	// Dirs are the certs.d directories; nil means DefaultCertsDirs().
	Dirs []string

	hosts sync.Map // host → http.RoundTripper
}

// NewRegistryTransport wraps base (nil: go-containerregistry's default
// transport) with the certs.d directories of DefaultCertsDirs.
func NewRegistryTransport(base *http.Transport) *RegistryTransport {
	return &RegistryTransport{Base: base}
}

func (t *RegistryTransport) base() *http.Transport {
	if t.Base != nil {
		return t.Base
	}
	return remote.DefaultTransport.(*http.Transport)
}

// RoundTrip implements http.RoundTripper.
func (t *RegistryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "https" {
		return t.base().RoundTrip(req)
	}
	rt, err := t.forHost(req.URL.Host)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return rt.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of the base transport
// and of every per-host transport.
func (t *RegistryTransport) CloseIdleConnections() {
	t.base().CloseIdleConnections()
	t.hosts.Range(func(_, v any) bool {
		if tr, ok := v.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
		return true
	})
}

func (t *RegistryTransport) forHost(host string) (http.RoundTripper, error) {
	if v, ok := t.hosts.Load(host); ok {
		return v.(http.RoundTripper), nil
	}
	dirs := t.Dirs
	if dirs == nil {
		dirs = DefaultCertsDirs()
	}
	dir := hostCertsDir(dirs, host)
	var rt http.RoundTripper = t.base()
	if dir != "" {
		tr, err := transportFor(t.base(), dir)
		if err != nil {
			return nil, err
		}
		rt = tr
	}
	v, _ := t.hosts.LoadOrStore(host, rt)
	return v.(http.RoundTripper), nil
}

// hostCertsDir finds the certs.d directory for host ("name", "name:port",
// "[v6]:port"): <dir>/name:port, and for port 443 (or no port) also
// <dir>/name, in the first of dirs that has one. "" when none does.
func hostCertsDir(dirs []string, host string) string {
	name, port, err := net.SplitHostPort(host)
	if err != nil { // no port: HTTPS's default
		name, port = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "443"
	}
	cands := []string{net.JoinHostPort(name, port)}
	if port == "443" {
		bare := name
		if strings.Contains(name, ":") {
			bare = "[" + name + "]"
		}
		cands = append(cands, bare)
	}
	for _, d := range dirs {
		for _, c := range cands {
			if strings.ContainsAny(c, `/\`) || c == "." || c == ".." {
				continue
			}
			p := filepath.Join(d, c)
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				return p
			}
		}
	}
	return ""
}

// transportFor clones base with the CA roots and client certificates of
// one registry's certs.d directory.
func transportFor(base *http.Transport, dir string) (*http.Transport, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("registry certificates: reading %s: %w", dir, err)
	}
	tr := base.Clone()
	cfg := tr.TLSClientConfig
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		tr.TLSClientConfig = cfg
	}
	var pool *x509.CertPool
	var certs []tls.Certificate
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		switch {
		case strings.HasSuffix(n, ".crt"):
			if pool == nil {
				if pool, err = rootPool(cfg); err != nil {
					return nil, err
				}
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("registry certificates: %w", err)
			}
			cas, err := parseCAs(b)
			if err != nil {
				return nil, fmt.Errorf("registry certificates: CA file %s: %w; fix or remove it", p, err)
			}
			for _, c := range cas {
				pool.AddCert(c)
			}
		case strings.HasSuffix(n, ".cert"):
			key := strings.TrimSuffix(n, ".cert") + ".key"
			if !has[key] {
				return nil, fmt.Errorf("registry certificates: client certificate %s has no key %s beside it", p, key)
			}
			kp := filepath.Join(dir, key)
			c, err := tls.LoadX509KeyPair(p, kp)
			if err != nil {
				return nil, fmt.Errorf("registry certificates: client certificate %s with key %s: %w", p, kp, err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(n, ".key"):
			if !has[strings.TrimSuffix(n, ".key")+".cert"] {
				return nil, fmt.Errorf("registry certificates: key %s has no client certificate %s beside it", p, strings.TrimSuffix(n, ".key")+".cert")
			}
		}
	}
	if pool != nil {
		cfg.RootCAs = pool
	}
	if len(certs) > 0 {
		cfg.Certificates = append(cfg.Certificates, certs...)
	}
	return tr, nil
}

// rootPool is the pool the directory's CAs are added to: a copy of the
// base's own roots when it has some, else of the system's.
func rootPool(cfg *tls.Config) (*x509.CertPool, error) {
	if cfg.RootCAs != nil {
		return cfg.RootCAs.Clone(), nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		return x509.NewCertPool(), nil //nolint:nilerr // no system roots: only the directory's
	}
	return pool, nil
}

// errNoCerts says a CA file held no certificate.
var errNoCerts = errors.New("no PEM CERTIFICATE block in it")

// parseCAs reads the PEM certificates of a CA file. Blocks of other types
// are skipped (as docker does); a CERTIFICATE block that does not parse,
// or a file without any, is an error.
func parseCAs(b []byte) ([]*x509.Certificate, error) {
	// pem.Decode skips a block it cannot decode: count the markers so
	// that a damaged block is reported rather than silently dropped.
	begins := bytes.Count(b, []byte("-----BEGIN CERTIFICATE-----"))
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, c)
	}
	if len(out) < begins {
		return nil, fmt.Errorf("%d of its %d CERTIFICATE blocks are not valid PEM (bad base64 or a missing END line)", begins-len(out), begins)
	}
	if len(out) == 0 {
		return nil, errNoCerts
	}
	return out, nil
}
