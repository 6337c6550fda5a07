//go:build unix

package vulndb

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/vulndb/osvgen"
)

func benchRecords() int {
	if n, err := strconv.Atoi(os.Getenv("MOAT_BENCH_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 500000
}

// BenchmarkImport imports generated OSV zips shaped like the public data
// (MOAT_BENCH_RECORDS records, default 500,000) and reports records/s and
// the peak Go heap in use (sampled).
func BenchmarkImport(b *testing.B) {
	n := benchRecords()
	data, err := osvgen.Cached(n)
	if err != nil {
		b.Fatal(err)
	}
	var zips []string
	for _, s := range osvgen.Mix {
		zips = append(zips, filepath.Join(data, s.Ecosystem, "all.zip"))
	}
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	b.ResetTimer()
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var records int
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		res, err := Import(context.Background(), dir, zips, ImportOptions{})
		if err != nil {
			b.Fatal(err)
		}
		records = 0
		for _, m := range res.Ecosystems {
			records += m.Records
		}
	}
	b.StopTimer()
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(records), "records")
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}
