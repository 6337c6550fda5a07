// Package osvgen generates synthetic OSV data shaped like the public OSV
// database, for benchmarks: the mix of ecosystems, record sizes, aliases,
// CVSS vectors, ranges, version lists and references of the real data, in
// one all.zip per ecosystem (the bucket layout moat db update reads).
package osvgen

import (
	"archive/zip"
	"bufio"
	"compress/flate"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
)

// Share is one ecosystem's part of the generated data.
type Share struct {
	Ecosystem string
	// Releases are appended to the ecosystem ("Debian:12"); empty for
	// language ecosystems.
	Releases []string
	// Fraction of the records.
	Fraction float64
	// Packages is the number of distinct package names.
	Packages int
	// VersionLists: records enumerate affected versions (PyPI, GHSA).
	VersionLists bool
}

// Mix approximates the public OSV data by record count per ecosystem.
var Mix = []Share{
	{Ecosystem: "Ubuntu", Releases: []string{"20.04:LTS", "22.04:LTS", "24.04:LTS"}, Fraction: 0.22, Packages: 6000},
	{Ecosystem: "Debian", Releases: []string{"10", "11", "12", "13"}, Fraction: 0.20, Packages: 5000},
	{Ecosystem: "npm", Fraction: 0.22, Packages: 120000, VersionLists: true},
	{Ecosystem: "Alpine", Releases: []string{"v3.18", "v3.19", "v3.20"}, Fraction: 0.07, Packages: 2500},
	{Ecosystem: "Red Hat", Releases: []string{"enterprise_linux:8::appstream", "enterprise_linux:9::baseos"}, Fraction: 0.07, Packages: 4000},
	{Ecosystem: "PyPI", Fraction: 0.06, Packages: 12000, VersionLists: true},
	{Ecosystem: "Maven", Fraction: 0.05, Packages: 8000, VersionLists: true},
	{Ecosystem: "Go", Fraction: 0.03, Packages: 3000},
	{Ecosystem: "crates.io", Fraction: 0.02, Packages: 2000, VersionLists: true},
	{Ecosystem: "RubyGems", Fraction: 0.02, Packages: 2000, VersionLists: true},
	{Ecosystem: "NuGet", Fraction: 0.02, Packages: 2000, VersionLists: true},
	{Ecosystem: "Packagist", Fraction: 0.02, Packages: 2000, VersionLists: true},
}

// PackageName is the i-th package name of an ecosystem, as the generator
// names them.
func PackageName(eco string, i int) string {
	switch eco {
	case "Maven":
		return fmt.Sprintf("org.example%d:artifact-%d", i%97, i)
	case "Go":
		return fmt.Sprintf("github.com/example%d/module%d", i%89, i)
	case "Packagist":
		return fmt.Sprintf("vendor%d/package-%d", i%83, i)
	case "npm":
		if i%5 == 0 {
			return fmt.Sprintf("@scope%d/pkg-%d", i%71, i)
		}
		return fmt.Sprintf("pkg-%d", i)
	}
	return fmt.Sprintf("package-%d", i)
}

// Version is the version string of (major, minor, patch) in an ecosystem's
// style.
func Version(eco string, ma, mi, pa int) string {
	switch eco {
	case "Debian":
		return fmt.Sprintf("%d.%d.%d-%d", ma, mi, pa, 1+pa%3)
	case "Ubuntu":
		return fmt.Sprintf("%d.%d.%d-%dubuntu%d", ma, mi, pa, 1+pa%3, 1+mi%4)
	case "Alpine":
		return fmt.Sprintf("%d.%d.%d-r%d", ma, mi, pa, pa%5)
	case "Red Hat":
		return fmt.Sprintf("%d.%d.%d-%d.el9", ma, mi, pa, 1+pa)
	}
	return fmt.Sprintf("%d.%d.%d", ma, mi, pa)
}

const lorem = "A flaw was found in the handling of crafted input that may allow a remote attacker to cause a denial of service or possibly execute arbitrary code. "

var vectors = []string{
	"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
	"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N",
	"CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:N/I:N/A:H",
	"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
	"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
}

// Generate writes dir/<Ecosystem>/all.zip for the Mix, total records in
// all, deterministically from seed.
func Generate(dir string, total int, seed int64) error {
	r := rand.New(rand.NewSource(seed))
	serial := 0
	for _, s := range Mix {
		n := int(float64(total) * s.Fraction)
		if err := writeEco(dir, s, n, r, &serial); err != nil {
			return err
		}
	}
	return nil
}

