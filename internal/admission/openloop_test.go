package admission_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/admission"
	"github.com/moat-dev/moat/internal/admission/loadgen"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/testenv"
)

// The open-loop webhook benchmark. The webhook runs in its own process (this
// test binary started again as TestAdmitServerHelper: admission.Server with
// the 20-rule benchmark policy, image facts in memory, served over HTTPS by
// an http.Server set up as `moat admit` sets it up); this process is the
// load generator (internal/admission/loadgen): AdmissionReviews for a
// 3-container Pod at a fixed arrival rate over keep-alive connections,
// latency from each request's scheduled send time.
//
//	MOAT_BENCH=1 go test -count=1 -run TestOpenLoopWebhook -v ./internal/admission
//
// Settings (environment):
//
//	MOAT_BENCH_RATES     rates to run, comma-separated (default 3000)
//	MOAT_BENCH_STEP      when set (e.g. 500), after the rates keep stepping
//	                     the rate up by this much until p99 ≥ 10 ms, errors
//	                     or the achieved rate falls behind
//	MOAT_BENCH_DURATION  measured window per rate (default 10s)
//	MOAT_BENCH_WARMUP    warm-up per rate, not measured (default 3s)
//	MOAT_BENCH_PROTO     h1 (default: HTTP/1.1, one connection per sender)
//	                     or h2 (HTTP/2, senders multiplexed on MOAT_BENCH_CONNS
//	                     connections, as the API server does)
//	MOAT_BENCH_CONNS     h1: senders = connections (default 64); h2: connections (default 2)
//	MOAT_BENCH_CPUPROFILE  file for a CPU profile of the webhook process
//	MOAT_BENCH_WEBHOOK_GOGC  GOGC for the webhook process (default: Go's 100)
//	MOAT_BENCH_WEBHOOK   moat: the webhook is the built `moat admit` binary,
//	                     with image facts read from a registry on 127.0.0.1
//	                     (see startMoatAdmit); default: this test binary
//
// It prints figures and asserts nothing about timing.
func TestOpenLoopWebhook(t *testing.T) {
	if os.Getenv("MOAT_BENCH") != "1" {
		t.Skip("set MOAT_BENCH=1 to run the open-loop webhook benchmark")
	}
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	dur := func(k, def string) time.Duration {
		d, err := time.ParseDuration(env(k, def))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return d
	}
	num := func(s, what string) int {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			t.Fatalf("%s: want a positive whole number, got %q", what, s)
		}
		return n
	}
	duration, warmup := dur("MOAT_BENCH_DURATION", "10s"), dur("MOAT_BENCH_WARMUP", "3s")
	proto := env("MOAT_BENCH_PROTO", "h1")
	var rates []int
	for _, r := range strings.Split(env("MOAT_BENCH_RATES", "3000"), ",") {
		rates = append(rates, num(r, "MOAT_BENCH_RATES"))
	}
	step := 0
	if s := os.Getenv("MOAT_BENCH_STEP"); s != "" {
		step = num(s, "MOAT_BENCH_STEP")
	}

	// the webhook process
	cert, caPEM := webhookCert(t)
	dir := t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	// MOAT_BENCH_WEBHOOK=moat measures the moat admit binary itself (image
	// facts from a registry on 127.0.0.1, scanned once, then cached);
	// by default the webhook is this test binary started again.
	var cmd *exec.Cmd
	var addr string
	pod := benchPodJSON
	if os.Getenv("MOAT_BENCH_WEBHOOK") == "moat" {
		cmd, addr, pod = startMoatAdmit(t, dir, caPEM)
	} else {
		cmd = exec.Command(os.Args[0], "-test.run=^TestAdmitServerHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MOAT_ADMIT_HELPER="+dir)
		if g := os.Getenv("MOAT_BENCH_WEBHOOK_GOGC"); g != "" {
			cmd.Env = append(cmd.Env, "GOGC="+g)
		}
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			stdin.Close() // the helper stops (and writes its profile) when its stdin closes
			testenv.Stop(cmd, nil, 15*time.Second)
		}()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				addr = a
				break
			}
		}
		if addr == "" {
			t.Fatal("the webhook helper process did not start")
		}
		go io.Copy(io.Discard, stdout)
	}

	// the clients
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	newTransport := func(h2 bool) *http.Transport {
		var p http.Protocols
		p.SetHTTP1(!h2)
		p.SetHTTP2(h2)
		return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: &p, MaxIdleConnsPerHost: 1, DisableCompression: true, IdleConnTimeout: time.Minute}
	}
	var senders int
	var clients []*http.Client
	switch proto {
	case "h1":
		senders = num(env("MOAT_BENCH_CONNS", "64"), "MOAT_BENCH_CONNS")
		for range senders {
			clients = append(clients, &http.Client{Transport: newTransport(false), Timeout: 30 * time.Second})
		}
	case "h2":
		conns := num(env("MOAT_BENCH_CONNS", "2"), "MOAT_BENCH_CONNS")
		senders = 64
		for range conns {
			clients = append(clients, &http.Client{Transport: newTransport(true), Timeout: 30 * time.Second})
		}
	default:
		t.Fatalf("MOAT_BENCH_PROTO: want h1 or h2, got %q", proto)
	}
	url := "https://" + addr + "/validate"
	bodies := make([][]byte, senders)
	for s := range senders {
		bodies[s] = review(fmt.Sprintf("bench-%d", s), "CREATE", "prod", pod)
	}
	bufs := make([]bytes.Buffer, senders)
	var sent atomic.Int64
	send := func(ctx context.Context, s int) error {
		sent.Add(1)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[s]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := clients[s%len(clients)].Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		buf := &bufs[s]
		buf.Reset()
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, buf.Bytes())
		}
		// a cheap check that keeps the client's CPU small: the answer is
		// for this request and allows the compliant Pod
		if !bytes.Contains(buf.Bytes(), fmt.Appendf(nil, `"uid":"bench-%d"`, s)) || !bytes.Contains(buf.Bytes(), []byte(`"allowed":true`)) {
			return fmt.Errorf("unexpected answer: %s", buf.Bytes())
		}
		return nil
	}
	for s := range senders { // one review per connection before any timing
		if err := send(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}

	t.Logf("webhook pid %d at %s; %s, %d senders over %d client transports; warm-up %s, measured %s per rate; GOMAXPROCS default, %d CPUs",
		cmd.Process.Pid, addr, proto, senders, len(clients), warmup, duration, runtime.NumCPU())
	t.Logf("load before: %s", loadavg())
	best := 0
	run := func(rate int) bool {
		srv0, sent0 := procCPU(t, cmd.Process.Pid), sent.Load()
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		stopSampling := make(chan struct{})
		sampled := make(chan []othersSample, 1)
		go func() { sampled <- sampleOthers(t, cmd.Process.Pid, stopSampling) }()
		res, err := loadgen.Run(context.Background(), loadgen.Config{Rate: float64(rate), Warmup: warmup, Duration: duration, Senders: senders}, send)
		close(stopSampling)
		if err != nil {
			t.Fatal(err)
		}
		samples := <-sampled
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		srvCPU := procCPU(t, cmd.Process.Pid) - srv0
		cliCPU := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		// CPU that other processes took in the measured window (interference on a shared machine)
		others := othersBetween(samples, res.Start, res.Start.Add(duration))
		n := float64(sent.Load() - sent0) // reviews sent in warm-up and window
		t.Logf("%s", res)
		t.Logf("rate %d/s: CPU per review: webhook %.0f µs, load generator %.0f µs (warm-up included); other processes used %.2f cores in the window; load now %s",
			rate, float64(srvCPU.Microseconds())/n, float64(cliCPU.Microseconds())/n, others, loadavg())
		// when in the window the slow answers were, beside what other processes took then
		var p99s, cores []string
		for i, p := range res.Series(time.Second, 0.99) {
			p99s = append(p99s, fmt.Sprintf("%.1f", float64(p.Microseconds())/1000))
			from := res.Start.Add(time.Duration(i) * time.Second)
			cores = append(cores, fmt.Sprintf("%.2f", othersBetween(samples, from, from.Add(time.Second))))
		}
		t.Logf("rate %d/s: p99 ms in each second: %s", rate, strings.Join(p99s, " "))
		t.Logf("rate %d/s: other processes' cores:  %s", rate, strings.Join(cores, " "))
		ok := res.Errors == 0 && res.Quantile(0.99) < 10*time.Millisecond && res.Achieved() >= 0.99*float64(rate)
		if ok && rate > best {
			best = rate
		}
		return ok
	}
	for _, r := range rates {
		run(r)
	}
	if step > 0 {
		r := rates[len(rates)-1] + step
		for run(r) {
			r += step
		}
	}
	if len(rates) > 1 || step > 0 {
		t.Logf("highest rate run with p99 < 10 ms, no errors, achieved ≥ 99%%: %d/s", best)
	}
}

