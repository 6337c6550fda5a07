package policy_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/workload"
)

func mustLoad(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func kube(t testing.TB, src string) *workload.Workload {
	t.Helper()
	d, err := workload.DecodeKubernetes("w.yaml", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Workloads) != 1 {
		t.Fatalf("want 1 workload, got %d (skipped %v)", len(d.Workloads), d.Skipped)
	}
	return d.Workloads[0]
}

func TestLoadExample(t *testing.T) {
	p, err := policy.Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "production" || len(p.Rules) != 6 {
		t.Fatalf("name %q, %d rules", p.Name, len(p.Rules))
	}
	want := map[string]struct {
		fam    string
		action policy.Action
		onErr  policy.OnError
	}{
		"approved-registries":         {"images", policy.Enforce, policy.FailClosed},
		"pinned-in-prod":              {"images", policy.Warn, policy.FailClosed},
		"lean-base":                   {"images", policy.Warn, policy.FailOpen},
		"no-critical-vulnerabilities": {"vulnerabilities", policy.Enforce, policy.FailOpen},
		"least-privilege":             {"runtime", policy.Enforce, policy.FailClosed},
		"team-label":                  {"cel", policy.Audit, policy.FailClosed},
	}
	for _, r := range p.Rules {
		w, ok := want[r.Name]
		if !ok || r.Family != w.fam || r.Action != w.action || r.OnError != w.onErr {
			t.Errorf("rule %s: family %s action %s onError %s", r.Name, r.Family, r.Action, r.OnError)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	head := "apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n"
	cases := []struct{ src, want string }{
		{"", "test.yaml: empty policy file"},
		{"apiVersion: moat.dev/v2\nkind: Policy\nspec: {}\n", `test.yaml:1:13: unsupported apiVersion "moat.dev/v2"`},
		{"apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules: []\n", "test.yaml:4:10: spec.rules must be a non-empty list"},
		{"apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rulez: []\n", `test.yaml:4:3: spec: unknown field "rulez"`},
		{head + "    - name: a\n      runtime:\n        privileged: false\n", `test.yaml:7:9: spec.rules[0] (a).runtime: unknown field "privileged"`},
		{head + "    - name: a\n      action: block\n      images: {requireDigest: true}\n", `test.yaml:6:15: spec.rules[0] (a).action must be enforce, warn or audit, not "block"`},
		{head + "    - name: a\n      images: {requireDigest: yes please}\n", `test.yaml:6:31: spec.rules[0] (a).images.requireDigest must be true or false`},
		{head + "    - name: a\n      cel:\n        expression: \"workload.nope == 1\"\n        message: m\n", "test.yaml:7:21: spec.rules[0] (a).cel.expression does not compile"},
		{head + "    - name: a\n      cel:\n        expression: \"workload.name\"\n        message: m\n", "must give a bool"},
		{head + "    - name: a\n      images: {maxAge: soon}\n", `test.yaml:6:24: spec.rules[0] (a).images.maxAge: "soon" is not a duration`},
		{head + "    - name: a\n      vulnerabilities: {maxSeverity: severe}\n", `unknown severity "severe"`},
		{head + "    - name: a\n      vulnerabilities:\n        maxSeverity: high\n        exceptions:\n          - id: CVE-1\n            expires: 2030-01-01\n", "needs a reason"},
		{head + "    - name: a\n      runtime: {runAsNonRoot: true}\n      images: {requireDigest: true}\n", "test.yaml:5:7: spec.rules[0] (a) must have exactly one of"},
		{head + "    - name: a\n      runtime: {runAsNonRoot: true}\n    - name: a\n      runtime: {runAsNonRoot: true}\n", `test.yaml:7:7: spec.rules[1]: rule name "a" is used twice`},
		{head + "    - name: a\n      exemptions:\n        - reason: r\n          expires: someday\n          namespaces: [x]\n      runtime: {runAsNonRoot: true}\n", `test.yaml:8:20: spec.rules[0] (a).exemptions[0].expires: "someday" is not a date`},
		{head + "    - name: a\n      exemptions:\n        - reason: r\n          expires: 2030-01-01\n      runtime: {runAsNonRoot: true}\n", "must name what it exempts"},
		{head + "    - name: a\n      runtime:\n        limits: {memory: {max: lots}}\n", `limits.memory.max: "lots"`},
		{head + "    - name: a\n      signatures: {keys: [cosign.pub]}\n", "signature verification is not available in this build"},
		{"a: [\n", "test.yaml:1:1: did not find expected node content"},
		{head + "  - &x {name: a, runtime: {runAsNonRoot: true}}\n  - *x\n", "test.yaml:6:5: spec.rules[1] must be a mapping, not an alias"},
	}
	for _, c := range cases {
		_, err := policy.Parse("test.yaml", []byte(c.src))
		if err == nil {
			t.Errorf("%q: loaded, want error %q", c.src, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.src, err, c.want)
		}
	}
}

// fakeVerifier is a real verifier for a trivial scheme: an image is signed
// when its digest is listed in the key file.
type listVerifier struct{}
type listKeys struct{ digests string }

func (listVerifier) LoadKeys(keys []string) (policy.SignatureKeys, error) {
	var all []string
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		all = append(all, string(b))
	}
	return listKeys{strings.Join(all, "\n")}, nil
}

func (k listKeys) Verify(ctx context.Context, ref, digest string) (string, error) {
	if digest != "" && strings.Contains(k.digests, digest) {
		return "test-key", nil
	}
	return "", os.ErrNotExist
}

func TestSignaturesRuleWithVerifier(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/keys.txt", []byte("sha256:aaaa\n"), 0o644)
	os.WriteFile(dir+"/policy.yaml", []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: signed\n      signatures: {keys: [keys.txt]}\n"), 0o644)
	policy.RegisterSignatureVerifier(listVerifier{})
	defer policy.RegisterSignatureVerifier(nil)
	p, err := policy.Load(dir + "/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	facts := staticFacts{"reg.example/a:1": {Digest: "sha256:aaaa"}, "reg.example/b:1": {Digest: "sha256:bbbb"}}
	for ref, want := range map[string]bool{"reg.example/a:1": false, "reg.example/b:1": true} {
		w := &workload.Workload{Kind: "Image", Name: ref, Containers: []workload.Container{{Name: ref, Image: ref}}}
		res := p.Evaluate(context.Background(), w, policy.Options{Facts: facts})
		if res.Denied() != want {
			t.Errorf("%s: denied %v, want %v (%v)", ref, res.Denied(), want, res.Violations)
		}
	}
	os.Remove(dir + "/keys.txt")
	if _, err := policy.Load(dir + "/policy.yaml"); err == nil || !strings.Contains(err.Error(), "keys.txt") {
		t.Errorf("missing key file: %v", err)
	}
}

// staticFacts serves facts from a map (facts themselves are tested with a
// real registry in imagefacts).
type staticFacts map[string]*policy.ImageFacts

func (s staticFacts) ImageFacts(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	if f, ok := s[ref]; ok {
		c := *f
		c.Reference = ref
		return &c, nil
	}
	return nil, os.ErrNotExist
}

func (s staticFacts) RepositoryLayers(ctx context.Context, repo string) ([][]string, error) {
	var out [][]string
	for ref, f := range s {
		if strings.HasPrefix(ref, repo+":") {
			out = append(out, f.Layers)
		}
	}
	return out, nil
}

const privilegedPod = `
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: prod-web, labels: {team: web}}
spec:
  hostPID: true
  volumes:
    - name: sock
      hostPath: {path: /var/run/docker.sock}
    - name: logs
      hostPath: {path: /var/log/app}
  initContainers:
    - name: init
      image: registry.example.com/app/init:1
      securityContext: {runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      resources: {limits: {memory: 64Mi, cpu: 100m}}
  containers:
    - name: app
      image: evil.example/app:1
      volumeMounts: [{name: sock, mountPath: /var/run/docker.sock}]
      securityContext:
        privileged: true
        runAsUser: 0
        capabilities: {add: [SYS_ADMIN, NET_BIND_SERVICE]}
        seccompProfile: {type: Unconfined}
      resources: {limits: {memory: 4Gi}}
`

func TestEvaluatePod(t *testing.T) {
	p, err := policy.Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := kube(t, privilegedPod)
	res := p.Evaluate(context.Background(), w, policy.Options{})
	got := map[string]policy.Violation{}
	for _, v := range res.Violations {
		got[v.Check+" "+v.Field] = v
	}
	want := []string{
		"images.allowedRegistries spec.containers[0].image",
		"images.requireDigest spec.initContainers[0].image",
		"images.requireDigest spec.containers[0].image",
		"runtime.hostNamespaces spec.hostPID",
		"runtime.hostPaths spec.volumes[0].hostPath.path",
		"runtime.runAsNonRoot spec.containers[0].securityContext.runAsUser",
		"runtime.privileged spec.containers[0].securityContext.privileged",
		"runtime.readOnlyRootFilesystem spec.containers[0].securityContext.readOnlyRootFilesystem",
		"runtime.seccomp spec.containers[0].securityContext.seccompProfile.type",
		"runtime.limits.memory spec.containers[0].resources.limits.memory",
		"runtime.limits.cpu spec.containers[0].resources.limits.cpu",
		"runtime.capabilities spec.containers[0].securityContext.capabilities.add",
		"runtime.capabilities spec.containers[0].securityContext.capabilities.drop",
	}
	for _, k := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("missing violation %s", k)
			continue
		}
		if v.Message == "" || v.Fix == "" || v.Object != "Pod prod-web/bad" {
			t.Errorf("%s: incomplete %+v", k, v)
		}
		delete(got, k)
	}
	// pids does not apply to Kubernetes; /var/log/app is allowed; the
	// init container complies with the runtime rule; the team label is set.
	// The vulnerability and base-image rules fail open without facts.
	for k, v := range got {
		t.Errorf("unexpected violation %s: %s", k, v)
	}
	if !res.Denied() {
		t.Error("not denied")
	}
	if v := got["images.requireDigest spec.containers[0].image"]; v.Action != "" && v.Action != policy.Warn {
		t.Error("pinned-in-prod is a warn rule")
	}
	notes := strings.Join(res.Notes, "\n")
	if !strings.Contains(notes, "rule no-critical-vulnerabilities skipped") || !strings.Contains(notes, "fails open") {
		t.Errorf("notes: %s", notes)
	}
	var capMsg string
	for _, v := range res.Violations {
		if v.Check == "runtime.capabilities" && strings.Contains(v.Message, "adds") {
			capMsg += v.Message
		}
	}
	if !strings.Contains(capMsg, "SYS_ADMIN") || strings.Contains(capMsg, "NET_BIND_SERVICE") {
		t.Errorf("capability messages: %s", capMsg)
	}
}

func TestScopesAndExemptions(t *testing.T) {
	p := mustLoad(t, `apiVersion: moat.dev/v1
kind: Policy
spec:
  rules:
    - name: no-privileged
      match: {namespaces: ["prod-*"], labels: {tier: web}}
      exemptions:
        - {reason: debugging, expires: 2099-01-01, objects: ["Pod prod-a/debug-*"]}
        - {reason: old, expires: 2000-01-01, namespaces: [prod-old]}
      runtime: {allowPrivileged: false}
`)
	pod := func(ns, name, tier string) *workload.Workload {
		return kube(t, `apiVersion: v1
kind: Pod
metadata: {name: `+name+`, namespace: `+ns+`, labels: {tier: `+tier+`}}
spec: {containers: [{name: c, image: r.example/x:1, securityContext: {privileged: true}}]}
`)
	}
	cases := []struct {
		w            *workload.Workload
		denied, exem bool
		note         bool
	}{
		{pod("prod-a", "web", "web"), true, false, false},
		{pod("dev", "web", "web"), false, false, false},
		{pod("prod-a", "web", "db"), false, false, false},
		{pod("prod-a", "debug-1", "web"), false, true, false},
		{pod("prod-old", "web", "web"), true, false, true},
	}
	for i, c := range cases {
		res := p.Evaluate(context.Background(), c.w, policy.Options{})
		if res.Denied() != c.denied || (len(res.Exempted) > 0) != c.exem || (len(res.Notes) > 0) != c.note {
			t.Errorf("case %d (%s): denied %v exempted %v notes %v", i, c.w.ObjectName(), res.Denied(), res.Exempted, res.Notes)
		}
	}
}

func TestImageFactRules(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	facts := staticFacts{
		"reg.example/base/debian:12": {Layers: []string{"sha256:b1", "sha256:b2"}},
		"reg.example/app/good:1":     {Digest: "sha256:g", Layers: []string{"sha256:b1", "sha256:b2", "sha256:g3"}, User: "1000", Labels: map[string]string{"org.opencontainers.image.source": "x"}, Created: now.Add(-24 * time.Hour)},
		"reg.example/app/bad:1":      {Digest: "sha256:b", Layers: []string{"sha256:other", "sha256:g3"}, User: "root", Created: now.Add(-400 * 24 * time.Hour)},
	}
	p := mustLoad(t, `apiVersion: moat.dev/v1
kind: Policy
spec:
  rules:
    - name: base
      images: {baseImages: [reg.example/base/debian], maxAge: 30d, requiredLabels: [org.opencontainers.image.source]}
    - name: nonroot
      runtime: {runAsNonRoot: true}
    - name: fresh
      cel:
        expression: "image.ageDays < 60 && image.user != 'root'"
        message: image too old or root
`)
	for ref, want := range map[string][]string{
		"reg.example/app/good:1": nil,
		"reg.example/app/bad:1":  {"images.baseImages", "images.maxAge", "images.requiredLabels", "runtime.runAsNonRoot", "cel"},
		"reg.example/app/gone:1": {"images.facts", "runtime.runAsNonRoot", "cel"},
	} {
		w := kube(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: "+ref+"}]}\n")
		for round := 0; round < 2; round++ { // the second round hits the decision cache
			res := p.Evaluate(context.Background(), w, policy.Options{Facts: facts, Now: now})
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Check)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s round %d: got %v, want %v\n%v", ref, round, got, want, res.Violations)
			}
		}
	}
}

