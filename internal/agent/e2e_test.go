package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/moat-dev/moat/internal/agent"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/fleet"
	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

// requireDocker needs a Docker engine (see testenv.RequireDocker).
func requireDocker(t testing.TB) { testenv.RequireDocker(t) }

// appSource is the test image's entrypoint: a static Go program linked
// with golang.org/x/text v0.3.7 (vulnerable to CVE-2022-32149) that sleeps,
// or burns CPU with "burn", and exits on SIGTERM (at once with "exit").
const appSource = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/text/language"
)

func main() {
	fmt.Println(language.Make("en-US"))
	if len(os.Args) > 1 && os.Args[1] == "exit" {
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "burn" {
		for i := 0; i < runtime.NumCPU(); i++ {
			go func() {
				n := 0
				for {
					n++
				}
			}()
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
`

var (
	buildOnce sync.Once
	buildBin  []byte
	buildErr  error
)

// buildApp compiles appSource (CGO_ENABLED=0) in a throwaway module.
func buildApp(t testing.TB) []byte {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "moat-agent-app-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/moatapp\n\ngo 1.22\n\nrequire golang.org/x/text v0.3.7\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(appSource), 0o644)
		env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0", "GOOS=linux")
		for _, args := range [][]string{{"mod", "tidy"}, {"build", "-trimpath", "-o", "app", "."}} {
			cmd := exec.Command("go", args...)
			cmd.Dir, cmd.Env = dir, env
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %v: %v\n%s", args, err, out)
				return
			}
		}
		buildBin, buildErr = os.ReadFile(filepath.Join(dir, "app"))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// appImage is a two-layer image: this machine's dpkg status and
// os-release, then the Go program as entrypoint.
func appImage(t testing.TB) v1.Image {
	t.Helper()
	status, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		t.Skipf("no dpkg database on this machine: %v", err)
	}
	osr, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	img := it.Image(t,
		it.Step{Layer: it.Layer(t, it.Text("/etc/os-release", string(osr)), it.Text("/var/lib/dpkg/status", string(status))), CreatedBy: "ADD rootfs /"},
		it.Step{Layer: it.Layer(t, it.Exec("/app", buildApp(t))), CreatedBy: "COPY app /app"},
	)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Entrypoint, cfg.Cmd = []string{"/app"}, []string{"sleep"}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// server is `moat serve`'s fleet part on real parts: the account store
// and token service, a SQLite fleet database, the Go OSV data. It keeps
// its address across restarts.
type server struct {
	dir   string
	addr  string
	accts *store.Store
	auth  *auth.Service
	fleet *fleet.Store
	srv   *fleet.Server
	hs    *httptest.Server
	db    *vulndb.DB
}

func (s *server) start(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	var err error
	if s.accts, err = store.OpenSQLite(ctx, filepath.Join(s.dir, "moat.db")); err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewService(s.accts, filepath.Join(s.dir, "token.key"), "moat")
	if err != nil {
		t.Fatal(err)
	}
	s.auth = a
	if s.fleet, err = fleet.OpenSQLite(ctx, filepath.Join(s.dir, "fleet.db")); err != nil {
		t.Fatal(err)
	}
	s.srv = fleet.NewServer(s.fleet, fleet.AccountAuth(a), fleet.Options{Matcher: match.Matcher{DB: s.db}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.addr = ln.Addr().String()
	s.hs = httptest.NewUnstartedServer(s.srv)
	s.hs.Listener.Close()
	s.hs.Listener = ln
	s.hs.Start()
}

func (s *server) stop() {
	if s.hs != nil {
		s.hs.CloseClientConnections()
		s.hs.Close()
		s.fleet.Close()
		s.accts.Close()
		s.hs = nil
	}
}

func (s *server) url() string { return "http://" + s.addr }

func newServer(t testing.TB) *server {
	data := testenv.OSVData(t)
	s := &server{dir: t.TempDir()}
	vdir := t.TempDir()
	if _, err := vulndb.Import(context.Background(), vdir, []string{filepath.Join(data, "Go", "all.zip")}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(vdir)
	if err != nil {
		t.Fatal(err)
	}
	s.db = db
	t.Cleanup(func() { s.stop(); db.Close() })
	s.start(t)
	return s
}

// robot creates a robot account and returns its agent token.
func (s *server) robot(t testing.TB, name string) string {
	t.Helper()
	secret := auth.RandomSecret(24)
	hash, err := auth.HashPassword(secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.accts.CreateRobot(context.Background(), store.Robot{Name: name, SecretHash: hash}); err != nil {
		t.Fatal(err)
	}
	return name + ":" + secret
}

// runningAgent runs an agent until stopped.
type runningAgent struct {
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(t testing.TB, cfg agent.Config) *runningAgent {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{a: a, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(ra.done); a.Run(ctx) }()
	t.Cleanup(ra.stop)
	return ra
}

func (ra *runningAgent) stop() {
	ra.cancel()
	<-ra.done
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		if state != "" {
			last = state
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last state: %s", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func running(t testing.TB, c *fleet.Client) map[string]fleet.RunningContainer {
	rcs, err := c.Running(context.Background())
	if err != nil {
		t.Logf("running: %v", err)
		return nil
	}
	m := map[string]fleet.RunningContainer{}
	for _, rc := range rcs {
		m[rc.Name] = rc
	}
	return m
}

func names(m map[string]fleet.RunningContainer) string {
	var out []string
	for n, rc := range m {
		out = append(out, fmt.Sprintf("%s(scanned=%v findings=%v noisy=%v)", n, rc.Scanned, rc.Findings, rc.Stats != nil && rc.Stats.Noisy))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// TestAgentDockerEngine runs the agent against the real Docker engine and
// the fleet server: inventory, SBOM of an unknown image with real
// findings, exposure by CVE and GO ID, least-privilege violations, a noisy
// neighbour, removal on stop, and restarts of the agent and the server.
func TestAgentDockerEngine(t *testing.T) {
	requireDocker(t)
	srv := newServer(t)
	token := srv.robot(t, "robot$e2e")
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	tag := "moat-test/fleet-app:" + run
	archive := it.WriteDockerArchive(t, appImage(t), tag)
	docker(t, "load", "-i", archive)
	label := "moat.test.run=" + run
	logs := &syncBuffer{}
	t0 := time.Now()
	defer func() {
		if t.Failed() || os.Getenv("MOAT_AGENT_LOG") != "" {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()
	var started []string
	t.Cleanup(func() {
		if len(started) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, started...)...).Run()
		}
		exec.Command("docker", "rmi", "-f", tag).Run()
	})
	start := func(name, mode string, args ...string) {
		started = append(started, name)
		full := append([]string{"run", "-d", "--network", "none", "--label", label, "--name", name}, args...)
		docker(t, append(full, tag, mode)...)
	}
	app, priv, burn, good := "app-"+run, "priv-"+run, "burn-"+run, "good-"+run
	start(app, "sleep")
	// Some engines run where privileged mode cannot be granted (a
	// capability bounding set without every capability, e.g. dockerd in
	// a container); there the privileged container is replaced by a root
	// one holding an added capability, the host PID namespace and the
	// Docker socket, and the privileged rule is left to the fleet tests.
	privileged := true
	if out, err := exec.Command("docker", "run", "-d", "--network", "none", "--label", label, "--name", priv, "--privileged", "--user", "0", tag, "sleep").CombinedOutput(); err != nil {
		if !strings.Contains(string(out), "operation not permitted") {
			t.Fatalf("docker run --privileged: %v\n%s", err, out)
		}
		t.Logf("this engine cannot run privileged containers (%s); using --cap-add NET_ADMIN --pid host and the Docker socket instead", strings.TrimSpace(string(out)))
		exec.Command("docker", "rm", "-f", priv).Run()
		privileged = false
		start(priv, "sleep", "--user", "0", "--cap-add", "NET_ADMIN", "--pid", "host", "-v", "/var/run/docker.sock:/var/run/docker.sock:ro")
	} else {
		started = append(started, priv)
	}
	start(burn, "burn", "--cpus", "0.5")
	start(good, "sleep", "--user", "1000:1000", "--read-only", "--cap-drop", "ALL", "--memory", "64m", "--cpus", "0.5",
		"--pids-limit", "50", "--security-opt", "no-new-privileges")

	cfg := agent.Config{
		Server: srv.url(), Token: token, HostName: "e2e-" + run, Labels: []string{label},
		StatsInterval: 500 * time.Millisecond, Heartbeat: time.Second, ScanPause: 100 * time.Millisecond, MaxBackoff: time.Second,
		// The burner spins at its 0.5 CPU quota; on a busy machine it may get
		// less, so the limit share that flags it is low (sleepers use ~0).
		Noisy: agent.NoisyConfig{HostShare: 0.99, LimitShare: 0.2, Window: 2 * time.Second},
		Log:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "test",
	}
	ag := startAgent(t, cfg)
	reader := &fleet.Client{Server: srv.url()}
	reader.Username, reader.Password, _ = strings.Cut(token, ":")

	eventually(t, "four containers with findings", 90*time.Second, func() (bool, string) {
		m := running(t, reader)
		for _, n := range []string{app, priv, burn, good} {
			if rc, ok := m[n]; !ok || !rc.Scanned || rc.Findings["UNKNOWN"]+rc.Findings["LOW"]+rc.Findings["MEDIUM"]+rc.Findings["HIGH"]+rc.Findings["CRITICAL"] == 0 {
				return false, names(m)
			}
		}
		return true, ""
	})
	t.Logf("inventory with findings after %s", time.Since(t0).Round(time.Millisecond))
	m := running(t, reader)
	if rc := m[app]; !strings.HasPrefix(rc.ImageKey, "sha256:") || rc.Image != tag || rc.Host != cfg.HostName {
		t.Errorf("app container %+v", rc)
	}

	for _, id := range []string{"CVE-2022-32149", "GO-2022-1059"} {
		ex, err := reader.Exposure(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		var who []string
		for _, e := range ex.Containers {
			who = append(who, e.Container)
			if e.Package != "golang.org/x/text" || e.Version != "v0.3.7" || !slices.Contains(e.FixedVersions, "v0.3.8") || e.Layer != 1 || e.CreatedBy != "COPY app /app" || e.Path != "/app" {
				t.Errorf("exposure %s: %+v", id, e)
			}
		}
		slices.Sort(who)
		want := []string{app, burn, good, priv}
		slices.Sort(want)
		if !slices.Equal(who, want) {
			t.Errorf("exposure %s: containers %v, want %v", id, who, want)
		}
	}

	// Least privilege.
	pv := rulesOf(m[priv])
	want := []string{"run-as-non-root", "memory-limit"}
	if privileged {
		want = append(want, "no-privileged")
	} else {
		want = append(want, "capabilities", "no-host-namespaces", "no-docker-socket")
	}
	for _, r := range want {
		if !slices.Contains(pv, r) {
			t.Errorf("privileged root container: %s not flagged (got %v)", r, pv)
		}
	}
	if v := m[good].Violations; len(v) != 0 {
		t.Errorf("compliant container flagged: %+v", v)
	}
	if !slices.Contains(rulesOf(m[app]), "run-as-non-root") || !noLimits(m[app].Runtime) {
		t.Errorf("app container (root, no limits): %v %+v", rulesOf(m[app]), m[app].Runtime)
	}

	// Noisy neighbour: the CPU burner at its 0.5 CPU limit.
	eventually(t, "burner flagged noisy", 60*time.Second, func() (bool, string) {
		m := running(t, reader)
		st := m[burn].Stats
		if st == nil || !st.Noisy {
			return false, fmt.Sprintf("%+v", st)
		}
		return true, ""
	})
	t.Logf("noisy after %s", time.Since(t0).Round(time.Millisecond))
	rec := httptest.NewRecorder()
	ag.a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`moat_agent_containers{state="running"} 4`, `moat_agent_container_noisy{container="` + burn + `"} 1`,
		`moat_agent_image_scans_total{result="ok"} 1`, `moat_agent_report_errors_total 0`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("agent metrics lack %s:\n%s", want, rec.Body)
		}
	}
	if st := running(t, reader)[good].Stats; st == nil || st.Noisy || st.MemoryLimit != 64<<20 || st.PIDs < 1 {
		t.Errorf("sleeper stats %+v", st)
	}
	evs, err := reader.Events(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, e := range evs {
		kinds[e.Kind+" "+e.Container] = true
	}
	if !kinds[fleet.EventNoisyNeighbour+" "+burn] || !kinds[fleet.EventNonCompliantStart+" "+priv] || kinds[fleet.EventNonCompliantStart+" "+good] {
		t.Errorf("events %v", kinds)
	}

	// Containers that come and go at once (created, started, exited and
	// removed before or while the agent inspects them) leave no trace and
	// no error.
	var churn sync.WaitGroup
	for i := 0; i < 6; i++ {
		churn.Add(1)
		go func() {
			defer churn.Done()
			exec.Command("docker", "run", "--rm", "--network", "none", "--label", label, tag, "exit").Run()
		}()
	}
	churn.Wait()
	eventually(t, "short-lived containers gone", 20*time.Second, func() (bool, string) {
		m := running(t, reader)
		return len(m) == 4, names(m)
	})
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors while containers vanished:\n%s", logs.String())
	}

	// Stopping a container removes it from the running list.
	docker(t, "stop", "-t", "2", app)
	eventually(t, "stopped container leaves the running list", 30*time.Second, func() (bool, string) {
		m := running(t, reader)
		_, ok := m[app]
		return !ok && len(m) == 3, names(m)
	})

	// Agent restart: a container stopped while the agent is down is gone
	// after the re-sync; the others stay.
	ag.stop()
	docker(t, "stop", "-t", "2", good)
	ag = startAgent(t, cfg)
	eventually(t, "re-sync after agent restart", 30*time.Second, func() (bool, string) {
		m := running(t, reader)
		_, okGood := m[good]
		_, okPriv := m[priv]
		return !okGood && okPriv && len(m) == 2, names(m)
	})

	// Server restart: changes made while it is down are queued and sent.
	srv.stop()
	docker(t, "start", app)
	time.Sleep(2 * time.Second) // the agent sees the start and fails to report it
	srv.start(t)
	eventually(t, "change made while the server was down", 30*time.Second, func() (bool, string) {
		m := running(t, reader)
		rc, ok := m[app]
		return ok && rc.Scanned && len(m) == 3, names(m)
	})
	t.Logf("server restart caught up after %s", time.Since(t0).Round(time.Millisecond))

	// A revoked robot account: the agent says so clearly and keeps trying.
	if err := srv.accts.RevokeRobot(context.Background(), "robot$e2e"); err != nil {
		t.Fatal(err)
	}
	srv.auth.Invalidate()
	docker(t, "stop", "-t", "1", app)
	eventually(t, "revoked token reported", 30*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "refused the agent's credentials"), ""
	})
	ag.stop()
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func rulesOf(rc fleet.RunningContainer) []string {
	var out []string
	for _, v := range rc.Violations {
		out = append(out, v.Rule)
	}
	return out
}

func noLimits(r fleet.Runtime) bool { return r.NoLimits() }
