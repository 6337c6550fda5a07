// Package java finds Maven artifacts in Java archives (jar, war, ear, Jenkins
// plugins and the like), including archives nested in archives such as Spring Boot
// fat jars (BOOT-INF/lib) and web applications (WEB-INF/lib).
package java

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Limits bound the work done on one top-level archive, against zip bombs and
// archives nested without end.
type Limits struct {
	// MaxDepth is how deep archives inside archives are opened (the
	// top-level archive is depth 0).
	MaxDepth int
	// MaxTotalBytes bounds the uncompressed bytes read from one top-level
	// archive, nested archives included.
	MaxTotalBytes int64
	// MaxEntries bounds the number of zip entries looked at in one
	// top-level archive, nested archives included.
	MaxEntries int
	// MaxNestedSize bounds a compressed nested archive, which is
	// decompressed in memory (stored ones are read in place).
	MaxNestedSize int64
	// MaxTextSize bounds a pom.properties or MANIFEST.MF.
	MaxTextSize int64
}

// DefaultLimits are the limits New uses.
var DefaultLimits = Limits{
	MaxDepth:      4,
	MaxTotalBytes: 512 << 20,
	MaxEntries:    200_000,
	MaxNestedSize: 64 << 20,
	MaxTextSize:   1 << 20,
}

// Metadata keys set on packages.
const (
	// MetaSource says where the coordinates came from: "pom.properties",
	// "manifest" or "filename".
	MetaSource = "source"
	// MetaPomPath is the pom.properties entry inside the archive.
	MetaPomPath = "pomProperties"
)

type cataloger struct{ lim Limits }

// New returns the Java archive cataloger with DefaultLimits.
func New() catalog.Cataloger { return cataloger{DefaultLimits} }

// NewWithLimits returns the Java archive cataloger with other limits.
func NewWithLimits(l Limits) catalog.Cataloger { return cataloger{l} }

func (cataloger) Name() string { return "java" }

// Wants selects files named like Java archives.
func (cataloger) Wants(p string, _ fs.FileMode, size int64) bool {
	return size >= 22 && IsArchiveName(p)
}

// IsArchiveName reports whether a path ends in .jar, .war, .ear, .jpi, .hpi
// (Jenkins), .par, .sar, .nar or .lpkg (Liferay), in any case.
func IsArchiveName(p string) bool {
	n := len(p)
	if n >= 6 && p[n-5] == '.' && p[n-6] != '/' {
		return p[n-4]|0x20 == 'l' && p[n-3]|0x20 == 'p' && p[n-2]|0x20 == 'k' && p[n-1]|0x20 == 'g'
	}
	if n < 5 || p[n-4] != '.' || p[n-5] == '/' {
		return false
	}
	a, b, c := p[n-3]|0x20, p[n-2]|0x20, p[n-1]|0x20
	if b == 'a' && c == 'r' {
		return a == 'j' || a == 'w' || a == 'e' || a == 'p' || a == 's' || a == 'n'
	}
	return b == 'p' && c == 'i' && (a == 'j' || a == 'h')
}

func (c cataloger) Parse(ctx context.Context, f *catalog.File) (pkgs []catalog.Package, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.Join(err, fmt.Errorf("%s: reading Java archive failed: %v", f.Path, r))
		}
	}()
	return ParseArchive(ctx, f.Path, f.ReaderAt(), f.Size, c.lim)
}

// ParseArchive reads the Java archive at path (r holds size bytes) and the
// archives nested in it. It returns the packages found and, joined in one
// error, every problem met on the way (each naming the archive entry).
func ParseArchive(ctx context.Context, p string, r io.ReaderAt, size int64, lim Limits) ([]catalog.Package, error) {
	w := &walker{ctx: ctx, lim: lim, seen: map[string]bool{}}
	w.archive(p, r, size, 0)
	return w.pkgs, errors.Join(w.errs...)
}

var errBudget = errors.New("budget exhausted")

