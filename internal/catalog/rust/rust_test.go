package rust

import (
	"bytes"
	"compress/zlib"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

func summary(t *testing.T, pkgs []catalog.Package, loc string) []string {
	t.Helper()
	var out []string
	for _, p := range pkgs {
		if p.Type != catalog.TypeCargo || p.Ecosystem != "crates.io" || len(p.Locations) != 1 || p.Locations[0].Path != loc {
			t.Errorf("bad package %+v", p)
		}
		s := p.Name + "@" + p.Version + " " + p.Metadata[MetaSource]
		if p.Metadata[MetaKind] != "" {
			s += " kind=" + p.Metadata[MetaKind]
		}
		if p.Metadata[MetaRoot] != "" {
			s += " root"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func parseLock(t *testing.T, fixture string) ([]catalog.Package, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	c := New()
	const p = "/src/app/Cargo.lock"
	if !c.Wants(p, 0o644, int64(len(data))) {
		t.Fatal("Wants(Cargo.lock) = false")
	}
	return c.Parse(context.Background(), catalog.NewFile(p, 0o644, data))
}

func TestCargoLock(t *testing.T) {
	const crates = "registry+https://github.com/rust-lang/crates.io-index"
	for fixture, want := range map[string][]string{
		"v1.Cargo.lock": {
			"hello@0.1.0 local",
			"libc@0.2.40 " + crates,
			"rand@0.4.2 git+https://github.com/rust-random/rand?rev=abc#0123456789abcdef0123456789abcdef01234567",
		},
		"v3.Cargo.lock": {
			"app@1.2.0 local",
			"serde@1.0.130 " + crates,
			"tokio@1.12.0 " + crates,
			"utils@0.1.0 local",
		},
		"v4.Cargo.lock": {
			"bytes@1.9.0 sparse+https://index.crates.io/",
			"regex@0.1.80 " + crates,
			"regex@1.11.1 " + crates,
			"tool@0.3.0 local",
		},
	} {
		t.Run(fixture, func(t *testing.T) {
			pkgs, err := parseLock(t, fixture)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			if got := summary(t, pkgs, "/src/app/Cargo.lock"); !slices.Equal(got, want) {
				t.Fatalf("got %q\nwant %q", got, want)
			}
		})
	}
	pkgs, _ := parseLock(t, "v3.Cargo.lock")
	for _, p := range pkgs {
		if p.Name == "serde" && p.Metadata[MetaChecksum] != "f12d06de37cf59146fbdecab66aa99f9fe4f78722e3607577a5375d66bd0c913" {
			t.Errorf("serde checksum = %q", p.Metadata[MetaChecksum])
		}
	}
}

func TestCargoLockBad(t *testing.T) {
	_, err := ParseCargoLock([]byte("[[package]]\nname = \"a\"\nversion = \n"))
	if err == nil || !strings.Contains(err.Error(), "not a valid Cargo.lock") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("syntax error: %v", err)
	}
	pkgs, err := ParseCargoLock([]byte("version = 3\n[[package]]\nname = \"a\"\n\n[[package]]\nname = \"b\"\nversion = \"1.0.0\"\n"))
	if err == nil || !strings.Contains(err.Error(), `[[package]] #1 ("a") lacks a name or version`) || len(pkgs) != 1 || pkgs[0].Name != "b" {
		t.Errorf("missing version: %v, %v", pkgs, err)
	}
	pkgs, err = ParseCargoLock([]byte("version = 9\n[[package]]\nname = \"b\"\nversion = \"1.0.0\"\n"))
	if err == nil || !strings.Contains(err.Error(), "format version 9") || len(pkgs) != 1 {
		t.Errorf("future version: %v, %v", pkgs, err)
	}
	if _, err := ParseCargoLock([]byte("package = 3\n")); err == nil {
		t.Error("package = 3 accepted")
	}
}

func zlibJSON(t testing.TB, json string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write([]byte(json))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const auditJSON = `{"packages":[
 {"name":"myapp","version":"0.1.0","source":"local","dependencies":[1,2,3],"root":true},
 {"name":"serde","version":"1.0.130","source":"crates.io","dependencies":[]},
 {"name":"cc","version":"1.0.73","source":"crates.io","kind":"build"},
 {"name":"rand","version":"0.8.5","source":"git","kind":"runtime"}
]}`

// TestAuditableBinary adds a .dep-v0 section to a real ELF executable (this
// test's own binary, built by Go) with objcopy, as cargo-auditable's linker
// section would be, and reads it back.
func TestAuditableBinary(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("objcopy (binutils) is needed for this test")
		}
		t.Skip("objcopy (binutils) not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	payload := filepath.Join(dir, "dep-v0")
	if err := os.WriteFile(payload, zlibJSON(t, auditJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "myapp")
	if out, err := exec.Command(objcopy, "--add-section", ".dep-v0="+payload, self, bin).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	c := New()
	for name, want := range map[string][]string{
		bin: {
			"cc@1.0.73 crates.io kind=build",
			"myapp@0.1.0 local root",
			"rand@0.8.5 git",
			"serde@1.0.130 crates.io",
		},
		self: nil, // a Go binary without the section
	} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Wants("/usr/local/bin/myapp", 0o755, int64(len(data))) {
			t.Fatal("Wants(executable) = false")
		}
		pkgs, err := c.Parse(context.Background(), catalog.NewFile("/usr/local/bin/myapp", 0o755, data))
		if err != nil {
			t.Fatal(err)
		}
		if got := summary(t, pkgs, "/usr/local/bin/myapp"); !slices.Equal(got, want) {
			t.Errorf("%s: got %q\nwant %q", filepath.Base(name), got, want)
		}
	}

	// A section that is not zlib data is reported, not ignored.
	if err := os.WriteFile(payload, []byte("not compressed"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if out, err := exec.Command(objcopy, "--add-section", ".dep-v0="+payload, self, bad).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Parse(context.Background(), catalog.NewFile("/bin/bad", 0o755, data))
	if err == nil || !strings.Contains(err.Error(), "/bin/bad: the .dep-v0 section is not zlib data") {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeDepV0Bad(t *testing.T) {
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"not zlib":   {[]byte("hello"), "is not zlib data"},
		"not json":   {zlibJSON(t, "{packages:"), "is not a cargo-auditable dependency list"},
		"truncated":  {zlibJSON(t, auditJSON)[:40], "decompressing the .dep-v0 section"},
		"bomb":       {zlibJSON(t, `{"packages":[`+strings.Repeat(" ", 9<<20)+`]}`), "decompresses to more than 8388608 bytes"},
		"no version": {zlibJSON(t, `{"packages":[{"name":"a"},{"name":"b","version":"1.0.0"}]}`), `package #1 ("a") lacks a name or version`},
	} {
		pkgs, err := DecodeDepV0(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if name == "no version" && (len(pkgs) != 1 || pkgs[0].Name != "b") {
			t.Errorf("%s: packages %v", name, pkgs)
		}
	}
}

func TestNotExecutables(t *testing.T) {
	c := New()
	for name, data := range map[string][]byte{
		"script":     bytes.Repeat([]byte("#!/bin/sh\n"), 200),
		"elf junk":   append([]byte("\x7fELF\x02\x01\x01"), bytes.Repeat([]byte{0xee}, 3000)...),
		"pe junk":    append([]byte("MZ"), bytes.Repeat([]byte{0x01}, 3000)...),
		"macho junk": append([]byte("\xcf\xfa\xed\xfe"), bytes.Repeat([]byte{0x02}, 3000)...),
		"class":      append([]byte("\xca\xfe\xba\xbe\x00\x00\x00\x34"), make([]byte, 3000)...),
	} {
		pkgs, err := c.Parse(context.Background(), catalog.NewFile("/bin/x", 0o755, data))
		if err != nil || len(pkgs) != 0 {
			t.Errorf("%s: %v, %v", name, pkgs, err)
		}
	}
}

func TestWants(t *testing.T) {
	c := New()
	for _, tc := range []struct {
		path string
		mode os.FileMode
		size int64
		want bool
	}{
		{"/src/Cargo.lock", 0o644, 10, true},
		{"/src/NotCargo.lock", 0o644, 10, false},
		{"/src/Cargo.lock.bak", 0o644, 10, false},
		{"/usr/bin/rg", 0o755, 5 << 20, true},
		{"/usr/bin/rg", 0o644, 5 << 20, false},
		{"/usr/bin/tiny", 0o755, 100, false},
	} {
		if got := c.Wants(tc.path, tc.mode, tc.size); got != tc.want {
			t.Errorf("Wants(%s, %v, %d) = %v", tc.path, tc.mode, tc.size, got)
		}
	}
	catalogtest.AssertWantsAllocatesNothing(t, c, 0o644, 4096, "/usr/lib/x/Cargo.lock")
}

func FuzzCargoLock(f *testing.F) {
	for _, name := range []string{"v1.Cargo.lock", "v3.Cargo.lock", "v4.Cargo.lock"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version = 3\n[[package]]\nname = 1\n"))
	catalogtest.FuzzPackages(f, ParseCargoLock, catalogtest.HasNameVersion)
}

func FuzzDecodeDepV0(f *testing.F) {
	f.Add(zlibJSON(f, auditJSON))
	f.Add(zlibJSON(f, `{"packages":[{"name":"a","version":"1","root":true}]}`))
	f.Add([]byte("x\x9c"))
	catalogtest.FuzzPackages(f, DecodeDepV0, catalogtest.HasNameVersion)
}

// FuzzAuditableBinary feeds arbitrary executables to the section reader.
func FuzzAuditableBinary(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Add([]byte("MZ\x90\x00\x03\x00"))
	f.Add([]byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"))
	if self, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(self); err == nil && len(b) > 4096 {
			f.Add(b[:4096])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := New().Parse(context.Background(), catalog.NewFile("/bin/f", 0o755, data))
		if err != nil && !strings.HasPrefix(err.Error(), "/bin/f: ") {
			t.Fatalf("error without the path: %v", err)
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("bad package %+v", p)
			}
		}
	})
}

// TestAuditablePE does the same for a Windows executable (PE), built with
// the go command for windows/amd64.
func TestAuditablePE(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("objcopy (binutils) is needed for this test")
		}
		t.Skip("objcopy (binutils) not installed")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/tiny\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hi\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "tiny.exe")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	payload := filepath.Join(dir, "dep-v0")
	if err := os.WriteFile(payload, zlibJSON(t, auditJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "app.exe")
	if out, err := exec.Command(objcopy, "--add-section", ".dep-v0="+payload, filepath.Join(dir, "tiny.exe"), exe).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := New().Parse(context.Background(), catalog.NewFile("/app/app.exe", 0o755, data))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cc@1.0.73 crates.io kind=build", "myapp@0.1.0 local root", "rand@0.8.5 git", "serde@1.0.130 crates.io"}
	if got := summary(t, pkgs, "/app/app.exe"); !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
