package vulndb

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	kflate "github.com/klauspost/compress/flate"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Source is recorded in each ecosystem's metadata; default "import:"
	// followed by the paths.
	Source string
	// Ecosystems, when set, keeps only records of these base ecosystems.
	Ecosystems []string
	// Warn receives one message per malformed record (naming the file and
	// what is wrong); nil discards them. They are counted either way.
	Warn func(msg string)
	// Now gives the update time; nil means time.Now.
	Now func() time.Time
}

// ImportResult summarises an import.
type ImportResult struct {
	// Ecosystems written, with their new metadata.
	Ecosystems []Meta `json:"ecosystems"`
	// Malformed names every skipped malformed record and the reason.
	Malformed []string `json:"malformed,omitempty"`
	Withdrawn int      `json:"withdrawn"`
	// NoPackage counts records without any affected package moat can key.
	NoPackage int `json:"noPackage"`
}

// Import reads OSV records from zips, directories (searched recursively for
// *.json and *.zip) or single JSON files and replaces, in dir, the
// ecosystems found in them. Each ecosystem file is swapped in atomically;
// on error no ecosystem is changed. Malformed records are skipped and
// reported, withdrawn records dropped.
func Import(ctx context.Context, dir string, paths []string, opts ImportOptions) (*ImportResult, error) {
	if len(paths) == 0 {
		return nil, errors.New("nothing to import: give OSV zip files or directories")
	}
	if opts.Source == "" {
		abs := make([]string, len(paths))
		for i, p := range paths {
			abs[i], _ = filepath.Abs(p)
		}
		opts.Source = "import:" + strings.Join(abs, ",")
	}
	unlock, tmp, err := prepare(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer os.RemoveAll(tmp)

	var only map[string]bool
	if len(opts.Ecosystems) > 0 {
		only = map[string]bool{}
		for _, e := range opts.Ecosystems {
			only[e] = true
		}
	}
	c := newCollector(only, opts.Warn, tmp)
	src := func(emit func(name string, data []byte) error) error {
		for _, p := range paths {
			if err := readPath(ctx, p, emit); err != nil {
				return err
			}
		}
		return nil
	}
	defer c.close()
	if err := c.run(ctx, src); err != nil {
		return nil, err
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	res := &ImportResult{Malformed: c.malformed, Withdrawn: c.withdrawn, NoPackage: c.nopkg}
	ecos := make([]string, 0, len(c.builders))
	for e := range c.builders {
		ecos = append(ecos, e)
	}
	sort.Strings(ecos)
	// write all files first, then rename them all: an error while writing
	// changes nothing
	staged := make([]string, len(ecos))
	errs := make([]error, len(ecos))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, e := range ecos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := Meta{Ecosystem: e, Source: opts.Source, Updated: now().UTC(), Withdrawn: c.withdrawnBy[e]}
			staged[i], errs[i] = writeStaged(tmp, c.builders[e], m)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", ecos[i], err)
		}
	}
	for i, e := range ecos {
		if err := commit(dir, staged[i], e); err != nil {
			return nil, err
		}
		m, err := readMeta(filepath.Join(dir, fileName(e)))
		if err != nil {
			return nil, err
		}
		res.Ecosystems = append(res.Ecosystems, m)
	}
	return res, nil
}

// readPath feeds the records under p to emit.
func readPath(ctx context.Context, p string, emit func(string, []byte) error) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if strings.HasSuffix(strings.ToLower(p), ".json") {
			data, err := readLimited(p)
			if err != nil {
				return err
			}
			return emit(p, data)
		}
		return readZip(ctx, p, emit)
	}
	return filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(q)) {
		case ".json":
			data, err := readLimited(q)
			if err != nil {
				return err
			}
			return emit(q, data)
		case ".zip":
			return readZip(ctx, q, emit)
		}
		return nil
	})
}

func readLimited(p string) ([]byte, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, maxRecordSize+1))
}

// readZip feeds every *.json entry of a zip to emit. Every entry is read to
// its end, so archive/zip checks its CRC-32: a damaged or truncated zip is
// an error for the whole import, not a malformed record.
func readZip(ctx context.Context, p string, emit func(string, []byte) error) error {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return fmt.Errorf("%s: not a readable zip: %w", p, err)
	}
	defer zr.Close()
	zr.RegisterDecompressor(zip.Deflate, newFlateReader)
	for _, zf := range zr.File {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if zf.FileInfo().IsDir() || !strings.HasSuffix(strings.ToLower(zf.Name), ".json") {
			continue
		}
		name := p + ":" + zf.Name
		if zf.UncompressedSize64 > maxRecordSize {
			if err := emit(name, nil); err != nil { // counted as malformed
				return err
			}
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		buf := bytes.NewBuffer(make([]byte, 0, zf.UncompressedSize64+1))
		_, err = buf.ReadFrom(io.LimitReader(rc, maxRecordSize+1))
		data := buf.Bytes()
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: damaged zip entry: %w", name, err)
		}
		if err := emit(name, data); err != nil {
			return err
		}
	}
	return nil
}

