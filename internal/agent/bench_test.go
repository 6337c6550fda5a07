package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/fleet"
	it "github.com/moat-dev/moat/internal/imagetest"
)

// procCPU returns a process's user+system CPU time in clock ticks (1/100 s)
// and its resident set size in kB.
func procCPU(t testing.TB, pid int) (ticks int64, rssKB int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return ut + st, rssKB
}

// TestFleetBenchmark measures `moat agent` (a separate process, default
// intervals) on a host running 100 containers: steady-state CPU and RSS
// over a minute, and how long a container start takes to be visible on
// the server. It takes a few minutes, so it runs only when asked:
//
//	MOAT_FLEET_BENCH=1 go test -run TestFleetBenchmark -v -timeout 30m ./internal/agent
func TestFleetBenchmark(t *testing.T) {
	if os.Getenv("MOAT_FLEET_BENCH") == "" {
		t.Skip("set MOAT_FLEET_BENCH=1 to run the fleet benchmark (100 containers, a few minutes)")
	}
	requireDocker(t)
	n := 100
	if v, err := strconv.Atoi(os.Getenv("MOAT_FLEET_BENCH_CONTAINERS")); err == nil && v > 0 {
		n = v
	}
	window := time.Minute
	srv := newServer(t)
	token := srv.robot(t, "robot$bench")
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	tag := "moat-test/fleet-sleeper:" + run
	img := it.Image(t, it.Step{Layer: it.Layer(t, it.Exec("/app", buildApp(t))), CreatedBy: "COPY app /app"})
	docker(t, "load", "-i", it.WriteDockerArchive(t, img, tag))
	label := "moat.bench.run=" + run
	var mu sync.Mutex
	var names []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for i := 0; i < len(names); i += 50 {
			exec.Command("docker", append([]string{"rm", "-f"}, names[i:min(i+50, len(names))]...)...).Run()
		}
		exec.Command("docker", "rmi", "-f", tag).Run()
	})
	runOne := func(name string) {
		mu.Lock()
		names = append(names, name)
		mu.Unlock()
		docker(t, "run", "-d", "--network", "none", "--label", label, "--name", name, "--entrypoint", "/app", tag, "sleep")
	}
	start := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				runOne(fmt.Sprintf("bench-%s-%03d", run, i))
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("started %d containers in %s", n, time.Since(start).Round(time.Millisecond))

	bin := filepath.Join(t.TempDir(), "moat")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/moat").CombinedOutput(); err != nil {
		t.Fatalf("building moat: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "agent", "--server", srv.url(), "--token", token, "--label", label, "--host-name", "bench", "--log-level", "warn")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })

	reader := &fleet.Client{Server: srv.url()}
	reader.Username, reader.Password, _ = strings.Cut(token, ":")
	eventually(t, "all containers visible and scanned", 3*time.Minute, func() (bool, string) {
		m := running(t, reader)
		scanned := 0
		for _, rc := range m {
			if rc.Scanned {
				scanned++
			}
		}
		return len(m) == n && scanned == n, fmt.Sprintf("%d visible, %d scanned", len(m), scanned)
	})
	time.Sleep(5 * time.Second) // let the first sampling round pass

	t0, _ := procCPU(t, cmd.Process.Pid)
	began := time.Now()
	var rss []int64
	for time.Since(began) < window {
		time.Sleep(time.Second)
		_, r := procCPU(t, cmd.Process.Pid)
		rss = append(rss, r)
	}
	t1, _ := procCPU(t, cmd.Process.Pid)
	elapsed := time.Since(began)
	cpu := float64(t1-t0) / 100 / elapsed.Seconds() * 100
	slices.Sort(rss)
	var ages []time.Duration
	for _, rc := range running(t, reader) {
		if rc.Stats != nil {
			ages = append(ages, time.Since(rc.Stats.Time))
		}
	}
	slices.Sort(ages)
	t.Logf("steady state over %s with %d containers: agent CPU %.2f%% of one core, RSS median %.1f MB, max %.1f MB",
		elapsed.Round(time.Second), n, cpu, float64(rss[len(rss)/2])/1024, float64(rss[len(rss)-1])/1024)
	if len(ages) < n {
		t.Errorf("only %d of %d containers have a resource sample on the server", len(ages), n)
	} else {
		t.Logf("resource samples on the server: newest %s old, oldest %s old (interval 30s)", ages[0].Round(time.Second), ages[len(ages)-1].Round(time.Second))
	}

	// Start-to-visible latency: create, then time from `docker start`
	// until the server lists the container as running.
	var lat, call []time.Duration
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("bench-%s-late-%d", run, i)
		mu.Lock()
		names = append(names, name)
		mu.Unlock()
		docker(t, "create", "--network", "none", "--label", label, "--name", name, "--entrypoint", "/app", tag, "sleep")
		s := time.Now()
		docker(t, "start", name)
		call = append(call, time.Since(s))
		for {
			m := running(t, reader)
			if _, ok := m[name]; ok {
				break
			}
			if time.Since(s) > 30*time.Second {
				t.Fatalf("%s not visible after 30s", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		lat = append(lat, time.Since(s))
	}
	slices.Sort(lat)
	slices.Sort(call)
	t.Logf("container start to visible on the server (10 starts): median %s, max %s (the docker start call itself: median %s)",
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), call[len(call)/2].Round(time.Millisecond))
	if stderr.Len() > 0 {
		t.Logf("agent stderr:\n%s", stderr.String())
	}
}