func writeEco(dir string, s Share, n int, r *rand.Rand, serial *int) error {
	if err := os.MkdirAll(filepath.Join(dir, s.Ecosystem), 0o755); err != nil {
		return err
	}
	fh, err := os.Create(filepath.Join(dir, s.Ecosystem, "all.zip"))
	if err != nil {
		return err
	}
	defer fh.Close()
	bw := bufio.NewWriterSize(fh, 1<<20)
	zw := zip.NewWriter(bw)
	// one deflate writer reused for every entry (a new one per entry
	// costs more than the compression)
	fw, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		fw.Reset(w)
		return fw, nil
	})
	var b strings.Builder
	for i := 0; i < n; i++ {
		*serial++
		b.Reset()
		id := record(&b, s, r, *serial)
		w, err := zw.Create(id + ".json")
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func record(b *strings.Builder, s Share, r *rand.Rand, serial int) string {
	year := 2015 + serial%11
	cve := fmt.Sprintf("CVE-%d-%d", year, 10000+serial)
	var id string
	switch s.Ecosystem {
	case "Debian":
		id = "DEBIAN-" + cve
	case "Ubuntu":
		id = "UBUNTU-" + cve
	case "Alpine":
		id = "ALPINE-" + cve
	case "Red Hat":
		id = fmt.Sprintf("RHSA-%d:%05d", year, serial)
	case "Go":
		id = fmt.Sprintf("GO-%d-%04d", year, serial)
	case "PyPI":
		id = fmt.Sprintf("PYSEC-%d-%d", year, serial)
	case "crates.io":
		id = fmt.Sprintf("RUSTSEC-%d-%04d", year, serial)
	default:
		id = fmt.Sprintf("GHSA-%04x-%04x-%04x", (serial>>16)&0xffff, serial&0xffff, (serial*13)&0xffff)
	}
	fmt.Fprintf(b, `{"schema_version":"1.6.0","id":%q,"modified":"2024-%02d-%02dT10:00:00Z","published":"%d-01-15T00:00:00Z",`, id, 1+serial%12, 1+serial%28, year)
	fmt.Fprintf(b, `"aliases":[%q`, cve)
	if r.Intn(3) == 0 {
		fmt.Fprintf(b, `,"GHSA-%04x-%04x-abcd"`, serial%65536, (serial*3)%65536)
	}
	b.WriteString(`],`)
	fmt.Fprintf(b, `"summary":"%s in %s","details":%q,`, "Denial of service", s.Ecosystem, strings.Repeat(lorem, 1+r.Intn(4)))
	if r.Intn(3) > 0 {
		fmt.Fprintf(b, `"severity":[{"type":"CVSS_V3","score":%q}],`, vectors[r.Intn(len(vectors))])
	}
	b.WriteString(`"affected":[`)
	naff := 1
	if s.Releases != nil {
		naff = 1 + r.Intn(len(s.Releases))
	} else if r.Intn(5) == 0 {
		naff = 2
	}
	// skewed popularity: the top 1% of names carry about 10% of the
	// advisories, as in the public data
	x := r.Float64()
	pkg := int(float64(s.Packages) * x * x)
	for a := 0; a < naff; a++ {
		if a > 0 {
			b.WriteByte(',')
		}
		eco := s.Ecosystem
		if s.Releases != nil {
			eco += ":" + s.Releases[(a+serial)%len(s.Releases)]
		}
		name := PackageName(s.Ecosystem, pkg+a*(1-boolInt(s.Releases != nil)))
		ma, mi := 1+r.Intn(5), r.Intn(20)
		fixed := Version(s.Ecosystem, ma, mi, 5+r.Intn(20))
		rtype := "ECOSYSTEM"
		if s.Ecosystem == "Go" || s.Ecosystem == "npm" || s.Ecosystem == "crates.io" {
			rtype = "SEMVER"
		}
		fmt.Fprintf(b, `{"package":{"ecosystem":%q,"name":%q,"purl":"pkg:generic/%s"},"ranges":[{"type":%q,"events":[{"introduced":"0"},{"fixed":%q}]}]`,
			eco, name, strings.ReplaceAll(name, ":", "/"), rtype, fixed)
		if s.VersionLists {
			b.WriteString(`,"versions":[`)
			nv := 5 + r.Intn(40)
			for v := 0; v < nv; v++ {
				if v > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(b, "%q", Version(s.Ecosystem, ma, mi*0+v/10, v%10))
			}
			b.WriteString(`]`)
		}
		fmt.Fprintf(b, `,"database_specific":{"source":"https://example.com/%s.json"}}`, id)
	}
	b.WriteString(`],"references":[`)
	nref := 2 + r.Intn(5)
	for i := 0; i < nref; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, `{"type":"WEB","url":"https://security.example.com/advisories/%s/%d"}`, id, i)
	}
	fmt.Fprintf(b, `],"database_specific":{"severity":"%s"}}`, []string{"LOW", "MODERATE", "HIGH", "CRITICAL"}[r.Intn(4)])
	return id
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Cached returns a directory holding generated data of total records:
// $MOAT_BENCH_DATA if set, else a directory under the system temporary
// directory that is generated once and reused by later benchmark runs.
func Cached(total int) (string, error) {
	if d := os.Getenv("MOAT_BENCH_DATA"); d != "" {
		return d, nil
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("moat-osvgen-%d-v3", total))
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir, nil
	}
	os.RemoveAll(dir)
	if err := Generate(dir, total, 1); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
}
