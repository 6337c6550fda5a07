package admission_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
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
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

// startMoatAdmit runs the real `moat admit` binary as the webhook of the
// open-loop benchmark (MOAT_BENCH_WEBHOOK=moat): the benchmark policy and
// Pod with their registry replaced by a registry on 127.0.0.1 that holds
// the three images (built on a two-layer base image in base/distroless,
// user 1000, the required label, two days old), a vulnerability database
// to scan them with, and the facts cache in a temporary directory. The
// first review reads and scans the images; later ones hit the cache, as a
// running webhook does. It returns the process, its address and the Pod.
func startMoatAdmit(t *testing.T, dir string, caPEM []byte) (*exec.Cmd, string, string) {
	t.Helper()
	ts := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(ts.Close)
	host := strings.TrimPrefix(ts.URL, "http://")
	push := func(ref string, img v1.Image) {
		tag, err := name.NewTag(host+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img, remote.WithContext(context.Background())); err != nil {
			t.Fatal(err)
		}
	}
	var base v1.Image = empty.Image
	for range 2 {
		l, err := random.Layer(512, "application/vnd.docker.image.rootfs.diff.tar.gzip")
		if err != nil {
			t.Fatal(err)
		}
		if base, err = mutate.AppendLayers(base, l); err != nil {
			t.Fatal(err)
		}
	}
	push("base/distroless:latest", base)
	for _, ref := range []string{"app/web:1.0", "app/proxy:2.1", "app/metrics:0.9"} {
		l, err := random.Layer(512, "application/vnd.docker.image.rootfs.diff.tar.gzip")
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, l)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Created = v1.Time{Time: time.Now().Add(-48 * time.Hour)}
		cf.Config.User = "1000"
		cf.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://example.com/app"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		push(ref, img)
	}

	pol, err := os.ReadFile("../policy/testdata/bench-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(strings.ReplaceAll(string(pol), "registry.example.com", host)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A database with one record for another ecosystem: the images are
	// scanned and have no findings.
	src, dbDir := t.TempDir(), filepath.Join(dir, "db")
	os.WriteFile(filepath.Join(src, "r.json"), []byte(`{"id":"GHSA-bench","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"left-pad"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"9.9.9"}]}]}]}`), 0o644)
	if _, err := vulndb.Import(context.Background(), dbDir, []string{src}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}

	bin, cleanup, err := testenv.BuildMoat("moat-admit-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "admit", "--policy", policyPath, "--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"),
		"--listen", addr, "--insecure", "--db-dir", dbDir, "--facts-cache", filepath.Join(dir, "facts"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, "docker"))
	if g := os.Getenv("MOAT_BENCH_WEBHOOK_GOGC"); g != "" {
		cmd.Env = append(cmd.Env, "GOGC="+g)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.Stop(cmd, os.Interrupt, 15*time.Second) })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 2 * time.Second}
	if err := testenv.WaitHealthy(hc, "https://"+addr+"/healthz", 30*time.Second); err != nil {
		t.Fatalf("moat admit did not become healthy: %v", err)
	}
	return cmd, addr, strings.ReplaceAll(benchPodJSON, "registry.example.com", host)
}
