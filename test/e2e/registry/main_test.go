// Package registry_e2e runs the moat binary's registry (`moat serve` and
// the admin commands) against real clients: crane, skopeo and the docker
// CLI with a real engine, plus crash and shutdown behaviour.
package registry_e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/tls"
	"github.com/moat-dev/moat/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var moatBin string

func TestMain(m *testing.M) { testenv.MainWithMoat(m, "moat-e2e-", &moatBin) }

// tool finds a peer tool (see testenv.Tool).
func tool(t testing.TB, name string) string {
	return testenv.Tool(t, name, "run scripts/build-tools.sh")
}

type server struct {
	cmd    *exec.Cmd
	addr   string
	data   string
	mu     sync.Mutex
	out    bytes.Buffer // stdout
	logs   bytes.Buffer // stderr (JSON request log)
	exited chan error
}

func (s *server) stdout() string { s.mu.Lock(); defer s.mu.Unlock(); return s.out.String() }
func (s *server) stderr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.logs.String() }

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs `moat serve` on a free loopback port over dataDir.
func startServe(t testing.TB, dataDir string, env []string, args ...string) *server {
	t.Helper()
	s := &server{addr: freeAddr(t), data: dataDir, exited: make(chan error, 1)}
	s.cmd = exec.Command(moatBin, append([]string{"serve", "--addr", s.addr, "--data-dir", dataDir}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout = lockedWriter{&s.mu, &s.out}
	s.cmd.Stderr = lockedWriter{&s.mu, &s.logs}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	probe, scheme := http.DefaultClient, "http://"
	for _, a := range args {
		if a == "--dev" || a == "--tls-cert" {
			scheme = "https://"
			probe = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		}
	}
	for {
		resp, err := probe.Get(scheme + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case err := <-s.exited:
			t.Fatalf("moat serve exited: %v\n%s\n%s", err, s.stdout(), s.stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat serve did not start:\n%s", s.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// moat runs an admin command against s.
func moat(t testing.TB, s *server, user, pass string, args ...string) string {
	t.Helper()
	cmd := exec.Command(moatBin, args...)
	cmd.Env = append(os.Environ(), "MOAT_SERVER=http://"+s.addr, "MOAT_USERNAME="+user, "MOAT_PASSWORD="+pass)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func run(t testing.TB, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// layerTar writes a small filesystem tarball.
func layerTar(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, content := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write([]byte(content))
	}
	tw.Close()
	p := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var pwRe = regexp.MustCompile(`password (\S+) \(shown once`)

func generatedPassword(t testing.TB, s *server) string {
	t.Helper()
	m := pwRe.FindStringSubmatch(s.stdout())
	if m == nil {
		t.Fatalf("no generated password in output:\n%s", s.stdout())
	}
	return m[1]
}

// sigterm stops the server and waits for it.
func sigterm(t testing.TB, s *server) error {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("moat serve did not stop on SIGTERM")
	}
	return nil
}

func countLines(s, substr string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			n++
		}
	}
	return n
}

var _ = io.Discard

func getenv(k string) string { return os.Getenv(k) }
