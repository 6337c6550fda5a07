package fleet_test

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/fleet"
	"github.com/moat-dev/moat/internal/match"
)

const (
	imgApp = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	imgOld = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func compliant(id, name, image string) fleet.Container {
	return fleet.Container{ID: id, Name: name, Image: "example/app:1", ImageID: image, State: "running", StartedAt: time.Now().UTC(),
		Runtime: fleet.Runtime{User: "1000:1000", ReadOnlyRootFS: true, CapDrop: []string{"ALL"}, MemoryLimit: 64 << 20,
			NanoCPUs: 5e8, PIDsLimit: 100, NoNewPrivileges: true}}
}

func rules(vs []fleet.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func byName(rcs []fleet.RunningContainer) map[string]fleet.RunningContainer {
	m := map[string]fleet.RunningContainer{}
	for _, rc := range rcs {
		m[rc.Name] = rc
	}
	return m
}

// TestFleet goes through the agent protocol with real robot accounts, a
// real Go vulnerability database and SQLite: inventory, violations,
// SBOM intake and exposure, re-matching, stats and noisy events,
// removal, metrics, and a server restart.
func TestFleet(t *testing.T) {
	db := goDB(t)
	e := newEnv(t, nil) // no matcher yet: findings come with Rematch
	ctx := context.Background()
	agent := e.robot(t, "robot$host-a")

	good := compliant("c1", "web", imgApp)
	bad := fleet.Container{ID: "c2", Name: "root-shell", Image: "debian:12", ImageID: imgOld, State: "running", StartedAt: time.Now().UTC(),
		Runtime: fleet.Runtime{Privileged: true, User: "0", HostPID: true, CapAdd: []string{"SYS_ADMIN"},
			Mounts: []fleet.Mount{{Type: "bind", Source: "/var/run/docker.sock", Destination: "/var/run/docker.sock", RW: true}}}}
	stopped := compliant("c3", "batch", imgApp)
	stopped.State = "exited"
	host := fleet.Host{Name: "host-a", EngineVersion: "28.5", CPUs: 2, MemoryBytes: 8 << 30}
	do(t, agent, "POST", "report", fleet.Report{Host: host, Full: true, Containers: []fleet.Container{good, bad, stopped}}, nil)

	var rcs []fleet.RunningContainer
	do(t, agent, "GET", "running", nil, &rcs)
	m := byName(rcs)
	if len(rcs) != 2 || m["web"].ID != "c1" || m["root-shell"].ID != "c2" {
		t.Fatalf("running = %+v", rcs)
	}
	if len(m["web"].Violations) != 0 {
		t.Errorf("compliant container has violations %+v", m["web"].Violations)
	}
	got := rules(m["root-shell"].Violations)
	for _, want := range []string{"no-privileged", "run-as-non-root", "no-host-namespaces", "capabilities", "no-docker-socket", "memory-limit", "read-only-root-filesystem", "no-privilege-escalation"} {
		if !slices.Contains(got, want) {
			t.Errorf("privileged root container: rule %s not violated (got %v)", want, got)
		}
	}
	if k := e.eventKinds(); k[fleet.EventNonCompliantStart+" root-shell"] != 1 || k[fleet.EventNonCompliantStart+" web"] != 0 {
		t.Errorf("events %v", k)
	}
	// The same report again is no new start: no new event.
	do(t, agent, "POST", "report", fleet.Report{Host: host, Full: true, Containers: []fleet.Container{good, bad, stopped}}, nil)
	if k := e.eventKinds(); k[fleet.EventNonCompliantStart+" root-shell"] != 1 {
		t.Errorf("repeated report raised events again: %v", k)
	}

	// SBOM intake: the server asks for what it lacks.
	var miss fleet.MissingResponse
	do(t, agent, "POST", "images/missing", fleet.MissingRequest{Images: []string{imgApp, imgOld, imgApp}}, &miss)
	if !slices.Equal(miss.Missing, []string{imgApp, imgOld}) {
		t.Fatalf("missing = %v", miss.Missing)
	}
	do(t, agent, "PUT", "sboms/"+imgApp, textSBOM(t, "v0.3.7"), nil)
	do(t, agent, "POST", "images/missing", fleet.MissingRequest{Images: []string{imgApp, imgOld}}, &miss)
	if !slices.Equal(miss.Missing, []string{imgOld}) {
		t.Fatalf("missing after upload = %v", miss.Missing)
	}
	var ex fleet.Exposure
	do(t, agent, "GET", "exposure/CVE-2022-32149", nil, &ex)
	if len(ex.Containers) != 0 {
		t.Fatalf("exposure without a matcher: %+v", ex)
	}

	// A vulnerability database arrives: Rematch finds the exposure and
	// raises one event per running container of the image.
	e.srv.SetMatcher(match.Matcher{DB: db})
	res, err := e.srv.Rematch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 1 || len(res.Events) != 1 || res.Events[0].Container != "web" || res.Events[0].Kind != fleet.EventNewlyExposed {
		t.Fatalf("rematch = %+v", res)
	}
	for _, id := range []string{"CVE-2022-32149", "GO-2022-1059", "ghsa-69ch-w2m2-3vjp"} {
		do(t, agent, "GET", "exposure/"+id, nil, &ex)
		if len(ex.Containers) != 1 {
			t.Fatalf("exposure %s = %+v", id, ex)
		}
		x := ex.Containers[0]
		if x.Host != "host-a" || x.Container != "web" || x.Package != "golang.org/x/text" || x.Version != "v0.3.7" ||
			!slices.Contains(x.FixedVersions, "v0.3.8") || x.Layer != 1 || x.CreatedBy != "COPY app /app" || x.Severity == "" {
			t.Errorf("exposure %s: %+v", id, x)
		}
	}
	do(t, agent, "GET", "exposure/CVE-2099-0001", nil, &ex)
	if len(ex.Containers) != 0 {
		t.Errorf("unknown CVE exposes %+v", ex.Containers)
	}
	// Nothing changed: a second rematch writes nothing and raises nothing.
	if res, err = e.srv.Rematch(ctx); err != nil || len(res.Events) != 0 {
		t.Fatalf("second rematch = %+v, %v", res, err)
	}
	do(t, agent, "GET", "running", nil, &rcs)
	if f := byName(rcs)["web"].Findings; f["HIGH"]+f["MEDIUM"]+f["CRITICAL"]+f["LOW"]+f["UNKNOWN"] < 1 || !byName(rcs)["web"].Scanned {
		t.Errorf("web findings %+v", byName(rcs)["web"])
	}

	// Stats: a noisy sample raises one event, a repeated one none.
	noisy := fleet.Sample{ContainerID: "c2", Time: time.Now(), CPUPercent: 190, CPUHostShare: 0.95, Noisy: true, NoisyReason: "CPU at 95% of the host for 2m0s", NoLimits: true}
	do(t, agent, "POST", "stats", fleet.StatsReport{Host: "host-a", Samples: []fleet.Sample{noisy, {ContainerID: "gone"}}}, nil)
	do(t, agent, "POST", "stats", fleet.StatsReport{Host: "host-a", Samples: []fleet.Sample{noisy}}, nil)
	if k := e.eventKinds(); k[fleet.EventNoisyNeighbour+" root-shell"] != 1 {
		t.Errorf("noisy events %v", k)
	}

	// Metrics.
	body := get(t, agent, e.ts.URL+"/metrics")
	for _, want := range []string{
		`moat_fleet_host_containers{host="host-a"} 2`,
		`moat_fleet_container_noisy{container="root-shell",host="host-a"} 1`,
		`moat_fleet_container_violations{container="root-shell",host="host-a",rule="no-privileged"} 1`,
		`moat_fleet_container_cpu_percent{container="root-shell",host="host-a"} 190`,
		`moat_fleet_agent_last_seen_timestamp_seconds{host="host-a"}`,
		`moat_fleet_running_findings{severity="HIGH"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s\n%s", want, body)
		}
	}

	// Incremental: c2 removed, c1 stopped.
	good.State = "exited"
	do(t, agent, "POST", "report", fleet.Report{Host: fleet.Host{Name: "host-a"}, Containers: []fleet.Container{good}, Removed: []string{"c2"}}, nil)
	do(t, agent, "GET", "running", nil, &rcs)
	if len(rcs) != 0 {
		t.Fatalf("running after stop and removal: %+v", rcs)
	}
	do(t, agent, "GET", "exposure/CVE-2022-32149", nil, &ex)
	if len(ex.Containers) != 0 {
		t.Errorf("a stopped container is still exposed: %+v", ex)
	}

	// Restart of the server: state survives.
	good.State = "running"
	do(t, agent, "POST", "report", fleet.Report{Host: host, Full: true, Containers: []fleet.Container{good}}, nil)
	e.close()
	e.open(t, match.Matcher{DB: db})
	agent.Server = e.ts.URL
	do(t, agent, "GET", "exposure/GO-2022-1059", nil, &ex)
	if len(ex.Containers) != 1 || ex.Containers[0].Container != "web" {
		t.Fatalf("after restart exposure = %+v", ex)
	}
	var hosts []fleet.Host
	do(t, agent, "GET", "hosts", nil, &hosts)
	if len(hosts) != 1 || hosts[0].Name != "host-a" || hosts[0].Agent != "robot$host-a" || hosts[0].Containers != 1 || hosts[0].CPUs != 2 {
		t.Errorf("hosts = %+v", hosts)
	}
	var evs []fleet.Event
	do(t, agent, "GET", "events", nil, &evs)
	kinds := map[string]int{}
	for _, ev := range evs {
		kinds[ev.Kind]++
	}
	if kinds[fleet.EventNonCompliantStart] != 1 || kinds[fleet.EventNoisyNeighbour] != 1 || kinds[fleet.EventNewlyExposed] != 1 {
		t.Errorf("stored events %v", kinds)
	}
}

func get(t *testing.T, c *fleet.Client, url string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth(c.Username, c.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// TestAccess checks who may do what: agents are robot accounts bound to
// their host, administrators read, other users do not, revoked robots are
// refused at once.
func TestAccess(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	a := e.robot(t, "robot$a")
	b := e.robot(t, "robot$b")
	u := e.user(t, "alice", false)
	rep := fleet.Report{Host: fleet.Host{Name: "h1"}, Full: true}

	anon := &fleet.Client{Server: e.ts.URL}
	if err := anon.Do(ctx, "GET", "running", nil, nil); status(err) != 401 {
		t.Errorf("anonymous read: %v", err)
	}
	wrong := &fleet.Client{Server: e.ts.URL, Username: "robot$a", Password: "nope"}
	if err := wrong.Do(ctx, "POST", "report", rep, nil); status(err) != 401 || !fleet.IsAuthError(err) {
		t.Errorf("wrong secret: %v", err)
	}
	if err := u.Do(ctx, "POST", "report", rep, nil); status(err) != 403 {
		t.Errorf("user reporting as agent: %v", err)
	}
	if err := u.Do(ctx, "GET", "running", nil, nil); status(err) != 403 {
		t.Errorf("non-admin user read the fleet view: %v", err)
	}
	if err := e.user(t, "root", true).Do(ctx, "GET", "running", nil, nil); err != nil {
		t.Errorf("admin read: %v", err)
	}
	do(t, a, "POST", "report", rep, nil)
	if err := b.Do(ctx, "POST", "report", rep, nil); status(err) != 403 || !strings.Contains(err.Error(), "robot$a") {
		t.Errorf("another robot took over host h1: %v", err)
	}
	if err := e.accts.RevokeRobot(ctx, "robot$a"); err != nil {
		t.Fatal(err)
	}
	e.auth.Invalidate()
	if err := a.Do(ctx, "POST", "report", rep, nil); status(err) != 401 {
		t.Errorf("revoked robot: %v", err)
	}
	if err := a.Do(ctx, "GET", "metrics", nil, nil); status(err) != 401 {
		t.Errorf("revoked robot reads: %v", err)
	}
}

// TestBadInput sends malformed reports and SBOMs: each is refused with a
// 400 saying what is wrong, and nothing is stored.
func TestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	a := e.robot(t, "robot$a")
	do(t, a, "POST", "report", fleet.Report{Host: fleet.Host{Name: "h"}, Full: true, Containers: []fleet.Container{compliant("c1", "web", imgApp)}}, nil)
	cases := []struct {
		method, path string
		body         any
		want         string
	}{
		{"POST", "report", []byte("{"), "malformed request body"},
		{"POST", "report", fleet.Report{}, "host name is empty"},
		{"POST", "report", fleet.Report{Host: fleet.Host{Name: "h"}, Containers: []fleet.Container{{}}}, "bad id"},
		{"POST", "stats", []byte(`{"host": 5}`), "malformed request body"},
		{"PUT", "sboms/latest", textSBOM(t, "v0.3.7"), "not a digest"},
		{"PUT", "sboms/" + imgApp, []byte("hello"), "not a readable SBOM"},
		{"POST", "images/missing", []byte(`[]`), "malformed request body"},
	}
	for _, c := range cases {
		err := a.Do(ctx, c.method, c.path, c.body, nil)
		if status(err) != 400 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: %v (want 400 %q)", c.method, c.path, err, c.want)
		}
	}
	var hosts []fleet.Host
	do(t, a, "GET", "hosts", nil, &hosts)
	if len(hosts) != 1 {
		t.Errorf("bad input stored hosts %+v", hosts)
	}
	var miss fleet.MissingResponse
	do(t, a, "POST", "images/missing", fleet.MissingRequest{Images: []string{imgApp}}, &miss)
	if len(miss.Missing) != 1 {
		t.Errorf("a bad SBOM was stored: missing %v", miss.Missing)
	}

	// SBOMs: only for images the agent's hosts run, and never replaced.
	b := e.robot(t, "robot$b")
	if err := b.Do(ctx, "PUT", "sboms/"+imgApp, textSBOM(t, "v0.3.7"), nil); status(err) != 403 {
		t.Errorf("robot b sent an SBOM for host h's image: %v", err)
	}
	do(t, a, "PUT", "sboms/"+imgApp, textSBOM(t, "v0.3.8"), nil)
	if err := a.Do(ctx, "PUT", "sboms/"+imgApp, textSBOM(t, "v0.3.7"), nil); status(err) != 409 {
		t.Errorf("an SBOM was replaced: %v", err)
	}
}

// TestSBOMSource: SBOMs the registry already holds are taken from it, so
// agents catalogue only images nobody has seen; a bad stored SBOM leaves the
// image to the agent.
func TestSBOMSource(t *testing.T) {
	db := goDB(t)
	e := newEnv(t, nil)
	other := "sha256:" + repeat("3", 64)
	var asked []string
	srv := fleet.NewServer(e.fleet, fleet.AccountAuth(e.auth), fleet.Options{Matcher: match.Matcher{DB: db},
		SBOMSource: func(_ context.Context, d string) ([]byte, error) {
			asked = append(asked, d)
			switch d {
			case imgApp:
				return textSBOM(t, "v0.3.7"), nil
			case imgOld:
				return []byte("not an SBOM"), nil
			}
			return nil, nil
		}})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	a := e.robot(t, "robot$a")
	a.Server = ts.URL
	do(t, a, "POST", "report", fleet.Report{Host: fleet.Host{Name: "h"}, Full: true, Containers: []fleet.Container{compliant("c1", "web", imgApp)}}, nil)
	var miss fleet.MissingResponse
	do(t, a, "POST", "images/missing", fleet.MissingRequest{Images: []string{imgApp, imgOld, other}}, &miss)
	if !slices.Equal(miss.Missing, []string{imgOld, other}) || len(asked) != 3 {
		t.Fatalf("missing = %v (asked %v)", miss.Missing, asked)
	}
	var ex fleet.Exposure
	do(t, a, "GET", "exposure/CVE-2022-32149", nil, &ex)
	if len(ex.Containers) != 1 || ex.Containers[0].Container != "web" {
		t.Errorf("exposure from the registry's SBOM: %+v", ex)
	}
	asked = nil
	do(t, a, "POST", "images/missing", fleet.MissingRequest{Images: []string{imgApp}}, &miss)
	if len(miss.Missing) != 0 || len(asked) != 0 {
		t.Errorf("a stored SBOM was asked for again: missing %v, asked %v", miss.Missing, asked)
	}
}

// TestIDsBackfill opens a database written before the identifier index
// existed: the index is built from the stored findings.
func TestIDsBackfill(t *testing.T) {
	db := goDB(t)
	e := newEnv(t, match.Matcher{DB: db})
	a := e.robot(t, "robot$a")
	do(t, a, "POST", "report", fleet.Report{Host: fleet.Host{Name: "h"}, Full: true, Containers: []fleet.Container{compliant("c1", "web", imgApp)}}, nil)
	do(t, a, "PUT", "sboms/"+imgApp, textSBOM(t, "v0.3.7"), nil)
	e.close()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE fleet_finding_ids`, `UPDATE fleet_schema SET version = 7`} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	e.open(t, match.Matcher{DB: db})
	a.Server = e.ts.URL
	var ex fleet.Exposure
	do(t, a, "GET", "exposure/ghsa-69ch-w2m2-3vjp", nil, &ex)
	if len(ex.Containers) != 1 {
		t.Fatalf("after the migration: %+v", ex)
	}
}
