// Package benchimage generates a deterministic, realistic container image for
// moat's scan benchmark and for comparisons with other scanners.
//
// At full scale (Scale 1.0) the image is about 1 GB uncompressed in 4
// gzip-compressed layers holding ~60,000 files: ~500 Debian packages (a real
// /var/lib/dpkg/status with Source: fields, rewritten by the top layer to add
// 20 packages, plus /var/lib/dpkg/info/*.list and the files they list),
// ~1,500 npm packages (nested and scoped node_modules, a package-lock.json
// v3), 20 real Go binaries (two small programs built with `go build` against
// pinned modules, copied under 20 names with different padding), 200 jars
// (some Spring Boot fat jars with nested jars), ~300 Python distributions
// (dist-info and egg-info) and filler files of realistic sizes and
// compressibility. The top layer deletes some npm packages and a dpkg file
// with whiteouts. Everything is derived from a seeded math/rand, so the same
// scale and seed give the same package lists; Expected says exactly what a
// correct scanner must find.
//
// Images are cached under a directory given by the caller (DefaultDir:
// $MOAT_BENCH_DIR or ~/.cache/moat-bench) and generated only when missing.
package benchimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"unicode"
)

// generatorVersion changes whenever the generated content changes, so that
// stale cached images are not reused.
const generatorVersion = 1

// Options select the image to generate.
type Options struct {
	// Scale multiplies sizes and package counts; 1.0 is the full ~1 GB
	// image. Counts have small minimums so that tiny scales still exercise
	// every ecosystem. Default 1.0.
	Scale float64
	// Seed for math/rand; default 1.
	Seed int64
	// Dir is the cache directory; default DefaultDir().
	Dir string
	// OCILayout also writes the image as an OCI image layout directory.
	OCILayout bool
}

// Image is a generated image on disk.
type Image struct {
	// Archive is the docker save tarball (docker-archive:Archive).
	Archive string
	// Layout is the OCI image layout directory (oci:Layout), when asked for.
	Layout string
	// Expected is what the image holds.
	Expected *Expected
}

// Expected lists what a correct scanner finds in the generated image.
type Expected struct {
	GeneratorVersion int     `json:"generatorVersion"`
	Scale            float64 `json:"scale"`
	Seed             int64   `json:"seed"`
	Layers           int     `json:"layers"`
	// Files is the number of regular files over all layers (including files
	// later overwritten or deleted); Bytes their total size; TarBytes the
	// total uncompressed size of the layer tars.
	Files    int   `json:"files"`
	Bytes    int64 `json:"bytes"`
	TarBytes int64 `json:"tarBytes"`

	Dpkg       []DebPackage   `json:"dpkg"`
	Npm        []NpmPackage   `json:"npm"`
	NpmDeleted []NpmPackage   `json:"npmDeleted"`
	Python     []PyPackage    `json:"python"`
	Maven      []MavenPackage `json:"maven"`
	GoBinaries []GoBinary     `json:"goBinaries"`
	// NpmRoot is the application's own /app/package.json (not an installed
	// dependency; scanners differ on whether they report it).
	NpmRoot NpmPackage `json:"npmRoot"`
	// DeletedFiles are paths whited out by the top layer.
	DeletedFiles []string `json:"deletedFiles"`
}

// DebPackage is one installed Debian package.
type DebPackage struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	SourceName    string `json:"sourceName"`
	SourceVersion string `json:"sourceVersion"`
	Arch          string `json:"arch"`
	// Layer is the layer that installed it (0 or 3).
	Layer int `json:"layer"`
}

// NpmPackage is one installed npm package.
type NpmPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Path is the package.json file.
	Path string `json:"path"`
	Dev  bool   `json:"dev,omitempty"`
}

// PyPackage is one installed Python distribution.
type PyPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Path is the METADATA or PKG-INFO file (or the .egg-info file).
	Path string `json:"path"`
}

// MavenPackage is one Java archive, possibly nested in a fat jar.
type MavenPackage struct {
	Group    string `json:"group,omitempty"`
	Artifact string `json:"artifact"`
	Version  string `json:"version"`
	// Path is the jar ("/app/x.jar!/BOOT-INF/lib/y.jar" when nested).
	Path string `json:"path"`
	// ManifestOnly jars have no pom.properties.
	ManifestOnly bool `json:"manifestOnly,omitempty"`
}

// GoModule is a module linked into a Go binary.
type GoModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// GoBinary is one Go executable and its build information.
type GoBinary struct {
	Path      string     `json:"path"`
	Main      string     `json:"main"`
	GoVersion string     `json:"goVersion"`
	Deps      []GoModule `json:"deps"`
}

// Ecosystem keys used by Counts and Set (purl types).
const (
	EcoDeb    = "deb"
	EcoNpm    = "npm"
	EcoPyPI   = "pypi"
	EcoMaven  = "maven"
	EcoGolang = "golang"
)

// Set returns, per ecosystem, the distinct "name@version" keys a scanner
// must report. Python names are normalised (PEP 503); Go binaries contribute
// their main module as "(devel)", their dependencies and "stdlib@<go
// version without the go prefix>"; the npm root application is left out.
func (e *Expected) Set() map[string]map[string]bool {
	s := map[string]map[string]bool{EcoDeb: {}, EcoNpm: {}, EcoPyPI: {}, EcoMaven: {}, EcoGolang: {}}
	for _, p := range e.Dpkg {
		s[EcoDeb][p.Name+"@"+p.Version] = true
	}
	for _, p := range e.Npm {
		s[EcoNpm][p.Name+"@"+p.Version] = true
	}
	for _, p := range e.Python {
		s[EcoPyPI][NormalizePyPI(p.Name)+"@"+p.Version] = true
	}
	for _, p := range e.Maven {
		s[EcoMaven][p.Artifact+"@"+p.Version] = true
	}
	for _, b := range e.GoBinaries {
		s[EcoGolang][b.Main+"@(devel)"] = true
		s[EcoGolang]["stdlib@"+strings.TrimPrefix(b.GoVersion, "go")] = true
		for _, d := range b.Deps {
			s[EcoGolang][d.Path+"@"+d.Version] = true
		}
	}
	return s
}

