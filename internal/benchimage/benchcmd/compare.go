package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/moat-dev/moat/internal/benchimage"
)

// pkgKey is one package as both tools can name it: ecosystem (purl type)
// and "name@version".
type found struct {
	eco, key string
	path     string
}

// moatDoc is the part of moat's JSON output (docs/scan-json.md) compared.
type moatDoc struct {
	Stats struct {
		Bytes int64 `json:"bytes"`
	} `json:"stats"`
	Packages []struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		Type      string `json:"type"`
		Namespace string `json:"namespace"`
		Locations []struct {
			Path string `json:"path"`
		} `json:"locations"`
	} `json:"packages"`
}

// syftDoc is the part of syft-json compared.
type syftDoc struct {
	Artifacts []struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		Type      string `json:"type"`
		PURL      string `json:"purl"`
		Locations []struct {
			Path       string `json:"path"`
			AccessPath string `json:"accessPath"`
		} `json:"locations"`
	} `json:"artifacts"`
}

var syftTypes = map[string]string{
	"deb": "deb", "npm": "npm", "python": "pypi", "java-archive": "maven",
	"jenkins-plugin": "maven", "go-module": "golang", "apk": "apk", "rpm": "rpm",
	"gem": "gem", "rust-crate": "cargo", "php-composer": "composer", "dotnet": "nuget",
}

func key(eco, name, version string) string {
	switch eco {
	case "pypi":
		name = benchimage.NormalizePyPI(name)
	case "golang":
		if name == "stdlib" {
			version = strings.TrimPrefix(strings.TrimPrefix(version, "go"), "v")
		}
		// A main module built without version information: moat says
		// "(devel)" (as debug/buildinfo does), syft "UNKNOWN".
		if version == "UNKNOWN" {
			version = "(devel)"
		}
	}
	return name + "@" + version
}

func loadMoat(p string) ([]found, int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, 0, err
	}
	var d moatDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, 0, fmt.Errorf("%s: not moat JSON: %w", p, err)
	}
	var out []found
	for _, pk := range d.Packages {
		f := found{eco: pk.Type, key: key(pk.Type, pk.Name, pk.Version)}
		if len(pk.Locations) > 0 {
			f.path = pk.Locations[0].Path
		}
		out = append(out, f)
	}
	return out, d.Stats.Bytes, nil
}

func loadSyft(p string) ([]found, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var d syftDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: not syft JSON: %w", p, err)
	}
	var out []found
	for _, a := range d.Artifacts {
		eco := ""
		if t, ok := strings.CutPrefix(a.PURL, "pkg:"); ok {
			eco, _, _ = strings.Cut(t, "/")
		}
		if eco == "" {
			eco = syftTypes[a.Type]
		}
		if eco == "" {
			eco = "syft:" + a.Type
		}
		f := found{eco: eco, key: key(eco, a.Name, a.Version)}
		if len(a.Locations) > 0 {
			f.path = a.Locations[0].AccessPath
			if f.path == "" {
				f.path = a.Locations[0].Path
			}
			// syft names a jar inside a jar "outer.jar:inner.jar", moat
			// "outer.jar!/inner.jar".
			if eco == "maven" {
				f.path = strings.ReplaceAll(f.path, ".jar:", ".jar!/")
			}
		}
		out = append(out, f)
	}
	return out, nil
}

type set map[string]map[string]string // eco → key → a path

func toSet(fs []found) set {
	s := set{}
	for _, f := range fs {
		if s[f.eco] == nil {
			s[f.eco] = map[string]string{}
		}
		if _, ok := s[f.eco][f.key]; !ok {
			s[f.eco][f.key] = f.path
		}
	}
	return s
}

