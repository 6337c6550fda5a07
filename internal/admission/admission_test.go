package admission_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	admissionv1 "k8s.io/api/admission/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/moat-dev/moat/internal/admission"
	"github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/workload"
)

const testPolicy = `apiVersion: moat.dev/v1
kind: Policy
metadata: {name: e2e}
spec:
  rules:
    - name: approved-registries
      images: {allowedRegistries: [registry.example.com, "127.0.0.1:*"]}
    - name: no-privileged
      runtime: {allowPrivileged: false, allowHostNamespaces: false}
    - name: limits
      action: warn
      runtime: {limits: {memory: {required: true}}}
    - name: team
      action: audit
      cel: {expression: "'team' in workload.labels", message: needs a team label}
`

func newServer(t testing.TB, src string) *admission.Server {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := &admission.Server{ExcludeNamespaces: []string{"kube-*", "excluded"}, Facts: &imagefacts.Provider{}}
	s.SetPolicy(p)
	return s
}

func review(uid, op, ns string, obj string) []byte {
	// the request's kind is the object's, as the API server sends it
	var tm struct{ APIVersion, Kind string }
	json.Unmarshal([]byte(obj), &tm)
	group, version, ok := strings.Cut(tm.APIVersion, "/")
	if !ok {
		group, version = "", tm.APIVersion
	}
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":%q,"kind":{"group":%q,"version":%q,"kind":%q},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":%q,"operation":%q,"userInfo":{"username":"u"},"object":%s}}`, uid, group, version, tm.Kind, ns, op, obj))
}

func post(t testing.TB, h http.Handler, path string, body []byte) (int, *admissionv1.AdmissionReview, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", path, bytes.NewReader(body)))
	if rec.Code != 200 {
		return rec.Code, nil, rec.Body.String()
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response: %v: %s", err, rec.Body.String())
	}
	return rec.Code, &out, rec.Body.String()
}

const privPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"registry.example.com/a:1","securityContext":{"privileged":true}}]}}`
const okPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"ok","labels":{"team":"x"}},"spec":{"containers":[{"name":"c","image":"registry.example.com/a:1","resources":{"limits":{"memory":"64Mi"}}}]}}`
const warnPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"w"},"spec":{"containers":[{"name":"c","image":"registry.example.com/a:1"}]}}`

func TestValidate(t *testing.T) {
	h := newServer(t, testPolicy).Handler()
	_, rev, _ := post(t, h, "/validate", review("u1", "CREATE", "apps", privPod))
	r := rev.Response
	if r.UID != "u1" || r.Allowed || r.Result == nil || r.Result.Code != 403 || !strings.Contains(r.Result.Message, "moat policy e2e denies Pod apps/p: no-privileged: container c: runs privileged") {
		t.Fatalf("privileged pod: %+v %+v", r, r.Result)
	}
	_, rev, _ = post(t, h, "/validate", review("u2", "CREATE", "apps", okPod))
	if !rev.Response.Allowed || len(rev.Response.Warnings) != 0 || rev.Response.AuditAnnotations != nil {
		t.Fatalf("compliant pod: %+v", rev.Response)
	}
	_, rev, _ = post(t, h, "/validate", review("u3", "CREATE", "apps", warnPod))
	if !rev.Response.Allowed || len(rev.Response.Warnings) != 1 || !strings.Contains(rev.Response.Warnings[0], "moat: limits: container c: has no memory limit") || !strings.Contains(rev.Response.AuditAnnotations["moat.dev/audit"], "needs a team label") {
		t.Fatalf("warn pod: %+v", rev.Response)
	}
	_, rev, _ = post(t, h, "/validate", review("u4", "CREATE", "excluded", privPod))
	if !rev.Response.Allowed || len(rev.Response.Warnings) != 0 {
		t.Fatalf("excluded namespace: %+v", rev.Response)
	}
	_, rev, _ = post(t, h, "/validate", review("u5", "CREATE", "apps", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`))
	if !rev.Response.Allowed || len(rev.Response.Warnings) != 1 || !strings.Contains(rev.Response.Warnings[0], "ConfigMap is not a workload") {
		t.Fatalf("unknown kind: %+v", rev.Response)
	}
	_, rev, _ = post(t, h, "/validate", review("u6", "DELETE", "apps", `null`))
	if !rev.Response.Allowed {
		t.Fatalf("delete: %+v", rev.Response)
	}
	dep := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{},"template":{"spec":{"containers":[{"name":"c","image":"evil.example/x:1"}]}}}}`
	_, rev, _ = post(t, h, "/validate", review("u7", "CREATE", "apps", dep))
	if rev.Response.Allowed || !strings.Contains(rev.Response.Result.Message, "registry evil.example, which is not approved") {
		t.Fatalf("deployment: %+v", rev.Response.Result)
	}
}

func TestMalformedReviews(t *testing.T) {
	h := newServer(t, testPolicy).Handler()
	for body, want := range map[string]string{
		"":   "empty body",
		"{":  "not an AdmissionReview JSON document",
		"[]": "not an AdmissionReview JSON document",
		`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`: `got apiVersion "admission.k8s.io/v1beta1"`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`:                            "has no request",
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`:               "has no uid",
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}} {}`:   "trailing data",
	} {
		code, _, msg := post(t, h, "/validate", []byte(body))
		if code != 400 || !strings.HasPrefix(msg, "malformed AdmissionReview: ") || !strings.Contains(msg, want) {
			t.Errorf("%q: %d %q, want 400 with %q", body, code, msg, want)
		}
	}
	// an object that is a Pod but not a valid one is denied with a reason
	_, rev, _ := post(t, h, "/validate", review("u", "CREATE", "a", `{"apiVersion":"v1","kind":"Pod","spec":{"containers":"nope"}}`))
	if rev.Response.Allowed || rev.Response.Result.Code != 400 || !strings.Contains(rev.Response.Result.Message, "cannot read the object") {
		t.Errorf("bad pod: %+v", rev.Response)
	}
}

// TestMutatePinsDigests pushes an image to a real registry (go-containerregistry's
// registry on 127.0.0.1) and checks the JSONPatch pins its tag to the digest.
func TestMutatePinsDigests(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img := imagetest.Image(t, imagetest.Step{Layer: imagetest.Layer(t, imagetest.Text("etc/hello", "hi"))})
	ref := host + "/team/app:1"
	nr, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nr, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	s := newServer(t, testPolicy)
	s.Resolver = &imagefacts.Provider{}
	obj := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"initContainers":[{"name":"i","image":"` + ref + `"}],"containers":[{"name":"c","image":"` + ref + `@` + d.String() + `"},{"name":"m","image":"` + host + `/team/missing:1"}]}}}}`
	_, rev, _ := post(t, s.Handler(), "/mutate", review("m1", "CREATE", "apps", obj))
	r := rev.Response
	want := `[{"op":"replace","path":"/spec/template/spec/initContainers/0/image","value":"` + ref + `@` + d.String() + `"}]`
	if !r.Allowed || string(r.Patch) != want || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch %s, want %s", r.Patch, want)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "could not pin "+host+"/team/missing:1") {
		t.Fatalf("warnings %v", r.Warnings)
	}
}

func TestReloadKeepsPreviousPolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	os.WriteFile(path, []byte(testPolicy), 0o644)
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &admission.Server{}
	s.SetPolicy(p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loaded, failed := make(chan *policy.Policy, 4), make(chan error, 4)
	go admission.WatchPolicy(ctx, s, path, 20*time.Millisecond, func(p *policy.Policy) { loaded <- p }, func(err error) { failed <- err })
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(path, []byte(testPolicy+"    - name: broken\n      cel: {expression: 'nope(', message: m}\n"), 0o644)
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "policy.yaml:") || !strings.Contains(err.Error(), "does not compile") {
			t.Fatalf("error: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload attempt")
	}
	if s.Policy() != p {
		t.Fatal("a broken policy replaced the one in force")
	}
	os.WriteFile(path, []byte(strings.Replace(testPolicy, "name: e2e", "name: second", 1)), 0o644)
	select {
	case np := <-loaded:
		if np.Name != "second" || s.Policy() != np {
			t.Fatalf("reloaded %q", np.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload")
	}
}

func FuzzDecodeReview(f *testing.F) {
	f.Add(review("u", "CREATE", "ns", privPod))
	f.Add(review("u", "UPDATE", "ns", `{"apiVersion":"batch/v1","kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"kind":"Pod","apiVersion":"v1","spec":{"ephemeralContainers":[{"name":"e","image":"x"}]}}}}`))
	f.Add([]byte("{"))
	s := newServer(f, testPolicy)
	s.Facts = nil
	f.Fuzz(func(t *testing.T, body []byte) {
		rev, err := admission.DecodeReview(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		rev.Request.Operation = admissionv1.Create
		resp := s.Validate(context.Background(), rev.Request)
		if resp == nil || (!resp.Allowed && (resp.Result == nil || resp.Result.Message == "")) {
			t.Fatalf("denied without a message: %+v", resp)
		}
	})
}

var _ = tls.VersionTLS12

// TestDeployManifests checks the shipped webhook Deployment against the
// shipped policy: moat's own webhook must pass the policy it enforces.
func TestDeployManifests(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/policy-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := sigsyaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("policy-configmap.yaml", []byte(cm.Data["policy.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../deploy/kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := workload.DecodeKubernetes("deployment.yaml", f)
	if err != nil || len(d.Workloads) != 1 {
		t.Fatalf("%v %+v", err, d)
	}
	res := p.Evaluate(context.Background(), d.Workloads[0], policy.Options{})
	if len(res.Violations) != 0 {
		t.Fatalf("moat's own Deployment breaks the shipped policy: %v", res.Violations)
	}
}

// TestSlowRegistry: a registry that answers after the lookup deadline makes
// fail-closed rules deny and fail-open rules warn, and the review still
// gets an answer.
func TestSlowRegistry(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "too late", http.StatusServiceUnavailable)
	}))
	defer slow.Close()
	defer close(release)
	host := strings.TrimPrefix(slow.URL, "http://")
	s := newServer(t, `apiVersion: moat.dev/v1
kind: Policy
metadata: {name: slow}
spec:
  rules:
    - name: labels-closed
      images: {requiredLabels: [a]}
    - name: age-open
      onError: allow
      images: {maxAge: 30d}
`)
	s.FactsTimeout = 300 * time.Millisecond
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"` + host + `/team/app:1"}]}}`
	done := make(chan *admissionv1.AdmissionReview, 1)
	go func() {
		_, rev, _ := post(t, s.Handler(), "/validate", review("s1", "CREATE", "apps", pod))
		done <- rev
	}()
	var rev *admissionv1.AdmissionReview
	select {
	case rev = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer while the registry hangs")
	}
	r := rev.Response
	if r.Allowed || !strings.Contains(r.Result.Message, "labels-closed: container c: cannot check image") || !strings.Contains(r.Result.Message, "timed out") || !strings.Contains(r.Result.Message, "fails closed") {
		t.Fatalf("fail-closed rule: %+v", r.Result)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "rule age-open skipped") || !strings.Contains(r.Warnings[0], "fails open") {
		t.Fatalf("fail-open rule: %v", r.Warnings)
	}
}
