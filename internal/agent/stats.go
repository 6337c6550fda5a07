package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/moat-dev/moat/internal/fleet"
)

// statsConcurrency bounds the stats requests in flight. The engine answers
// a one-shot request at its collector's next tick (up to a second), so
// requests mostly wait: a few in flight keep a round of 100 containers
// within seconds at no cost to the agent.
const statsConcurrency = 16

type cpuPrev struct {
	total, system uint64
}

// sampleLoop samples every running container each StatsInterval with
// one-shot stats requests (no streaming connection held per container),
// at most statsConcurrency at once.
func (a *Agent) sampleLoop(ctx context.Context) {
	// The first round comes early: it only primes the CPU counters, so
	// the first real sample arrives one interval after start.
	first := time.NewTimer(min(2*time.Second, a.cfg.StatsInterval))
	defer first.Stop()
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-first.C:
		case <-t.C:
		}
		a.mu.Lock()
		var ids []string
		limits := map[string]fleet.Runtime{}
		for id, c := range a.containers {
			if c.State == "running" {
				ids = append(ids, id)
				limits[id] = c.Runtime
			}
		}
		host := a.host
		a.mu.Unlock()
		live := map[string]bool{}
		roundStart := time.Now()
		// Fetch with several requests in flight, then evaluate in order.
		got := make([]*container.StatsResponse, len(ids))
		jobs := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < min(statsConcurrency, len(ids)); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					st, err := a.oneShot(ctx, ids[i])
					if err != nil {
						if ctx.Err() == nil && !client.IsErrNotFound(err) {
							a.log.Debug("stats", "container", ids[i][:min(12, len(ids[i]))], "err", err)
						}
						continue
					}
					got[i] = st
				}
			}()
		}
		for i := range ids {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		for i, id := range ids {
			live[id] = true
			if got[i] == nil {
				continue
			}
			rt := limits[id]
			s, ok := a.sample(id, got[i], &rt, &host, now)
			if !ok {
				continue
			}
			a.mu.Lock()
			if _, still := a.containers[id]; still {
				a.samples[id] = s
				a.lastSamples[id] = s
			}
			a.mu.Unlock()
		}
		for id := range a.prev {
			if !live[id] {
				delete(a.prev, id)
				delete(a.overSince, id)
			}
		}
		a.log.Debug("sampled containers", "containers", len(ids), "took", time.Since(roundStart).String())
		a.mu.Lock()
		for id := range a.lastSamples {
			if !live[id] {
				delete(a.lastSamples, id)
			}
		}
		a.mu.Unlock()
		poke(a.wake)
	}
}

func (a *Agent) oneShot(ctx context.Context, id string) (*container.StatsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := a.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("decoding stats: %w", err)
	}
	return &st, nil
}

// sample turns engine stats into a Sample and evaluates the noisy
// neighbour rule. The first sample of a container only primes the CPU
// counters (one-shot stats carry no previous reading).
func (a *Agent) sample(id string, st *container.StatsResponse, rt *fleet.Runtime, host *fleet.Host, now time.Time) (fleet.Sample, bool) {
	cur := cpuPrev{total: st.CPUStats.CPUUsage.TotalUsage, system: st.CPUStats.SystemUsage}
	prev, had := a.prev[id]
	a.prev[id] = cur
	if !had || cur.system <= prev.system || cur.total < prev.total {
		return fleet.Sample{}, false
	}
	s := fleet.Sample{ContainerID: id, Time: now, NoLimits: rt.NoLimits()}
	cpus := float64(st.CPUStats.OnlineCPUs)
	if cpus == 0 {
		cpus = float64(max(host.CPUs, 1))
	}
	s.CPUHostShare = float64(cur.total-prev.total) / float64(cur.system-prev.system)
	s.CPUPercent = s.CPUHostShare * cpus * 100
	if l := rt.CPULimit(); l > 0 {
		s.CPULimitShare = s.CPUPercent / 100 / l
	}
	mem := st.MemoryStats.Usage
	for _, k := range []string{"inactive_file", "total_inactive_file"} {
		if v, ok := st.MemoryStats.Stats[k]; ok && v <= mem {
			mem -= v
			break
		}
	}
	s.MemoryBytes = int64(mem)
	if rt.MemoryLimit > 0 {
		s.MemoryLimit = rt.MemoryLimit
		s.MemoryLimitShare = float64(mem) / float64(rt.MemoryLimit)
	}
	if host.MemoryBytes > 0 {
		s.MemoryHostShare = float64(mem) / float64(host.MemoryBytes)
	}
	for _, n := range st.Networks {
		s.NetRxBytes += int64(n.RxBytes)
		s.NetTxBytes += int64(n.TxBytes)
	}
	for _, e := range st.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			s.BlockReadBytes += int64(e.Value)
		case "write":
			s.BlockWriteBytes += int64(e.Value)
		}
	}
	s.PIDs = int64(st.PidsStats.Current)
	s.PIDsLimit = rt.PIDsLimit

	var reasons []string
	n := a.cfg.Noisy
	if s.CPUHostShare >= n.HostShare {
		reasons = append(reasons, fmt.Sprintf("CPU at %.0f%% of the host", s.CPUHostShare*100))
	}
	if s.MemoryHostShare >= n.HostShare {
		reasons = append(reasons, fmt.Sprintf("memory at %.0f%% of the host", s.MemoryHostShare*100))
	}
	if s.CPULimitShare >= n.LimitShare {
		reasons = append(reasons, fmt.Sprintf("CPU at %.0f%% of its limit (%.2f CPUs)", s.CPULimitShare*100, rt.CPULimit()))
	}
	if s.MemoryLimitShare >= n.LimitShare {
		reasons = append(reasons, fmt.Sprintf("memory at %.0f%% of its limit", s.MemoryLimitShare*100))
	}
	if s.PIDsLimit > 0 && float64(s.PIDs) >= n.LimitShare*float64(s.PIDsLimit) {
		reasons = append(reasons, fmt.Sprintf("%d of %d processes", s.PIDs, s.PIDsLimit))
	}
	if len(reasons) == 0 {
		delete(a.overSince, id)
		return s, true
	}
	since, ok := a.overSince[id]
	if !ok {
		since = now
		a.overSince[id] = now
	}
	if d := now.Sub(since); d >= n.Window {
		s.Noisy = true
		s.NoisyReason = strings.Join(reasons, ", ") + " for " + d.Round(time.Second).String()
	}
	return s, true
}
