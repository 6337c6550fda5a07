package scan_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/benchimage"
	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/scan"
)

// The benchmark image (internal/benchimage) is generated once per scale and
// cached in $MOAT_BENCH_DIR (default ~/.cache/moat-bench). MOAT_BENCH_SCALE
// picks the scale: the default 0.02 keeps `go test -bench . -benchtime 1x`
// quick; MOAT_BENCH_SCALE=1 is the full ~1 GB, ~60k-file image that
// docs/BENCHMARKS.md reports on (scripts/bench-scan.sh).

const defaultBenchScale = 0.02

func benchScale(tb testing.TB) float64 {
	s := os.Getenv("MOAT_BENCH_SCALE")
	if s == "" {
		return defaultBenchScale
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		tb.Fatalf("MOAT_BENCH_SCALE=%q: want a positive number", s)
	}
	return f
}

var (
	benchMu     sync.Mutex
	benchImages = map[float64]*benchimage.Image{}
)

func benchImage(tb testing.TB, scale float64) *benchimage.Image {
	benchMu.Lock()
	defer benchMu.Unlock()
	if im := benchImages[scale]; im != nil {
		return im
	}
	im, err := benchimage.Generate(context.Background(), benchimage.Options{Scale: scale})
	if err != nil {
		tb.Fatalf("generating the benchmark image: %v", err)
	}
	benchImages[scale] = im
	return im
}

// heapSampler records the peak of the live heap and of the memory the Go
// runtime holds from the OS while a benchmark runs.
type heapSampler struct {
	cpu0     time.Duration
	stop     chan struct{}
	done     chan struct{}
	peakHeap uint64
	peakSys  uint64
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	s := &heapSampler{stop: make(chan struct{}), done: make(chan struct{}), cpu0: cpuTime()}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	read := func() {
		metrics.Read(samples)
		heap := samples[0].Value.Uint64()
		sys := samples[1].Value.Uint64() - samples[2].Value.Uint64()
		s.peakHeap = max(s.peakHeap, heap)
		s.peakSys = max(s.peakSys, sys)
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				read()
			case <-s.stop:
				read()
				return
			}
		}
	}()
	return s
}

// cpuTime is the user+system CPU time of this process so far: unlike wall
// time it barely moves when other processes compete for the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds peak-heap-MB, peak-go-mem-MB and cpu-s/op (CPU seconds per
// operation, user+system, all threads).
func (s *heapSampler) report(b *testing.B) {
	cpu := cpuTime() - s.cpu0
	close(s.stop)
	<-s.done
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(s.peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(s.peakSys)/(1<<20), "peak-go-mem-MB")
}

// readAllLayers decompresses every layer and reads it through archive/tar
// once, with the scan's parallelism (one goroutine per layer, at most
// GOMAXPROCS at a time, largest layers first): the floor a scan can reach.
func readAllLayers(ctx context.Context, spec string) (int64, error) {
	im, err := image.Open(ctx, spec, image.Options{})
	if err != nil {
		return 0, err
	}
	defer im.Close()
	order := make([]int, len(im.Layers))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return im.Layers[order[a]].Size > im.Layers[order[b]].Size })
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	for _, i := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(l image.Layer) {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := readLayer(l)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}(im.Layers[i])
	}
	wg.Wait()
	return total, firstErr
}

func readLayer(l image.Layer) (int64, error) {
	rc, err := l.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	zr, err := image.Decompress(rc)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var n int64
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		m, err := io.Copy(io.Discard, tr)
		n += m
		if err != nil {
			return n, err
		}
	}
	_, err = io.Copy(io.Discard, zr)
	return n, err
}