// collector decodes records in parallel and sorts them into one builder
// per base ecosystem.
type collector struct {
	only        map[string]bool
	warn        func(string)
	builders    map[string]*builder
	malformed   []string
	withdrawn   int
	withdrawnBy map[string]int
	nopkg       int
	tmp         string
}

func newCollector(only map[string]bool, warn func(string), tmp string) *collector {
	return &collector{only: only, warn: warn, tmp: tmp, builders: map[string]*builder{}, withdrawnBy: map[string]int{}}
}

// close removes the builders' spill files.
func (c *collector) close() {
	for _, b := range c.builders {
		b.close()
	}
}

type rawRecord struct {
	name string
	data []byte
}

type decoded struct {
	name string
	v    *Vulnerability
	enc  []byte
	err  error
}

func (c *collector) run(ctx context.Context, src func(emit func(string, []byte) error) error) error {
	workers := runtime.GOMAXPROCS(0)
	in := make(chan rawRecord, 256)
	out := make(chan decoded, 256)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range in {
				d := decoded{name: r.name}
				if r.data == nil {
					d.err = fmt.Errorf("record larger than %d bytes", maxRecordSize)
				} else if v, err := DecodeOSV(r.data); err != nil {
					d.err = err
				} else {
					d.v = v
					if v.Withdrawn == "" {
						d.enc = encodeRecord(nil, v)
					}
				}
				out <- d
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range out {
			c.add(d)
		}
	}()
	err := src(func(name string, data []byte) error {
		select {
		case in <- rawRecord{name, data}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(in)
	wg.Wait()
	close(out)
	<-done
	return err
}

func (c *collector) add(d decoded) {
	if d.err != nil {
		msg := fmt.Sprintf("%s: skipped malformed record: %v", d.name, d.err)
		c.malformed = append(c.malformed, msg)
		if c.warn != nil {
			c.warn(msg)
		}
		return
	}
	ecos := map[string]bool{}
	for _, a := range d.v.Affected {
		if a.Package.Ecosystem == "" || a.Package.Name == "" {
			continue
		}
		e := BaseEcosystem(a.Package.Ecosystem)
		if c.only == nil || c.only[e] {
			ecos[e] = true
		}
	}
	if len(ecos) == 0 {
		c.nopkg++
		return
	}
	if d.v.Withdrawn != "" {
		c.withdrawn++
		for e := range ecos {
			c.withdrawnBy[e]++
		}
		return
	}
	for e := range ecos {
		b := c.builders[e]
		if b == nil {
			b = newBuilder(c.tmp)
			c.builders[e] = b
		}
		b.add(e, d.v, d.enc)
	}
}

// prepare creates dir, takes the update lock and removes temporary
// directories that an interrupted update left behind. It returns a new
// private temporary directory in dir.
func prepare(dir string) (unlock func(), tmp string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	unlock, err = lockDir(dir)
	if err != nil {
		return nil, "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, o := range old {
		os.RemoveAll(o)
	}
	tmp, err = os.MkdirTemp(dir, ".tmp-")
	if err != nil {
		unlock()
		return nil, "", err
	}
	return unlock, tmp, nil
}

// writeStaged writes the file of one ecosystem into tmp and syncs it.
func writeStaged(tmp string, b *builder, m Meta) (string, error) {
	fh, err := os.CreateTemp(tmp, "eco-*"+fileSuffix)
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(fh, 1<<20)
	if err := b.write(bw, m); err != nil {
		fh.Close()
		return "", err
	}
	if err := bw.Flush(); err != nil {
		fh.Close()
		return "", err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return "", err
	}
	if err := fh.Close(); err != nil {
		return "", err
	}
	// prove it opens before it replaces anything
	f, err := openFile(fh.Name())
	if err != nil {
		return "", fmt.Errorf("new database file does not verify: %w", err)
	}
	f.close()
	return fh.Name(), nil
}

// commit renames a staged file over the ecosystem's file and syncs the
// directory, so the swap survives a crash.
func commit(dir, staged, eco string) error {
	dst := filepath.Join(dir, fileName(eco))
	if err := os.Chmod(staged, 0o644); err != nil {
		return err
	}
	if err := os.Rename(staged, dst); err != nil {
		return err
	}
	os.Remove(dst + checkedSuffix)
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// flate readers are reused across zip entries: a new one per record costs
// more than decompressing the record.
var flatePool sync.Pool

type pooledFlate struct {
	io.ReadCloser
	done bool
}

func newFlateReader(r io.Reader) io.ReadCloser {
	if fr, ok := flatePool.Get().(io.ReadCloser); ok {
		if rs, ok := fr.(kflate.Resetter); ok && rs.Reset(r, nil) == nil {
			return &pooledFlate{ReadCloser: fr}
		}
	}
	return &pooledFlate{ReadCloser: kflate.NewReader(r)}
}

func (p *pooledFlate) Close() error {
	if p.done {
		return nil
	}
	p.done = true
	err := p.ReadCloser.Close()
	flatePool.Put(p.ReadCloser)
	return err
}
