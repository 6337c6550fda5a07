// Package match finds the known vulnerabilities of cataloged packages in
// the OSV database of internal/vulndb, with OSV range semantics and each
// ecosystem's version order (internal/version). It folds every alias of a
// flaw into one Finding per (package, vulnerability), scores severity from
// CVSS vectors, computes fixed versions and upgrade advice, and applies
// exceptions (ignore files, OpenVEX).
//
// Use:
//
//	db, err := vulndb.Open(dir)
//	res, err := match.Matcher{DB: db}.Match(ctx, pkgs)
//	ign, err := match.LoadIgnoreFile(".moatignore.yaml", time.Now())
//	vex, err := match.LoadVEX("app.vex.json")
//	vex.Image = []string{imageRef, imageDigest}
//	res.Apply(ign, vex)
//	res.Findings, res.Suppressed, res.Expired, res.Upgrades()
package match

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/version"
	"github.com/moat-dev/moat/internal/vulndb"
)

// Matcher matches packages against a database.
type Matcher struct {
	DB *vulndb.DB
}

// Finding is one vulnerability of one package. All records that describe
// the same flaw (an ID of one listed as an alias of another) are folded
// into it.
type Finding struct {
	// ID is the primary identifier: the CVE when the folded records name
	// exactly one CVE, else the smallest record ID.
	ID string `json:"id"`
	// Aliases are every other identifier of the flaw, sorted.
	Aliases []string `json:"aliases,omitempty"`
	// Records are the IDs of the database records that matched, sorted.
	Records []string `json:"records"`

	// Package is the package as cataloged (with its locations, layer and
	// history line).
	Package catalog.Package `json:"package"`
	// Ecosystem, Name and Version are what was looked up: the source
	// package and version for Debian/Ubuntu, "group:artifact" for Maven,
	// the epoch:version-release for RPM.
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	Version   string `json:"version"`

	Summary  string   `json:"summary,omitempty"`
	Severity Severity `json:"severity"`
	// CVSS is the vector the severity comes from, when there is one.
	CVSS *CVSS `json:"cvss,omitempty"`
	// SeveritySource is "CVSS 3.1", "CVSS 4.0", ..., "ecosystem" or "".
	SeveritySource string `json:"severitySource,omitempty"`
	// FixedVersions are the versions that end the affected ranges the
	// package is in, in ascending order; empty when no fix is known.
	FixedVersions []string `json:"fixedVersions,omitempty"`
	References    []string `json:"references,omitempty"`
	Published     string   `json:"published,omitempty"`
	Modified      string   `json:"modified,omitempty"`

	// the affected entries that matched, to test candidate upgrades
	affected []*vulndb.Affected
}

// Fixed reports whether a fixed version is known.
func (f *Finding) Fixed() bool { return len(f.FixedVersions) > 0 }

