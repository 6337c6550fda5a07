// Package version orders package versions the way each ecosystem does,
// with the ecosystem's established comparator library:
//
//	Debian, Ubuntu                     github.com/knqyf263/go-deb-version
//	Alpine, Wolfi, Chainguard          github.com/knqyf263/go-apk-version
//	Red Hat, Rocky Linux, AlmaLinux,
//	SUSE, openSUSE, openEuler, ...     github.com/knqyf263/go-rpm-version
//	PyPI                               github.com/aquasecurity/go-pep440-version
//	Go                                 golang.org/x/mod/semver
//	npm, crates.io, Hex, Pub, SEMVER   github.com/Masterminds/semver/v3
//	Maven                              github.com/masahiro331/go-mvn-version
//	RubyGems                           github.com/aquasecurity/go-gem-version
//	NuGet, Packagist, others           Generic (below)
//
// Versions are never compared as strings.
package version

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	gem "github.com/aquasecurity/go-gem-version"
	pep440 "github.com/aquasecurity/go-pep440-version"
	apk "github.com/knqyf263/go-apk-version"
	deb "github.com/knqyf263/go-deb-version"
	rpm "github.com/knqyf263/go-rpm-version"
	mvn "github.com/masahiro331/go-mvn-version"
	gosemver "golang.org/x/mod/semver"
)

// Version is a parsed version; Compare is only defined between versions
// from the same Comparator.
type Version interface {
	// Compare returns -1, 0 or +1.
	Compare(other Version) int
	String() string
}

// Comparator parses the versions of one ecosystem.
type Comparator interface {
	Name() string
	Parse(s string) (Version, error)
}

// For returns the comparator of an OSV ecosystem (the release part, as in
// "Debian:12", is ignored). Unknown ecosystems get Generic.
func For(ecosystem string) Comparator {
	base := ecosystem
	if i := strings.IndexByte(base, ':'); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "Debian", "Ubuntu":
		return Debian
	case "Alpine", "Wolfi", "Chainguard", "Alpaquita", "BellSoft Hardened Containers", "MinimOS":
		return Alpine
	case "Red Hat", "Rocky Linux", "AlmaLinux", "SUSE", "openSUSE", "openEuler", "Mageia", "Azure Linux", "Photon OS", "Oracle Linux", "Amazon Linux":
		return RPM
	case "PyPI":
		return PEP440
	case "Go":
		return Go
	case "npm", "crates.io", "Hex", "Pub":
		return SemVer
	case "Maven":
		return Maven
	case "RubyGems":
		return RubyGems
	}
	return Generic
}

// Compare parses a and b with c and compares them.
func Compare(c Comparator, a, b string) (int, error) {
	va, err := c.Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := c.Parse(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

type cmpFunc[T any] struct {
	name  string
	parse func(string) (T, error)
	cmp   func(a, b T) int
}

type value[T any] struct {
	s   string
	v   T
	cmp func(a, b T) int
}

func (v value[T]) String() string { return v.s }

func (v value[T]) Compare(o Version) int {
	ov, ok := o.(value[T])
	if !ok {
		panic(fmt.Sprintf("version: comparing %T with %T", v, o))
	}
	switch c := v.cmp(v.v, ov.v); {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

func (c cmpFunc[T]) Name() string { return c.name }

func (c cmpFunc[T]) Parse(s string) (v Version, err error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty %s version", c.name)
	}
	// the libraries are not all fuzzed; a panic on odd input is a parse error
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("invalid %s version %q", c.name, s)
		}
	}()
	t, err := c.parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid %s version %q: %v", c.name, s, err)
	}
	return value[T]{s: s, v: t, cmp: c.cmp}, nil
}

