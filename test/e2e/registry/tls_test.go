package registry_e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTLS checks --dev (self-signed certificate with trust instructions)
// and that plain HTTP is refused on non-loopback addresses.
func TestTLS(t *testing.T) {
	out, err := exec.Command(moatBin, "serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "plain HTTP is only served on a loopback address") {
		t.Fatalf("plain HTTP on 0.0.0.0 not refused: %v\n%s", err, out)
	}
	data := t.TempDir()
	s := startServe(t, data, []string{"MOAT_ADMIN_PASSWORD=adminpw"}, "--dev")
	if !strings.Contains(s.stdout(), "to trust it") || !strings.Contains(s.stdout(), "https://") {
		t.Errorf("no trust instructions:\n%s", s.stdout())
	}
	pem, err := os.ReadFile(filepath.Join(data, "dev-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + s.addr + "/v2/")
	if err != nil {
		t.Fatalf("TLS with the dev certificate as CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `realm="https://`) {
		t.Errorf("GET /v2/: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// Without trusting it, verification fails.
	if _, err := http.Get("https://" + s.addr + "/v2/"); err == nil {
		t.Error("self-signed certificate trusted by default")
	}
	// The admin commands work over TLS with --ca-cert.
	cmd := exec.Command(moatBin, "project", "list", "--server", "https://"+s.addr, "--ca-cert", filepath.Join(data, "dev-cert.pem"))
	cmd.Env = append(os.Environ(), "MOAT_PASSWORD=adminpw")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("moat project list over TLS: %v\n%s", err, out)
	}
}