func BenchmarkReadLayers(b *testing.B) {
	im := benchImage(b, benchScale(b))
	spec := "docker-archive:" + im.Archive
	b.SetBytes(im.Expected.TarBytes)
	s := startHeapSampler()
	b.ResetTimer()
	for range b.N {
		n, err := readAllLayers(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		if n != im.Expected.Bytes {
			b.Fatalf("read %d bytes of file content, the image holds %d", n, im.Expected.Bytes)
		}
	}
	b.StopTimer()
	s.report(b)
}

func BenchmarkScan(b *testing.B) {
	im := benchImage(b, benchScale(b))
	spec := "docker-archive:" + im.Archive
	b.SetBytes(im.Expected.TarBytes)
	s := startHeapSampler()
	b.ResetTimer()
	var pkgs int
	for range b.N {
		res, err := scan.Scan(context.Background(), spec, scan.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if got, want := countType(res.Packages, catalog.TypeDeb), len(im.Expected.Dpkg); got != want {
			b.Fatalf("scan found %d dpkg packages, the image holds %d", got, want)
		}
		pkgs = len(res.Packages)
	}
	b.StopTimer()
	s.report(b)
	b.ReportMetric(float64(pkgs), "packages")
}

// BenchmarkScanOverRead alternates a plain read of every layer and a full
// scan within each iteration, so both see the same machine load, and
// reports the scan/read ratio of wall and CPU time (issue 2's target: a
// scan costs at most 1.25x the read).
func BenchmarkScanOverRead(b *testing.B) {
	im := benchImage(b, benchScale(b))
	spec := "docker-archive:" + im.Archive
	b.SetBytes(im.Expected.TarBytes)
	s := startHeapSampler()
	var readWall, scanWall, readCPU, scanCPU time.Duration
	b.ResetTimer()
	for range b.N {
		t0, c0 := time.Now(), cpuTime()
		if _, err := readAllLayers(context.Background(), spec); err != nil {
			b.Fatal(err)
		}
		t1, c1 := time.Now(), cpuTime()
		res, err := scan.Scan(context.Background(), spec, scan.Options{})
		if err != nil {
			b.Fatal(err)
		}
		t2, c2 := time.Now(), cpuTime()
		if got, want := countType(res.Packages, catalog.TypeDeb), len(im.Expected.Dpkg); got != want {
			b.Fatalf("scan found %d dpkg packages, the image holds %d", got, want)
		}
		readWall += t1.Sub(t0)
		scanWall += t2.Sub(t1)
		readCPU += c1 - c0
		scanCPU += c2 - c1
	}
	b.StopTimer()
	s.report(b)
	n := float64(b.N)
	b.ReportMetric(readWall.Seconds()/n, "read-s/op")
	b.ReportMetric(scanWall.Seconds()/n, "scan-s/op")
	b.ReportMetric(scanWall.Seconds()/readWall.Seconds(), "scan/read-wall")
	b.ReportMetric(scanCPU.Seconds()/readCPU.Seconds(), "scan/read-cpu")
}

func countType(pkgs []catalog.Package, t catalog.Type) int {
	n := 0
	for _, p := range pkgs {
		if p.Type == t {
			n++
		}
	}
	return n
}

// TestBenchImageScan scans the small benchmark image and checks the result
// against what the generator put in it, for every ecosystem whose cataloger
// is registered (dpkg and gobinary always are).
func TestBenchImageScan(t *testing.T) {
	im := benchImage(t, defaultBenchScale)
	exp := im.Expected
	registered := map[string]bool{}
	for _, c := range scan.Catalogers() {
		registered[c.Name()] = true
	}
	for _, must := range []string{"dpkg", "gobinary"} {
		if !registered[must] {
			t.Fatalf("cataloger %q is not registered in scan.Catalogers()", must)
		}
	}
	res, err := scan.Scan(context.Background(), "docker-archive:"+im.Archive, scan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OS == nil || res.OS.ID != "debian" || res.OS.VersionID != "12" {
		t.Errorf("OS = %+v, want debian 12 (read through the /etc/os-release symlink)", res.OS)
	}
	if len(res.Layers) != exp.Layers {
		t.Errorf("%d layers, want %d", len(res.Layers), exp.Layers)
	}
	byType := map[catalog.Type][]catalog.Package{}
	for _, p := range res.Packages {
		byType[p.Type] = append(byType[p.Type], p)
	}

	// dpkg: exact list, with source package and introducing layer.
	type debKey struct {
		name, version, srcName, srcVersion string
		layer                              int
	}
	var wantDeb, gotDeb []debKey
	for _, d := range exp.Dpkg {
		wantDeb = append(wantDeb, debKey{d.Name, d.Version, d.SourceName, d.SourceVersion, d.Layer})
	}
	for _, p := range byType[catalog.TypeDeb] {
		gotDeb = append(gotDeb, debKey{p.Name, p.Version, p.SourceName, p.SourceVersion, p.Layer})
	}
	sortKeys := func(s []debKey) {
		sort.Slice(s, func(i, j int) bool {
			return s[i].name < s[j].name || s[i].name == s[j].name && s[i].version < s[j].version
		})
	}
	sortKeys(wantDeb)
	sortKeys(gotDeb)
	if len(gotDeb) != len(wantDeb) {
		t.Errorf("dpkg: %d packages, want %d", len(gotDeb), len(wantDeb))
	}
	for i := 0; i < len(gotDeb) && i < len(wantDeb); i++ {
		if gotDeb[i] != wantDeb[i] {
			t.Errorf("dpkg package %d: got %+v, want %+v", i, gotDeb[i], wantDeb[i])
			break
		}
	}

	// Go binaries: per binary, the main module, every dependency and stdlib.
	goByPath := map[string]map[string]bool{}
	for _, p := range byType[catalog.TypeGo] {
		path := p.Locations[0].Path
		if goByPath[path] == nil {
			goByPath[path] = map[string]bool{}
		}
		v := p.Version
		if p.Name == "stdlib" {
			v = strings.TrimPrefix(v, "v")
		}
		goByPath[path][p.Name+"@"+v] = true
	}
	if len(goByPath) != len(exp.GoBinaries) {
		t.Errorf("Go packages found in %d files, want %d binaries", len(goByPath), len(exp.GoBinaries))
	}
	for _, b := range exp.GoBinaries {
		want := map[string]bool{b.Main + "@(devel)": true, "stdlib@" + strings.TrimPrefix(b.GoVersion, "go"): true}
		for _, d := range b.Deps {
			want[d.Path+"@"+d.Version] = true
		}
		assertSet(t, "Go modules in "+b.Path, goByPath[b.Path], want)
	}

	set := func(t catalog.Type, norm func(p catalog.Package) string) map[string]bool {
		m := map[string]bool{}
		for _, p := range byType[t] {
			m[norm(p)] = true
		}
		return m
	}
	nameVer := func(p catalog.Package) string { return p.Name + "@" + p.Version }
	want := exp.Set()
	if registered["npm"] {
		got := set(catalog.TypeNpm, nameVer)
		// The application's own /app/package.json is not an installed
		// dependency; reporting it (as syft does) is allowed, not required.
		delete(got, exp.NpmRoot.Name+"@"+exp.NpmRoot.Version)
		assertSet(t, "npm packages", got, want[benchimage.EcoNpm])
		for _, d := range exp.NpmDeleted {
			if got[d.Name+"@"+d.Version] {
				t.Errorf("npm package %s@%s deleted by a whiteout in the top layer is reported", d.Name, d.Version)
			}
		}
		if len(exp.NpmDeleted) == 0 {
			t.Error("the generator deleted no npm package")
		}
	} else {
		t.Log("npm cataloger not registered: npm packages not checked")
	}
	if registered["python"] {
		assertSet(t, "Python packages", set(catalog.TypePyPI, func(p catalog.Package) string {
			return benchimage.NormalizePyPI(p.Name) + "@" + p.Version
		}), want[benchimage.EcoPyPI])
	} else {
		t.Log("python cataloger not registered: Python packages not checked")
	}
	if registered["java"] {
		assertSet(t, "Maven packages", set(catalog.TypeMaven, nameVer), want[benchimage.EcoMaven])
	} else {
		t.Log("java cataloger not registered: Maven packages not checked")
	}
}

func assertSet(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: %d found, %d expected; missing %v; unexpected %v", what, len(got), len(want), head(missing), head(extra))
	}
}

func head(s []string) []string {
	if len(s) > 10 {
		return append(s[:10:10], "...")
	}
	return s
}
