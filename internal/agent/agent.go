// Package agent is `moat agent`: it runs on a Docker host, keeps an
// inventory of the host's containers from the Docker Engine API (following
// the event stream, re-synchronising fully after every reconnect), samples
// their resource use, catalogues images the server has no SBOM for, and
// reports all of it to the fleet API of `moat serve` (internal/fleet).
//
// Reporting is decoupled from observing: changes mark containers dirty in
// a coalescing queue (at most one entry per container, bounded by
// MaxPending; beyond it the queue collapses into one full re-sync), and a
// sender flushes it with exponential backoff while the server is
// unreachable, so nothing is lost or duplicated.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/client"

	"github.com/moat-dev/moat/internal/fleet"
)

// Config configures an agent.
type Config struct {
	// Server is the URL of `moat serve`.
	Server string
	// Token is the robot account credential "robot$NAME:SECRET".
	Token string
	// CACert optionally adds a trusted CA for the server (PEM file).
	CACert string
	// HTTP overrides the HTTP client (tests).
	HTTP *http.Client
	// DockerHost is the engine address: a socket path or a URL
	// (unix:///var/run/docker.sock, tcp://...); empty means DOCKER_HOST or
	// the default socket.
	DockerHost string
	// Labels, when set, restricts the agent to containers carrying all of
	// these labels ("KEY" or "KEY=VALUE").
	Labels []string
	// HostName names the host on the server (default: the engine's host
	// name).
	HostName string
	// StatsInterval is how often resources are sampled (default 30s; 0
	// uses the default, negative disables sampling).
	StatsInterval time.Duration
	// Heartbeat is how often the agent reports even without changes
	// (default 30s).
	Heartbeat time.Duration
	// NoScan disables cataloguing of images the server lacks SBOMs for.
	NoScan bool
	// ScanPause is the pause between two image scans (default 30s), so
	// cataloguing never competes for long with the host's workload.
	ScanPause time.Duration
	// ScanTempDir is where scans spill large files (default os.TempDir()).
	ScanTempDir string
	// Noisy configures noisy-neighbour detection.
	Noisy NoisyConfig
	// MaxPending bounds the queue of unsent container changes (default
	// 10000); past it the queue becomes one full re-sync.
	MaxPending int
	// MaxBackoff caps the retry delay (default 1m).
	MaxBackoff time.Duration
	// MetricsAddr, when set, serves the agent's Prometheus metrics at
	// http://MetricsAddr/metrics.
	MetricsAddr string
	Log         *slog.Logger
	Version     string
}

// NoisyConfig says when a container is a noisy neighbour: it uses more than
// HostShare of the host's CPU or memory, or more than LimitShare of its own
// CPU, memory or process limit, for longer than Window.
type NoisyConfig struct {
	HostShare  float64
	LimitShare float64
	Window     time.Duration
}

// ParseToken splits "robot$NAME:SECRET" into the account name and secret.
func ParseToken(tok string) (name, secret string, err error) {
	tok = strings.TrimSpace(tok)
	name, secret, ok := strings.Cut(tok, ":")
	if !ok || name == "" || secret == "" {
		return "", "", errors.New(`the agent token is "robot$NAME:SECRET" (a robot account and the secret printed by moat robot create)`)
	}
	return name, secret, nil
}

func (c *Config) defaults() error {
	if c.Server == "" {
		return errors.New("no server URL (--server)")
	}
	if !strings.Contains(c.Server, "://") {
		c.Server = "http://" + c.Server
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 30 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 30 * time.Second
	}
	if c.ScanPause <= 0 {
		c.ScanPause = 30 * time.Second
	}
	if c.Noisy.HostShare <= 0 {
		c.Noisy.HostShare = 0.5
	}
	if c.Noisy.LimitShare <= 0 {
		c.Noisy.LimitShare = 0.9
	}
	if c.Noisy.Window <= 0 {
		c.Noisy.Window = 2 * time.Minute
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.DockerHost != "" && strings.HasPrefix(c.DockerHost, "/") {
		c.DockerHost = "unix://" + c.DockerHost
	}
	if c.HTTP == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2
		if c.CACert != "" {
			pem, err := os.ReadFile(c.CACert)
			if err != nil {
				return fmt.Errorf("--ca-cert: %w", err)
			}
			pool, _ := x509.SystemCertPool()
			if pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s: no PEM certificates", c.CACert)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		}
		c.HTTP = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	}
	return nil
}

// Agent is a running agent.
type Agent struct {
	cfg Config
	cli *client.Client
	fc  *fleet.Client
	log *slog.Logger

	mu         sync.Mutex
	host       fleet.Host
	hostKnown  bool
	containers map[string]fleet.Container
	dirty      map[string]bool
	full       bool
	samples    map[string]fleet.Sample
	images     map[string]imageFacts // image ID -> facts
	// lastSamples are the latest samples (for the agent's metrics).
	lastSamples map[string]fleet.Sample

	lastReport   atomic.Int64 // Unix ms of the last accepted report
	reportErrors atomic.Int64
	scansOK      atomic.Int64
	scansFailed  atomic.Int64

	wake     chan struct{}
	scanWake chan struct{}

	// sampling state (stats goroutine only)
	prev      map[string]cpuPrev
	overSince map[string]time.Time
}

type imageFacts struct {
	digest, user string
}

// New prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	name, secret, err := ParseToken(cfg.Token)
	if err != nil {
		return nil, err
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if cfg.DockerHost == "" {
		cfg.DockerHost = cli.DaemonHost()
	}
	return &Agent{
		cfg: cfg, cli: cli, log: cfg.Log,
		fc:         &fleet.Client{Server: cfg.Server, Username: name, Password: secret, HTTP: cfg.HTTP},
		containers: map[string]fleet.Container{}, dirty: map[string]bool{}, samples: map[string]fleet.Sample{},
		images: map[string]imageFacts{}, lastSamples: map[string]fleet.Sample{}, wake: make(chan struct{}, 1), scanWake: make(chan struct{}, 1),
		prev: map[string]cpuPrev{}, overSince: map[string]time.Time{},
	}, nil
}

// Run runs the agent until ctx ends. Engine and server failures are
// logged and retried with backoff; Run returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	defer a.cli.Close()
	var ln net.Listener
	if a.cfg.MetricsAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", a.cfg.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(a.watch)
	run(a.send)
	if a.cfg.StatsInterval > 0 {
		run(a.sampleLoop)
	}
	if !a.cfg.NoScan {
		run(a.scanLoop)
	}
	if ln != nil {
		run(func(ctx context.Context) { a.serveMetrics(ctx, ln) })
	}
	wg.Wait()
	return nil
}

