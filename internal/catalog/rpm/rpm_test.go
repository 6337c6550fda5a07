package rpm

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

// rpmTestdata finds the real rpm databases that ship with go-rpmdb's module
// (CentOS BDB, Fedora/Mariner SQLite, SUSE NDB).
func rpmTestdata(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/knqyf263/go-rpmdb").Output()
	if err != nil {
		t.Fatalf("locating go-rpmdb: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "pkg", "testdata")
}

func TestRealDatabases(t *testing.T) {
	dir := rpmTestdata(t)
	cases := []struct {
		path      string
		dbFile    string
		min       int
		name, ver string
		source    string
	}{
		{"centos7-python35/Packages", "/var/lib/rpm/Packages", 100, "rh-python35-python-libs", "", "rh-python35-python"},
		{"cbl-mariner-2.0/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite", 50, "bash", "", "bash"},
		{"sle15-bci/Packages.db", "/usr/lib/sysimage/rpm/Packages.db", 30, "bash", "", "bash"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, c.path))
			if err != nil {
				t.Skipf("fixture not present in this go-rpmdb version: %v", err)
			}
			cat := New()
			if !cat.Wants(c.dbFile, 0o644, int64(len(b))) {
				t.Fatalf("Wants(%s) = false", c.dbFile)
			}
			f := catalog.NewFile(c.dbFile, fs.FileMode(0o644), b)
			f.SetTempDir(t.TempDir())
			pkgs, err := cat.Parse(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			if len(pkgs) < c.min {
				t.Fatalf("%d packages, want at least %d", len(pkgs), c.min)
			}
			found := false
			for _, p := range pkgs {
				if p.Name == "gpg-pubkey" {
					t.Errorf("gpg-pubkey is not a package")
				}
				if p.Type != catalog.TypeRPM || p.Version == "" || !strings.Contains(p.Version, "-") {
					t.Errorf("bad package %+v", p)
				}
				if p.Name == c.name {
					found = true
					if p.SourceName != c.source || p.SourceVersion == "" {
						t.Errorf("%s: source %q %q, want %q", p.Name, p.SourceName, p.SourceVersion, c.source)
					}
				}
			}
			if !found {
				t.Errorf("%s not found", c.name)
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	f := catalog.NewFile("/var/lib/rpm/rpmdb.sqlite", 0o644, []byte("SQLite format 3\x00garbage garbage"))
	f.SetTempDir(t.TempDir())
	if _, err := New().Parse(context.Background(), f); err == nil {
		t.Fatal("want an error for a corrupt database")
	}
	f = catalog.NewFile("/var/lib/rpm/Packages", 0o644, make([]byte, 8192))
	f.SetTempDir(t.TempDir())
	if _, err := New().Parse(context.Background(), f); err == nil {
		t.Fatal("want an error for a zeroed BDB file")
	}
}

func TestSplitSourceRPM(t *testing.T) {
	for in, want := range map[string]string{
		"bash-5.1.8-6.el9.src.rpm":          "bash 5.1.8-6.el9",
		"python3.11-3.11.5-1.el9_3.src.rpm": "python3.11 3.11.5-1.el9_3",
		"glibc-2.34-60.cm2.src.rpm":         "glibc 2.34-60.cm2",
		"nodash.src.rpm":                    " ",
		"":                                  " ",
	} {
		n, v := SplitSourceRPM(in)
		if n+" "+v != want {
			t.Errorf("SplitSourceRPM(%q) = %q %q, want %q", in, n, v, want)
		}
	}
}
