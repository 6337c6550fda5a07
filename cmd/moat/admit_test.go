package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const cmdTestPolicy = "apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: no-privileged\n      runtime: {allowPrivileged: false}\n"

// TestAdmitCommand runs `moat admit` on 127.0.0.1 with a generated key
// pair and talks to it over HTTPS.
func TestAdmitCommand(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(cmdTestPolicy), 0o644)
	if err := runAdmit(context.Background(), admitFlags{policy: pol}); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("without TLS: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runAdmit(ctx, admitFlags{policy: pol, listen: addr, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), factsTimeout: time.Second, reload: time.Second})
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	var err error
	for i := 0; i < 100; i++ {
		if resp, err = client.Get("https://" + addr + "/healthz"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"namespace":"a","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"r.example/x:1","securityContext":{"privileged":true}}]}}}}`
	resp, err = client.Post("https://"+addr+"/validate", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"allowed":false`) || !strings.Contains(string(b), "no-privileged: container c: runs privileged") {
		t.Errorf("validate: %s", b)
	}
	resp, err = client.Post("https://"+addr+"/validate", "application/json", strings.NewReader("nope"))
	if err != nil || resp.StatusCode != 400 {
		t.Errorf("malformed: %v %v", err, resp)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop")
	}
}

// TestAuthzCommand runs `moat authz` with its socket in a temporary plugin
// directory and speaks the plugin protocol to it.
func TestAuthzCommand(t *testing.T) {
	dir, err := os.MkdirTemp("", "moat-authz-cmd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(cmdTestPolicy), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runAuthz(ctx, authzFlags{policy: pol, name: "moat-cmd-test", dir: dir, dockerHost: "unix:///nonexistent.sock", factsTimeout: time.Second, reload: time.Second})
	}()
	sock := filepath.Join(dir, "moat-cmd-test.sock")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = client.Post("http://plugin/Plugin.Activate", "application/json", nil); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"authz"`) {
		t.Errorf("activate: %s", b)
	}
	req := fmt.Sprintf(`{"RequestMethod":"POST","RequestUri":"/v1.47/containers/create","RequestBody":%q}`, "eyJJbWFnZSI6InIuZXhhbXBsZS94OjEiLCJIb3N0Q29uZmlnIjp7IlByaXZpbGVnZWQiOnRydWV9fQ==")
	resp, err = client.Post("http://plugin/AuthZPlugin.AuthZReq", "application/json", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"Allow":false`) || !strings.Contains(string(b), "no-privileged: runs privileged") {
		t.Errorf("privileged create: %s", b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}
