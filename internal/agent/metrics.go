package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moat-dev/moat/internal/fleet"
)

var (
	descContainers = prometheus.NewDesc("moat_agent_containers", "Containers on this host, by state.", []string{"state"}, nil)
	descPending    = prometheus.NewDesc("moat_agent_pending_changes", "Container changes not yet reported to the server (-1: a full re-sync is pending).", nil, nil)
	descLastReport = prometheus.NewDesc("moat_agent_last_report_timestamp_seconds", "When the server last accepted a report (Unix time; 0: never).", nil, nil)
	descReportErrs = prometheus.NewDesc("moat_agent_report_errors_total", "Reports the server did not accept (unreachable, refused).", nil, nil)
	descScans      = prometheus.NewDesc("moat_agent_image_scans_total", "Images catalogued for the server, by result.", []string{"result"}, nil)
	descCPU        = prometheus.NewDesc("moat_agent_container_cpu_percent", "CPU use in percent of one core (last sample).", []string{"container"}, nil)
	descMem        = prometheus.NewDesc("moat_agent_container_memory_bytes", "Memory use (last sample).", []string{"container"}, nil)
	descNoisy      = prometheus.NewDesc("moat_agent_container_noisy", "1 when the container is flagged as a noisy neighbour.", []string{"container"}, nil)
)

type agentCollector struct{ a *Agent }

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	a.mu.Lock()
	states := map[string]int{}
	names := map[string]string{}
	for id, ct := range a.containers {
		states[ct.State]++
		names[id] = ct.Name
	}
	pending := float64(len(a.dirty))
	if a.full {
		pending = -1
	}
	last := make(map[string]fleet.Sample, len(a.lastSamples))
	for id, s := range a.lastSamples {
		last[id] = s
	}
	a.mu.Unlock()
	for st, n := range states {
		g(descContainers, float64(n), st)
	}
	g(descPending, pending)
	if t := a.lastReport.Load(); t > 0 {
		g(descLastReport, float64(t)/1e3)
	} else {
		g(descLastReport, 0)
	}
	ch <- prometheus.MustNewConstMetric(descReportErrs, prometheus.CounterValue, float64(a.reportErrors.Load()))
	ch <- prometheus.MustNewConstMetric(descScans, prometheus.CounterValue, float64(a.scansOK.Load()), "ok")
	ch <- prometheus.MustNewConstMetric(descScans, prometheus.CounterValue, float64(a.scansFailed.Load()), "failed")
	for id, s := range last {
		name, ok := names[id]
		if !ok {
			continue
		}
		g(descCPU, s.CPUPercent, name)
		g(descMem, float64(s.MemoryBytes), name)
		noisy := 0.0
		if s.Noisy {
			noisy = 1
		}
		g(descNoisy, noisy, name)
	}
}

// MetricsHandler serves the agent's Prometheus metrics.
func (a *Agent) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(agentCollector{a})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// serveMetrics serves /metrics on addr until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("agent metrics server", "err", err)
	}
}