type walker struct {
	ctx     context.Context
	lim     Limits
	used    int64 // uncompressed bytes read
	entries int
	stop    bool // a limit for the whole top-level archive was reached
	pkgs    []catalog.Package
	errs    []error
	seen    map[string]bool
}

func (w *walker) fail(format string, args ...any) {
	w.errs = append(w.errs, fmt.Errorf(format, args...))
}

// read decompresses one entry, refusing entries larger than limit and
// charging the bytes to the archive's budget.
func (w *walker) read(zf *zip.File, limit int64) ([]byte, error) {
	left := w.lim.MaxTotalBytes - w.used
	budget := false
	if left < limit {
		limit, budget = left, true
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if zf.UncompressedSize64 < uint64(limit) {
		buf.Grow(int(zf.UncompressedSize64) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(rc, limit+1))
	data := buf.Bytes()
	w.used += int64(len(data))
	if int64(len(data)) > limit {
		if budget {
			return nil, errBudget
		}
		return nil, fmt.Errorf("larger than the %d bytes allowed", limit)
	}
	if err != nil {
		return nil, err
	}
	return data, nil
}

func (w *walker) archive(p string, r io.ReaderAt, size int64, depth int) {
	// The zip reader holds every directory entry in memory: refuse
	// archives declaring more entries than are left to look at.
	if n, ok := zipEntryCount(r, size); ok && n > uint64(w.lim.MaxEntries-w.entries) {
		w.fail("%s: declares %d zip entries, more than the %d left of the %d allowed in one archive; the rest is skipped", p, n, w.lim.MaxEntries-w.entries, w.lim.MaxEntries)
		w.stop = true
		return
	}
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		w.fail("%s: not a readable zip archive: %w", p, err)
		return
	}
	var poms, nested []*zip.File
	var manifest *zip.File
	for i, zf := range zr.File {
		if w.entries++; w.entries > w.lim.MaxEntries {
			w.fail("%s: more than %d zip entries in one archive, the remaining %d entries are skipped", p, w.lim.MaxEntries, len(zr.File)-i)
			w.stop = true
			break
		}
		name := zf.Name
		if strings.HasSuffix(name, "/") {
			continue
		}
		switch {
		case strings.HasPrefix(name, "META-INF/maven/") && strings.HasSuffix(name, "/pom.properties"):
			poms = append(poms, zf)
		case strings.EqualFold(name, "META-INF/MANIFEST.MF"):
			manifest = zf
		case IsArchiveName(name):
			nested = append(nested, zf)
		}
	}

	var found []string // artifact IDs from pom.properties
	for _, zf := range poms {
		if w.stopped() {
			return
		}
		data, err := w.read(zf, w.lim.MaxTextSize)
		if err != nil {
			w.entryErr(p, zf.Name, err)
			continue
		}
		pp, err := ParsePomProperties(data)
		if err != nil {
			w.fail("%s!/%s: %w", p, zf.Name, err)
			continue
		}
		w.add(catalog.Package{
			Name: pp.ArtifactID, Namespace: pp.GroupID, Version: pp.Version,
			Metadata: map[string]string{MetaSource: "pom.properties", MetaPomPath: zf.Name},
		}, p)
		found = append(found, pp.ArtifactID)
	}
	if !w.stopped() && needsFallback(p, found) {
		w.fallback(p, manifest)
	}

	for _, zf := range nested {
		if w.stopped() {
			return
		}
		np := p + "!/" + zf.Name
		if depth+1 > w.lim.MaxDepth {
			w.fail("%s: archive nested more than %d levels deep, skipped", np, w.lim.MaxDepth)
			continue
		}
		if zf.Method == zip.Store && zf.CompressedSize64 == zf.UncompressedSize64 {
			// Stored (Spring Boot keeps BOOT-INF/lib uncompressed):
			// read it in place, without a copy.
			off, err := zf.DataOffset()
			if err == nil && off >= 0 && zf.CompressedSize64 <= uint64(size) && off <= size-int64(zf.CompressedSize64) {
				w.archive(np, io.NewSectionReader(r, off, int64(zf.CompressedSize64)), int64(zf.CompressedSize64), depth+1)
				continue
			}
		}
		data, err := w.read(zf, w.lim.MaxNestedSize)
		if err != nil {
			w.entryErr(p, zf.Name, err)
			continue
		}
		w.archive(np, bytes.NewReader(data), int64(len(data)), depth+1)
	}
}

func (w *walker) stopped() bool {
	if w.stop {
		return true
	}
	if err := w.ctx.Err(); err != nil {
		w.errs = append(w.errs, err)
		w.stop = true
	}
	return w.stop
}

func (w *walker) entryErr(p, entry string, err error) {
	if errors.Is(err, errBudget) {
		w.fail("%s!/%s: more than %d uncompressed bytes read from one archive, the rest is skipped", p, entry, w.lim.MaxTotalBytes)
		w.stop = true
		return
	}
	w.fail("%s!/%s: %w", p, entry, err)
}

// needsFallback reports whether an archive must also be identified from its
// manifest or file name: when it has no pom.properties, or when its file name
// names an artifact that none of its pom.properties describes (a shaded jar
// carrying only its dependencies' pom.properties).
func needsFallback(p string, artifacts []string) bool {
	if len(artifacts) == 0 {
		return true
	}
	name, _, ok := NameVersionFromFileName(path.Base(p))
	if !ok {
		return false
	}
	for _, a := range artifacts {
		if strings.HasPrefix(a, name) {
			return false
		}
	}
	return true
}

// fallback identifies an archive without pom.properties from its manifest
// and, failing that, its file name.
func (w *walker) fallback(p string, manifest *zip.File) {
	fileName, fileVersion, _ := NameVersionFromFileName(path.Base(p))
	var m Manifest
	if manifest != nil {
		data, err := w.read(manifest, w.lim.MaxTextSize)
		if err != nil {
			w.entryErr(p, manifest.Name, err)
		} else if m, err = ParseManifest(data); err != nil {
			w.fail("%s!/%s: %w", p, manifest.Name, err)
		}
	}
	name, version, group := manifestCoordinates(m, fileName)
	source := "manifest"
	if name == "" || version == "" {
		name, version, group, source = fileName, fileVersion, "", "filename"
	}
	if name == "" || version == "" {
		return
	}
	w.add(catalog.Package{
		Name: name, Namespace: group, Version: version,
		Metadata: map[string]string{MetaSource: source},
	}, p)
}

// manifestCoordinates picks a name, version and group from manifest
// attributes (Jenkins plugin attributes first, then the JAR and OSGi ones).
// fileName, the artifact name taken from the archive's file name, is
// preferred to a bundle symbolic name, which is rarely the artifact ID.
func manifestCoordinates(m Manifest, fileName string) (name, version, group string) {
	if m == nil {
		return "", "", ""
	}
	title := m.Get("Implementation-Title")
	symbolic, _, _ := strings.Cut(m.Get("Bundle-SymbolicName"), ";")
	symbolic = strings.TrimSpace(symbolic)
	for _, n := range []string{m.Get("Short-Name"), noSpace(title), fileName, symbolic, title} {
		if n != "" {
			name = n
			break
		}
	}
	for _, v := range []string{m.Get("Plugin-Version"), m.Get("Implementation-Version"), m.Get("Bundle-Version"), m.Get("Specification-Version")} {
		if v != "" {
			version = v
			break
		}
	}
	group = m.Get("Group-Id")
	if group == "" {
		group = m.Get("Implementation-Vendor-Id")
	}
	return name, version, group
}

func noSpace(s string) string {
	if strings.ContainsAny(s, " \t") {
		return ""
	}
	return s
}

func (w *walker) add(pkg catalog.Package, p string) {
	pkg.Type = catalog.TypeMaven
	pkg.Ecosystem = "Maven"
	pkg.Locations = []catalog.Location{{Path: p}}
	k := pkg.Key() + "\x00" + p
	if w.seen[k] {
		return
	}
	w.seen[k] = true
	w.pkgs = append(w.pkgs, pkg)
}