func compare(args []string) int {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	moatPath := fs.String("moat", "", "moat scan --format json output")
	syftPath := fs.String("syft", "", "syft -o syft-json output")
	expPath := fs.String("expected", "", "the generator's expected.json (optional)")
	fs.Parse(args)
	if *moatPath == "" || *syftPath == "" {
		usage()
	}
	mf, moatBytes, err := loadMoat(*moatPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcmd:", err)
		return 2
	}
	sf, err := loadSyft(*syftPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcmd:", err)
		return 2
	}
	ms, ss := toSet(mf), toSet(sf)
	var es map[string]map[string]bool
	if *expPath != "" {
		b, err := os.ReadFile(*expPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchcmd:", err)
			return 2
		}
		var e benchimage.Expected
		if err := json.Unmarshal(b, &e); err != nil {
			fmt.Fprintln(os.Stderr, "benchcmd:", err)
			return 2
		}
		es = e.Set()
		if moatBytes != e.TarBytes {
			fmt.Printf("WARNING: moat read %d uncompressed bytes, the image has %d: layers came from a cache (--cache-dir?) or were skipped; its timing is not comparable\n\n", moatBytes, e.TarBytes)
		}
	}
	ecos := map[string]bool{}
	for e := range ms {
		ecos[e] = true
	}
	for e := range ss {
		ecos[e] = true
	}
	for e := range es {
		ecos[e] = true
	}
	names := make([]string, 0, len(ecos))
	for e := range ecos {
		names = append(names, e)
	}
	sort.Strings(names)
	fmt.Printf("%-14s %9s %9s %9s %10s %10s\n", "ecosystem", "expected", "moat", "syft", "syft-only", "moat-only")
	var missing, extra []string
	for _, e := range names {
		exp := "-"
		if es != nil {
			exp = fmt.Sprint(len(es[e]))
		}
		so, mo := 0, 0
		for k, p := range ss[e] {
			if _, ok := ms[e][k]; !ok {
				so++
				missing = append(missing, fmt.Sprintf("  %-8s %s  (%s)", e, k, p))
			}
		}
		for k, p := range ms[e] {
			if _, ok := ss[e][k]; !ok {
				mo++
				extra = append(extra, fmt.Sprintf("  %-8s %s  (%s)", e, k, p))
			}
		}
		fmt.Printf("%-14s %9s %9d %9d %10d %10d\n", e, exp, len(ms[e]), len(ss[e]), so, mo)
	}
	sort.Strings(missing)
	sort.Strings(extra)
	fmt.Printf("\nsyft finds, moat misses: %d\n", len(missing))
	for _, l := range missing {
		fmt.Println(l)
	}
	fmt.Printf("\nmoat finds, syft misses: %d\n", len(extra))
	for _, l := range limit(extra, 50) {
		fmt.Println(l)
	}
	// The same comparison per located instance (name@version found in a
	// given file): catches a package found in one file but missed in others.
	inst := func(fs []found) map[string]map[string]bool {
		m := map[string]map[string]bool{}
		for _, f := range fs {
			if m[f.eco] == nil {
				m[f.eco] = map[string]bool{}
			}
			m[f.eco][f.key+"  "+f.path] = true
		}
		return m
	}
	mi, si := inst(mf), inst(sf)
	fmt.Printf("\nlocated instances (name@version in file):\n%-14s %9s %9s %10s\n", "ecosystem", "moat", "syft", "syft-only")
	var missingInst []string
	for _, e := range names {
		so := 0
		for k := range si[e] {
			if !mi[e][k] {
				so++
				missingInst = append(missingInst, fmt.Sprintf("  %-8s %s", e, k))
			}
		}
		fmt.Printf("%-14s %9d %9d %10d\n", e, len(mi[e]), len(si[e]), so)
	}
	sort.Strings(missingInst)
	fmt.Printf("syft finds in a file, moat not in that file: %d\n", len(missingInst))
	for _, l := range limit(missingInst, 30) {
		fmt.Println(l)
	}
	if es != nil {
		var notFound, unexpected []string
		for e, keys := range es {
			for k := range keys {
				if _, ok := ms[e][k]; !ok {
					notFound = append(notFound, fmt.Sprintf("  %-8s %s", e, k))
				}
			}
			for k, p := range ms[e] {
				if !keys[k] {
					unexpected = append(unexpected, fmt.Sprintf("  %-8s %s  (%s)", e, k, p))
				}
			}
		}
		sort.Strings(notFound)
		sort.Strings(unexpected)
		fmt.Printf("\nexpected but not found by moat: %d\n", len(notFound))
		for _, l := range limit(notFound, 50) {
			fmt.Println(l)
		}
		fmt.Printf("\nfound by moat but not expected: %d\n", len(unexpected))
		for _, l := range limit(unexpected, 50) {
			fmt.Println(l)
		}
	}
	if len(missing) > 0 {
		return 1
	}
	return 0
}

func limit(l []string, n int) []string {
	if len(l) > n {
		return append(l[:n:n], fmt.Sprintf("  ... and %d more", len(l)-n))
	}
	return l
}