// Two references to one digest (a mirror, or a tag and its digest) each
// get a message naming the reference the workload wrote, also when the
// verdict comes from the decision cache.
func TestDecisionCacheNamesEachReference(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := &policy.ImageFacts{Digest: "sha256:same", Layers: []string{"sha256:l"}, Created: now.Add(-400 * 24 * time.Hour)}
	facts := staticFacts{"reg.example/app/a:1": old, "mirror.example/app/a:1": old}
	p := mustLoad(t, `apiVersion: moat.dev/v1
kind: Policy
spec:
  rules:
    - name: fresh
      images: {maxAge: 30d}
`)
	for round := 0; round < 2; round++ {
		for _, ref := range []string{"reg.example/app/a:1", "mirror.example/app/a:1"} {
			w := kube(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: "+ref+"}]}\n")
			res := p.Evaluate(context.Background(), w, policy.Options{Facts: facts, Now: now})
			if len(res.Violations) != 1 || !strings.Contains(res.Violations[0].Message, "image "+ref+" ") {
				t.Fatalf("round %d %s: %+v", round, ref, res.Violations)
			}
		}
	}
}

func TestCELCostLimit(t *testing.T) {
	p := mustLoad(t, `apiVersion: moat.dev/v1
kind: Policy
spec:
  rules:
    - name: heavy
      cel:
        expression: "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))"
        message: heavy rule
`)
	w := kube(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: r.example/x:1}]}\n")
	res := p.Evaluate(context.Background(), w, policy.Options{})
	if !res.Denied() || !strings.Contains(res.Violations[0].Message, "cost limit") {
		t.Fatalf("want a cost-limit violation, got %+v", res.Violations)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("testdata/example.yaml")
	f.Add(b)
	f.Add([]byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: a\n      cel: {expression: \"container.privileged\", message: m}\n"))
	f.Add([]byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - {name: a, images: {allowedRegistries: ['**']}}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Parse("fuzz.yaml", data)
		if err == nil && (p == nil || len(p.Rules) == 0) {
			t.Fatal("loaded a policy without rules")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

// TestDocsExample keeps the example in docs/policy.md loadable.
func TestDocsExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```yaml\n")
	j := strings.Index(s[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatal("no yaml block")
	}
	if _, err := policy.Parse("docs/policy.md", []byte(s[i+8:i+8+j])); err != nil {
		t.Fatal(err)
	}
}

func TestComposeBuildOnlyService(t *testing.T) {
	p := mustLoad(t, "apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: reg\n      images: {allowedRegistries: [r.example]}\n")
	w := &workload.Workload{Kind: "ComposeService", Name: "app", Project: "p", Runtime: true, Containers: []workload.Container{{Name: "app", Type: "service"}}}
	res := p.Evaluate(context.Background(), w, policy.Options{})
	if len(res.Violations) != 0 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "names no image") {
		t.Fatalf("%+v", res)
	}
}