// Run is New followed by Agent.Run.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// backoff is exponential with jitter, from 1s to max.
type backoff struct {
	max time.Duration
	cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = time.Second
	} else {
		b.cur *= 2
	}
	if b.cur > b.max {
		b.cur = b.max
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// markDirty records a change of container id (caller holds mu).
func (a *Agent) markDirty(id string) {
	if a.full {
		return // the next report sends everything anyway
	}
	a.dirty[id] = true
	if len(a.dirty) > a.cfg.MaxPending {
		a.full = true
		clear(a.dirty)
	}
}

// send flushes changes to the server, retrying with backoff.
func (a *Agent) send(ctx context.Context) {
	tick := time.NewTicker(a.cfg.Heartbeat)
	defer tick.Stop()
	bo := backoff{max: a.cfg.MaxBackoff}
	for {
		heartbeat := false
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-tick.C:
			heartbeat = true
		}
		for {
			err := a.flush(ctx, heartbeat)
			if err == nil {
				bo.reset()
				break
			}
			a.reportErrors.Add(1)
			if ctx.Err() != nil {
				return
			}
			d := bo.next()
			if fleet.IsAuthError(err) {
				bo.cur = bo.max
				d = bo.max
				a.log.Error("the server refused the agent's credentials (robot account revoked, disabled or expired, or not a robot?); retrying", "server", a.cfg.Server, "err", err, "retry_in", d.Round(time.Second).String())
			} else {
				a.log.Warn("cannot report to the server; changes are kept and sent when it answers", "server", a.cfg.Server, "err", err, "retry_in", d.Round(time.Millisecond).String())
			}
			if !sleep(ctx, d) {
				return
			}
		}
	}
}

// flush sends pending changes and samples once.
func (a *Agent) flush(ctx context.Context, heartbeat bool) error {
	a.mu.Lock()
	if !a.hostKnown {
		a.mu.Unlock()
		return nil
	}
	rep := fleet.Report{Host: a.host, Full: a.full}
	dirty := a.dirty
	if a.full {
		rep.Containers = make([]fleet.Container, 0, len(a.containers))
		for _, c := range a.containers {
			rep.Containers = append(rep.Containers, c)
		}
	} else {
		for id := range dirty {
			if c, ok := a.containers[id]; ok {
				rep.Containers = append(rep.Containers, c)
			} else {
				rep.Removed = append(rep.Removed, id)
			}
		}
	}
	samples := a.samples
	full := a.full
	a.full, a.dirty, a.samples = false, map[string]bool{}, map[string]fleet.Sample{}
	a.mu.Unlock()
	sort.Slice(rep.Containers, func(i, j int) bool { return rep.Containers[i].ID < rep.Containers[j].ID })
	sort.Strings(rep.Removed)

	restore := func(inv bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if inv {
			if full {
				a.full = true
			}
			for id := range dirty {
				a.markDirty(id)
			}
		}
		for id, s := range samples {
			if _, newer := a.samples[id]; !newer {
				a.samples[id] = s
			}
		}
	}
	changed := full || len(dirty) > 0
	if changed || heartbeat || len(samples) > 0 {
		if err := a.fc.Do(ctx, http.MethodPost, "report", rep, nil); err != nil {
			restore(true)
			return err
		}
		a.lastReport.Store(time.Now().UnixMilli())
		if changed {
			a.log.Debug("reported inventory", "full", full, "containers", len(rep.Containers), "removed", len(rep.Removed))
			poke(a.scanWake)
		}
	}
	if len(samples) > 0 {
		sr := fleet.StatsReport{Host: rep.Host.Name, Samples: make([]fleet.Sample, 0, len(samples))}
		for _, s := range samples {
			sr.Samples = append(sr.Samples, s)
		}
		sort.Slice(sr.Samples, func(i, j int) bool { return sr.Samples[i].ContainerID < sr.Samples[j].ContainerID })
		if err := a.fc.Do(ctx, http.MethodPost, "stats", sr, nil); err != nil {
			restore(false)
			return err
		}
	}
	return nil
}
