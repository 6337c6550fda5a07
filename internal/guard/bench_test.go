package guard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/vulndb"
	"github.com/moat-dev/moat/internal/vulndb/osvgen"
)

// benchVulnDB returns a full-size database (500,000 generated OSV records,
// the mix of the public data) imported once under the temporary directory
// (shared with internal/match's benchmarks).
func benchVulnDB(b *testing.B) string {
	n := 500000
	if v, err := strconv.Atoi(os.Getenv("MOAT_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("moat-benchdb-%d-v4", n))
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir
	}
	data, err := osvgen.Cached(n)
	if err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(dir)
	var zips []string
	for _, s := range osvgen.Mix {
		zips = append(zips, filepath.Join(data, s.Ecosystem, "all.zip"))
	}
	if _, err := vulndb.Import(context.Background(), dir, zips, vulndb.ImportOptions{}); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
	return dir
}

// registrySBOMs generates n SBOMs of about 300 packages shaped like a
// registry's images: 40 base images of 120 Debian 12 packages each, and
// 180 application dependencies per image (npm 50%, PyPI 20%, Maven 15%,
// Go 15%) drawn from 30,000 (name, version) pairs, so images share most
// packages as real fleets do.
func registrySBOMs(n int) [][]catalog.Package {
	r := rand.New(rand.NewSource(11))
	var bases [][]catalog.Package
	for i := 0; i < 40; i++ {
		var ps []catalog.Package
		for j := 0; j < 120; j++ {
			name := osvgen.PackageName("Debian", r.Intn(10000))
			ps = append(ps, catalog.Package{Name: name, Version: osvgen.Version("Debian", 1+r.Intn(5), r.Intn(20), r.Intn(30)),
				Type: catalog.TypeDeb, Ecosystem: "Debian:12", SourceName: name,
				Locations: []catalog.Location{{Path: "/var/lib/dpkg/status"}}, Layer: 0})
		}
		bases = append(bases, ps)
	}
	type kind struct {
		eco  string
		typ  catalog.Type
		pool int
		cut  float64
	}
	kinds := []kind{{"npm", catalog.TypeNpm, 120000, 0.5}, {"PyPI", catalog.TypePyPI, 12000, 0.7}, {"Maven", catalog.TypeMaven, 8000, 0.85}, {"Go", catalog.TypeGo, 3000, 1}}
	var pool []catalog.Package
	for i := 0; i < 30000; i++ {
		x := r.Float64()
		k := kinds[0]
		for _, kk := range kinds {
			if x < kk.cut {
				k = kk
				break
			}
		}
		name := osvgen.PackageName(k.eco, r.Intn(k.pool*5))
		ver := osvgen.Version(k.eco, 1+r.Intn(5), r.Intn(20), r.Intn(30))
		p := catalog.Package{Name: name, Version: ver, Type: k.typ, Ecosystem: k.eco, Locations: []catalog.Location{{Path: "/app/deps/" + name}}, Layer: 1}
		if k.eco == "Go" {
			p.Version = "v" + ver
		}
		if k.eco == "Maven" {
			for c := 0; c < len(name); c++ {
				if name[c] == ':' {
					p.Namespace, p.Name = name[:c], name[c+1:]
					break
				}
			}
		}
		pool = append(pool, p)
	}
	out := make([][]catalog.Package, n)
	for i := range out {
		ps := append([]catalog.Package(nil), bases[r.Intn(len(bases))]...)
		for j := 0; j < 180; j++ {
			ps = append(ps, pool[r.Intn(len(pool))])
		}
		out[i] = ps
	}
	return out
}

// BenchmarkRescan10000 re-matches 10,000 stored SBOMs of ~300 packages
// against the full-size database, after an update that changed what 1% of
// the images match (their stored match digest no longer holds).
//
//	go test -run XXX -bench BenchmarkRescan10000 -benchtime 1x ./internal/guard
func BenchmarkRescan10000(b *testing.B) {
	dbDir := benchVulnDB(b)
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("MOAT_BENCH_IMAGES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	g, err := Open(ctx, Options{DataDir: b.TempDir(), DBDir: dbDir, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	setup := time.Now()
	sboms := registrySBOMs(n)
	tx, _ := g.rw.Begin()
	for i, ps := range sboms {
		blob, err := encodeStored(&stored{Subject: scan.Subject{Name: fmt.Sprint("bench/app", i%100)}, Packages: ps})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO images(repo, digest, project, media_type, status, pushed_at, packages) VALUES (?,?,?,?,?,?,?)`,
			fmt.Sprintf("bench/app%d", i%100), fmt.Sprintf("sha256:%064d", i), "bench", "application/vnd.oci.image.manifest.v1+json", "pending", nowMs(), blob); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	first, err := g.Rescan(ctx) // the first match of every image
	if err != nil {
		b.Fatal(err)
	}
	var findings int
	g.ro.QueryRow(`SELECT COUNT(*) FROM findings`).Scan(&findings)
	var pk int
	g.ro.QueryRow(`SELECT COUNT(*) FROM pkgs`).Scan(&pk)
	b.Logf("setup: %d images, %d distinct packages, %d findings stored, first match %s, setup %s", first.Images, pk, findings, first.Duration, time.Since(setup))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// The update: 1% of the images match differently now.
		g.rw.Exec(`UPDATE images SET fhash = 'stale' WHERE CAST(substr(digest, 60) AS INTEGER) % 100 = ?`, i%100)
		b.StartTimer()
		res, err := g.Rescan(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if res.Images != n || res.Changed == 0 {
			b.Fatalf("rescan: %+v", res)
		}
		b.ReportMetric(res.Duration.Seconds(), "s/rescan")
		b.ReportMetric(float64(res.Changed), "rematched")
	}
}