// IDs returns the primary ID, the aliases and the record IDs.
func (f *Finding) IDs() []string {
	out := append([]string{f.ID}, f.Aliases...)
	for _, r := range f.Records {
		if !contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// Result is the outcome of matching.
type Result struct {
	// Findings that remain, sorted by severity (highest first), package,
	// then ID.
	Findings []Finding `json:"findings"`
	// Suppressed are findings removed by exceptions, with the reason.
	Suppressed []SuppressedFinding `json:"suppressed,omitempty"`
	// Expired are ignore-file entries past their expiry date; they no
	// longer suppress anything.
	Expired []IgnoreRule `json:"expiredIgnores,omitempty"`
	// Packages is the number of packages examined.
	Packages int `json:"packages"`
	// NoData lists the ecosystems of scanned packages for which the
	// database holds no data (update with --ecosystems to add them).
	NoData []string `json:"noData,omitempty"`
	// Warnings about versions that could not be compared.
	Warnings []string `json:"warnings,omitempty"`
}

// Query gives the (ecosystem, name, version) a package is looked up by:
// Debian and Ubuntu packages by source package and source version (a
// binNMU "+bN" suffix dropped when only the binary version is known),
// Alpine by origin, RPM as [epoch:]version-release, Maven as
// "group:artifact". ok is false for packages without an ecosystem, name
// or version.
func Query(p *catalog.Package) (eco, name, ver string, ok bool) {
	eco, name, ver = p.Ecosystem, p.Name, p.Version
	switch vulndb.BaseEcosystem(eco) {
	case "Debian", "Ubuntu":
		if p.SourceName != "" {
			name = p.SourceName
		}
		if p.SourceVersion != "" {
			ver = p.SourceVersion
		} else {
			ver = binNMU().ReplaceAllString(ver, "")
		}
	case "Alpine", "Wolfi", "Chainguard":
		if p.SourceName != "" {
			name = p.SourceName
		}
	case "Maven":
		if p.Namespace != "" && !strings.Contains(name, ":") {
			name = p.Namespace + ":" + name
		}
	}
	if p.Type == catalog.TypeRPM {
		if p.Release != "" && !strings.HasSuffix(ver, "-"+p.Release) {
			ver += "-" + p.Release
		}
		if p.Epoch != nil && *p.Epoch != 0 && !strings.Contains(ver, ":") {
			ver = strconv.Itoa(*p.Epoch) + ":" + ver
		}
	}
	if ver == "(devel)" {
		// a Go main module built from a work tree has no version to match
		return eco, name, ver, false
	}
	return eco, name, ver, eco != "" && name != "" && ver != ""
}

// binNMU is the suffix of a binary-only rebuild ("1.2-3+b2").
var binNMU = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\+b[0-9]+$`) })

type lookupKey struct{ eco, name string }

// Match looks up every package and returns the findings. Large package
// lists are matched by several goroutines (one per CPU); the result does
// not depend on how they were split.
func (m Matcher) Match(ctx context.Context, pkgs []catalog.Package) (*Result, error) {
	if m.DB == nil {
		return nil, fmt.Errorf("no vulnerability database")
	}
	workers := min(runtime.GOMAXPROCS(0), len(pkgs)/512+1)
	parts := make([]*partial, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := len(pkgs)*w/workers, len(pkgs)*(w+1)/workers
		parts[w] = &partial{}
		wg.Add(1)
		go func(p *partial) {
			defer wg.Done()
			m.matchRange(ctx, pkgs[lo:hi], p)
		}(parts[w])
	}
	wg.Wait()
	res := &Result{Packages: len(pkgs), Findings: []Finding{}}
	noData := map[string]bool{}
	warned := map[string]bool{}
	for _, p := range parts {
		if p.err != nil {
			return nil, p.err
		}
		res.Findings = append(res.Findings, p.findings...)
		for _, w := range p.warnings {
			if !warned[w] {
				warned[w] = true
				res.Warnings = append(res.Warnings, w)
			}
		}
		for e := range p.noData {
			noData[e] = true
		}
	}
	for e := range noData {
		res.NoData = append(res.NoData, e)
	}
	sort.Strings(res.NoData)
	sortFindings(res.Findings)
	return res, nil
}

type partial struct {
	findings []Finding
	warnings []string
	noData   map[string]bool
	err      error
}

func (m Matcher) matchRange(ctx context.Context, pkgs []catalog.Package, out *partial) {
	cache := map[lookupKey][]*vulndb.Vulnerability{}
	out.noData = map[string]bool{}
	warned := map[string]bool{}
	warn := func(s string) {
		if !warned[s] {
			warned[s] = true
			out.warnings = append(out.warnings, s)
		}
	}
	vc := newVCache()
	for i := range pkgs {
		if i%256 == 0 && ctx.Err() != nil {
			out.err = ctx.Err()
			return
		}
		p := &pkgs[i]
		eco, name, ver, ok := Query(p)
		if !ok {
			continue
		}
		if !m.DB.HasEcosystem(eco) {
			out.noData[vulndb.BaseEcosystem(eco)] = true
			continue
		}
		k := lookupKey{eco, name}
		recs, seen := cache[k]
		if !seen {
			var err error
			recs, err = m.DB.Lookup(eco, name)
			if err != nil {
				out.err = err
				return
			}
			cache[k] = recs
		}
		if len(recs) == 0 {
			continue
		}
		out.findings = append(out.findings, matchPackage(p, eco, name, ver, recs, warn, vc)...)
	}
}

type hit struct {
	rec      *vulndb.Vulnerability
	affected []*vulndb.Affected
	fixed    []string
}

// matchPackage evaluates the records of one package and folds aliases.
func matchPackage(p *catalog.Package, eco, name, ver string, recs []*vulndb.Vulnerability, warn func(string), vc *vcache) []Finding {
	norm := vulndb.NormalizeName(eco, name)
	var hits []hit
	for _, r := range recs {
		var h hit
		for ai := range r.Affected {
			a := &r.Affected[ai]
			if !vulndb.EcosystemApplies(eco, a.Package.Ecosystem) || vulndb.NormalizeName(a.Package.Ecosystem, a.Package.Name) != norm {
				continue
			}
			in, fixed, err := affects(a, eco, ver, vc)
			if errors.Is(err, errInstalledVersion) {
				warn(fmt.Sprintf("%s %s %s: %v", eco, name, ver, err))
			} else if err != nil {
				warn(fmt.Sprintf("%s %s %s: record %s: %v", eco, name, ver, r.ID, err))
			}
			if in {
				h.affected = append(h.affected, a)
				h.fixed = append(h.fixed, fixed...)
			}
		}
		if len(h.affected) > 0 {
			h.rec = r
			hits = append(hits, h)
		}
	}
	if len(hits) == 0 {
		return nil
	}
	// fold records that share an identifier (union-find over IDs, aliases
	// and a single upstream ID: DEBIAN-CVE-X and UBUNTU-CVE-X name the
	// one flaw CVE-X as upstream)
	parent := make([]int, len(hits))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	owner := map[string]int{}
	for i, h := range hits {
		for _, id := range foldIDs(h.rec) {
			if j, ok := owner[id]; ok {
				parent[find(i)] = find(j)
			} else {
				owner[id] = i
			}
		}
	}
	groups := map[int][]hit{}
	var roots []int
	for i, h := range hits {
		r := find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], h)
	}
	// An advisory that fixes several flaws at once (a DSA or USN naming
	// CVE-A and CVE-B upstream) is not a flaw of its own when each of its
	// flaws is already a finding: it joins each of them (its ID becomes an
	// alias, its fix a fixed version) instead of being counted again.
	umbrella := func(hs []hit) bool {
		for _, h := range hs {
			if len(h.rec.Upstream) < 2 || len(h.rec.Aliases) > 0 {
				return false
			}
		}
		return true
	}
	var kept []int
	extra := map[int][]hit{}
	for _, r := range roots {
		hs := groups[r]
		if !umbrella(hs) {
			kept = append(kept, r)
			continue
		}
		targets := map[int]bool{}
		covered := true
		for _, h := range hs {
			for _, u := range h.rec.Upstream {
				j, ok := owner[u]
				if !ok || umbrella(groups[find(j)]) {
					covered = false
					break
				}
				targets[find(j)] = true
			}
		}
		if !covered {
			kept = append(kept, r)
			continue
		}
		for t := range targets {
			extra[t] = append(extra[t], hs...)
		}
	}
	out := make([]Finding, 0, len(kept))
	for _, r := range kept {
		out = append(out, fold(p, eco, name, ver, groups[r], extra[r]))
	}
	return out
}

// foldIDs are the identifiers by which records are folded into one finding.
func foldIDs(r *vulndb.Vulnerability) []string {
	ids := append([]string{r.ID}, r.Aliases...)
	if len(r.Upstream) == 1 {
		ids = append(ids, r.Upstream[0])
	}
	return ids
}

func fold(p *catalog.Package, eco, name, ver string, hs []hit, umbrellas []hit) Finding {
	sort.Slice(hs, func(i, j int) bool { return hs[i].rec.ID < hs[j].rec.ID })
	sort.Slice(umbrellas, func(i, j int) bool { return umbrellas[i].rec.ID < umbrellas[j].rec.ID })
	f := Finding{Package: *p, Ecosystem: eco, Name: name, Version: ver}
	ids := map[string]bool{}
	var recs []*vulndb.Vulnerability
	var fixed []string
	for _, h := range hs {
		for _, id := range foldIDs(h.rec) {
			ids[id] = true
		}
	}
	// the primary ID comes from the flaw's own records, not from advisories
	// that cover several flaws
	var cves []string
	for id := range ids {
		if strings.HasPrefix(id, "CVE-") {
			cves = append(cves, id)
		}
	}
	for _, h := range umbrellas {
		ids[h.rec.ID] = true
	}
	for _, h := range append(hs, umbrellas...) {
		recs = append(recs, h.rec)
		f.Records = append(f.Records, h.rec.ID)
		f.affected = append(f.affected, h.affected...)
		fixed = append(fixed, h.fixed...)
		if f.Summary == "" {
			f.Summary = h.rec.Summary
		}
		if h.rec.Published != "" && (f.Published == "" || h.rec.Published < f.Published) {
			f.Published = h.rec.Published
		}
		if h.rec.Modified > f.Modified {
			f.Modified = h.rec.Modified
		}
		for _, ref := range h.rec.References {
			if len(f.References) < 10 && !contains(f.References, ref.URL) {
				f.References = append(f.References, ref.URL)
			}
		}
	}
	sort.Strings(f.Records)
	if len(cves) == 1 {
		f.ID = cves[0]
	} else {
		f.ID = hs[0].rec.ID
	}
	for id := range ids {
		if id != f.ID {
			f.Aliases = append(f.Aliases, id)
		}
	}
	sort.Strings(f.Aliases)
	f.Severity, f.CVSS, f.SeveritySource = severityOf(recs, f.affected)
	if vulndb.BaseEcosystem(eco) == "Go" {
		// Go OSV records write versions without the "v" of module versions
		for i, v := range fixed {
			if !strings.HasPrefix(v, "v") {
				fixed[i] = "v" + v
			}
		}
	}
	f.FixedVersions = sortVersions(eco, fixed)
	return f
}

// sortVersions dedups and sorts versions in the ecosystem's order
// (unparsable ones last, as strings).
func sortVersions(eco string, vs []string) []string {
	if len(vs) == 0 {
		return nil
	}
	cmp := version.For(eco)
	type pv struct {
		s string
		v version.Version
	}
	var list []pv
	seen := map[string]bool{}
	for _, s := range vs {
		if seen[s] {
			continue
		}
		seen[s] = true
		v, _ := cmp.Parse(s)
		list = append(list, pv{s, v})
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		switch {
		case a.v != nil && b.v != nil:
			if c := a.v.Compare(b.v); c != 0 {
				return c < 0
			}
			return a.s < b.s
		case a.v != nil:
			return true
		case b.v != nil:
			return false
		}
		return a.s < b.s
	})
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = x.s
	}
	// versions equal in the ecosystem's order ("1.0" and "1.0.0") once
	res := out[:0]
	for i, s := range out {
		if i > 0 && list[i].v != nil && list[i-1].v != nil && list[i].v.Compare(list[i-1].v) == 0 {
			continue
		}
		res = append(res, s)
	}
	return res
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		if a.Package.Name != b.Package.Name {
			return a.Package.Name < b.Package.Name
		}
		if a.Package.Version != b.Package.Version {
			return a.Package.Version < b.Package.Version
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return firstPath(&a.Package) < firstPath(&b.Package)
	})
}

func firstPath(p *catalog.Package) string {
	if len(p.Locations) > 0 {
		return p.Locations[0].Path
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Max returns the highest severity among the findings (Unknown if none).
func (r *Result) Max() Severity {
	m := Unknown
	for i := range r.Findings {
		m = max(m, r.Findings[i].Severity)
	}
	return m
}

// AtOrAbove returns the findings with severity >= s: the --fail-on gate
// trips when it is not empty.
func (r *Result) AtOrAbove(s Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity >= s {
			out = append(out, f)
		}
	}
	return out
}

// Filter keeps only findings with one of the given severities (all when
// none are given) and, with ignoreUnfixed, only findings that have a fixed
// version. Filtered-out findings are not suppressed: they are simply not
// shown, as the user asked (--severity, --ignore-unfixed).
func (r *Result) Filter(severities []Severity, ignoreUnfixed bool) {
	keep := r.Findings[:0]
	for _, f := range r.Findings {
		if len(severities) > 0 {
			found := false
			for _, s := range severities {
				if f.Severity == s {
					found = true
				}
			}
			if !found {
				continue
			}
		}
		if ignoreUnfixed && !f.Fixed() {
			continue
		}
		keep = append(keep, f)
	}
	r.Findings = keep
}

// CountBySeverity counts the remaining findings per severity.
func (r *Result) CountBySeverity() map[Severity]int {
	m := map[Severity]int{}
	for _, f := range r.Findings {
		m[f.Severity]++
	}
	return m
}
