package scan_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/apk"
	"github.com/moat-dev/moat/internal/catalog/dpkg"
	"github.com/moat-dev/moat/internal/image"
	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/scan"
)

const osRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
`

func status(pkgs ...string) string {
	var b strings.Builder
	for _, p := range pkgs {
		b.WriteString(p)
		b.WriteString("\n\n")
	}
	return b.String()
}

func deb(name, ver, extra string) string {
	s := "Package: " + name + "\nStatus: install ok installed\nArchitecture: amd64\nVersion: " + ver + "\n"
	if extra != "" {
		s += extra + "\n"
	}
	return s + "Description: " + name + "\n a package\n"
}

var (
	pBase    = deb("base-files", "12.4+deb12u5", "")
	pLibc    = deb("libc6", "2.36-9+deb12u4", "Source: glibc")
	pBsd     = deb("bsdutils", "1:2.38.1-5+b1", "Source: util-linux (2.38.1-5)")
	pRemoved = "Package: oldpkg\nStatus: deinstall ok config-files\nVersion: 1.0\n"
	pCurl    = deb("curl", "7.88.1-10+deb12u5", "")
	pLibcurl = deb("libcurl4", "7.88.1-10+deb12u5", "Source: curl")
)

const apkDB = "P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nL:MIT\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\no:busybox\nL:GPL-2.0-only\n\n"

// layeredImage exercises rewrites, whiteouts and opaque directories.
func layeredImage(t *testing.T) v1.Image { return layeredImageWith(t, it.ZstdLayer) }

// layeredImageWith builds the top layer with mkTop (Docker 20.10 engines
// cannot load zstd layers).
func layeredImageWith(t *testing.T, mkTop func(testing.TB, ...it.File) v1.Layer) v1.Image {
	l0 := it.Layer(t,
		it.Dir("/etc"), it.Symlink("/etc/os-release", "../usr/lib/os-release"),
		it.Text("/usr/lib/os-release", osRelease),
		it.Text("/var/lib/dpkg/status", status(pBase, pLibc, pRemoved)),
		it.Text("/usr/lib/apk/db/installed", apkDB),
	)
	l1 := it.Layer(t,
		it.Text("/var/lib/dpkg/status", status(pBase, pLibc, pBsd, pCurl, pLibcurl)),
		it.Text("/lib/apk/db/installed", apkDB),
	)
	l2 := mkTop(t,
		// curl purged: its entry leaves the status file.
		it.Text("/var/lib/dpkg/status", status(pBase, pLibc, pBsd, pLibcurl)),
		it.Whiteout("/lib/apk"),
		it.Opaque("/usr/lib/apk/db"),
	)
	return it.Image(t,
		it.Step{Layer: l0, CreatedBy: "ADD rootfs.tar /"},
		it.Step{Layer: l1, CreatedBy: "RUN apt-get install -y curl"},
		it.Step{Layer: l2, CreatedBy: "RUN apt-get purge -y curl"},
	)
}

func scanWith(t *testing.T, spec string, cats ...catalog.Cataloger) *scan.Result {
	t.Helper()
	if cats == nil {
		cats = []catalog.Cataloger{dpkg.New(), apk.New()}
	}
	res, err := scan.Scan(context.Background(), spec, scan.Options{Catalogers: cats, TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("scan %s: %v", spec, err)
	}
	return res
}

func summary(r *scan.Result) []string {
	var out []string
	for _, p := range r.Packages {
		out = append(out, fmt.Sprintf("%s %s %s layer=%d src=%s/%s %s", p.Name, p.Version, p.Ecosystem, p.Layer, p.SourceName, p.SourceVersion, p.PURL))
	}
	return out
}

func TestLayeredImage(t *testing.T) {
	img := layeredImage(t)
	res := scanWith(t, "oci:"+it.WriteLayout(t, img, ""))
	want := []string{
		"base-files 12.4+deb12u5 Debian:12 layer=0 src=base-files/12.4+deb12u5 pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
		"bsdutils 1:2.38.1-5+b1 Debian:12 layer=1 src=util-linux/2.38.1-5 pkg:deb/debian/bsdutils@1:2.38.1-5%2Bb1?arch=amd64&distro=debian-12&upstream=util-linux%402.38.1-5",
		"libc6 2.36-9+deb12u4 Debian:12 layer=0 src=glibc/2.36-9+deb12u4 pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc",
		"libcurl4 7.88.1-10+deb12u5 Debian:12 layer=1 src=curl/7.88.1-10+deb12u5 pkg:deb/debian/libcurl4@7.88.1-10%2Bdeb12u5?arch=amd64&distro=debian-12&upstream=curl",
	}
	if got := summary(res); !reflect.DeepEqual(got, want) {
		t.Fatalf("packages:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	if res.OS == nil || res.OS.ID != "debian" || res.OS.VersionID != "12" {
		t.Fatalf("OS = %+v, want debian 12 (through the /etc/os-release symlink)", res.OS)
	}
	for _, p := range res.Packages {
		if p.Locations[0].Path != "/var/lib/dpkg/status" || p.Locations[0].Layer != 2 {
			t.Errorf("%s: location %+v, want the status file of layer 2", p.Name, p.Locations[0])
		}
	}
	if got := res.Packages[3].CreatedBy; got != "RUN apt-get install -y curl" {
		t.Errorf("libcurl4 CreatedBy = %q", got)
	}
	if res.Layers[1].Packages != 2 || res.Layers[0].Packages != 2 {
		t.Errorf("per-layer counts = %+v", res.Layers)
	}
}

func TestSourcesAgree(t *testing.T) {
	img := layeredImage(t)
	want := summary(scanWith(t, "oci:"+it.WriteLayout(t, img, "")))

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host + "/team/app:1.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dig, _ := img.Digest()
	archive := it.WriteOCIArchive(t, img)
	docker := it.WriteDockerArchive(t, img, "team/app:1.2")
	for _, spec := range []string{
		"oci:" + it.WriteLayout(t, img, "1.2") + ":1.2",
		"oci-archive:" + archive,
		archive, // sniffed
		"docker-archive:" + docker,
		docker, // sniffed
		host + "/team/app:1.2",
		host + "/team/app@" + dig.String(),
	} {
		t.Run(spec, func(t *testing.T) {
			res := scanWith(t, spec)
			if got := summary(res); !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			if strings.HasPrefix(spec, host) && res.Subject.Digest != dig.String() {
				t.Errorf("digest %s, want %s", res.Subject.Digest, dig)
			}
		})
	}
}

func TestPlatformSelection(t *testing.T) {
	amd := it.WithPlatform(t, it.Image(t, it.Step{Layer: it.Layer(t, it.Text("/lib/apk/db/installed", "P:amd\nV:1-r0\n\n"))}), "linux", "amd64", "")
	arm := it.WithPlatform(t, it.Image(t, it.Step{Layer: it.Layer(t, it.Text("/lib/apk/db/installed", "P:arm\nV:1-r0\n\n"))}), "linux", "arm64", "v8")
	dir := it.WriteIndexLayout(t, it.Index(t, amd, arm))
	for plat, want := range map[string]string{"linux/amd64": "amd", "linux/arm64": "arm", "linux/arm64/v8": "arm"} {
		res, err := scan.Scan(context.Background(), "oci:"+dir, scan.Options{Catalogers: []catalog.Cataloger{apk.New()}, Image: image.Options{Platform: plat}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Packages) != 1 || res.Packages[0].Name != want {
			t.Errorf("%s: got %v", plat, summary(res))
		}
	}
	_, err := scan.Scan(context.Background(), "oci:"+dir, scan.Options{Image: image.Options{Platform: "linux/s390x"}})
	if err == nil || !strings.Contains(err.Error(), "linux/amd64") || !strings.Contains(err.Error(), "linux/arm64/v8") {
		t.Fatalf("want an error listing the offered platforms, got %v", err)
	}
}

func TestDistroless(t *testing.T) {
	img := it.Image(t, it.Step{Layer: it.Layer(t,
		it.Text("/etc/os-release", "PRETTY_NAME=\"Distroless\"\nID=debian\nVERSION_ID=\"12\"\n"),
		it.Text("/var/lib/dpkg/status.d/base-files", deb("base-files", "12.4+deb12u5", "")),
		it.Text("/var/lib/dpkg/status.d/base-files.md5sums", "d41d8cd98f00b204e9800998ecf8427e  etc/x\n"),
		it.Text("/var/lib/dpkg/status.d/libssl3", deb("libssl3", "3.0.11-1~deb12u2", "Source: openssl")),
	)})
	res := scanWith(t, "oci:"+it.WriteLayout(t, img, ""))
	if res.OS == nil || !res.OS.Distroless || res.OS.OSVEcosystem() != "Debian:12" {
		t.Fatalf("OS %+v, want distroless Debian 12", res.OS)
	}
	got := summary(res)
	if len(got) != 2 || !strings.HasPrefix(got[0], "base-files 12.4+deb12u5 Debian:12") || !strings.HasPrefix(got[1], "libssl3 3.0.11-1~deb12u2 Debian:12 layer=0 src=openssl/") {
		t.Fatalf("packages %v", got)
	}
	if got := res.Packages[1].Locations[0].Path; got != "/var/lib/dpkg/status.d/libssl3" {
		t.Errorf("location %s", got)
	}
}

func TestBadInput(t *testing.T) {
	t.Run("corrupt gzip layer", func(t *testing.T) {
		img := layeredImage(t)
		dir := it.WriteLayout(t, img, "")
		layers, _ := img.Layers()
		d, _ := layers[1].Digest()
		corruptBlob(t, filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
		_, err := scan.Scan(context.Background(), "oci:"+dir, scan.Options{})
		if err == nil || !strings.Contains(err.Error(), "layer 1 (sha256:") {
			t.Fatalf("want an error naming the layer, got %v", err)
		}
	})
	t.Run("escaping paths, missing hard link target, symlink loop", func(t *testing.T) {
		img := it.Image(t, it.Step{Layer: it.Layer(t,
			it.Text("../../etc/evil", "x"),
			it.Symlink("/etc/os-release", "/etc/loop"), it.Symlink("/etc/loop", "/etc/os-release"),
			it.Hardlink("/var/lib/dpkg/status", "/var/lib/dpkg/missing"),
			it.Text("/lib/apk/db/installed", "P:musl\nV:1.2.4-r2\n\nP:broken\n\n"),
		)})
		res := scanWith(t, "oci:"+it.WriteLayout(t, img, ""))
		joined := strings.Join(res.Warnings, "\n")
		for _, want := range []string{"escapes the root", "hard link /var/lib/dpkg/status points to /var/lib/dpkg/missing", "malformed apk database"} {
			if !strings.Contains(joined, want) {
				t.Errorf("warnings lack %q:\n%s", want, joined)
			}
		}
		if len(res.Packages) != 1 || res.Packages[0].Name != "musl" {
			t.Errorf("packages %v: the good record must survive", summary(res))
		}
		if res.OS != nil {
			t.Errorf("OS %+v from a symlink loop", res.OS)
		}
	})
	t.Run("registry errors", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "private") {
				w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return
			}
			if r.URL.Path == "/v2/" {
				return
			}
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
		}))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		_, err := scan.Scan(context.Background(), host+"/private/app:1", scan.Options{})
		if err == nil || !strings.Contains(err.Error(), "docker login") {
			t.Errorf("401: got %v", err)
		}
		_, err = scan.Scan(context.Background(), host+"/team/nope:1", scan.Options{})
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("404: got %v", err)
		}
	})
	t.Run("no such path", func(t *testing.T) {
		_, err := scan.Scan(context.Background(), "oci:/nonexistent/layout", scan.Options{})
		if err == nil {
			t.Fatal("want error")
		}
	})
}

// corruptBlob flips bytes in the middle of a blob.
func corruptBlob(t *testing.T, best string) {
	t.Helper()
	b, err := os.ReadFile(best)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+16 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	os.Chmod(best, 0o644)
	if err := os.WriteFile(best, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDirSource(t *testing.T) {
	root := t.TempDir()
	mk := func(p, body string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/lib/os-release", "ID=alpine\nVERSION_ID=3.20.1\n")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release"))
	os.Symlink("loop", filepath.Join(root, "etc/loop"))
	mk("lib/apk/db/installed", apkDB)
	res := scanWith(t, "dir:"+root)
	got := summary(res)
	sort.Strings(got)
	want := []string{
		"busybox 1.36.1-r5 Alpine:v3.20 layer=-1 src=busybox/1.36.1-r5 pkg:apk/alpine/busybox@1.36.1-r5?arch=x86_64&distro=alpine-3.20.1",
		"musl 1.2.4-r2 Alpine:v3.20 layer=-1 src=musl/1.2.4-r2 pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.20.1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestRealDebianImage puts this Debian machine's own dpkg database and
// os-release into an image and checks the scan against dpkg-query.
func TestRealDebianImage(t *testing.T) {
	st, err1 := os.ReadFile("/var/lib/dpkg/status")
	osr, err2 := os.ReadFile("/usr/lib/os-release")
	out, err3 := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\n").Output()
	if err := errors.Join(err1, err2, err3); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI machines are Debian: %v", err)
		}
		t.Skipf("not a Debian machine: %v", err)
	}
	img := it.Image(t,
		it.Step{Layer: it.Layer(t, it.Text("/usr/lib/os-release", string(osr)), it.Symlink("/etc/os-release", "../usr/lib/os-release")), CreatedBy: "os"},
		it.Step{Layer: it.Layer(t, it.Text("/var/lib/dpkg/status", string(st))), CreatedBy: "dpkg"},
	)
	res := scanWith(t, it.WriteOCIArchive(t, img))
	var want, got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "installed" {
			want = append(want, f[1]+" "+f[2])
		}
	}
	for _, p := range res.Packages {
		got = append(got, p.Name+" "+p.Version)
		if !strings.HasPrefix(p.Ecosystem, "Debian:") || p.Layer != 1 {
			t.Fatalf("%s: ecosystem %q layer %d", p.Name, p.Ecosystem, p.Layer)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scan found %d packages, dpkg-query lists %d installed", len(got), len(want))
	}
}

func TestLayerCache(t *testing.T) {
	cache, err := scan.NewDirCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := layeredImage(t)
	layers, _ := base.Layers()
	// A second image on the same base layers plus one of its own.
	top := it.Layer(t, it.Text("/lib/apk/db/installed", "P:extra\nV:1.0-r0\n\n"))
	second := it.Image(t, it.Step{Layer: layers[0], CreatedBy: "ADD rootfs.tar /"}, it.Step{Layer: layers[1], CreatedBy: "RUN apt-get install -y curl"}, it.Step{Layer: top, CreatedBy: "RUN apk add extra"})

	opts := scan.Options{Catalogers: []catalog.Cataloger{dpkg.New(), apk.New()}, Cache: cache}
	first, err := scan.Scan(context.Background(), "oci:"+it.WriteLayout(t, base, ""), opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.Stats.Bytes == 0 {
		t.Fatal("first scan read nothing")
	}
	// The same image again: every layer comes from the cache, results equal.
	again, err := scan.Scan(context.Background(), "oci:"+it.WriteLayout(t, base, ""), opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Stats.Bytes != 0 {
		t.Errorf("re-scan read %d bytes; every layer is cached", again.Stats.Bytes)
	}
	if !reflect.DeepEqual(summary(again), summary(first)) {
		t.Fatalf("cached scan differs:\n%v\n%v", summary(again), summary(first))
	}
	// The second image reads only its own top layer.
	res, err := scan.Scan(context.Background(), "oci:"+it.WriteLayout(t, second, ""), opts)
	if err != nil {
		t.Fatal(err)
	}
	topSize := int64(len(it.Tar(t, it.Text("/lib/apk/db/installed", "P:extra\nV:1.0-r0\n\n")))) // tar's own padding is read too
	if res.Stats.Bytes != topSize {
		t.Errorf("second image read %d bytes, want only its top layer's %d", res.Stats.Bytes, topSize)
	}
	names := map[string]int{}
	for _, p := range res.Packages {
		names[p.Name] = p.Layer
	}
	if names["extra"] != 2 || names["curl"] != 1 || names["libc6"] != 0 {
		t.Errorf("packages %v", summary(res))
	}
	// A corrupt cache entry is a miss, not an error.
	entries, _ := os.ReadDir(cache.Dir)
	for _, e := range entries {
		os.WriteFile(filepath.Join(cache.Dir, e.Name()), []byte("garbage"), 0o600)
	}
	if _, err := scan.Scan(context.Background(), "oci:"+it.WriteLayout(t, base, ""), opts); err != nil {
		t.Fatal(err)
	}
}
