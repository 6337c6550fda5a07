package gobinary

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

const helloGoMod = `module example.com/hello

go 1.21

require (
	example.com/local v0.0.0
	github.com/google/uuid v1.3.0
	golang.org/x/text v0.3.7
)

replace github.com/google/uuid v1.3.0 => github.com/google/uuid v1.6.0

replace example.com/local => ./local
`

const helloMain = `package main

import (
	"fmt"

	"example.com/local"
	"github.com/google/uuid"
	"golang.org/x/text/width"
)

func main() {
	fmt.Println(width.Narrow.String("x"), uuid.NewString(), local.Hello())
}
`

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildHello builds the test program twice (plain and stripped) with the go
// command, fetching pinned module versions through the module proxy.
func buildHello(t *testing.T) (plain, stripped string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gobinary-test-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		files := map[string]string{
			"go.mod":         helloGoMod,
			"main.go":        helloMain,
			"local/go.mod":   "module example.com/local\n\ngo 1.21\n",
			"local/local.go": "package local\n\nfunc Hello() string { return \"hi\" }\n",
		}
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				buildErr = err
				return
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				buildErr = err
				return
			}
		}
		for _, args := range [][]string{
			{"build", "-o", "hello"},
			{"build", "-ldflags=-s -w", "-o", "hello-stripped"},
		} {
			cmd := exec.Command("go", args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = &buildError{args: args, out: string(out), err: err}
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building test binary: %v", buildErr)
	}
	return filepath.Join(buildDir, "hello"), filepath.Join(buildDir, "hello-stripped")
}

type buildError struct {
	args []string
	out  string
	err  error
}

