package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/moat-dev/moat/internal/catalog"
)

type entry struct {
	name, body, link string
	typ              byte
}

func mkTar(t testing.TB, es ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

// lines is a cataloger that reports one package per line of *.pkgs files.
type lines struct{}

func (lines) Name() string { return "lines" }
func (lines) Wants(p string, _ fs.FileMode, _ int64) bool {
	return strings.HasSuffix(p, ".pkgs")
}
func (lines) Parse(_ context.Context, f *catalog.File) ([]catalog.Package, error) {
	b, _ := f.Bytes(1 << 20)
	var out []catalog.Package
	for _, l := range strings.Fields(string(b)) {
		out = append(out, catalog.Package{Name: l, Version: "1", Locations: []catalog.Location{{Path: f.Path}}})
	}
	return out, nil
}

func walk(t testing.TB, idx int, b []byte) *LayerResult {
	w := &Walker{Catalogers: []catalog.Cataloger{lines{}}, TempDir: t.TempDir()}
	lr, err := w.WalkLayer(context.Background(), idx, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return lr
}

func visible(fs *FS) []string {
	var out []string
	fs.Walk(func(e Entry, layer int) { out = append(out, e.Path+"@"+string(rune('0'+layer))) })
	sort.Strings(out)
	return out
}

func TestSquashWhiteouts(t *testing.T) {
	l0 := walk(t, 0, mkTar(t,
		entry{name: "a/", typ: tar.TypeDir}, entry{name: "a/x.pkgs", body: "x"}, entry{name: "a/y"},
		entry{name: "b/", typ: tar.TypeDir}, entry{name: "b/old"},
		entry{name: "c"}, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/e"},
	))
	l1 := walk(t, 1, mkTar(t,
		entry{name: "a/.wh.x.pkgs"},         // delete one file
		entry{name: "b/.wh..wh..opq"},       // hide b's lower content...
		entry{name: "b/new"},                // ...but keep this layer's
		entry{name: "c/", typ: tar.TypeDir}, // a file becomes a dir
		entry{name: "d"},                    // a dir becomes a file: d/e goes
		entry{name: "./z/../../etc/passwd"}, // escapes: ignored with a warning
	))
	fs := Squash([]*LayerResult{l0, l1})
	got := strings.Join(visible(fs), " ")
	want := "/a/y@0 /a@0 /b/new@1 /b@0 /c@1 /d@1"
	if got != want {
		t.Fatalf("visible:\n got %s\nwant %s", got, want)
	}
	if fs.Len() != 6 {
		t.Errorf("Len = %d", fs.Len())
	}
	if len(l1.Warnings) != 1 || !strings.Contains(l1.Warnings[0], "escapes the root") {
		t.Errorf("warnings %v", l1.Warnings)
	}
	if len(l0.Parsed["/a/x.pkgs"].Packages) != 1 {
		t.Errorf("parsed %v", l0.Parsed)
	}
	if !DeletedIn(l1, "/a/x.pkgs") || !DeletedIn(l1, "/b/old") || DeletedIn(l1, "/b") {
		t.Error("DeletedIn disagrees with the whiteouts")
	}
}

func TestResolve(t *testing.T) {
	l := walk(t, 0, mkTar(t,
		entry{name: "usr/lib/os-release", body: "ID=x"},
		entry{name: "etc/os-release", typ: tar.TypeSymlink, link: "../usr/lib/os-release"},
		entry{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		entry{name: "abs", typ: tar.TypeSymlink, link: "/lib/os-release"},
		entry{name: "loop1", typ: tar.TypeSymlink, link: "loop2"},
		entry{name: "loop2", typ: tar.TypeSymlink, link: "/loop1"},
		entry{name: "up", typ: tar.TypeSymlink, link: "../../../../usr/lib/os-release"},
	))
	fs := Squash([]*LayerResult{l})
	for in, want := range map[string]string{
		"/etc/os-release": "/usr/lib/os-release",
		"/lib/os-release": "/usr/lib/os-release",
		"/abs":            "/usr/lib/os-release",
		"/up":             "/usr/lib/os-release", // never above the image root
	} {
		got, err := fs.Resolve(in)
		if err != nil || got != want {
			t.Errorf("Resolve(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := fs.Resolve("/loop1"); err != ErrSymlinkLoop {
		t.Errorf("loop: %v", err)
	}
}

func TestHardlinks(t *testing.T) {
	l := walk(t, 0, mkTar(t,
		entry{name: "a.pkgs", body: "p q"},
		entry{name: "b.pkgs", typ: tar.TypeLink, link: "a.pkgs"},
		entry{name: "c.pkgs", typ: tar.TypeLink, link: "missing.pkgs"},
	))
	if got := len(l.Parsed["/b.pkgs"].Packages); got != 2 {
		t.Errorf("hard link got %d packages", got)
	}
	if p := l.Parsed["/b.pkgs"].Packages[0].Locations[0].Path; p != "/b.pkgs" {
		t.Errorf("hard link location %s", p)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "missing.pkgs") {
		t.Errorf("warnings %v", l.Warnings)
	}
}

func TestTruncatedAndCorrupt(t *testing.T) {
	good := mkTar(t, entry{name: "a.pkgs", body: strings.Repeat("x ", 5000)})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good)
	zw.Close()
	w := &Walker{Catalogers: []catalog.Cataloger{lines{}}, TempDir: t.TempDir()}
	for name, b := range map[string][]byte{
		"truncated tar":  good[:700],
		"truncated gzip": gz.Bytes()[:gz.Len()/2],
		"corrupt gzip":   append(append([]byte{}, gz.Bytes()[:20]...), bytes.Repeat([]byte{0xAA}, 200)...),
	} {
		if _, err := w.WalkLayer(context.Background(), 0, bytes.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzWalkLayer(f *testing.F) {
	f.Add(mkTar(f, entry{name: "a.pkgs", body: "x y"}, entry{name: "b/.wh..wh..opq"}, entry{name: ".wh.c"}))
	f.Add(mkTar(f, entry{name: "l", typ: tar.TypeSymlink, link: "../../x"}, entry{name: "h", typ: tar.TypeLink, link: "l"}))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(mkTar(f, entry{name: "z.pkgs", body: "z"}))
	zw.Close()
	f.Add(gz.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &Walker{Catalogers: []catalog.Cataloger{lines{}}, TempDir: t.TempDir()}
		lr, _ := w.WalkLayer(context.Background(), 0, bytes.NewReader(b))
		fs := Squash([]*LayerResult{lr})
		fs.Walk(func(e Entry, _ int) {
			if !strings.HasPrefix(e.Path, "/") || strings.Contains(e.Path, "..") {
				t.Fatalf("bad path %q", e.Path)
			}
			fs.Resolve(e.Path)
		})
	})
}
