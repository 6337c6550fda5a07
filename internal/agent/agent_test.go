package agent

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/moat-dev/moat/internal/fleet"
)

func newTestAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	if cfg.Server == "" {
		cfg.Server = "http://127.0.0.1:1"
	}
	if cfg.Token == "" {
		cfg.Token = "robot$t:secret"
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cli.Close() })
	return a
}

func TestParseToken(t *testing.T) {
	n, s, err := ParseToken(" robot$ci:abc:def\n")
	if err != nil || n != "robot$ci" || s != "abc:def" {
		t.Errorf("ParseToken = %q %q %v", n, s, err)
	}
	for _, bad := range []string{"", "robot$ci", ":x", "robot$ci:"} {
		if _, _, err := ParseToken(bad); err == nil || !strings.Contains(err.Error(), "robot$NAME:SECRET") {
			t.Errorf("ParseToken(%q) = %v", bad, err)
		}
	}
	if _, err := New(Config{Server: "http://x", Token: "nope"}); err == nil {
		t.Error("New accepted a malformed token")
	}
	if _, err := New(Config{Token: "robot$a:b"}); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Errorf("New without server: %v", err)
	}
}

// TestEngineErrors checks the messages for an engine socket that is
// missing and one nobody listens on, from real connection attempts.
func TestEngineErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	a := newTestAgent(t, Config{DockerHost: missing})
	_, err := a.cli.Info(context.Background())
	if err == nil {
		t.Fatal("Info on a missing socket succeeded")
	}
	if msg := a.describeEngineError(err); !strings.Contains(msg, missing+" does not exist") || !strings.Contains(msg, "--docker-host") {
		t.Errorf("missing socket: %s", msg)
	}

	dead := filepath.Join(dir, "dead.sock")
	ln, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the socket file stays, nobody accepts
	a = newTestAgent(t, Config{DockerHost: "unix://" + dead})
	_, err = a.cli.Info(context.Background())
	if msg := a.describeEngineError(err); !strings.Contains(msg, "cannot connect to the Docker engine socket "+dead) {
		t.Errorf("dead socket: %s", msg)
	}

	// Permission denied: a socket only its owner may use, tried by another
	// user (as root, this test re-runs itself as nobody for that part).
	open, err := os.MkdirTemp("", "moat-denied-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	closed := filepath.Join(open, "closed.sock")
	ln2, err := net.Listen("unix", closed)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if err := os.Chmod(closed, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(closed, 0); err != nil {
			t.Fatal(err)
		}
		checkDenied(t, closed)
		return
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(open, "agent.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^TestDeniedSocketHelper$", "-test.v")
	cmd.Dir = open
	cmd.Env = append(os.Environ(), "MOAT_DENIED_SOCKET="+closed, "HOME=/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDeniedSocketHelper") {
		t.Errorf("permission-denied check as nobody: %v\n%s", err, out)
	}
}

// TestDeniedSocketHelper is TestEngineErrors' permission-denied part, run
// as an unprivileged user.
func TestDeniedSocketHelper(t *testing.T) {
	p := os.Getenv("MOAT_DENIED_SOCKET")
	if p == "" {
		t.Skip("run by TestEngineErrors")
	}
	checkDenied(t, p)
}

func checkDenied(t *testing.T, sock string) {
	a := newTestAgent(t, Config{DockerHost: sock})
	_, err := a.cli.Info(context.Background())
	if msg := a.describeEngineError(err); !strings.Contains(msg, "permission denied on the Docker engine socket "+sock) || !strings.Contains(msg, "docker") {
		t.Errorf("permission denied: %s", msg)
	}
}

// TestQueueBound: past MaxPending changes the queue collapses into one full
// re-sync instead of growing.
func TestQueueBound(t *testing.T) {
	a := newTestAgent(t, Config{MaxPending: 3})
	for _, id := range []string{"a", "b", "c"} {
		a.markDirty(id)
	}
	if a.full || len(a.dirty) != 3 {
		t.Fatalf("full=%v dirty=%v", a.full, a.dirty)
	}
	a.markDirty("a")
	if a.full || len(a.dirty) != 3 {
		t.Fatalf("a repeated change grew the queue: full=%v dirty=%v", a.full, a.dirty)
	}
	a.markDirty("d")
	if !a.full || len(a.dirty) != 0 {
		t.Fatalf("overflow: full=%v dirty=%v", a.full, a.dirty)
	}
}

func stats(total, system uint64, mem uint64) *container.StatsResponse {
	st := &container.StatsResponse{}
	st.CPUStats.CPUUsage.TotalUsage = total
	st.CPUStats.SystemUsage = system
	st.CPUStats.OnlineCPUs = 2
	st.MemoryStats.Usage = mem
	st.MemoryStats.Stats = map[string]uint64{"inactive_file": 1 << 20}
	st.PidsStats.Current = 3
	st.Networks = map[string]container.NetworkStats{"eth0": {RxBytes: 10, TxBytes: 20}}
	st.BlkioStats.IoServiceBytesRecursive = []container.BlkioStatEntry{{Op: "read", Value: 5}, {Op: "Write", Value: 7}}
	return st
}

// TestNoisy follows one container through samples: CPU share computed from
// counter deltas, flagged only after the window, cleared when it calms.
func TestNoisy(t *testing.T) {
	a := newTestAgent(t, Config{Noisy: NoisyConfig{HostShare: 0.5, LimitShare: 0.8, Window: 10 * time.Second}})
	host := &fleet.Host{CPUs: 2, MemoryBytes: 1 << 30}
	limited := &fleet.Runtime{NanoCPUs: 5e8, MemoryLimit: 64 << 20, PIDsLimit: 100}
	t0 := time.Unix(1000, 0)
	const sec = uint64(1e9)
	if _, ok := a.sample("c", stats(0, 0, 10<<20), limited, host, t0); ok {
		t.Fatal("the first sample has no CPU delta and must not be reported")
	}
	// 0.45 cores of 2 over 1 s: system time grows by 2 s (two CPUs).
	s, ok := a.sample("c", stats(45*sec/100, 2*sec, 10<<20), limited, host, t0.Add(time.Second))
	if !ok || s.CPUPercent < 44.9 || s.CPUPercent > 45.1 || s.CPULimitShare < 0.89 || s.CPULimitShare > 0.91 {
		t.Fatalf("sample %+v", s)
	}
	if s.MemoryBytes != 9<<20 || s.MemoryLimit != 64<<20 || s.NetRxBytes != 10 || s.NetTxBytes != 20 || s.BlockReadBytes != 5 || s.BlockWriteBytes != 7 || s.PIDs != 3 || s.NoLimits {
		t.Errorf("sample %+v", s)
	}
	if s.Noisy {
		t.Error("noisy before the window")
	}
	s, _ = a.sample("c", stats(90*sec/100, 4*sec, 10<<20), limited, host, t0.Add(6*time.Second))
	if s.Noisy {
		t.Error("noisy after 5s of a 10s window")
	}
	s, _ = a.sample("c", stats(135*sec/100, 6*sec, 10<<20), limited, host, t0.Add(11*time.Second))
	if !s.Noisy || !strings.Contains(s.NoisyReason, "of its limit") {
		t.Errorf("not noisy after the window: %+v", s)
	}
	s, _ = a.sample("c", stats(136*sec/100, 8*sec, 10<<20), limited, host, t0.Add(12*time.Second))
	if s.Noisy {
		t.Errorf("still noisy after calming down: %+v", s)
	}
	// No limits: the host share decides; memory over half the host.
	s, _ = a.sample("u", stats(0, 0, 0), &fleet.Runtime{}, host, t0)
	s, _ = a.sample("u", stats(sec/10, 2*sec, 700<<20), &fleet.Runtime{}, host, t0.Add(20*time.Second))
	if !s.NoLimits || s.Noisy {
		t.Errorf("unlimited container, first over-threshold sample: %+v", s)
	}
	s, _ = a.sample("u", stats(2*sec/10, 4*sec, 700<<20), &fleet.Runtime{}, host, t0.Add(31*time.Second))
	if !s.Noisy || !strings.Contains(s.NoisyReason, "memory at 68% of the host") {
		t.Errorf("unlimited container over the window: %+v", s)
	}
}