// TestAdmitServerHelper is the webhook process of TestOpenLoopWebhook.
func TestAdmitServerHelper(t *testing.T) {
	dir := os.Getenv("MOAT_ADMIT_HELPER")
	if dir == "" {
		t.Skip("the webhook process of TestOpenLoopWebhook")
	}
	if f := os.Getenv("MOAT_BENCH_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(out)
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	p, err := policy.Load("../policy/testdata/bench-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// as `moat admit` sets up its server (cmd/moat/admit.go), with the
	// image facts in memory as the provider's digest cache holds them
	s := &admission.Server{Facts: benchFacts(), ExcludeNamespaces: []string{"kube-system", "kube-public", "kube-node-lease"},
		FactsTimeout: 3 * time.Second, Log: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
	s.SetPolicy(p)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	fmt.Printf("LISTENING %s\n", ln.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() { io.Copy(io.Discard, os.Stdin); stop <- syscall.SIGTERM }()
	<-stop
	srv.Close()
}

func benchFacts() memFacts {
	now := time.Now()
	facts := memFacts{}
	for i, ref := range []string{"registry.example.com/app/web:1.0", "registry.example.com/app/proxy:2.1", "registry.example.com/app/metrics:0.9"} {
		facts[ref] = &policy.ImageFacts{Reference: ref, Digest: "sha256:" + string(rune('a'+i)), Layers: []string{"sha256:base1", "sha256:base2", "sha256:app"}, User: "1000",
			Labels: map[string]string{"org.opencontainers.image.source": "x"}, Created: now.Add(-48 * time.Hour), VulnsScanned: true,
			Findings: []match.Finding{{ID: "CVE-2024-1", Severity: match.Medium}}}
	}
	return facts
}

// procCPU is a process's user+system CPU time from /proc (clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// fields after the command name in parentheses; utime and stime are the 14th and 15th
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

type othersSample struct {
	at    time.Time
	cores float64 // CPU other processes used since the previous sample, in cores
}

// sampleOthers measures, every 250 ms until stop closes, how much CPU
// processes other than the webhook and this one used.
func sampleOthers(t *testing.T, pid int, stop <-chan struct{}) []othersSample {
	ours := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return procCPU(t, pid) + time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
	}
	var out []othersSample
	prevAt, prevBusy, prevOurs := time.Now(), machineBusy(t), ours()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return out
		case now := <-tick.C:
			busy, o := machineBusy(t), ours()
			out = append(out, othersSample{at: now, cores: max(0, (busy-prevBusy-(o-prevOurs)).Seconds()/now.Sub(prevAt).Seconds())})
			prevAt, prevBusy, prevOurs = now, busy, o
		}
	}
}

// othersBetween averages the samples taken in [from, to).
func othersBetween(samples []othersSample, from, to time.Time) float64 {
	var sum float64
	var n int
	for _, s := range samples {
		if !s.at.Before(from) && s.at.Before(to) {
			sum += s.cores
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// machineBusy is the CPU time all processes have used (/proc/stat: user,
// nice, system, irq, softirq, steal; clock ticks of 10 ms).
func machineBusy(t *testing.T) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		if i < len(f) {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
