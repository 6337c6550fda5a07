package fleet_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moat-dev/moat/internal/fleet"
)

// scrape GETs /metrics as c with the given Accept header (none when empty).
func scrape(t *testing.T, c *fleet.Client, url, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.SetBasicAuth(c.Username, c.Password)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	return resp, b
}

func parseText(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the sample of family name whose labels are exactly labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		default:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// TestMetricsExposition scrapes /metrics in the text, OpenMetrics and
// protobuf formats with container and image names that need escaping
// (quote, backslash, newline), parses the output and checks the values,
// the types, the order and the handling of duplicates.
func TestMetricsExposition(t *testing.T) {
	e := newEnv(t, nil)
	agent := e.robot(t, "robot$host-a")
	odd := "we\"b\\x\nz"
	oddImage := `example/"app":1\`
	c1 := compliant("c1", odd, imgApp)
	c1.Image = oddImage
	root := fleet.Container{ID: "c2", Name: "root-shell", Image: "debian:12", ImageID: imgOld, State: "running", StartedAt: time.Now().UTC(),
		Runtime: fleet.Runtime{Privileged: true, User: "0"}}
	// A second container with the same name: its samples repeat c2's label
	// sets and are dropped without failing the scrape.
	twin := root
	twin.ID = "c3"
	do(t, agent, "POST", "report", fleet.Report{Host: fleet.Host{Name: "host-a"}, Full: true, Containers: []fleet.Container{c1, root, twin}}, nil)
	do(t, agent, "POST", "stats", fleet.StatsReport{Host: "host-a", Samples: []fleet.Sample{
		{ContainerID: "c1", Time: time.Now(), CPUPercent: 12.5, MemoryBytes: 3 << 20, MemoryLimit: 64 << 20, NetRxBytes: 7, NetTxBytes: 8,
			BlockReadBytes: 9, BlockWriteBytes: 10, PIDs: 3, Noisy: true},
	}}, nil)

	resp, body := scrape(t, agent, e.ts.URL, "")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("default Content-Type %q", ct)
	}
	if want := `moat_fleet_container_cpu_percent{container="we\"b\\x\nz",host="host-a"} 12.5`; !strings.Contains(string(body), want) {
		t.Errorf("text lacks %s\n%s", want, body)
	}
	fams := parseText(t, body)
	oddL := map[string]string{"host": "host-a", "container": odd}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"moat_fleet_metrics_up", nil, 1},
		{"moat_fleet_host_containers", map[string]string{"host": "host-a"}, 3},
		{"moat_fleet_container_cpu_percent", oddL, 12.5},
		{"moat_fleet_container_memory_bytes", oddL, 3 << 20},
		{"moat_fleet_container_memory_limit_bytes", oddL, 64 << 20},
		{"moat_fleet_container_network_bytes", map[string]string{"host": "host-a", "container": odd, "direction": "rx"}, 7},
		{"moat_fleet_container_network_bytes", map[string]string{"host": "host-a", "container": odd, "direction": "tx"}, 8},
		{"moat_fleet_container_block_io_bytes", map[string]string{"host": "host-a", "container": odd, "op": "read"}, 9},
		{"moat_fleet_container_block_io_bytes", map[string]string{"host": "host-a", "container": odd, "op": "write"}, 10},
		{"moat_fleet_container_pids", oddL, 3},
		{"moat_fleet_container_noisy", oddL, 1},
		{"moat_fleet_container_no_limits", oddL, 0},
		{"moat_fleet_container_no_limits", map[string]string{"host": "host-a", "container": "root-shell"}, 1},
		{"moat_fleet_container_violations", map[string]string{"host": "host-a", "container": "root-shell", "rule": "no-privileged"}, 1},
		{"moat_fleet_running_findings", map[string]string{"severity": "CRITICAL"}, 0},
		{"moat_fleet_running_findings", map[string]string{"severity": "UNKNOWN"}, 0},
	} {
		if got, ok := value(t, fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if v, ok := value(t, fams, "moat_fleet_agent_last_seen_timestamp_seconds", map[string]string{"host": "host-a"}); !ok || time.Since(time.UnixMilli(int64(v*1000))) > time.Minute {
		t.Errorf("last seen %v (found %v)", v, ok)
	}
	if n := len(fams["moat_fleet_container_no_limits"].GetMetric()); n != 2 {
		t.Errorf("no_limits has %d samples, want 2 (the twin's duplicate dropped)", n)
	}
	if f := fams["moat_fleet_running_findings"]; f.GetType() != dto.MetricType_GAUGE ||
		f.GetHelp() != "Findings on running containers (one per container and finding), by severity." {
		t.Errorf("running_findings type %v help %q", f.GetType(), f.GetHelp())
	}
	// Families sorted by name, samples by label values.
	var names, severities []string
	for _, line := range strings.Split(string(body), "\n") {
		if n, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(n)[0])
		}
		if s, ok := strings.CutPrefix(line, `moat_fleet_running_findings{severity="`); ok {
			severities = append(severities, s[:strings.IndexByte(s, '"')])
		}
	}
	if !slices.IsSorted(names) || !slices.IsSorted(severities) || len(severities) != 5 {
		t.Errorf("not sorted: families %v, severities %v", names, severities)
	}

	// OpenMetrics, as Prometheus asks for it.
	resp, body = scrape(t, agent, e.ts.URL, "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
		t.Errorf("OpenMetrics Content-Type %q", ct)
	}
	for _, want := range []string{
		"# TYPE moat_fleet_container_pids gauge\n",
		`moat_fleet_container_pids{container="we\"b\\x\nz",host="host-a"} 3.0` + "\n",
		"moat_fleet_metrics_up 1.0\n",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("OpenMetrics lacks %q\n%s", want, body)
		}
	}
	if !strings.HasSuffix(string(body), "# EOF\n") {
		t.Errorf("OpenMetrics does not end with # EOF")
	}

	// Protobuf: the exact label values come back.
	req, _ := http.NewRequest("GET", e.ts.URL+"/metrics", nil)
	req.SetBasicAuth(agent.Username, agent.Password)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer presp.Body.Close()
	dec := expfmt.NewDecoder(presp.Body, expfmt.ResponseFormat(presp.Header))
	pfams := map[string]*dto.MetricFamily{}
	for {
		var f dto.MetricFamily
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pfams[f.GetName()] = &f
	}
	if v, ok := value(t, pfams, "moat_fleet_container_findings", map[string]string{"host": "host-a", "container": odd, "image": oddImage, "severity": "HIGH"}); ok {
		t.Errorf("findings without a matcher: %v", v)
	}
	if v, ok := value(t, pfams, "moat_fleet_container_cpu_percent", oddL); !ok || v != 12.5 {
		t.Errorf("protobuf cpu = %v (found %v)", v, ok)
	}

	// The database cannot be read: the scrape still succeeds, with up 0.
	e.fleet.Close()
	_, body = scrape(t, agent, e.ts.URL, "")
	fams = parseText(t, body)
	if v, ok := value(t, fams, "moat_fleet_metrics_up", nil); !ok || v != 0 || len(fams) != 1 {
		t.Errorf("with the database closed: %s", body)
	}
}

