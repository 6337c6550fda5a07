package dockerauthz_test

import (
	"context"
	"fmt"
	"github.com/moat-dev/moat/internal/testenv"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/moat-dev/moat/internal/dockerauthz"
	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
)

const e2ePolicy = `apiVersion: moat.dev/v1
kind: Policy
metadata: {name: docker-e2e}
spec:
  rules:
    - name: approved-registries
      images: {allowedRegistries: [moat.test]}
    - name: least-privilege
      runtime:
        runAsNonRoot: true
        readOnlyRootFilesystem: true
        allowPrivileged: false
        allowHostNamespaces: false
        allowPrivilegeEscalation: false
        limits: {memory: {required: true, max: 1Gi}, pids: {required: true}}
        capabilities: {allowed: [NET_BIND_SERVICE], requireDropAll: true}
        hostPaths: {allowed: ["/tmp/**"]}
`

// skipOrFail skips outside CI and fails in CI (where scripts/test.sh
// installs docker.io and runs as root).
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.SkipOrFail(t, format, args...)
}

// staticBinary builds a tiny static Go program that prints its marker.
func staticBinary(t *testing.T) []byte {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"moat-ok uid=\" + itoa(os.Getuid()) + \"\\n\") }\n\nfunc itoa(i int) string {\n\tif i == 0 {\n\t\treturn \"0\"\n\t}\n\ts := \"\"\n\tfor i > 0 {\n\t\ts = string(rune('0'+i%10)) + s\n\t\ti /= 10\n\t}\n\treturn s\n}\n"), 0o644)
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags=-s -w", "-o", "hello", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test program: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDockerEndToEnd(t *testing.T) {
	dockerd, err1 := exec.LookPath("dockerd")
	docker, err2 := exec.LookPath("docker")
	if err1 != nil || err2 != nil {
		skipOrFail(t, "dockerd and docker are needed (Debian package docker.io)")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "starting a dockerd needs root")
	}
	// the policy and the plugin on /run/docker/plugins/NAME.sock
	pol, err := policy.Parse("policy.yaml", []byte(e2ePolicy))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "moat-authz-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	host := "unix://" + sock
	name := fmt.Sprintf("moat-test-%d", os.Getpid())
	plug := &dockerauthz.Plugin{Facts: &imagefacts.Provider{Docker: host}}
	plug.SetPolicy(pol)
	l, path, err := dockerauthz.Listen(dockerauthz.PluginDir, name)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: plug.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); os.Remove(path) })

	// a second, private dockerd that asks the plugin
	logf, _ := os.Create(filepath.Join(dir, "dockerd.log"))
	cmd := exec.Command(dockerd, "--host", host, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--authorization-plugin="+name, "--storage-driver=vfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.Stop(cmd, os.Interrupt, 20*time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("dockerd log (tail):\n%s", b)
		}
	})
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, docker, append([]string{"--host", host}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := run("info"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			out, _ := run("info")
			t.Fatalf("dockerd did not start: %s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// test images: a static binary as entrypoint, non-root user
	bin := staticBinary(t)
	img := it.Image(t, it.Step{Layer: it.Layer(t, it.Exec("hello", bin), it.Dir("tmp")), CreatedBy: "COPY hello /hello"})
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Entrypoint, cfg.User = []string{"/hello"}, "1000"
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rootCfg := cfg
	rootCfg.User = ""
	rootImg, err := mutate.Config(img, rootCfg)
	if err != nil {
		t.Fatal(err)
	}
	for tag, im := range map[string]v1.Image{"moat.test/approved/app:1": img, "evil.example/app:1": img, "moat.test/approved/root:1": rootImg} {
		if out, err := run("load", "-i", it.WriteDockerArchive(t, im, tag)); err != nil {
			t.Fatalf("docker load %s: %v\n%s", tag, err, out)
		}
	}

	good := []string{"run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL", "--memory", "64m", "--pids-limit", "64", "--security-opt", "no-new-privileges"}
	out, err := run(append(good, "moat.test/approved/app:1")...)
	if err != nil || !strings.Contains(out, "moat-ok uid=1000") {
		t.Fatalf("compliant run refused or failed: %v\n%s", err, out)
	}
	denied := func(what string, args []string, want string) {
		t.Helper()
		out, err := run(args...)
		prefix := "authorization denied by plugin " + name + ": moat policy docker-e2e denies container from image "
		if err == nil || !strings.Contains(out, prefix) || !strings.Contains(out, want) {
			t.Errorf("%s: err=%v, want a denial containing %q\n%s", what, err, want, out)
		}
	}
	denied("privileged", append(good[:len(good):len(good)], "--privileged", "moat.test/approved/app:1"), "least-privilege: runs privileged")
	denied("unapproved registry", append(good[:len(good):len(good)], "evil.example/app:1"), "approved-registries: image evil.example/app:1 comes from registry evil.example, which is not approved")
	denied("docker socket", append(good[:len(good):len(good)], "-v", "/var/run/docker.sock:/var/run/docker.sock", "moat.test/approved/app:1"), "exposes the Docker socket")
	denied("host pid", append(good[:len(good):len(good)], "--pid", "host", "moat.test/approved/app:1"), "shares the host's PID namespace")
	denied("root image", append(good[:len(good):len(good)], "moat.test/approved/root:1"), "runs as root: image moat.test/approved/root:1 USER is unset")
	denied("root user", append(good[:len(good):len(good)], "--user", "0", "moat.test/approved/app:1"), `runs as user "0" (root)`)
	denied("capability", append(good[:len(good):len(good)], "--cap-add", "SYS_ADMIN", "moat.test/approved/app:1"), "adds capability SYS_ADMIN")
	denied("no limits", []string{"run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "moat.test/approved/app:1"}, "has no memory limit")
	// the root image runs when the run itself sets a non-root user
	if out, err := run(append(good[:len(good):len(good)], "--user", "1000:1000", "moat.test/approved/root:1")...); err != nil || !strings.Contains(out, "moat-ok uid=1000") {
		t.Errorf("root image with --user 1000: %v\n%s", err, out)
	}
}
