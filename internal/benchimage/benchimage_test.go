package benchimage

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"errors"
	"io"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type layerFile struct {
	layer int
	data  []byte
}

// readImage returns, for every regular file and whiteout of the image, its
// content per layer (package metadata files only), and counts.
func readImage(t *testing.T, archive string) (files map[string][]layerFile, whiteouts map[string]int, nfiles int, nbytes int64) {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files, whiteouts = map[string][]layerFile{}, map[string]int{}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := "/" + strings.TrimSuffix(h.Name, "/")
			if b := path.Base(p); strings.HasPrefix(b, ".wh.") {
				whiteouts[path.Join(path.Dir(p), b[4:])] = i
				continue
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			nfiles++
			nbytes += h.Size
			b := path.Base(p)
			if b == "status" || b == "package.json" || b == "METADATA" || strings.HasSuffix(p, ".jar") || h.Mode&0o111 != 0 && h.Size > 1<<20 {
				data, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				files[p] = append(files[p], layerFile{i, data})
			}
		}
		rc.Close()
	}
	return
}

func TestGenerateSmallImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go binaries")
	}
	ctx := context.Background()
	dir := t.TempDir()
	im, err := Generate(ctx, Options{Scale: 0.005, Dir: dir, OCILayout: true})
	if err != nil {
		t.Fatal(err)
	}
	e := im.Expected
	files, whiteouts, nfiles, nbytes := readImage(t, im.Archive)
	if nfiles != e.Files || nbytes != e.Bytes {
		t.Errorf("image holds %d files, %d bytes; Expected says %d, %d", nfiles, nbytes, e.Files, e.Bytes)
	}
	if e.Layers != 4 {
		t.Errorf("%d layers, want 4", e.Layers)
	}

	// dpkg: the top layer's status lists every package, the base layer's
	// all but the added ones; Source fields are present.
	st := files["/var/lib/dpkg/status"]
	if len(st) != 2 || st[0].layer != 0 || st[1].layer != 3 {
		t.Fatalf("status written by layers %v, want 0 and 3", st)
	}
	top := string(st[1].data)
	if n := strings.Count(top, "\nPackage: ") + 1; n != len(e.Dpkg) {
		t.Errorf("top status has %d paragraphs, Expected %d packages", n, len(e.Dpkg))
	}
	added := 0
	for _, d := range e.Dpkg {
		if !strings.Contains(top, "Package: "+d.Name+"\n") || !strings.Contains(top, "Version: "+d.Version+"\n") {
			t.Errorf("package %s %s missing from status", d.Name, d.Version)
		}
		if d.Layer == 3 {
			added++
			if strings.Contains(string(st[0].data), "Package: "+d.Name+"\n") {
				t.Errorf("%s is said to be added by layer 3 but is in layer 0's status", d.Name)
			}
		}
	}
	if added != 5 || !strings.Contains(top, "\nSource: ") {
		t.Errorf("%d packages added by the top layer, want 5; Source fields present: %v", added, strings.Contains(top, "\nSource: "))
	}

	// npm: one package.json per installed package; deleted ones whited out
	// (directly or through a deleted parent directory).
	for _, p := range append(append([]NpmPackage(nil), e.Npm...), e.NpmDeleted...) {
		pj := files[p.Path]
		if len(pj) != 1 || !bytes.Contains(pj[0].data, []byte(`"version": "`+p.Version+`"`)) {
			t.Errorf("%s: package.json for %s@%s missing", p.Path, p.Name, p.Version)
		}
	}
	for _, p := range e.NpmDeleted {
		deleted := false
		for d := path.Dir(p.Path); d != "/"; d = path.Dir(d) {
			if whiteouts[d] == 3 {
				deleted = true
			}
		}
		if !deleted {
			t.Errorf("%s is listed as deleted but no whiteout covers it", p.Path)
		}
	}
	for _, p := range e.DeletedFiles {
		if _, ok := whiteouts[p]; !ok {
			t.Errorf("no whiteout for %s", p)
		}
	}

	// Go binaries carry real build information.
	for _, b := range e.GoBinaries {
		f := files[b.Path]
		if len(f) != 1 {
			t.Fatalf("Go binary %s not in the image", b.Path)
		}
		bi, err := buildinfo.Read(bytes.NewReader(f[0].data))
		if err != nil {
			t.Fatalf("%s: %v", b.Path, err)
		}
		if bi.Main.Path != b.Main || len(bi.Deps) != len(b.Deps) || len(b.Deps) < 2 {
			t.Errorf("%s: main %s with %d deps; Expected %s with %d", b.Path, bi.Main.Path, len(bi.Deps), b.Main, len(b.Deps))
		}
	}

	// Jars: pom.properties with the expected coordinates, nested jars in
	// the fat jars.
	nested := 0
	for _, m := range e.Maven {
		outer, inner, isNested := strings.Cut(m.Path, "!/")
		f := files[outer]
		if len(f) != 1 {
			t.Fatalf("jar %s not in the image", outer)
		}
		data := f[0].data
		if isNested {
			nested++
			data = zipEntry(t, data, inner)
		}
		if m.ManifestOnly {
			continue
		}
		props := zipEntry(t, data, "META-INF/maven/"+m.Group+"/"+m.Artifact+"/pom.properties")
		if !bytes.Contains(props, []byte("version="+m.Version+"\n")) {
			t.Errorf("%s: pom.properties %q lacks version %s", m.Path, props, m.Version)
		}
	}
	if nested == 0 {
		t.Error("no nested jars")
	}
	for _, p := range e.Python {
		if f := files[p.Path]; len(f) != 1 && !strings.HasSuffix(p.Path, ".egg-info") && !strings.HasSuffix(p.Path, "PKG-INFO") {
			t.Errorf("%s missing", p.Path)
		}
	}
	if _, err := os.Stat(im.Layout + "/index.json"); err != nil {
		t.Errorf("OCI layout: %v", err)
	}

	// Cached: a second call returns the same image without regenerating;
	// a fresh generation with the same seed is byte-identical.
	st1, _ := os.Stat(im.Archive)
	im2, err := Generate(ctx, Options{Scale: 0.005, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(im2.Archive)
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Error("cached image was regenerated")
	}
	im3, err := Generate(ctx, Options{Scale: 0.005, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if h1, h3 := fileSum(t, im.Archive), fileSum(t, im3.Archive); h1 != h3 {
		t.Error("two generations with the same seed differ")
	}
}

func zipEntry(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestNormalizePyPI(t *testing.T) {
	for in, want := range map[string]string{"Foo_Bar": "foo-bar", "zope.interface": "zope-interface", "a--b__c": "a-b-c", "Django": "django"} {
		if got := NormalizePyPI(in); got != want {
			t.Errorf("NormalizePyPI(%q) = %q, want %q", in, got, want)
		}
	}
}
