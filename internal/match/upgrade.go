package match

import (
	"fmt"
	"sort"

	"github.com/moat-dev/moat/internal/version"
)

// Upgrade is the upgrade of one package that clears the most findings.
type Upgrade struct {
	Ecosystem string `json:"ecosystem"`
	// Name is the name the fix applies to (the source package for
	// Debian/Ubuntu, group:artifact for Maven).
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
	// Fixes is the number of findings of the package that To clears, IDs
	// their primary IDs; Remaining the findings To does not clear.
	Fixes     int      `json:"fixes"`
	IDs       []string `json:"ids"`
	Remaining int      `json:"remaining"`
}

func (u Upgrade) String() string {
	return fmt.Sprintf("upgrade %s to %s: fixes %d", u.Name, u.To, u.Fixes)
}

// Upgrades returns, per package (ecosystem, name, version), the smallest
// fixed version that clears the most of its remaining findings, ordered by
// the number of findings fixed (most first), then name. A candidate clears
// a finding when it is outside every affected range of that finding.
func (r *Result) Upgrades() []Upgrade {
	type key struct{ eco, name, ver string }
	groups := map[key][]*Finding{}
	var keys []key
	for i := range r.Findings {
		f := &r.Findings[i]
		k := key{f.Ecosystem, f.Name, f.Version}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		// the same package at several paths is one upgrade
		dup := false
		for _, o := range groups[k] {
			if o.ID == f.ID {
				dup = true
			}
		}
		if !dup {
			groups[k] = append(groups[k], f)
		}
	}
	var out []Upgrade
	for _, k := range keys {
		fs := groups[k]
		var cands []string
		for _, f := range fs {
			cands = append(cands, f.FixedVersions...)
		}
		cands = sortVersions(k.eco, cands)
		var best *Upgrade
		for _, c := range cands {
			if cur, err := version.Compare(version.For(k.eco), c, k.ver); err == nil && cur <= 0 {
				continue
			}
			u := Upgrade{Ecosystem: k.eco, Name: k.name, From: k.ver, To: c}
			for _, f := range fs {
				if clears(f, c) {
					u.Fixes++
					u.IDs = append(u.IDs, f.ID)
				}
			}
			u.Remaining = len(fs) - u.Fixes
			if u.Fixes > 0 && (best == nil || u.Fixes > best.Fixes) {
				uu := u
				best = &uu
			}
		}
		if best != nil {
			sort.Strings(best.IDs)
			out = append(out, *best)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Fixes != out[j].Fixes {
			return out[i].Fixes > out[j].Fixes
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// clears reports whether version v is outside every affected entry of f.
func clears(f *Finding, v string) bool {
	if len(f.affected) == 0 {
		return false
	}
	for _, a := range f.affected {
		in, _, err := Affects(a, f.Ecosystem, v)
		if err != nil || in {
			return false
		}
	}
	return true
}
