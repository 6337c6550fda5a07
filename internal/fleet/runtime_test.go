package fleet_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/fleet"
	"github.com/moat-dev/moat/internal/policy"
)

const runtimePolicy = `apiVersion: moat.dev/v1
kind: Policy
metadata:
  name: prod
spec:
  defaults:
    action: enforce
  rules:
    - name: least-privilege
      runtime:
        runAsNonRoot: true
        readOnlyRootFilesystem: true
        allowPrivileged: false
        allowHostNamespaces: false
        allowPrivilegeEscalation: false
        limits:
          memory: {required: true, max: 1Gi}
        capabilities:
          allowed: [NET_BIND_SERVICE]
          requireDropAll: true
    - name: approved-registries
      images:
        allowedRegistries: [registry.example.com]
`

// TestCheckers evaluates the same running containers with the built-in
// least-privilege audit and with the shared policy's runtime rules.
func TestCheckers(t *testing.T) {
	p, err := policy.Parse("prod.yaml", []byte(runtimePolicy))
	if err != nil {
		t.Fatal(err)
	}
	good := compliant("c1", "web", imgApp)
	bad := fleet.Container{ID: "c2", Name: "shell", Image: "debian:12", State: "running",
		Runtime: fleet.Runtime{Privileged: true, HostNetwork: true, CapAdd: []string{"NET_ADMIN"}, MemoryLimit: 4 << 30,
			Mounts: []fleet.Mount{{Type: "bind", Source: "/run/docker.sock", Destination: "/sock", RW: true}, {Type: "volume", Source: "/var/lib/docker/volumes/x", Destination: "/data"}}}}
	imageUser := compliant("c3", "image-user", imgApp)
	imageUser.Runtime.User, imageUser.Runtime.ImageUser = "", "nobody"

	ctx := context.Background()
	lp := fleet.LeastPrivilege{}
	pc := fleet.NewPolicyChecker(p)
	for _, c := range []fleet.Container{good, imageUser} {
		if v := lp.CheckRuntime(ctx, fleet.Workload("h", &c)); len(v) != 0 {
			t.Errorf("built-in: %s flagged %+v", c.Name, v)
		}
		if v := pc.CheckRuntime(ctx, fleet.Workload("h", &c)); len(v) != 0 {
			t.Errorf("policy: %s flagged %+v", c.Name, v)
		}
	}
	got := rules(lp.CheckRuntime(ctx, fleet.Workload("h", &bad)))
	for _, want := range []string{"no-privileged", "run-as-non-root", "no-host-namespaces", "capabilities", "no-docker-socket", "cpu-limit", "pids-limit", "read-only-root-filesystem"} {
		if !slices.Contains(got, want) {
			t.Errorf("built-in: %s missing in %v", want, got)
		}
	}
	if slices.Contains(got, "host-paths") {
		t.Errorf("a named volume counted as a host path: %v", got)
	}
	pv := pc.CheckRuntime(ctx, fleet.Workload("h", &bad))
	var checks []string
	for _, v := range pv {
		checks = append(checks, v.Rule)
		if v.Action != "enforce" || v.Message == "" {
			t.Errorf("policy violation %+v", v)
		}
	}
	for _, want := range []string{"least-privilege/privileged", "least-privilege/runAsNonRoot", "least-privilege/hostNamespaces",
		"least-privilege/readOnlyRootFilesystem", "least-privilege/limits.memory", "least-privilege/capabilities"} {
		if !slices.Contains(checks, want) {
			t.Errorf("policy: %s missing in %v", want, checks)
		}
	}
	// debian:12 breaks approved-registries too, but that image rule is not
	// a runtime rule: it must not be applied to running containers.
	for _, c := range checks {
		if !strings.HasPrefix(c, "least-privilege/") {
			t.Errorf("a non-runtime rule applied to a running container: %s", c)
		}
	}
}

// TestReevaluate switches a running server from the built-in audit to the
// shared policy: stored violations follow, and the fleet handler mounts
// beside the registry's.
func TestReevaluate(t *testing.T) {
	e := newEnv(t, nil)
	a := e.robot(t, "robot$a")
	bad := fleet.Container{ID: "c2", Name: "shell", Image: "debian:12", State: "running", Runtime: fleet.Runtime{Privileged: true}}
	do(t, a, "POST", "report", fleet.Report{Host: fleet.Host{Name: "h"}, Full: true, Containers: []fleet.Container{bad, compliant("c1", "web", imgApp)}}, nil)
	p, err := policy.Parse("prod.yaml", []byte(runtimePolicy))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetChecker(fleet.NewPolicyChecker(p))
	n, err := e.srv.Reevaluate(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Reevaluate = %d, %v (want 1 changed)", n, err)
	}
	var rcs []fleet.RunningContainer
	do(t, a, "GET", "running", nil, &rcs)
	got := rules(byName(rcs)["shell"].Violations)
	if !slices.Contains(got, "least-privilege/privileged") || slices.Contains(got, "no-privileged") {
		t.Errorf("after reevaluation: %v", got)
	}
	if n, _ := e.srv.Reevaluate(context.Background()); n != 0 {
		t.Errorf("a second reevaluation changed %d containers", n)
	}

	registry := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	ts := httptest.NewServer(fleet.Handler(e.srv, registry))
	defer ts.Close()
	for path, want := range map[string]int{"/v2/": 418, "/api/v1/users": 418, "/api/v1/fleet/hosts": 200, "/metrics": 200} {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		req.SetBasicAuth(a.Username, a.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