// TestMetricsHandler checks the shared handler directly: counters, labels
// sorted by name whatever their declared order, and invalid UTF-8.
func TestMetricsHandler(t *testing.T) {
	counter := fleet.CounterDesc("moat_test_things_total", "Things.", "zone", "kind")
	gauge := fleet.GaugeDesc("moat_test_level", "Level.")
	h := fleet.MetricsHandler(nil, func(m *fleet.Metrics) {
		m.Add(counter, 2, "b", "x\xffy")
		m.Add(counter, 1, "a", "k")
		m.Add(gauge, -1)
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `# HELP moat_test_level Level.
# TYPE moat_test_level gauge
moat_test_level -1
# HELP moat_test_things_total Things.
# TYPE moat_test_things_total counter
moat_test_things_total{kind="k",zone="a"} 1
moat_test_things_total{kind="x` + "\uFFFD" + `y",zone="b"} 2
`
	if got := rec.Body.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// FuzzMetricsLabel checks that any label value survives the text
// exposition: it parses back to the same (UTF-8-sanitised) value.
func FuzzMetricsLabel(f *testing.F) {
	for _, s := range []string{"", "web", `a"b\c`, "x\ny", "\xff", "}\n# EOF"} {
		f.Add(s)
	}
	d := fleet.GaugeDesc("moat_test_fuzz", "Fuzz.", "v")
	f.Fuzz(func(t *testing.T, s string) {
		h := fleet.MetricsHandler(nil, func(m *fleet.Metrics) { m.Add(d, 1, s) })
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		fams := parseText(t, rec.Body.Bytes())
		if v, ok := value(t, fams, "moat_test_fuzz", map[string]string{"v": strings.ToValidUTF8(s, "\uFFFD")}); !ok || v != 1 {
			t.Fatalf("label %q: %s", s, rec.Body)
		}
	})
}
