package sbom

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

// manyPackages returns n packages shaped like a large image's.
func manyPackages(n int) (Subject, []catalog.Package) {
	s := testSubject()
	base := testPackages(s)
	pkgs := make([]catalog.Package, n)
	for i := range pkgs {
		p := base[i%len(base)]
		p.Name = fmt.Sprintf("%s-%d", p.Name, i)
		p.PURL = ""
		rel := catalog.Distro{Ecosystem: "Debian:12", Namespace: "debian", Qualifier: "debian-12"}
		catalog.Finalize(&p, rel)
		pkgs[i] = p
	}
	return s, pkgs
}

func benchmarkRead(b *testing.B, write func(*bytes.Buffer, Subject, []catalog.Package) error) {
	s, pkgs := manyPackages(5000)
	var buf bytes.Buffer
	if err := write(&buf, s, pkgs); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, got, err := Read(bytes.NewReader(buf.Bytes()))
		if err != nil || len(got) != len(pkgs) {
			b.Fatalf("%d packages, %v", len(got), err)
		}
	}
}

func BenchmarkReadCycloneDX5000(b *testing.B) {
	benchmarkRead(b, func(w *bytes.Buffer, s Subject, p []catalog.Package) error { return WriteCycloneDX(w, s, p, testTool) })
}

func BenchmarkReadSPDX5000(b *testing.B) {
	benchmarkRead(b, func(w *bytes.Buffer, s Subject, p []catalog.Package) error { return WriteSPDX(w, s, p, testTool) })
}

func BenchmarkWriteCycloneDX5000(b *testing.B) {
	s, pkgs := manyPackages(5000)
	var buf bytes.Buffer
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := WriteCycloneDX(&buf, s, pkgs, testTool); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

func BenchmarkWriteSPDX5000(b *testing.B) {
	s, pkgs := manyPackages(5000)
	var buf bytes.Buffer
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := WriteSPDX(&buf, s, pkgs, testTool); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}
