package fleet

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	descHostContainers = prometheus.NewDesc("moat_fleet_host_containers", "Running containers per host.", []string{"host"}, nil)
	descHostLastSeen   = prometheus.NewDesc("moat_fleet_agent_last_seen_timestamp_seconds", "When the host's agent last reported (Unix time).", []string{"host"}, nil)
	descFindings       = prometheus.NewDesc("moat_fleet_running_findings", "Findings on running containers (one per container and finding), by severity.", []string{"severity"}, nil)
	descContFindings   = prometheus.NewDesc("moat_fleet_container_findings", "Findings of a running container's image, by severity.", []string{"host", "container", "image", "severity"}, nil)
	descViolations     = prometheus.NewDesc("moat_fleet_container_violations", "Runtime least-privilege violations of a running container, by rule.", []string{"host", "container", "rule"}, nil)
	descCPU            = prometheus.NewDesc("moat_fleet_container_cpu_percent", "CPU use in percent of one core (last sample).", []string{"host", "container"}, nil)
	descMem            = prometheus.NewDesc("moat_fleet_container_memory_bytes", "Memory use (last sample).", []string{"host", "container"}, nil)
	descMemLimit       = prometheus.NewDesc("moat_fleet_container_memory_limit_bytes", "Memory limit (0: none).", []string{"host", "container"}, nil)
	descNet            = prometheus.NewDesc("moat_fleet_container_network_bytes", "Network bytes since the container started.", []string{"host", "container", "direction"}, nil)
	descBlock          = prometheus.NewDesc("moat_fleet_container_block_io_bytes", "Block I/O bytes since the container started.", []string{"host", "container", "op"}, nil)
	descPIDs           = prometheus.NewDesc("moat_fleet_container_pids", "Processes in the container.", []string{"host", "container"}, nil)
	descNoisy          = prometheus.NewDesc("moat_fleet_container_noisy", "1 when the container is flagged as a noisy neighbour.", []string{"host", "container"}, nil)
	descNoLimits       = prometheus.NewDesc("moat_fleet_container_no_limits", "1 when the container has no memory, CPU or PID limit.", []string{"host", "container"}, nil)
	descUp             = prometheus.NewDesc("moat_fleet_metrics_up", "1 when the fleet database could be read for this scrape.", nil, nil)
)

// collector reads the fleet database at scrape time.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	hosts, err := c.s.st.hosts(ctx)
	if err != nil {
		c.s.o.Log.Error("fleet metrics", "err", err)
		gauge(descUp, 0)
		return
	}
	running, err := c.s.st.running(ctx, "")
	if err != nil {
		c.s.o.Log.Error("fleet metrics", "err", err)
		gauge(descUp, 0)
		return
	}
	gauge(descUp, 1)
	for _, h := range hosts {
		gauge(descHostContainers, float64(h.Containers), h.Name)
		gauge(descHostLastSeen, float64(h.LastSeen.UnixMilli())/1000, h.Name)
	}
	total := map[string]int{"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}
	for _, rc := range running {
		for sev, n := range rc.Findings {
			total[sev] += n
			gauge(descContFindings, float64(n), rc.Host, rc.Name, rc.Image, sev)
		}
		byRule := map[string]int{}
		for _, v := range rc.Violations {
			byRule[v.Rule]++
		}
		for rule, n := range byRule {
			gauge(descViolations, float64(n), rc.Host, rc.Name, rule)
		}
		gauge(descNoLimits, b2f(rc.Runtime.NoLimits()), rc.Host, rc.Name)
		if st := rc.Stats; st != nil {
			gauge(descCPU, st.CPUPercent, rc.Host, rc.Name)
			gauge(descMem, float64(st.MemoryBytes), rc.Host, rc.Name)
			gauge(descMemLimit, float64(st.MemoryLimit), rc.Host, rc.Name)
			gauge(descNet, float64(st.NetRxBytes), rc.Host, rc.Name, "rx")
			gauge(descNet, float64(st.NetTxBytes), rc.Host, rc.Name, "tx")
			gauge(descBlock, float64(st.BlockReadBytes), rc.Host, rc.Name, "read")
			gauge(descBlock, float64(st.BlockWriteBytes), rc.Host, rc.Name, "write")
			gauge(descPIDs, float64(st.PIDs), rc.Host, rc.Name)
			gauge(descNoisy, b2f(st.Noisy), rc.Host, rc.Name)
		}
	}
	for sev, n := range total {
		gauge(descFindings, float64(n), sev)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func newMetricsHandler(s *Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