// The comparators.
var (
	Debian Comparator = cmpFunc[deb.Version]{"Debian", deb.NewVersion, func(a, b deb.Version) int { return a.Compare(b) }}
	Alpine Comparator = cmpFunc[apk.Version]{"Alpine", apk.NewVersion, func(a, b apk.Version) int { return a.Compare(b) }}
	RPM    Comparator = cmpFunc[rpm.Version]{"RPM", func(s string) (rpm.Version, error) { return rpm.NewVersion(s), nil },
		func(a, b rpm.Version) int { return a.Compare(b) }}
	PEP440   Comparator = cmpFunc[pep440.Version]{"PEP 440", pep440.Parse, func(a, b pep440.Version) int { return a.Compare(b) }}
	Go       Comparator = cmpFunc[string]{"Go", parseGo, gosemver.Compare}
	SemVer   Comparator = cmpFunc[*semver.Version]{"SemVer", semver.NewVersion, func(a, b *semver.Version) int { return a.Compare(b) }}
	Maven    Comparator = cmpFunc[mvn.Version]{"Maven", mvn.NewVersion, func(a, b mvn.Version) int { return a.Compare(b) }}
	RubyGems Comparator = cmpFunc[gem.Version]{"RubyGems", gem.NewVersion, func(a, b gem.Version) int { return a.Compare(b) }}
	Generic  Comparator = cmpFunc[generic]{"generic", parseGeneric, compareGeneric}
)

// parseGo accepts Go module versions with or without the "v" prefix
// (OSV's Go records omit it), pseudo-versions, +incompatible, and Go
// toolchain versions ("go1.22.3", "go1.22rc1", "1.21.0-0").
func parseGo(s string) (string, error) {
	v := s
	if strings.HasPrefix(v, "go") {
		t, err := goToolchain(strings.TrimPrefix(v, "go"))
		if err != nil {
			return "", err
		}
		v = t
	} else if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if !gosemver.IsValid(v) {
		return "", errors.New("not a semantic version")
	}
	return v, nil
}

// goToolchain turns "1.22", "1.22.3", "1.22rc1", "1.21beta2" into semver.
func goToolchain(s string) (string, error) {
	pre := ""
	for _, tag := range []string{"rc", "beta", "alpha"} {
		if i := strings.Index(s, tag); i > 0 {
			n := s[i+len(tag):]
			if _, err := strconv.Atoi(n); err != nil {
				return "", errors.New("bad pre-release in Go version")
			}
			pre = "-" + tag + "." + n
			s = s[:i]
			break
		}
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return "", errors.New("not a Go version")
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return "", errors.New("not a Go version")
		}
	}
	if len(parts) == 2 {
		parts = append(parts, "0")
	}
	return "v" + strings.Join(parts, ".") + pre, nil
}

// generic orders dotted numeric versions with an optional "-" pre-release
// (NuGet's four-part versions, Packagist, unknown ecosystems): a leading
// "v" is dropped, "+build" ignored, missing numeric parts count as 0,
// numeric parts compare as numbers and other parts as case-insensitive
// text, and a version with a pre-release sorts before the same version
// without one.
type generic struct {
	main []string
	pre  []string
}

func parseGeneric(s string) (generic, error) {
	s = strings.TrimSpace(s)
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') && s[1] >= '0' && s[1] <= '9' {
		s = s[1:]
	}
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	var g generic
	main, pre, hasPre := strings.Cut(s, "-")
	if main == "" {
		return g, errors.New("no version number")
	}
	g.main = strings.Split(strings.ToLower(main), ".")
	if hasPre {
		g.pre = strings.FieldsFunc(strings.ToLower(pre), func(r rune) bool { return r == '.' || r == '-' })
		if len(g.pre) == 0 {
			g.pre = []string{""}
		}
	}
	return g, nil
}

func cmpPart(a, b string) int {
	na, ea := strconv.ParseUint(a, 10, 64)
	nb, eb := strconv.ParseUint(b, 10, 64)
	switch {
	case ea == nil && eb == nil:
		if na < nb {
			return -1
		} else if na > nb {
			return 1
		}
		return 0
	case ea == nil:
		return -1 // numbers before words, as in SemVer pre-releases
	case eb == nil:
		return 1
	}
	return strings.Compare(a, b)
}

func compareGeneric(a, b generic) int {
	n := max(len(a.main), len(b.main))
	for i := 0; i < n; i++ {
		pa, pb := "0", "0"
		if i < len(a.main) {
			pa = a.main[i]
		}
		if i < len(b.main) {
			pb = b.main[i]
		}
		if c := cmpPart(pa, pb); c != 0 {
			return c
		}
	}
	switch {
	case a.pre == nil && b.pre == nil:
		return 0
	case a.pre == nil:
		return 1
	case b.pre == nil:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		if c := cmpPart(a.pre[i], b.pre[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(a.pre) < len(b.pre):
		return -1
	case len(a.pre) > len(b.pre):
		return 1
	}
	return 0
}
