package agent

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moat-dev/moat/internal/fleet"
)

// TestMetrics scrapes the agent's /metrics handler, parses the text
// exposition and checks names, types and values, with a container name
// that needs escaping; then checks the OpenMetrics form of the counters.
func TestMetrics(t *testing.T) {
	a := newTestAgent(t, Config{})
	odd := "we\"b\\x\nz"
	a.containers["c1"] = fleet.Container{ID: "c1", Name: odd, State: "running"}
	a.containers["c2"] = fleet.Container{ID: "c2", Name: "db", State: "running"}
	a.containers["c3"] = fleet.Container{ID: "c3", Name: "batch", State: "exited"}
	a.dirty["c3"] = true
	a.lastSamples["c1"] = fleet.Sample{ContainerID: "c1", CPUPercent: 150, MemoryBytes: 1 << 20, Noisy: true}
	a.lastSamples["gone"] = fleet.Sample{ContainerID: "gone", CPUPercent: 1}
	a.lastReport.Store(time.Date(2026, 11, 23, 0, 0, 0, 500e6, time.UTC).UnixMilli())
	a.reportErrors.Store(2)
	a.scansOK.Store(5)
	a.scansFailed.Store(1)

	rec := httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing: %v\n%s", err, body)
	}
	get := func(name string, typ dto.MetricType, labels ...string) (float64, bool) {
		f := fams[name]
		if f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel())*2 != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
					continue next
				}
			}
			if typ == dto.MetricType_COUNTER {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
		return 0, false
	}
	g, c := dto.MetricType_GAUGE, dto.MetricType_COUNTER
	for _, tc := range []struct {
		name   string
		typ    dto.MetricType
		labels []string
		want   float64
	}{
		{"moat_agent_containers", g, []string{"state", "running"}, 2},
		{"moat_agent_containers", g, []string{"state", "exited"}, 1},
		{"moat_agent_pending_changes", g, nil, 1},
		{"moat_agent_last_report_timestamp_seconds", g, nil, 1795392000.5},
		{"moat_agent_report_errors_total", c, nil, 2},
		{"moat_agent_image_scans_total", c, []string{"result", "ok"}, 5},
		{"moat_agent_image_scans_total", c, []string{"result", "failed"}, 1},
		{"moat_agent_container_cpu_percent", g, []string{"container", odd}, 150},
		{"moat_agent_container_memory_bytes", g, []string{"container", odd}, 1 << 20},
		{"moat_agent_container_noisy", g, []string{"container", odd}, 1},
	} {
		if v, ok := get(tc.name, tc.typ, tc.labels...); !ok || v != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, v, ok, tc.want)
		}
	}
	if n := len(fams["moat_agent_container_cpu_percent"].GetMetric()); n != 1 {
		t.Errorf("cpu samples for %d containers, want 1 (no sample for a container the agent no longer knows)", n)
	}
	if h := fams["moat_agent_pending_changes"].GetHelp(); h != "Container changes not yet reported to the server (-1: a full re-sync is pending)." {
		t.Errorf("help %q", h)
	}

	// A full re-sync pending: -1.
	a.full = true
	rec = httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "\nmoat_agent_pending_changes -1\n") {
		t.Errorf("pending with a full re-sync:\n%s", rec.Body)
	}

	// OpenMetrics: counters are typed under their name without _total.
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	rec = httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(rec, req)
	for _, want := range []string{
		"# TYPE moat_agent_report_errors counter\n",
		"moat_agent_report_errors_total 2.0\n",
		`moat_agent_image_scans_total{result="failed"} 1.0` + "\n",
		`moat_agent_container_noisy{container="we\"b\\x\nz"} 1.0` + "\n",
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("OpenMetrics lacks %q:\n%s", want, rec.Body)
		}
	}
	if !bytes.HasSuffix(rec.Body.Bytes(), []byte("# EOF\n")) {
		t.Errorf("OpenMetrics does not end with # EOF")
	}
}
