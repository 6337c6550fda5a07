package loadgen_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/admission/loadgen"
)

func TestRunCountsEveryScheduledRequest(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	cfg := loadgen.Config{Rate: 1000, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond, Senders: 4}
	var failNext atomic.Int64
	failNext.Store(3)
	res, err := loadgen.Run(context.Background(), cfg, func(ctx context.Context, sender int) error {
		if sender < 0 || sender >= 4 {
			t.Errorf("sender %d out of range", sender)
		}
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if failNext.Add(-1) >= 0 {
			return errors.New("made to fail")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 250 ms at 1000/s: 250 requests, 200 of them measured
	if got := hits.Load(); got != 250 {
		t.Errorf("server saw %d requests, want 250", got)
	}
	if res.Scheduled != 200 || res.Completed+res.Errors != 200 {
		t.Errorf("scheduled %d, completed %d, errors %d; want 200 in all", res.Scheduled, res.Completed, res.Errors)
	}
	if len(res.Latencies) != res.Completed {
		t.Errorf("%d latencies for %d completed", len(res.Latencies), res.Completed)
	}
	for i, l := range res.Latencies {
		if l < 0 || (i > 0 && l < res.Latencies[i-1]) {
			t.Fatalf("latencies not sorted and non-negative at %d: %v", i, l)
		}
	}
	if res.Quantile(0.5) > res.Quantile(0.99) || res.Quantile(0.99) > res.Quantile(1) {
		t.Errorf("quantiles out of order: %s", res)
	}
	if len(res.Requests) != 200 {
		t.Errorf("%d requests recorded, want 200", len(res.Requests))
	}
	if series := res.Series(100*time.Millisecond, 0.99); len(series) != 2 {
		t.Errorf("series of 200 ms in 100 ms steps has %d steps, want 2: %v", len(series), series)
	}
	if res.Window <= 0 || res.Achieved() <= 0 {
		t.Errorf("no window or rate: %s", res)
	}
	t.Log(res)
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, cfg := range []loadgen.Config{{}, {Rate: 10}, {Duration: time.Second}, {Rate: 10, Duration: time.Second, Warmup: -1}} {
		if _, err := loadgen.Run(context.Background(), cfg, func(context.Context, int) error { return nil }); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := loadgen.Run(ctx, loadgen.Config{Rate: 100, Duration: time.Hour}, func(context.Context, int) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
}
