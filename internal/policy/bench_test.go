package policy_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/workload"
)

// BenchPolicy is a 20-rule policy with 5 CEL rules (shared with the
// webhook benchmark through testdata/bench-policy.yaml).
const benchPolicyFile = "testdata/bench-policy.yaml"

const benchPod = `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {team: web, app: web}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: web
      image: registry.example.com/app/web:1.0
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      resources: {limits: {memory: 256Mi, cpu: 500m}}
    - name: sidecar
      image: registry.example.com/app/proxy:2.1
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
      resources: {limits: {memory: 128Mi, cpu: 200m}}
    - name: metrics
      image: registry.example.com/app/metrics:0.9
      securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      resources: {limits: {memory: 64Mi, cpu: 100m}}
`

// BenchFacts are the facts of the benchmark pod's images (as a cache would hold them).
func benchFacts(now time.Time) staticFacts {
	base := []string{"sha256:base1", "sha256:base2"}
	f := staticFacts{"registry.example.com/base/distroless:12": {Layers: base}}
	for i, ref := range []string{"registry.example.com/app/web:1.0", "registry.example.com/app/proxy:2.1", "registry.example.com/app/metrics:0.9"} {
		f[ref] = &policy.ImageFacts{Digest: "sha256:" + string(rune('a'+i)), Layers: append(append([]string{}, base...), "sha256:app"), User: "1000",
			Labels: map[string]string{"org.opencontainers.image.source": "https://git.example.com/app"}, Created: now.Add(-48 * time.Hour), VulnsScanned: true,
			Findings: []match.Finding{{ID: "CVE-2024-1", Severity: match.Medium, FixedVersions: []string{"1.2"}}, {ID: "CVE-2024-2", Severity: match.Low}}}
	}
	return f
}

func BenchmarkEvaluatePod(b *testing.B) {
	p, err := policy.Load(benchPolicyFile)
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Rules) != 20 {
		b.Fatalf("%d rules", len(p.Rules))
	}
	cel := 0
	for _, r := range p.Rules {
		if r.Family == "cel" {
			cel++
		}
	}
	if cel != 5 {
		b.Fatalf("%d CEL rules", cel)
	}
	w := kube(b, benchPod)
	now := time.Now()
	facts := benchFacts(now)
	opts := policy.Options{Facts: facts, Now: now}
	if res := p.Evaluate(context.Background(), w, opts); len(res.Violations) != 0 || len(res.Notes) != 0 {
		b.Fatalf("the benchmark pod should comply: %v %v", res.Violations, res.Notes)
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		p.Evaluate(ctx, w, opts)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

var _ = workload.RootUser
