package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/moat-dev/moat/internal/catalog"
)

// MaxFileSize is the largest single file a cataloger is handed; larger
// wanted files are skipped with a warning.
const MaxFileSize = 2 << 30

// EntryKind is what a path is in a layer.
type EntryKind uint8

const (
	KindFile EntryKind = iota
	KindDir
	KindSymlink
	KindHardlink
	KindOther
)

// Entry is one path written by a layer.
type Entry struct {
	Path     string
	Kind     EntryKind
	Mode     fs.FileMode
	Size     int64
	Linkname string // symlink target as written, or hard-link target path
}

// ParsedFile is what the catalogers found in one file of one layer.
type ParsedFile struct {
	Path     string
	Packages []catalog.Package
}

// LayerResult is everything one pass over a layer produced. It holds no file
// content except the small files the walker was asked to capture.
type LayerResult struct {
	Index   int
	Entries []Entry
	// Whiteouts are paths this layer deletes from lower layers; Opaque are
	// directories whose lower-layer content this layer hides.
	Whiteouts []string
	Opaque    []string
	// Parsed holds catalogued files by path.
	Parsed map[string]*ParsedFile
	// Captured holds the content of small files requested by Capture.
	Captured map[string][]byte
	Warnings []string
	// Bytes is the number of uncompressed bytes read.
	Bytes int64
}

// Walker reads layers and hands wanted files to the catalogers.
type Walker struct {
	Catalogers []catalog.Cataloger
	// Capture selects small files (≤ 64 KiB) whose raw content the caller
	// wants, such as /etc/os-release.
	Capture func(path string) bool
	// TempDir is the scan's private temporary directory; large wanted files
	// are spilled there and removed after parsing.
	TempDir string
	// BytesRead counts uncompressed bytes across all layers (for progress).
	BytesRead *atomic.Int64
}

const maxCapture = 64 << 10

// cleanPath turns a tar entry name into a clean absolute path. ok is false
// for names that escape the root.
func cleanPath(name string) (string, bool) {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", false
		}
	}
	p := path.Clean("/" + name)
	return p, true
}

// Decompress sniffs the stream and returns a reader of the uncompressed tar
// (gzip and zstd via klauspost/compress; anything else is taken as tar).
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case len(magic) >= 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// WalkLayer reads one layer stream (compressed or not) once and returns what
// the catalogers found in it. A tar that is corrupt or truncated part way
// returns the results so far together with the error.
func (w *Walker) WalkLayer(ctx context.Context, index int, r io.Reader) (*LayerResult, error) {
	res := &LayerResult{Index: index, Parsed: map[string]*ParsedFile{}, Captured: map[string][]byte{}}
	rc, err := Decompress(r)
	if err != nil {
		return res, err
	}
	defer rc.Close()
	cr := &countingReader{r: rc, total: w.BytesRead}
	tr := tar.NewReader(cr)
	defer func() { res.Bytes = cr.n }()
	wants := make([]catalog.Cataloger, 0, 4)
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("reading tar: %w", err)
		}
		p, ok := cleanPath(hdr.Name)
		if !ok {
			res.Warnings = append(res.Warnings, fmt.Sprintf("entry %q escapes the root filesystem; ignored", hdr.Name))
			continue
		}
		if p == "/" {
			continue
		}
		dir, base := path.Split(p)
		if strings.HasPrefix(base, ".wh.") {
			if base == ".wh..wh..opq" {
				res.Opaque = append(res.Opaque, path.Clean(dir))
			} else {
				res.Whiteouts = append(res.Whiteouts, path.Join(dir, base[len(".wh."):]))
			}
			continue
		}
		e := Entry{Path: p, Mode: hdr.FileInfo().Mode(), Size: hdr.Size}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.Kind = KindFile
		case tar.TypeDir:
			e.Kind = KindDir
		case tar.TypeSymlink:
			e.Kind = KindSymlink
			e.Linkname = hdr.Linkname
		case tar.TypeLink:
			e.Kind = KindHardlink
			lp, ok := cleanPath(hdr.Linkname)
			if !ok {
				res.Warnings = append(res.Warnings, fmt.Sprintf("hard link %s points outside the root (%q); ignored", p, hdr.Linkname))
				continue
			}
			e.Linkname = lp
		default:
			e.Kind = KindOther
		}
		res.Entries = append(res.Entries, e)
		switch e.Kind {
		case KindFile:
			_, err := w.visitFile(ctx, res, tr, e, wants[:0])
			if err != nil {
				return res, fmt.Errorf("reading %s: %w", p, err)
			}
		case KindHardlink:
			w.visitHardlink(res, e)
		}
	}
	// Drain what follows the tar end so that verifying readers (registry
	// layers) check the digest of the whole blob.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return res, fmt.Errorf("reading past end of tar: %w", err)
	}
	return res, nil
}

