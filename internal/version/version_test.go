package version

import "testing"

func TestOrder(t *testing.T) {
	cases := []struct {
		eco  string
		a, b string
		want int
	}{
		// Debian: epochs, tilde, revisions, binNMU
		{"Debian:12", "1:1.0-1", "2.0-1", 1},
		{"Debian:12", "1.0~rc1-1", "1.0-1", -1},
		{"Debian:12", "1.0-1", "1.0-1+b2", -1},
		{"Debian:12", "3.0.11-1~deb12u2", "3.0.11-1~deb12u1", 1},
		{"Debian:12", "3.0.11-1~deb12u2", "3.0.11-1", -1},
		{"Ubuntu:22.04:LTS", "2.35-0ubuntu3.1", "2.35-0ubuntu3", 1},
		// Alpine -rN
		{"Alpine:v3.20", "3.3.1-r0", "3.3.1-r1", -1},
		{"Alpine:v3.20", "1.36.1-r10", "1.36.1-r9", 1},
		{"Alpine:v3.20", "1.2.3_rc1-r0", "1.2.3-r0", -1},
		// RPM epochs
		{"Rocky Linux:9", "1:3.0.7-24.el9", "3.0.7-27.el9", 1},
		{"AlmaLinux:9", "0:3.0.7-24.el9", "3.0.7-24.el9", 0},
		{"Red Hat", "2.5-10.el8", "2.5-9.el8", 1},
		// PEP 440 pre, post, dev, normalisation
		{"PyPI", "1.0rc1", "1.0", -1},
		{"PyPI", "1.0.post1", "1.0", 1},
		{"PyPI", "1.0.dev0", "1.0a1", -1},
		{"PyPI", "1.0", "1.0.0", 0},
		{"PyPI", "2.10", "2.9", 1},
		// Go: v prefix, pseudo-versions, +incompatible, toolchains
		{"Go", "v0.3.7", "0.3.8", -1},
		{"Go", "v0.0.0-20210226172049-e18ecbb05110", "0.0.0-20211112202133-69e39bad7dc2", -1},
		{"Go", "v0.3.8-0.20220101000000-abcdefabcdef", "0.3.8", -1},
		{"Go", "v2.0.0+incompatible", "2.0.1", -1},
		{"Go", "go1.22.3", "1.22.4", -1},
		{"Go", "go1.22rc1", "1.22.0-0", 1},
		{"Go", "go1.22rc1", "1.22.0", -1},
		{"Go", "v1.21.0", "1.21.0-0", 1},
		// npm / SemVer 2.0 pre-release order
		{"npm", "1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"npm", "1.0.0-alpha.beta", "1.0.0-beta", -1},
		{"npm", "1.0.0-rc.1", "1.0.0", -1},
		{"crates.io", "0.10.0", "0.9.9", 1},
		// Maven qualifiers
		{"Maven", "2.13.4.1", "2.13.4", 1},
		{"Maven", "1.0-alpha-1", "1.0", -1},
		{"Maven", "1.0-SNAPSHOT", "1.0", -1},
		{"Maven", "1.0.RELEASE", "1.0", 0},
		{"Maven", "9.4.50.v20221201", "9.4.9.v20180320", 1},
		{"Maven", "1.0-sp1", "1.0", 1},
		// RubyGems
		{"RubyGems", "1.0.0.pre", "1.0.0", -1},
		{"RubyGems", "1.10", "1.9", 1},
		{"RubyGems", "2.0.0.rc1", "2.0.0.beta2", 1},
		// NuGet four parts and pre-releases, Packagist
		{"NuGet", "4.0.0.1", "4.0.0", 1},
		{"NuGet", "1.0.0-beta", "1.0.0", -1},
		{"NuGet", "1.0.0-Beta.2", "1.0.0-beta.10", -1},
		{"Packagist", "v2.4.1", "2.4.10", -1},
		{"Packagist", "5.4.0", "5.4", 0},
	}
	for _, c := range cases {
		got, err := Compare(For(c.eco), c.a, c.b)
		if err != nil {
			t.Errorf("%s: %s vs %s: %v", c.eco, c.a, c.b, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: compare(%s, %s) = %d, want %d", c.eco, c.a, c.b, got, c.want)
		}
		if back, _ := Compare(For(c.eco), c.b, c.a); back != -c.want {
			t.Errorf("%s: compare(%s, %s) = %d, not antisymmetric", c.eco, c.b, c.a, back)
		}
	}
}

func TestInvalid(t *testing.T) {
	for _, c := range []struct{ eco, v string }{
		{"Go", "latest"}, {"Go", ""}, {"npm", "not.a.version"}, {"PyPI", "1.0-what-is-this"}, {"Debian", "a:1"},
	} {
		if _, err := For(c.eco).Parse(c.v); err == nil {
			t.Errorf("%s: %q parsed", c.eco, c.v)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1:1.0~rc1-1+b2", "1.2.3_rc1-r0", "1:3.0.7-24.el9", "1.0.post1", "v0.0.0-2021-abc", "1.0-SNAPSHOT", "1.0.0.pre", "4.0.0.1-beta"} {
		f.Add(s, s+"1")
	}
	comps := []Comparator{Debian, Alpine, RPM, PEP440, Go, SemVer, Maven, RubyGems, Generic}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, c := range comps {
			va, err1 := c.Parse(a)
			vb, err2 := c.Parse(b)
			if err1 == nil && err2 == nil {
				if x, y := va.Compare(vb), vb.Compare(va); x != -y {
					t.Errorf("%s: %q vs %q not antisymmetric (%d, %d)", c.Name(), a, b, x, y)
				}
			}
		}
	})
}
