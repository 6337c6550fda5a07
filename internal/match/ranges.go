package match

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moat-dev/moat/internal/version"
	"github.com/moat-dev/moat/internal/vulndb"
)

// Affects evaluates one OSV affected entry for version ver of a package in
// ecosystem eco, with OSV semantics:
//
//   - ver is affected when it is listed in versions, or when any range says
//     so (the union);
//   - ECOSYSTEM ranges compare in the ecosystem's order, SEMVER ranges in
//     SemVer 2.0 order (Go's own semver for the Go ecosystem);
//   - GIT ranges are ignored: they name commits, not package versions;
//   - the events of a range are sorted by version ("introduced": "0" is the
//     lowest); walking them, "introduced" <= ver enters the affected state,
//     "fixed" <= ver leaves it, "last_affected" < ver leaves it; with
//     "limit" events, ver must also be below a limit ("*" is no limit).
//
// It returns the fixed versions that end the affected intervals ver is in.
// A range whose versions cannot be parsed is skipped and reported in err;
// the other ranges still count.
func Affects(a *vulndb.Affected, eco, ver string) (bool, []string, error) {
	return affects(a, eco, ver, nil)
}

// vcache memoises version parsing and comparisons within one Match call:
// the records of one package repeat the same event versions (a Debian
// update fixing ten CVEs is the fixed version of ten records), and some
// comparator libraries are slow. A nil *vcache memoises nothing.
type vcache struct {
	parsed   map[vkey]parsedVersion
	compared map[ckey]int
}

func newVCache() *vcache {
	return &vcache{parsed: map[vkey]parsedVersion{}, compared: map[ckey]int{}}
}

type vkey struct {
	cmp string
	s   string
}

type ckey struct {
	cmp  string
	a, b string
}

type parsedVersion struct {
	v   version.Version
	err error
}

func (c *vcache) parse(cmp version.Comparator, s string) (version.Version, error) {
	if c == nil {
		return cmp.Parse(s)
	}
	k := vkey{cmp.Name(), s}
	if p, ok := c.parsed[k]; ok {
		return p.v, p.err
	}
	v, err := cmp.Parse(s)
	c.parsed[k] = parsedVersion{v, err}
	return v, err
}

// compare compares va (the parse of a) with vb (the parse of b).
func (c *vcache) compare(cmp version.Comparator, a, b string, va, vb version.Version) int {
	if c == nil {
		return va.Compare(vb)
	}
	k := ckey{cmp.Name(), a, b}
	if r, ok := c.compared[k]; ok {
		return r
	}
	r := va.Compare(vb)
	c.compared[k] = r
	return r
}

func affects(a *vulndb.Affected, eco, ver string, cache *vcache) (bool, []string, error) {
	affected := false
	for _, v := range a.Versions {
		if sameVersionString(eco, v, ver) {
			affected = true
			break
		}
	}
	var fixed []string
	var errs []error
	for _, r := range a.Ranges {
		var cmp version.Comparator
		switch r.Type {
		case vulndb.RangeEcosystem:
			cmp = version.For(eco)
		case vulndb.RangeSemver:
			if vulndb.BaseEcosystem(eco) == "Go" {
				cmp = version.Go
			} else {
				cmp = version.SemVer
				if _, err := cache.parse(cmp, strings.TrimPrefix(ver, "v")); err != nil {
					cmp = version.For(eco)
				}
			}
		default:
			continue
		}
		in, fx, err := inRange(r.Events, cmp, ver, cache)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if in {
			affected = true
			fixed = append(fixed, fx...)
		}
	}
	if !affected {
		fixed = nil
	}
	return affected, fixed, errors.Join(errs...)
}

func sameVersionString(eco, a, b string) bool {
	if a == b {
		return true
	}
	if vulndb.BaseEcosystem(eco) == "Go" {
		return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
	}
	return false
}

// errInstalledVersion marks errors about the package's own version (as
// opposed to a record's event versions).
var errInstalledVersion = errors.New("installed version cannot be compared")

type event struct {
	kind byte // 'i' introduced, 'a' last_affected, 'f' fixed, 'l' limit
	raw  string
	v    version.Version // nil for introduced "0"
}

// order of kinds at equal versions: entering before leaving
func kindRank(k byte) int {
	switch k {
	case 'i':
		return 0
	case 'a':
		return 1
	case 'f':
		return 2
	}
	return 3
}

func inRange(evs []vulndb.Event, cmp version.Comparator, ver string, cache *vcache) (bool, []string, error) {
	pv, err := cache.parse(cmp, ver)
	if err != nil {
		return false, nil, fmt.Errorf("%w: %w", errInstalledVersion, err)
	}
	var listBuf [8]event
	list := listBuf[:0]
	var limits []version.Version
	for _, e := range evs {
		var ev event
		switch {
		case e.Introduced != "":
			ev = event{kind: 'i', raw: e.Introduced}
		case e.Fixed != "":
			ev = event{kind: 'f', raw: e.Fixed}
		case e.LastAffected != "":
			ev = event{kind: 'a', raw: e.LastAffected}
		case e.Limit != "":
			if e.Limit == "*" {
				continue
			}
			ev = event{kind: 'l', raw: e.Limit}
		default:
			continue
		}
		if !(ev.kind == 'i' && ev.raw == "0") {
			v, err := cache.parse(cmp, ev.raw)
			if err != nil {
				return false, nil, fmt.Errorf("range event: %w", err)
			}
			ev.v = v
		}
		if ev.kind == 'l' {
			limits = append(limits, ev.v)
			continue
		}
		list = append(list, ev)
	}
	slices.SortStableFunc(list, func(a, b event) int {
		switch {
		case a.v == nil && b.v == nil:
			return kindRank(a.kind) - kindRank(b.kind)
		case a.v == nil:
			return -1
		case b.v == nil:
			return 1
		}
		if c := a.v.Compare(b.v); c != 0 {
			return c
		}
		return kindRank(a.kind) - kindRank(b.kind)
	})
	if len(limits) > 0 {
		below := false
		for _, l := range limits {
			if pv.Compare(l) < 0 {
				below = true
			}
		}
		if !below {
			return false, nil, nil
		}
	}
	// compare ver with every event once (comparisons dominate the cost
	// of matching for some ecosystems)
	var cmpBuf [8]int
	cmps := cmpBuf[:0]
	if len(list) > len(cmpBuf) {
		cmps = make([]int, 0, len(list))
	}
	cmps = cmps[:len(list)]
	for i, e := range list {
		if e.v == nil {
			cmps[i] = 1 // introduced "0": ver is above it
		} else {
			cmps[i] = cache.compare(cmp, ver, e.raw, pv, e.v)
		}
	}
	affected := false
	for i, e := range list {
		switch e.kind {
		case 'i':
			if cmps[i] >= 0 {
				affected = true
			}
		case 'f':
			if cmps[i] >= 0 {
				affected = false
			}
		case 'a':
			if cmps[i] > 0 {
				affected = false
			}
		}
	}
	// the first leaving event above ver ends the interval ver is in: a
	// fixed version, or a last_affected (no fix known)
	var fixed string
	if affected {
		for i, e := range list {
			if e.v == nil {
				continue
			}
			if e.kind == 'f' && cmps[i] < 0 {
				fixed = e.raw
				break
			}
			if e.kind == 'a' && cmps[i] <= 0 {
				break
			}
		}
	}
	if !affected {
		return false, nil, nil
	}
	if fixed == "" {
		return true, nil, nil
	}
	return true, []string{fixed}, nil
}
