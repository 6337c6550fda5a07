package admission_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/moat-dev/moat/internal/testenv"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
)

// toolPath finds etcd and kube-apiserver (see testenv.Tool).
func toolPath(t *testing.T, name string) string {
	return testenv.Tool(t, name, "run scripts/peers/kube.sh")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess runs a command until the test ends, logging to a file that
// is printed when the test fails.
func startProcess(t *testing.T, logName string, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log (tail):\n%s", logName, b)
		}
	})
}

// webhookCert makes a CA and a serving certificate for 127.0.0.1.
func webhookCert(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "moat-webhook"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"moat-webhook.moat-system.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

type kubeAPI struct {
	url, token string
	client     *http.Client
}

func (k *kubeAPI) do(method, path string, body any) (int, string) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, k.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// startKube starts etcd and kube-apiserver as ../shared/PEERS.md describes.
func startKube(t *testing.T) *kubeAPI {
	etcd, apiserver := toolPath(t, "etcd"), toolPath(t, "kube-apiserver")
	dir := t.TempDir()
	cport, pport, aport := freePort(t), freePort(t), freePort(t)
	startProcess(t, "etcd.log", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--name", "default",
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", cport), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", cport),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", pport), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", pport),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", pport))
	saKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}), 0o600)
	os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
	token := "moat-e2e-admin-token"
	os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600)
	os.MkdirAll(filepath.Join(dir, "certs"), 0o755)
	startProcess(t, "kube-apiserver.log", apiserver,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", cport), "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", aport), "--endpoint-reconciler-type=none", "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"), "--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true", "--disable-admission-plugins=ServiceAccount")
	k := &kubeAPI{url: fmt.Sprintf("https://127.0.0.1:%d", aport), token: token,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body := k.do("GET", "/readyz", nil)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready: %d %s", code, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return k
}

// kubectlApply applies a manifest with kubectl when it is installed, else
// creates the object with the REST API (the same admission path).
func (k *kubeAPI) apply(t *testing.T, ns, manifest string, path string) (bool, string) {
	t.Helper()
	if kc, err := exec.LookPath("kubectl"); err == nil {
		f := filepath.Join(t.TempDir(), "m.yaml")
		os.WriteFile(f, []byte(manifest), 0o644)
		out, err := exec.Command(kc, "--server", k.url, "--token", k.token, "--insecure-skip-tls-verify", "-n", ns, "apply", "-f", f).CombinedOutput()
		return err == nil, string(out)
	}
	var obj map[string]any
	if err := yamlToJSONObject(manifest, &obj); err != nil {
		t.Fatal(err)
	}
	code, body := k.do("POST", path, obj)
	return code == 201, body
}

func yamlToJSONObject(s string, out *map[string]any) error {
	return json.Unmarshal([]byte(s), out)
}

func TestKubernetesEndToEnd(t *testing.T) {
	k := startKube(t)
	for _, ns := range []string{"apps", "excluded"} {
		if code, body := k.do("POST", "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}); code != 201 {
			t.Fatalf("namespace %s: %d %s", ns, code, body)
		}
	}
	// the shipped manifests are valid for this API server (server-side dry
	// run; the namespace is created for real)
	for _, m := range []struct{ file, path string }{
		{"namespace.yaml", "/api/v1/namespaces"},
		{"policy-configmap.yaml", "/api/v1/namespaces/moat-system/configmaps?dryRun=All"},
		{"deployment.yaml", "/apis/apps/v1/namespaces/moat-system/deployments?dryRun=All"},
		{"service.yaml", "/api/v1/namespaces/moat-system/services?dryRun=All"},
		{"mutating-webhook.yaml", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations?dryRun=All"},
	} {
		raw, err := os.ReadFile("../../deploy/kubernetes/" + m.file)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := sigsyaml.Unmarshal(raw, &obj); err != nil {
			t.Fatalf("%s: %v", m.file, err)
		}
		if code, body := k.do("POST", m.path, obj); code != 201 {
			t.Errorf("deploy/kubernetes/%s: %d %s", m.file, code, body)
		}
	}

	// moat's webhook over HTTPS on 127.0.0.1
	cert, caPEM := webhookCert(t)
	s := newServer(t, testPolicy)
	s.Resolver = &imagefacts.Provider{}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	port := l.Addr().(*net.TCPAddr).Port

	// the shipped manifest, pointed at the test server
	raw, err := os.ReadFile("../../deploy/kubernetes/validating-webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := sigsyaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	wh := cfg["webhooks"].([]any)[0].(map[string]any)
	wh["clientConfig"] = map[string]any{"url": fmt.Sprintf("https://127.0.0.1:%d/validate", port), "caBundle": base64.StdEncoding.EncodeToString(caPEM)}
	delete(cfg["metadata"].(map[string]any), "annotations")
	if code, body := k.do("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", cfg); code != 201 {
		t.Fatalf("webhook configuration: %d %s", code, body)
	}
	// delete the configuration before the webhook stops (cleanups run last-in first-out)
	t.Cleanup(func() {
		k.do("DELETE", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/moat", nil)
	})

	priv := func(ns, name string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"` + ns + `"},"spec":{"containers":[{"name":"c","image":"registry.example.com/app:1","securityContext":{"privileged":true}}]}}`
	}
	// the configuration takes effect shortly after creation: retry a dry run
	deadline := time.Now().Add(30 * time.Second)
	for {
		var obj map[string]any
		json.Unmarshal([]byte(priv("apps", "probe")), &obj)
		code, body := k.do("POST", "/api/v1/namespaces/apps/pods?dryRun=All", obj)
		if code == 403 && strings.Contains(body, "moat policy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook never took effect: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	ok, out := k.apply(t, "apps", priv("apps", "privileged"), "/api/v1/namespaces/apps/pods")
	t.Logf("privileged Pod:\n%s", out)
	if ok || !strings.Contains(out, `admission webhook "validate.moat.dev" denied the request: moat policy e2e denies Pod apps/privileged: no-privileged: container c: runs privileged`) {
		t.Errorf("privileged Pod: admitted=%v\n%s", ok, out)
	}
	dep := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"apps"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"evil.example/web:1"}]}}}}`
	ok, out = k.apply(t, "apps", dep, "/apis/apps/v1/namespaces/apps/deployments")
	t.Logf("Deployment:\n%s", out)
	if ok || !strings.Contains(out, "moat policy e2e denies Deployment apps/web: approved-registries: container web: image evil.example/web:1 comes from registry evil.example, which is not approved") {
		t.Errorf("Deployment from an unapproved registry: admitted=%v\n%s", ok, out)
	}
	good := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"good","namespace":"apps","labels":{"team":"web"}},"spec":{"containers":[{"name":"c","image":"registry.example.com/app:1","resources":{"limits":{"memory":"64Mi"}}}]}}`
	ok, out = k.apply(t, "apps", good, "/api/v1/namespaces/apps/pods")
	if !ok {
		t.Errorf("compliant Pod refused:\n%s", out)
	}
	if code, body := k.do("GET", "/api/v1/namespaces/apps/pods/good", nil); code != 200 {
		t.Errorf("compliant Pod not stored: %d %s", code, body)
	}
	ok, out = k.apply(t, "excluded", priv("excluded", "privileged"), "/api/v1/namespaces/excluded/pods")
	if !ok {
		t.Errorf("privileged Pod in an excluded namespace refused:\n%s", out)
	}
	warn := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"warned","namespace":"apps","labels":{"team":"web"}},"spec":{"containers":[{"name":"c","image":"registry.example.com/app:1"}]}}`
	ok, out = k.apply(t, "apps", warn, "/api/v1/namespaces/apps/pods")
	t.Logf("warned Pod:\n%s", out)
	if !ok || (strings.Contains(out, "Warning") && !strings.Contains(out, "moat: limits: container c: has no memory limit")) {
		t.Errorf("warned Pod: admitted=%v\n%s", ok, out)
	}

	// the mutating webhook pins a tag to the digest the registry holds
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/team/app:1"
	img := imagetest.Image(t, imagetest.Step{Layer: imagetest.Layer(t, imagetest.Text("etc/app", "1"))})
	nr, _ := name.ParseReference(ref)
	if err := remote.Write(nr, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	raw, err = os.ReadFile("../../deploy/kubernetes/mutating-webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var mcfg map[string]any
	if err := sigsyaml.Unmarshal(raw, &mcfg); err != nil {
		t.Fatal(err)
	}
	mwh := mcfg["webhooks"].([]any)[0].(map[string]any)
	mwh["clientConfig"] = map[string]any{"url": fmt.Sprintf("https://127.0.0.1:%d/mutate", port), "caBundle": base64.StdEncoding.EncodeToString(caPEM)}
	delete(mcfg["metadata"].(map[string]any), "annotations")
	if code, body := k.do("POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", mcfg); code != 201 {
		t.Fatalf("mutating webhook configuration: %d %s", code, body)
	}
	t.Cleanup(func() {
		k.do("DELETE", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/moat-pin", nil)
	})
	want := ref + "@" + digest.String()
	deadline = time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pinned-` + fmt.Sprint(i) + `","namespace":"apps","labels":{"team":"web"}},"spec":{"containers":[{"name":"c","image":"` + ref + `","resources":{"limits":{"memory":"64Mi"}}}]}}`
		var obj map[string]any
		json.Unmarshal([]byte(pod), &obj)
		code, body := k.do("POST", "/api/v1/namespaces/apps/pods", obj)
		if code != 201 {
			t.Fatalf("pinned pod: %d %s", code, body)
		}
		var created struct {
			Spec struct{ Containers []struct{ Image string } }
		}
		json.Unmarshal([]byte(body), &created)
		if created.Spec.Containers[0].Image == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("image not pinned: %s, want %s", created.Spec.Containers[0].Image, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