// Counts returns the number of distinct packages per ecosystem (see Set).
func (e *Expected) Counts() map[string]int {
	out := map[string]int{}
	for eco, m := range e.Set() {
		out[eco] = len(m)
	}
	return out
}

// NormalizePyPI normalises a Python distribution name per PEP 503.
func NormalizePyPI(name string) string {
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(name) {
		if r == '-' || r == '_' || r == '.' {
			sep = true
			continue
		}
		if sep && b.Len() > 0 {
			b.WriteByte('-')
		}
		sep = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// DefaultDir is $MOAT_BENCH_DIR, or ~/.cache/moat-bench.
func DefaultDir() string {
	if d := os.Getenv("MOAT_BENCH_DIR"); d != "" {
		return d
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "moat-bench")
	}
	return filepath.Join(os.TempDir(), "moat-bench")
}

func (o *Options) defaults() error {
	if o.Scale == 0 {
		o.Scale = 1
	}
	if o.Scale < 0 || o.Scale > 20 {
		return fmt.Errorf("benchimage: scale %g out of range (0, 20]", o.Scale)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	return nil
}

// CacheDir is the directory holding the image for these options.
func (o Options) CacheDir() string {
	o.defaults()
	return filepath.Join(o.Dir, fmt.Sprintf("v%d-scale%g-seed%d", generatorVersion, o.Scale, o.Seed))
}

// Generate returns the image for opts, generating it into the cache when it
// is missing. Generation needs the go command (to build the Go binaries)
// and takes about a minute at full scale on 2 cores.
func Generate(ctx context.Context, opts Options) (*Image, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	dir := opts.CacheDir()
	im := &Image{Archive: filepath.Join(dir, "image.tar")}
	expPath := filepath.Join(dir, "expected.json")
	exp, err := loadExpected(expPath)
	if err != nil || !exists(im.Archive) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		exp, err = generate(ctx, opts, dir, im.Archive)
		if err != nil {
			return nil, err
		}
		if err := writeJSON(expPath, exp); err != nil {
			return nil, err
		}
	}
	im.Expected = exp
	if opts.OCILayout {
		im.Layout = filepath.Join(dir, "oci")
		if !exists(filepath.Join(im.Layout, "index.json")) {
			if err := writeLayout(im.Archive, im.Layout); err != nil {
				return nil, err
			}
		}
	}
	return im, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func loadExpected(p string) (*Expected, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var e Expected
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	if e.GeneratorVersion != generatorVersion {
		return nil, errors.New("stale")
	}
	return &e, nil
}

func writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// generate plans the image, writes its layers in parallel and assembles the
// docker archive at archive (through a temporary name).
func generate(ctx context.Context, opts Options, dir, archive string) (*Expected, error) {
	tmp, err := os.MkdirTemp(dir, ".gen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bins, err := buildGoBinaries(ctx, tmp)
	if err != nil {
		return nil, err
	}
	p := newPlanner(opts.Scale, opts.Seed, bins)
	p.plan()
	exp := p.exp

	layerFiles := make([]string, len(p.layers))
	stats := make([]layerStats, len(p.layers))
	errs := make([]error, len(p.layers))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	done := make(chan struct{})
	for i := range p.layers {
		layerFiles[i] = filepath.Join(tmp, fmt.Sprintf("layer%d.tar.gz", i))
		go func(i int) {
			sem <- struct{}{}
			defer func() { <-sem; done <- struct{}{} }()
			stats[i], errs[i] = p.writeLayer(ctx, i, layerFiles[i])
		}(i)
	}
	for range p.layers {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("benchimage: writing layer %d: %w", i, err)
		}
		exp.Files += stats[i].files
		exp.Bytes += stats[i].bytes
		exp.TarBytes += stats[i].tarBytes
	}
	exp.Layers = len(p.layers)
	createdBy := make([]string, len(p.layers))
	for i, l := range p.layers {
		createdBy[i] = l.createdBy
	}
	out := filepath.Join(tmp, "image.tar")
	tag := fmt.Sprintf("moat-bench/app:v%d-scale%g-seed%d", generatorVersion, opts.Scale, opts.Seed)
	if err := writeArchive(layerFiles, createdBy, tag, out); err != nil {
		return nil, err
	}
	if err := os.Rename(out, archive); err != nil {
		return nil, err
	}
	sortExpected(exp)
	return exp, nil
}

func sortExpected(e *Expected) {
	sort.Slice(e.Dpkg, func(i, j int) bool { return e.Dpkg[i].Name < e.Dpkg[j].Name })
	sort.Slice(e.Npm, func(i, j int) bool { return e.Npm[i].Path < e.Npm[j].Path })
	sort.Slice(e.NpmDeleted, func(i, j int) bool { return e.NpmDeleted[i].Path < e.NpmDeleted[j].Path })
	sort.Slice(e.Python, func(i, j int) bool { return e.Python[i].Path < e.Python[j].Path })
	sort.Slice(e.Maven, func(i, j int) bool { return e.Maven[i].Path < e.Maven[j].Path })
	sort.Slice(e.GoBinaries, func(i, j int) bool { return e.GoBinaries[i].Path < e.GoBinaries[j].Path })
	sort.Strings(e.DeletedFiles)
}
