package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/admission"
	"github.com/moat-dev/moat/internal/policy"
)

// memFacts holds image facts in memory, as the provider's digest cache does
// once an image has been read.
type memFacts map[string]*policy.ImageFacts

func (m memFacts) ImageFacts(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	if f, ok := m[ref]; ok {
		return f, nil
	}
	return nil, errors.New("unknown image")
}

func (m memFacts) RepositoryLayers(ctx context.Context, repo string) ([][]string, error) {
	return [][]string{{"sha256:base1", "sha256:base2"}}, nil
}

const benchPodJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod","labels":{"team":"web","app":"web"}},"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[
{"name":"web","image":"registry.example.com/app/web:1.0","securityContext":{"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},"resources":{"limits":{"memory":"256Mi","cpu":"500m"}}},
{"name":"sidecar","image":"registry.example.com/app/proxy:2.1","securityContext":{"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"],"add":["NET_BIND_SERVICE"]}},"resources":{"limits":{"memory":"128Mi","cpu":"200m"}}},
{"name":"metrics","image":"registry.example.com/app/metrics:0.9","securityContext":{"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},"resources":{"limits":{"memory":"64Mi","cpu":"100m"}}}]}}`

// BenchmarkWebhookHTTPS sends AdmissionReviews for a 3-container Pod to the
// webhook over HTTPS with keep-alive from 8 concurrent clients, against the
// 20-rule benchmark policy (5 CEL rules), image facts cached.
func BenchmarkWebhookHTTPS(b *testing.B) {
	p, err := policy.Load("../policy/testdata/bench-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := &admission.Server{Facts: benchFacts()}
	s.SetPolicy(p)
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.StartTLS()
	defer srv.Close()
	const clients = 8
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = clients
	body := review("bench", "CREATE", "prod", benchPodJSON)
	send := func() error {
		resp, err := client.Post(srv.URL+"/validate", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var rev struct {
			Response struct{ Allowed bool } `json:"response"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		if !rev.Response.Allowed {
			return errors.New("denied")
		}
		return nil
	}
	if err := send(); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	next := make(chan struct{}, b.N)
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var failed error
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/clients+1)
			for range next {
				t0 := time.Now()
				if err := send(); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	// CPU time per review of the whole process (server and the in-process
	// clients): with the machine to itself, 2 cores serve 2s/cpu reviews/s.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/review")
	if failed != nil {
		b.Fatal(failed)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reviews/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkServeValidate is the handler alone (no TLS, no network): decode
// the AdmissionReview, evaluate the 3-container Pod against the 20-rule
// benchmark policy with image facts cached, encode the answer.
func BenchmarkServeValidate(b *testing.B) {
	p, err := policy.Load("../policy/testdata/bench-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := &admission.Server{Facts: benchFacts()}
	s.SetPolicy(p)
	h := s.Handler()
	body := review("bench", "CREATE", "prod", benchPodJSON)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/validate", bytes.NewReader(body)))
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"allowed":true`)) {
			b.Fatalf("HTTP %d: %s", rec.Code, rec.Body.Bytes())
		}
	}
}
