package fleet

import (
	"bytes"
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// The Prometheus metrics are built as client_model MetricFamily values and
// encoded with expfmt (text, OpenMetrics or protobuf, by the scraper's Accept
// header). client_golang is deliberately not linked: its package init builds
// the default registry with Go and process collectors, which every moat
// command would pay for at start-up.

var (
	descHostContainers = GaugeDesc("moat_fleet_host_containers", "Running containers per host.", "host")
	descHostLastSeen   = GaugeDesc("moat_fleet_agent_last_seen_timestamp_seconds", "When the host's agent last reported (Unix time).", "host")
	descFindings       = GaugeDesc("moat_fleet_running_findings", "Findings on running containers (one per container and finding), by severity.", "severity")
	descContFindings   = GaugeDesc("moat_fleet_container_findings", "Findings of a running container's image, by severity.", "host", "container", "image", "severity")
	descViolations     = GaugeDesc("moat_fleet_container_violations", "Runtime least-privilege violations of a running container, by rule.", "host", "container", "rule")
	descCPU            = GaugeDesc("moat_fleet_container_cpu_percent", "CPU use in percent of one core (last sample).", "host", "container")
	descMem            = GaugeDesc("moat_fleet_container_memory_bytes", "Memory use (last sample).", "host", "container")
	descMemLimit       = GaugeDesc("moat_fleet_container_memory_limit_bytes", "Memory limit (0: none).", "host", "container")
	descNet            = GaugeDesc("moat_fleet_container_network_bytes", "Network bytes since the container started.", "host", "container", "direction")
	descBlock          = GaugeDesc("moat_fleet_container_block_io_bytes", "Block I/O bytes since the container started.", "host", "container", "op")
	descPIDs           = GaugeDesc("moat_fleet_container_pids", "Processes in the container.", "host", "container")
	descNoisy          = GaugeDesc("moat_fleet_container_noisy", "1 when the container is flagged as a noisy neighbour.", "host", "container")
	descNoLimits       = GaugeDesc("moat_fleet_container_no_limits", "1 when the container has no memory, CPU or PID limit.", "host", "container")
	descUp             = GaugeDesc("moat_fleet_metrics_up", "1 when the fleet database could be read for this scrape.")
)

// collect reads the fleet database at scrape time. When the database cannot
// be read it reports only moat_fleet_metrics_up 0 (the scrape still succeeds).
func (s *Server) collect(m *Metrics) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hosts, err := s.st.hosts(ctx)
	if err != nil {
		s.o.Log.Error("fleet metrics", "err", err)
		m.Add(descUp, 0)
		return
	}
	running, err := s.st.running(ctx, "")
	if err != nil {
		s.o.Log.Error("fleet metrics", "err", err)
		m.Add(descUp, 0)
		return
	}
	m.Add(descUp, 1)
	for _, h := range hosts {
		m.Add(descHostContainers, float64(h.Containers), h.Name)
		m.Add(descHostLastSeen, float64(h.LastSeen.UnixMilli())/1000, h.Name)
	}
	total := map[string]int{"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}
	for _, rc := range running {
		for sev, n := range rc.Findings {
			total[sev] += n
			m.Add(descContFindings, float64(n), rc.Host, rc.Name, rc.Image, sev)
		}
		byRule := map[string]int{}
		for _, v := range rc.Violations {
			byRule[v.Rule]++
		}
		for rule, n := range byRule {
			m.Add(descViolations, float64(n), rc.Host, rc.Name, rule)
		}
		m.Add(descNoLimits, b2f(rc.Runtime.NoLimits()), rc.Host, rc.Name)
		if st := rc.Stats; st != nil {
			m.Add(descCPU, st.CPUPercent, rc.Host, rc.Name)
			m.Add(descMem, float64(st.MemoryBytes), rc.Host, rc.Name)
			m.Add(descMemLimit, float64(st.MemoryLimit), rc.Host, rc.Name)
			m.Add(descNet, float64(st.NetRxBytes), rc.Host, rc.Name, "rx")
			m.Add(descNet, float64(st.NetTxBytes), rc.Host, rc.Name, "tx")
			m.Add(descBlock, float64(st.BlockReadBytes), rc.Host, rc.Name, "read")
			m.Add(descBlock, float64(st.BlockWriteBytes), rc.Host, rc.Name, "write")
			m.Add(descPIDs, float64(st.PIDs), rc.Host, rc.Name)
			m.Add(descNoisy, b2f(st.Noisy), rc.Host, rc.Name)
		}
	}
	for sev, n := range total {
		m.Add(descFindings, float64(n), sev)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func newMetricsHandler(s *Server) http.Handler {
	return MetricsHandler(s.o.Log, s.collect)
}

// MetricDesc describes a Prometheus metric family: name, help text, type
// (gauge or counter) and label names.
type MetricDesc struct {
	name, help string
	typ        dto.MetricType
	labels     []string // in the order Metrics.Add takes their values
	order      []int    // indexes into labels, sorted by label name
}

// GaugeDesc describes a gauge family with the given label names.
func GaugeDesc(name, help string, labels ...string) *MetricDesc {
	return newDesc(name, help, dto.MetricType_GAUGE, labels)
}

// CounterDesc describes a counter family with the given label names.
func CounterDesc(name, help string, labels ...string) *MetricDesc {
	return newDesc(name, help, dto.MetricType_COUNTER, labels)
}

func newDesc(name, help string, typ dto.MetricType, labels []string) *MetricDesc {
	d := &MetricDesc{name: name, help: help, typ: typ, labels: labels, order: make([]int, len(labels))}
	for i := range d.order {
		d.order[i] = i
	}
	slices.SortFunc(d.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return d
}

// Metrics gathers the samples of one scrape.
type Metrics struct {
	fams map[*MetricDesc]*dto.MetricFamily
	seen map[string]bool // family name and label values of each sample
	dups []string        // samples dropped as duplicates
}

// Add records the sample v of d with the given label values (in the order
// of d's label names). A label value that is not valid UTF-8 has its bad
// bytes replaced. A sample whose label values repeat an earlier sample of
// the same family is dropped (and reported by the handler's log), so that
// one bad row cannot fail the whole scrape.
func (m *Metrics) Add(d *MetricDesc, v float64, labelValues ...string) {
	if len(labelValues) != len(d.labels) {
		// A programming error, fixed at compile time in the callers.
		panic("fleet: metric " + d.name + " takes " + strings.Join(d.labels, ",") + " labels")
	}
	if m.fams == nil {
		m.fams = map[*MetricDesc]*dto.MetricFamily{}
		m.seen = map[string]bool{}
	}
	key := d.name + "\xff" + strings.Join(labelValues, "\xff")
	if m.seen[key] {
		m.dups = append(m.dups, d.name+"{"+strings.Join(labelValues, ",")+"}")
		return
	}
	m.seen[key] = true
	f := m.fams[d]
	if f == nil {
		f = &dto.MetricFamily{Name: &d.name, Help: &d.help, Type: &d.typ}
		m.fams[d] = f
	}
	metric := &dto.Metric{Label: make([]*dto.LabelPair, len(d.order))}
	for i, li := range d.order {
		value := strings.ToValidUTF8(labelValues[li], "\uFFFD")
		metric.Label[i] = &dto.LabelPair{Name: &d.labels[li], Value: &value}
	}
	switch d.typ {
	case dto.MetricType_COUNTER:
		metric.Counter = &dto.Counter{Value: &v}
	default:
		metric.Gauge = &dto.Gauge{Value: &v}
	}
	f.Metric = append(f.Metric, metric)
}

// Families returns the gathered families sorted by name, each with its
// samples sorted by label values (label pairs sorted by name), as the
// Prometheus client library orders them.
func (m *Metrics) Families() []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(m.fams))
	for _, f := range m.fams {
		slices.SortFunc(f.Metric, func(a, b *dto.Metric) int {
			for i := range a.Label {
				if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
					return c
				}
			}
			return 0
		})
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

// MetricsHandler serves the metrics that collect gathers at each request,
// in the format the scraper's Accept header asks for (Prometheus text,
// OpenMetrics or protobuf; text by default). log (optional) reports dropped
// duplicate samples.
func MetricsHandler(log *slog.Logger, collect func(*Metrics)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m Metrics
		collect(&m)
		if len(m.dups) > 0 && log != nil {
			log.Warn("metrics: duplicate samples dropped", "samples", m.dups)
		}
		format := expfmt.NegotiateIncludingOpenMetrics(r.Header)
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, format)
		for _, f := range m.Families() {
			if err := enc.Encode(f); err != nil {
				http.Error(w, "encoding metrics: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		if c, ok := enc.(expfmt.Closer); ok {
			if err := c.Close(); err != nil {
				http.Error(w, "encoding metrics: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", string(format))
		w.Write(buf.Bytes())
	})
}
