package guard

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	it "github.com/moat-dev/moat/internal/imagetest"
)

// dpkgStatus writes a dpkg status file of n packages.
func dpkgStatus(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Package: pkg%d\nStatus: install ok installed\nVersion: 1.%d-1\nArchitecture: amd64\n\n", i, i)
	}
	return b.String()
}

// baseFiles is a base layer of count files of size bytes plus a dpkg
// database, like a distribution image.
func baseFiles(b *testing.B, count, size int) []it.File {
	files := []it.File{it.Text("/etc/os-release", "ID=debian\nVERSION_ID=12\n"), it.Text("/var/lib/dpkg/status", dpkgStatus(150))}
	for i := 0; i < count; i++ {
		buf := make([]byte, size)
		rand.Read(buf)
		files = append(files, it.Text(fmt.Sprintf("/usr/lib/x/f%d.bin", i), string(buf)))
	}
	return files
}

// BenchmarkSharedBaseScan scans an image with a 60 MB base layer, then a
// second image on the same base: the second reads only its own layer.
//
//	go test -run XXX -bench BenchmarkSharedBaseScan -benchtime 1x ./internal/guard
func BenchmarkSharedBaseScan(b *testing.B) {
	db := b.TempDir()
	e := startB(b, db)
	base := it.Layer(b, baseFiles(b, 1500, 40<<10)...)
	img1 := it.Image(b, it.Step{Layer: base, CreatedBy: "base"}, it.Step{Layer: it.Layer(b, it.Text("/app/node_modules/a/package.json", `{"name":"a","version":"1.0.0"}`)), CreatedBy: "app1"})
	img2, _ := mutate.AppendLayers(it.Image(b, it.Step{Layer: base, CreatedBy: "base"}), it.Layer(b, it.Text("/app/node_modules/b/package.json", `{"name":"b","version":"2.0.0"}`)))
	b.ResetTimer()
	d1 := e.pushB(b, "team/first:1", img1)
	i1 := e.waitB(b, "team/first", d1)
	d2 := e.pushB(b, "team/second:1", img2)
	i2 := e.waitB(b, "team/second", d2)
	b.StopTimer()
	if i2.ScanMillis == 0 {
		i2.ScanMillis = 1
	}
	b.ReportMetric(float64(i1.ScanMillis), "ms/first")
	b.ReportMetric(float64(i2.ScanMillis), "ms/second")
	b.ReportMetric(float64(i1.ScanMillis)/float64(i2.ScanMillis), "x-faster")
}

// BenchmarkPushLatency pushes images (an 8 MB layer each) with scanning
// off, then on (the previous pushes being scanned meanwhile), and reports
// the mean push time of each and their ratio.
//
//	go test -run XXX -bench BenchmarkPushLatency -benchtime 1x ./internal/guard
func BenchmarkPushLatency(b *testing.B) {
	e := startB(b, b.TempDir())
	const n = 12
	mk := func(i int, phase string) (string, func() string) {
		buf := make([]byte, 8<<20)
		rand.Read(buf)
		img := it.Image(b, it.Step{Layer: it.Layer(b, it.Text("/data.bin", string(buf)), it.Text("/var/lib/dpkg/status", dpkgStatus(50))), CreatedBy: "x"})
		ref := fmt.Sprintf("team/%s%d:1", phase, i)
		return ref, func() string { return e.pushB(b, ref, img) }
	}
	measure := func(phase string, on bool) time.Duration {
		if on {
			e.inst.OnPush = e.g
		} else {
			e.inst.OnPush = nil
		}
		var total time.Duration
		for i := 0; i < n; i++ {
			_, push := mk(i, phase)
			start := time.Now()
			push()
			total += time.Since(start)
		}
		return total / n
	}
	b.ResetTimer()
	off := measure("off", false)
	on := measure("on", true)
	b.StopTimer()
	b.ReportMetric(float64(off.Milliseconds()), "ms/push-off")
	b.ReportMetric(float64(on.Milliseconds()), "ms/push-on")
	b.ReportMetric(float64(on)/float64(off), "on/off")
}
