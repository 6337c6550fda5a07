package match

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

// TestCompareWithOSVScanner matches the same packages as osv-scanner
// (v1.9.2, offline, on the same OSV zips) and compares the findings and
// the time taken. It is a comparison harness, not a unit test: it runs
// only when MOAT_OSV_SCANNER names the osv-scanner binary (see
// /work/shared/PEERS.md for building it).
func TestCompareWithOSVScanner(t *testing.T) {
	bin := os.Getenv("MOAT_OSV_SCANNER")
	if bin == "" {
		t.Skip("set MOAT_OSV_SCANNER to an osv-scanner v1.9.2 binary to compare with it")
	}
	data := testenv.OSVData(t)
	work := t.TempDir()
	// osv-scanner's offline cache layout: DIR/osv-scanner/<Ecosystem>/all.zip
	for _, eco := range []string{"Go", "PyPI"} {
		dst := filepath.Join(work, "cache", "osv-scanner", eco)
		os.MkdirAll(dst, 0o755)
		b, err := os.ReadFile(filepath.Join(data, eco, "all.zip"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, "all.zip"), b, 0o644)
	}
	pkgs := comparisonPackages(t, data, 400, 300)
	var req, gomod strings.Builder
	gomod.WriteString("module example.com/cmp\n\ngo 1.22\n\nrequire (\n")
	for _, p := range pkgs {
		if p.Ecosystem == "PyPI" {
			fmt.Fprintf(&req, "%s==%s\n", p.Name, p.Version)
		} else {
			fmt.Fprintf(&gomod, "\t%s %s\n", p.Name, p.Version)
		}
	}
	gomod.WriteString(")\n")
	os.WriteFile(filepath.Join(work, "requirements.txt"), []byte(req.String()), 0o644)
	os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod.String()), 0o644)

	start := time.Now()
	cmd := exec.Command(bin, "--experimental-offline", "--format", "json",
		"--lockfile", filepath.Join(work, "requirements.txt"), "--lockfile", filepath.Join(work, "go.mod"))
	cmd.Env = append(os.Environ(), "OSV_SCANNER_LOCAL_DB_CACHE_DIRECTORY="+filepath.Join(work, "cache"))
	out, _ := cmd.Output() // exits 1 when it finds vulnerabilities
	osvTime := time.Since(start)
	var doc struct {
		Results []struct {
			Packages []struct {
				Package         struct{ Name, Version, Ecosystem string }
				Vulnerabilities []struct{ ID string }
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("osv-scanner output: %v\n%s", err, out)
	}
	theirs := map[string]bool{}
	for _, r := range doc.Results {
		for _, p := range r.Packages {
			if p.Package.Name == "stdlib" {
				continue // from the go directive; not in the package list
			}
			for _, v := range p.Vulnerabilities {
				theirs[p.Package.Ecosystem+" "+vulndb.NormalizeName(p.Package.Ecosystem, p.Package.Name)+" "+strings.TrimPrefix(p.Package.Version, "v")+" "+v.ID] = true
			}
		}
	}

	start = time.Now()
	dir := t.TempDir()
	if _, err := vulndb.Import(context.Background(), dir, []string{filepath.Join(data, "Go", "all.zip"), filepath.Join(data, "PyPI", "all.zip")}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	importTime := time.Since(start)
	start = time.Now()
	db, err := vulndb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := Matcher{DB: db}.Match(context.Background(), pkgs)
	if err != nil {
		t.Fatal(err)
	}
	moatTime := time.Since(start)
	// compare per finding: osv-scanner reports one of several records that
	// alias each other (PYSEC-2021-871 and PYSEC-2021-872 both alias
	// CVE-2021-42343), moat folds them into one finding
	key := func(eco, name, ver, id string) string {
		return eco + " " + vulndb.NormalizeName(eco, name) + " " + strings.TrimPrefix(ver, "v") + " " + id
	}
	covered := map[string]bool{}
	var onlyOurs, explained []string
	nours := 0
	for _, f := range res.Findings {
		nours++
		found := false
		for _, id := range f.IDs() {
			k := key(f.Ecosystem, f.Package.Name, f.Package.Version, id)
			if theirs[k] {
				covered[k] = true
				found = true
			}
		}
		if found {
			continue
		}
		k := key(f.Ecosystem, f.Package.Name, f.Package.Version, f.ID)
		// osv-scanner v1.9.2 ignores an affected entry that has a GIT range
		// and no versions list even when it also has an ECOSYSTEM range;
		// the OSV schema says the ECOSYSTEM range applies
		if mixedGitOnly(f) {
			explained = append(explained, k)
		} else {
			onlyOurs = append(onlyOurs, k)
		}
	}
	var onlyTheirs []string
	for k := range theirs {
		if !covered[k] {
			onlyTheirs = append(onlyTheirs, k)
		}
	}
	sort.Strings(onlyTheirs)
	sort.Strings(onlyOurs)
	t.Logf("%d packages: osv-scanner %d findings in %v; moat %d findings, open+match %v (import once: %v)",
		len(pkgs), len(theirs), osvTime.Round(time.Millisecond), nours, moatTime.Round(time.Millisecond), importTime.Round(time.Millisecond))
	for _, e := range explained {
		t.Logf("only moat, ECOSYSTEM range next to a GIT range (osv-scanner skips these): %s", e)
	}
	if len(onlyTheirs)+len(onlyOurs) > 0 {
		t.Errorf("findings differ:\nonly osv-scanner (%d):\n  %s\nonly moat (%d):\n  %s", len(onlyTheirs), strings.Join(first(onlyTheirs, 30), "\n  "),
			len(onlyOurs), strings.Join(first(onlyOurs, 30), "\n  "))
	}
}

// mixedGitOnly reports whether every affected entry that matched f has a
// GIT range and no versions list.
func mixedGitOnly(f Finding) bool {
	for _, a := range f.affected {
		git := false
		for _, r := range a.Ranges {
			if r.Type == vulndb.RangeGit {
				git = true
			}
		}
		if !git || len(a.Versions) > 0 {
			return false
		}
	}
	return len(f.affected) > 0
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// comparisonPackages picks PyPI and Go packages named in the real data,
// each at a version that occurs in its records (listed versions and range
// boundaries, so the edges of ranges are exercised).
func comparisonPackages(t *testing.T, data string, nPy, nGo int) []catalog.Package {
	r := rand.New(rand.NewSource(3))
	var out []catalog.Package
	for _, c := range []struct {
		eco string
		n   int
	}{{"PyPI", nPy}, {"Go", nGo}} {
		zr, err := zip.OpenReader(filepath.Join(data, c.eco, "all.zip"))
		if err != nil {
			t.Fatal(err)
		}
		versions := map[string]map[string]bool{}
		for _, zf := range zr.File {
			rc, _ := zf.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			v, err := vulndb.DecodeOSV(b)
			if err != nil || v.Withdrawn != "" {
				continue
			}
			for _, a := range v.Affected {
				name := a.Package.Name
				if name == "stdlib" || name == "toolchain" {
					continue
				}
				if versions[name] == nil {
					versions[name] = map[string]bool{}
				}
				for _, x := range a.Versions {
					versions[name][x] = true
				}
				for _, rg := range a.Ranges {
					if rg.Type == vulndb.RangeGit {
						continue
					}
					for _, e := range rg.Events {
						for _, x := range []string{e.Introduced, e.Fixed} {
							if x != "" && x != "0" {
								versions[name][x] = true
							}
						}
					}
				}
			}
		}
		zr.Close()
		var names []string
		for n, vs := range versions {
			if len(vs) > 0 {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		seen := map[string]bool{}
		for _, n := range names {
			key := vulndb.NormalizeName(c.eco, n)
			if seen[key] {
				continue
			}
			seen[key] = true
			var vs []string
			for v := range versions[n] {
				vs = append(vs, v)
			}
			sort.Strings(vs)
			v := vs[r.Intn(len(vs))]
			p := catalog.Package{Name: n, Version: v, Ecosystem: c.eco, Type: catalog.TypePyPI}
			if c.eco == "Go" {
				p.Version, p.Type = "v"+v, catalog.TypeGo
			}
			out = append(out, p)
			if len(seen) == c.n {
				break
			}
		}
	}
	return out
}