// countingReader counts the uncompressed bytes of a layer as they stream.
type countingReader struct {
	r     io.Reader
	n     int64
	total *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.total != nil && n > 0 {
		c.total.Add(int64(n))
	}
	return n, err
}

func (w *Walker) visitFile(ctx context.Context, res *LayerResult, r io.Reader, e Entry, wants []catalog.Cataloger) (int64, error) {
	for _, c := range w.Catalogers {
		if c.Wants(e.Path, e.Mode, e.Size) {
			wants = append(wants, c)
		}
	}
	capture := w.Capture != nil && e.Size <= maxCapture && w.Capture(e.Path)
	if len(wants) == 0 && !capture {
		return 0, nil // tar.Reader skips the unread content itself
	}
	if e.Size > MaxFileSize {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %d bytes is larger than the %d bytes moat catalogues; skipped", e.Path, e.Size, int64(MaxFileSize)))
		return 0, nil
	}
	f, n, err := w.readContent(r, e)
	if err != nil {
		return n, err
	}
	defer f.release()
	if capture {
		b, _ := f.Bytes(maxCapture)
		res.Captured[e.Path] = append([]byte(nil), b...)
	}
	for _, c := range wants {
		w.parse(ctx, res, c, f.File, e.Path)
	}
	return n, nil
}

// parse runs one cataloger on one file, turning a panic into a warning so
// that one bad file never stops the scan.
func (w *Walker) parse(ctx context.Context, res *LayerResult, c catalog.Cataloger, f *catalog.File, p string) {
	var pkgs []catalog.Package
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("cataloger %s crashed: %v", c.Name(), r)
			}
		}()
		pkgs, err = c.Parse(ctx, f)
	}()
	if err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s (%s): %v", p, c.Name(), err))
	}
	if len(pkgs) == 0 {
		return
	}
	pf := res.Parsed[p]
	if pf == nil {
		pf = &ParsedFile{Path: p}
		res.Parsed[p] = pf
	}
	pf.Packages = append(pf.Packages, pkgs...)
}

// visitHardlink reports the packages of the link target under the link's
// own path: tar stores the content only once.
func (w *Walker) visitHardlink(res *LayerResult, e Entry) {
	target, ok := res.Parsed[e.Linkname]
	if !ok {
		wanted := false
		for _, c := range w.Catalogers {
			if c.Wants(e.Path, e.Mode|0o444, 1<<20) {
				wanted = true
				break
			}
		}
		if wanted && !w.entrySeen(res, e.Linkname) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("hard link %s points to %s, which this layer does not contain; ignored", e.Path, e.Linkname))
		}
		return
	}
	pf := &ParsedFile{Path: e.Path}
	for _, p := range target.Packages {
		p.Locations = []catalog.Location{{Path: e.Path}}
		pf.Packages = append(pf.Packages, p)
	}
	res.Parsed[e.Path] = pf
}

func (w *Walker) entrySeen(res *LayerResult, p string) bool {
	for i := len(res.Entries) - 1; i >= 0; i-- {
		if res.Entries[i].Path == p {
			return true
		}
	}
	return false
}

type content struct {
	*catalog.File
	tmp *os.File
}

func (c *content) release() {
	if c.tmp != nil {
		name := c.tmp.Name()
		c.tmp.Close()
		os.Remove(name)
	}
}

// readContent holds a wanted file in memory, or spills it to the private
// temporary directory when it is large.
func (w *Walker) readContent(r io.Reader, e Entry) (*content, int64, error) {
	if e.Size <= catalog.MaxInMemory {
		buf := make([]byte, e.Size)
		n, err := io.ReadFull(r, buf)
		if err != nil {
			return nil, int64(n), err
		}
		f := catalog.NewFile(e.Path, e.Mode, buf)
		f.SetTempDir(w.TempDir)
		return &content{File: f}, int64(n), nil
	}
	if w.TempDir == "" {
		return nil, 0, errors.New("no private temporary directory for a large file")
	}
	tmp, err := os.CreateTemp(w.TempDir, "spill-")
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(tmp, io.LimitReader(r, e.Size))
	if err == nil && n != e.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, n, err
	}
	f := catalog.NewSpilledFile(e.Path, e.Mode, tmp, e.Size, w.TempDir)
	return &content{File: f, tmp: tmp}, n, nil
}