func (e *buildError) Error() string {
	return "go " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func parseFile(t *testing.T, local, imagePath string) ([]catalog.Package, error) {
	t.Helper()
	data, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	c := New()
	if !c.Wants(imagePath, 0o755, int64(len(data))) {
		t.Fatalf("Wants(%s) = false for an executable", imagePath)
	}
	return c.Parse(context.Background(), catalog.NewFile(imagePath, 0o755, data))
}

func summary(pkgs []catalog.Package) []string {
	var out []string
	for _, p := range pkgs {
		s := p.Name + "@" + p.Version
		if p.Type != catalog.TypeGo || p.Ecosystem != "Go" {
			s += " BAD-TYPE"
		}
		if len(p.Locations) != 1 || p.Locations[0].Path != "/usr/bin/hello" {
			s += " BAD-LOCATION"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestRealBinary(t *testing.T) {
	plain, stripped := buildHello(t)
	wantStdlib := GoVersionToSemver(runtime.Version())
	if !strings.HasPrefix(wantStdlib, "v1.") {
		t.Fatalf("runtime version %q converted to %q", runtime.Version(), wantStdlib)
	}
	want := []string{
		"example.com/hello@(devel)",
		"example.com/local@(devel)",
		"github.com/google/uuid@v1.6.0",
		"golang.org/x/text@v0.3.7",
		"stdlib@" + wantStdlib,
	}
	for _, bin := range []string{plain, stripped} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			pkgs, err := parseFile(t, bin, "/usr/bin/hello")
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(pkgs); !slices.Equal(got, want) {
				t.Fatalf("packages:\n got %q\nwant %q", got, want)
			}
			byName := map[string]catalog.Package{}
			for _, p := range pkgs {
				byName[p.Name] = p
			}
			m := byName["example.com/hello"].Metadata
			if m[MetaMainModule] != "true" || m[MetaDevel] != "true" || m["GOOS"] != "linux" || m["GOARCH"] != "amd64" || m["CGO_ENABLED"] != "0" {
				t.Errorf("main module metadata = %v", m)
			}
			if m := byName["github.com/google/uuid"].Metadata; m[MetaReplaces] != "github.com/google/uuid@v1.3.0" || !strings.HasPrefix(m[MetaSum], "h1:") || m[MetaMainModule] != "" {
				t.Errorf("uuid metadata = %v", m)
			}
			if m := byName["example.com/local"].Metadata; m[MetaReplaces] != "example.com/local@v0.0.0" || m[MetaLocal] != "./local" {
				t.Errorf("local metadata = %v", m)
			}
			if m := byName["golang.org/x/text"].Metadata; m[MetaReplaces] != "" || m[MetaSum] == "" {
				t.Errorf("x/text metadata = %v", m)
			}
			if m := byName["stdlib"].Metadata; m[MetaGoToolchain] != runtime.Version() {
				t.Errorf("stdlib metadata = %v, want goToolchain %s", m, runtime.Version())
			}
		})
	}
}

func TestNotGo(t *testing.T) {
	plain, _ := buildHello(t)
	goBin, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	lsPath, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := os.ReadFile(lsPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"ls":          ls,
		"script":      bytes.Repeat([]byte("#!/bin/sh\necho hello\n"), 100),
		"java class":  append([]byte("\xca\xfe\xba\xbe\x00\x00\x00\x34"), make([]byte, 2000)...),
		"elf garbage": append([]byte("\x7fELF\x02\x01\x01"), bytes.Repeat([]byte{0xff}, 4000)...),
		"pe garbage":  append([]byte("MZ"), bytes.Repeat([]byte{0x41}, 4000)...),
		"macho junk":  append([]byte("\xcf\xfa\xed\xfe"), bytes.Repeat([]byte{0x7f}, 4000)...),
	}
	// A Go binary cut at many points must never panic; cuts before the
	// build information give nothing, never a wrong package.
	for _, n := range []int{16, 64, 1000, 4096, len(goBin) / 3, len(goBin) / 2, len(goBin) - 100} {
		cases[fmt.Sprintf("truncated-%d", n)] = goBin[:n]
	}
	for name, data := range cases {
		pkgs, err := New().Parse(context.Background(), catalog.NewFile("/bin/x", 0o755, data))
		if strings.HasPrefix(name, "truncated") {
			for _, p := range pkgs {
				if p.Name == "" || p.Version == "" {
					t.Errorf("%s: bad package %+v", name, p)
				}
			}
			continue
		}
		if err != nil || len(pkgs) != 0 {
			t.Errorf("%s: got %v, %v; want nothing", name, pkgs, err)
		}
	}
}

func TestWants(t *testing.T) {
	c := New()
	for _, tc := range []struct {
		mode fs.FileMode
		size int64
		want bool
	}{
		{0o755, 2 << 20, true},
		{0o700, 2 << 20, true},
		{0o001, 2 << 20, true},
		{0o644, 2 << 20, false},
		{0o755, 100, false},
		{0o755, 2 << 30, false},
	} {
		if got := c.Wants("/usr/bin/x", tc.mode, tc.size); got != tc.want {
			t.Errorf("Wants(%v, %d) = %v", tc.mode, tc.size, got)
		}
	}
}

func TestWantsAllocs(t *testing.T) {
	c := New()
	catalogtest.AssertWantsAllocatesNothing(t, c, 0o755, 4096, "/usr/bin/x")
}

func TestGoVersionToSemver(t *testing.T) {
	for in, want := range map[string]string{
		"go1.22.3":                "v1.22.3",
		"go1.21":                  "v1.21.0",
		"go1.21.0":                "v1.21.0",
		"go1.23rc1":               "v1.23.0-rc.1",
		"go1.20beta2":             "v1.20.0-beta.2",
		"go1.26.8":                "v1.26.8",
		"go1":                     "v1.0.0",
		"go1.22.3 X:boringcrypto": "v1.22.3",
		"go1.24rc10 X:nosynchashtriggers,aliastypeparams": "v1.24.0-rc.10",
		"devel go1.24-abc +0000":                          "devel go1.24-abc +0000",
		"go1.x":                                           "go1.x",
		"go1.2.3.4":                                       "go1.2.3.4",
		"gorc1":                                           "gorc1",
		"go1.2rc":                                         "go1.2rc",
		"":                                                "",
	} {
		if got := GoVersionToSemver(in); got != want {
			t.Errorf("GoVersionToSemver(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse feeds arbitrary bytes, seeded with real executables, to the
// build information reader: it must never panic and never report a package
// without a name or version.
func FuzzParse(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Add([]byte("MZ\x90\x00"))
	f.Add([]byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"))
	f.Add([]byte("\xca\xfe\xba\xbe\x00\x00\x00\x02"))
	if self, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(self); err == nil && len(b) > 8192 {
			f.Add(b[:8192])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, _ := New().Parse(context.Background(), catalog.NewFile("/x", 0o755, data))
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("bad package %+v", p)
			}
		}
	})
}

func FuzzGoVersionToSemver(f *testing.F) {
	for _, s := range []string{"go1.22.3", "go1.21", "go1.23rc1", "go1.22 X:y", "devel go1.24-abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := GoVersionToSemver(s)
		if out != s && !strings.HasPrefix(out, "v") {
			t.Fatalf("%q → %q", s, out)
		}
	})
}

// TestOtherFormats reads Go binaries cross-compiled for Windows (PE) and
// macOS (Mach-O).
func TestOtherFormats(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/tiny\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hi\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ goos, goarch, format string }{
		{"windows", "amd64", FormatPE},
		{"darwin", "arm64", FormatMachO},
	} {
		cmd := exec.Command("go", "build", "-o", "tiny-"+tc.goos)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOOS="+tc.goos, "GOARCH="+tc.goarch, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build for %s: %v\n%s", tc.goos, err, out)
		}
		data, err := os.ReadFile(filepath.Join(dir, "tiny-"+tc.goos))
		if err != nil {
			t.Fatal(err)
		}
		if f := Format(bytes.NewReader(data)); f != tc.format {
			t.Errorf("%s: format %q, want %q", tc.goos, f, tc.format)
		}
		pkgs, err := New().Parse(context.Background(), catalog.NewFile("/usr/bin/hello", 0o755, data))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"example.com/tiny@(devel)", "stdlib@" + GoVersionToSemver(runtime.Version())}
		if got := summary(pkgs); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", tc.goos, got, want)
		}
		if len(pkgs) > 0 && (pkgs[0].Metadata["GOOS"] != tc.goos || pkgs[0].Metadata["GOARCH"] != tc.goarch) {
			t.Errorf("%s: metadata %v", tc.goos, pkgs[0].Metadata)
		}
	}
}
