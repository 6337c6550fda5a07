//go:build unix

package match

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/vulndb"
	"github.com/moat-dev/moat/internal/vulndb/osvgen"
)

func benchRecords() int {
	if n, err := strconv.Atoi(os.Getenv("MOAT_BENCH_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 500000
}

var (
	benchOnce  sync.Once
	benchDBDir string
	benchErr   error
)

// benchDB imports the generated data (see osvgen) once and returns its
// directory. It is kept under the system temporary directory between runs.
func benchDB(b *testing.B) string {
	benchOnce.Do(func() {
		n := benchRecords()
		data, err := osvgen.Cached(n)
		if err != nil {
			benchErr = err
			return
		}
		benchDBDir = filepath.Join(os.TempDir(), fmt.Sprintf("moat-benchdb-%d-v4", n))
		if _, err := os.Stat(filepath.Join(benchDBDir, "complete")); err == nil {
			return
		}
		os.RemoveAll(benchDBDir)
		var zips []string
		for _, s := range osvgen.Mix {
			zips = append(zips, filepath.Join(data, s.Ecosystem, "all.zip"))
		}
		if _, benchErr = vulndb.Import(context.Background(), benchDBDir, zips, vulndb.ImportOptions{}); benchErr == nil {
			benchErr = os.WriteFile(filepath.Join(benchDBDir, "complete"), nil, 0o644)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDBDir
}

// benchPackages is an SBOM-like package list: 40% npm, 20% Debian, the
// rest spread over other ecosystems. Language package names are drawn from
// a pool ten times the number of names with advisories (most installed
// libraries have none), OS package names from twice that number.
func benchPackages(n int) []catalog.Package {
	r := rand.New(rand.NewSource(7))
	type kind struct {
		share float64
		eco   string
		typ   catalog.Type
		pool  int
	}
	kinds := []kind{
		{0.40, "npm", catalog.TypeNpm, 120000},
		{0.20, "Debian", catalog.TypeDeb, 5000},
		{0.10, "PyPI", catalog.TypePyPI, 12000},
		{0.10, "Maven", catalog.TypeMaven, 8000},
		{0.05, "Go", catalog.TypeGo, 3000},
		{0.05, "Alpine", catalog.TypeApk, 2500},
		{0.05, "RubyGems", catalog.TypeGem, 2000},
		{0.05, "crates.io", catalog.TypeCargo, 2000},
	}
	var out []catalog.Package
	for _, k := range kinds {
		m := int(float64(n) * k.share)
		for i := 0; i < m; i++ {
			pool := k.pool * 10
			if k.typ.OSPackage() {
				pool = k.pool * 2
			}
			idx := r.Intn(pool)
			name := osvgen.PackageName(k.eco, idx)
			ver := osvgen.Version(k.eco, 1+r.Intn(5), r.Intn(20), r.Intn(30))
			p := catalog.Package{Name: name, Version: ver, Type: k.typ, Ecosystem: k.eco}
			switch k.eco {
			case "Debian":
				p.Ecosystem = "Debian:12"
				p.SourceName = name
			case "Alpine":
				p.Ecosystem = "Alpine:v3.20"
			case "Go":
				p.Version = "v" + ver
			case "Maven":
				p.Namespace, p.Name = name[:len(name)-len(name[indexColon(name)+1:])-1], name[indexColon(name)+1:]
			}
			out = append(out, p)
		}
	}
	return out
}

func indexColon(s string) int {
	for i := range s {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// BenchmarkOpenMatch5000 opens the database and matches 5,000 packages,
// as one scan of an SBOM does.
func BenchmarkOpenMatch5000(b *testing.B) {
	dir := benchDB(b)
	pkgs := benchPackages(5000)
	b.ResetTimer()
	cpu0 := cpuTime()
	var findings int
	for i := 0; i < b.N; i++ {
		db, err := vulndb.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		res, err := Matcher{DB: db}.Match(context.Background(), pkgs)
		if err != nil {
			b.Fatal(err)
		}
		findings = len(res.Findings)
		db.Close()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(findings), "findings")
	b.ReportMetric(float64(len(pkgs)), "packages")
}

// BenchmarkLookup is the raw index lookup rate: one (ecosystem, name)
// query per op, a mix of names with and without advisories.
func BenchmarkLookup(b *testing.B) {
	db, err := vulndb.Open(benchDB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	pkgs := benchPackages(4096)
	type q struct{ eco, name string }
	qs := make([]q, len(pkgs))
	hits := 0
	for i := range pkgs {
		eco, name, _, _ := Query(&pkgs[i])
		qs[i] = q{eco, name}
		if db.Count(eco, name) > 0 {
			hits++
		}
	}
	b.ReportMetric(float64(hits)/float64(len(qs)), "hit-ratio")
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		x := &qs[i%len(qs)]
		db.Count(x.eco, x.name)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// cpuTime is the CPU time (user + system) the process has used: on this
// shared 2-core machine wall-clock figures depend on what else runs, so the
// benchmarks report both.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
