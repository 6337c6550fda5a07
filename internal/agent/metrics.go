package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/fleet"
)

var (
	descContainers = fleet.GaugeDesc("moat_agent_containers", "Containers on this host, by state.", "state")
	descPending    = fleet.GaugeDesc("moat_agent_pending_changes", "Container changes not yet reported to the server (-1: a full re-sync is pending).")
	descLastReport = fleet.GaugeDesc("moat_agent_last_report_timestamp_seconds", "When the server last accepted a report (Unix time; 0: never).")
	descReportErrs = fleet.CounterDesc("moat_agent_report_errors_total", "Reports the server did not accept (unreachable, refused).")
	descScans      = fleet.CounterDesc("moat_agent_image_scans_total", "Images catalogued for the server, by result.", "result")
	descCPU        = fleet.GaugeDesc("moat_agent_container_cpu_percent", "CPU use in percent of one core (last sample).", "container")
	descMem        = fleet.GaugeDesc("moat_agent_container_memory_bytes", "Memory use (last sample).", "container")
	descNoisy      = fleet.GaugeDesc("moat_agent_container_noisy", "1 when the container is flagged as a noisy neighbour.", "container")
)

// collect gathers the agent's metrics at scrape time.
func (a *Agent) collect(m *fleet.Metrics) {
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
		m.Add(descContainers, float64(n), st)
	}
	m.Add(descPending, pending)
	if t := a.lastReport.Load(); t > 0 {
		m.Add(descLastReport, float64(t)/1e3)
	} else {
		m.Add(descLastReport, 0)
	}
	m.Add(descReportErrs, float64(a.reportErrors.Load()))
	m.Add(descScans, float64(a.scansOK.Load()), "ok")
	m.Add(descScans, float64(a.scansFailed.Load()), "failed")
	for id, s := range last {
		name, ok := names[id]
		if !ok {
			continue
		}
		m.Add(descCPU, s.CPUPercent, name)
		m.Add(descMem, float64(s.MemoryBytes), name)
		noisy := 0.0
		if s.Noisy {
			noisy = 1
		}
		m.Add(descNoisy, noisy, name)
	}
}

// MetricsHandler serves the agent's Prometheus metrics.
func (a *Agent) MetricsHandler() http.Handler {
	return fleet.MetricsHandler(a.log, a.collect)
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
