package dpkg

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

const sample = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1

Package: removed
Status: deinstall ok config-files
Version: 1.0

Package: libssl3
Status: hold ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u2
Conffiles:
 /etc/ssl/openssl.cnf 6b4ea5b4d2fc4fa7e1d0e0e5a8c4a0f2
`

func TestParseStatus(t *testing.T) {
	pkgs, err := ParseStatus(sample, "/var/lib/dpkg/status")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkgs {
		got = append(got, p.Name+"|"+p.Version+"|"+p.SourceName+"|"+p.SourceVersion+"|"+p.Arch)
	}
	want := []string{
		"libc6|2.36-9+deb12u4|glibc|2.36-9+deb12u4|amd64",
		"bsdutils|1:2.38.1-5+b1|util-linux|2.38.1-5|amd64",
		"libssl3|3.0.11-1~deb12u2|openssl|3.0.11-1~deb12u2|amd64",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMalformed(t *testing.T) {
	pkgs, err := ParseStatus("Package: ok\nVersion: 1\n\nnot a field line\nPackage: noversion\n\n", "/s")
	if err == nil || !strings.Contains(err.Error(), "line 4 is not a field") || !strings.Contains(err.Error(), "no Package or Version") {
		t.Fatalf("err = %v", err)
	}
	if len(pkgs) != 1 || pkgs[0].Name != "ok" {
		t.Fatalf("the good paragraph must survive: %+v", pkgs)
	}
}

func TestWants(t *testing.T) {
	c := New()
	catalogtest.AssertWants(t, c, 10, map[string]bool{
		"/var/lib/dpkg/status":                 true,
		"/var/lib/dpkg/status-old":             false,
		"/var/lib/dpkg/status.d/libc6":         true,
		"/var/lib/dpkg/status.d/libc6.md5sums": false,
		"/var/lib/dpkg/status.d/sub/x":         false,
		"/home/x/var/lib/dpkg/status":          false,
	})
}

// TestRealStatus parses this machine's own dpkg database and compares it
// with what dpkg-query reports as installed.
func TestRealStatus(t *testing.T) {
	b, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI machines are Debian: %v", err)
		}
		t.Skip("no dpkg database on this machine")
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version} ${source:Package} ${source:Version}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == "installed" {
			want = append(want, strings.Join(f[1:], " "))
		}
	}
	pkgs, err := New().Parse(context.Background(), catalog.NewFile("/var/lib/dpkg/status", fs.FileMode(0o644), b))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkgs {
		got = append(got, strings.Join([]string{p.Name, p.Version, p.SourceName, p.SourceVersion}, " "))
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(want) < 50 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("moat found %d packages, dpkg-query %d installed; first differences:\n%s", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return "moat: " + a[i] + "\ndpkg: " + b[i]
		}
	}
	return "(lengths differ)"
}

func FuzzParseStatus(f *testing.F) {
	f.Add(sample)
	f.Add("Package: a\nVersion: 1\nSource: b (2\n")
	f.Add("\n\n:\n x\n")
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, _ := ParseStatus(s, "/var/lib/dpkg/status")
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("package without name or version: %+v", p)
			}
		}
	})
}
