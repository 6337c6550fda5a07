// Package loadgen is an open-loop load generator for benchmarks: requests
// are scheduled at a fixed arrival rate whatever the server does, and each
// request's latency is measured from its scheduled send time, so time spent
// waiting for a free sender (when the server falls behind) is counted
// rather than hidden ("coordinated omission", as wrk2 measures it).
//
// The pacer computes absolute send times (start + i/rate) and, after each
// wake-up, hands out every request that is due, so a late timer never
// lowers the rate; it only shows up as latency. Requests go through a
// queue to a fixed pool of senders; the queue holds every request of the
// run (up to 65,536), so the pacer does not wait for senders.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config describes one run.
type Config struct {
	// Rate is the arrival rate in requests per second.
	Rate float64
	// Warmup is sent at Rate before the measured window and not recorded.
	Warmup time.Duration
	// Duration is the measured window.
	Duration time.Duration
	// Senders is the number of concurrent senders (default 64); give each
	// its own connection in Do to have that many keep-alive connections.
	Senders int
}

// Do sends one request from sender number sender (0 ≤ sender < Senders)
// and returns when the response has been read.
type Do func(ctx context.Context, sender int) error

// Result holds a run's figures (measured window only).
type Result struct {
	Rate      float64       // the asked-for rate
	Scheduled int           // requests scheduled in the measured window
	Completed int           // of those, answered without error
	Errors    int           // of those, failed
	FirstErr  error         // the first failure, if any
	Window    time.Duration // from the first scheduled send to the last response
	Latencies []time.Duration
	// Start is the scheduled send time of the first measured request;
	// Requests are the measured requests in the order they were answered.
	Start    time.Time
	Requests []Request
	// Waits are the times from each answered request's scheduled send to
	// a sender taking it (pacer lateness plus waiting for a free sender),
	// sorted; Latencies include them.
	Waits []time.Duration
	// MaxQueue is the most requests that were due but not yet taken by a
	// sender (0 means a sender was always free).
	MaxQueue int
}

// Achieved is the rate of answered requests over the window.
func (r *Result) Achieved() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Window.Seconds()
}

// Quantile returns the latency at quantile q (0..1) of answered requests.
func (r *Result) Quantile(q float64) time.Duration { return quantile(r.Latencies, q) }

// WaitQuantile returns the wait before sending at quantile q (0..1).
func (r *Result) WaitQuantile(q float64) time.Duration { return quantile(r.Waits, q) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// String formats the result on one line.
func (r *Result) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
	var b strings.Builder
	fmt.Fprintf(&b, "rate %.0f/s: achieved %.0f/s, %d scheduled, %d errors; latency p50 %s p90 %s p99 %s p99.9 %s max %s; max queue %d",
		r.Rate, r.Achieved(), r.Scheduled, r.Errors, ms(r.Quantile(0.5)), ms(r.Quantile(0.9)), ms(r.Quantile(0.99)), ms(r.Quantile(0.999)), ms(r.Quantile(1)), r.MaxQueue)
	fmt.Fprintf(&b, "; wait before send p50 %s p99 %s", ms(r.WaitQuantile(0.5)), ms(r.WaitQuantile(0.99)))
	if r.FirstErr != nil {
		fmt.Fprintf(&b, "; first error: %v", r.FirstErr)
	}
	return b.String()
}

// Request is one measured request.
type Request struct {
	Scheduled time.Time
	Latency   time.Duration // from Scheduled to the answer
	Err       error
}

// Series splits the measured window into steps of width d and returns, for
// each, the latency at quantile q of the requests scheduled in it (0 when
// none were answered), to see when in a run the slow answers happened.
func (r *Result) Series(d time.Duration, q float64) []time.Duration {
	if d <= 0 {
		return nil
	}
	var buckets [][]time.Duration
	for _, x := range r.Requests {
		if x.Err != nil {
			continue
		}
		i := int(x.Scheduled.Sub(r.Start) / d)
		for len(buckets) <= i {
			buckets = append(buckets, nil)
		}
		buckets[i] = append(buckets[i], x.Latency)
	}
	out := make([]time.Duration, len(buckets))
	for i, b := range buckets {
		slices.Sort(b)
		out[i] = quantile(b, q)
	}
	return out
}

type job struct {
	at       time.Time
	measured bool
}

type sample struct {
	at   time.Time
	lat  time.Duration
	wait time.Duration
	end  time.Time
	err  error
}

// Run sends requests at cfg.Rate for cfg.Warmup+cfg.Duration and waits for
// every answer. It returns an error only for a bad config or a cancelled ctx.
func Run(ctx context.Context, cfg Config, do Do) (*Result, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Warmup < 0 {
		return nil, errors.New("loadgen: give a positive Rate and Duration and a Warmup ≥ 0")
	}
	senders := cfg.Senders
	if senders <= 0 {
		senders = 64
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	if interval <= 0 {
		return nil, fmt.Errorf("loadgen: rate %v is too high", cfg.Rate)
	}
	total := int((cfg.Warmup + cfg.Duration) / interval)
	warm := int(cfg.Warmup / interval)
	// a full queue only delays the hand-out; each job keeps its scheduled time
	queue := make(chan job, min(total, 1<<16))
	samples := make([][]sample, senders)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]sample, 0, (total-warm)/senders*2+16)
			for j := range queue {
				t0 := time.Now()
				err := do(ctx, s)
				end := time.Now()
				if j.measured {
					local = append(local, sample{at: j.at, lat: end.Sub(j.at), wait: t0.Sub(j.at), end: end, err: err})
				}
			}
			samples[s] = local
		}()
	}
	start := time.Now().Add(10 * time.Millisecond)
	measureStart := start.Add(time.Duration(warm) * interval)
	maxQueue := 0
	var cancelled error
	for i := 0; i < total; {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				cancelled = ctx.Err()
			case <-t.C:
			}
			if cancelled != nil {
				break
			}
		}
		// hand out everything that is due now
		now := time.Now()
		for ; i < total; i++ {
			at := start.Add(time.Duration(i) * interval)
			if at.After(now) {
				break
			}
			queue <- job{at: at, measured: i >= warm}
		}
		if n := len(queue); n > maxQueue && i > warm {
			maxQueue = n
		}
	}
	close(queue)
	wg.Wait()
	if cancelled != nil {
		return nil, cancelled
	}
	res := &Result{Rate: cfg.Rate, Scheduled: total - warm, MaxQueue: maxQueue, Start: measureStart}
	var last time.Time
	for _, local := range samples {
		for _, s := range local {
			res.Requests = append(res.Requests, Request{Scheduled: s.at, Latency: s.lat, Err: s.err})
			if s.err != nil {
				res.Errors++
				if res.FirstErr == nil {
					res.FirstErr = s.err
				}
				continue
			}
			res.Completed++
			res.Latencies = append(res.Latencies, s.lat)
			res.Waits = append(res.Waits, s.wait)
			if s.end.After(last) {
				last = s.end
			}
		}
	}
	res.Window = last.Sub(measureStart)
	slices.Sort(res.Latencies)
	slices.Sort(res.Waits)
	return res, nil
}
