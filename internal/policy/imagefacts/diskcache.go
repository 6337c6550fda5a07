package imagefacts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/vulndb"
)

// EnvCacheDir overrides the default facts cache directory.
const EnvCacheDir = "MOAT_FACTS_CACHE"

// EntrySchema names the format of a facts cache entry.
const EntrySchema = "moat.facts/v1"

// DefaultCacheMaxBytes bounds a facts cache directory (entries and the
// layer results under layers/).
const DefaultCacheMaxBytes = 512 << 20

const (
	maxEntryFile  = 64 << 20  // compressed entry
	maxEntryBytes = 256 << 20 // decompressed entry
)

// ResolveCacheDir gives the facts cache directory: flag, else
// $MOAT_FACTS_CACHE, else the user cache directory's moat/facts.
func ResolveCacheDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if d := os.Getenv(EnvCacheDir); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no facts cache directory: %w (set --facts-cache or %s)", err, EnvCacheDir)
	}
	return filepath.Join(c, "moat", "facts"), nil
}

// Entry is what the on-disk cache keeps for one image: its config facts,
// the packages a scan found, and the findings of matching them against one
// database version. A database update makes the findings stale but keeps
// the packages, which are re-matched without reading the image again.
type Entry struct {
	Schema string `json:"schema"`
	// Key is what the entry is filed under ("registry|DIGEST|PLATFORM",
	// "docker|IMAGE-ID"); a file whose key differs is ignored.
	Key            string            `json:"key"`
	Digest         string            `json:"digest"`
	Layers         []string          `json:"layers,omitempty"`
	User           string            `json:"user,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Created        time.Time         `json:"created,omitzero"`
	CatalogVersion string            `json:"catalogVersion"`
	Packages       []catalog.Package `json:"packages"`
	Scanned        time.Time         `json:"scanned"`
	// DBVersion identifies the database Findings were matched with.
	DBVersion string          `json:"dbVersion,omitempty"`
	Findings  []match.Finding `json:"findings,omitempty"`
}

// DiskCache keeps Entries in a directory, one zstd-compressed JSON file per
// image, written atomically (temporary file and rename), bounded in total
// size (least recently used files go first). Several processes may share
// it. Layer results of scans (scan.DirCache) live in its layers/
// subdirectory and count towards the bound.
type DiskCache struct {
	Dir string
	// MaxBytes bounds the directory (default DefaultCacheMaxBytes).
	MaxBytes int64
	mu       sync.Mutex
}

// OpenDiskCache returns the cache in dir. The directory is made (mode
// 0700: entries name the images a user checks) when the first entry is
// written.
func OpenDiskCache(dir string, maxBytes int64) (*DiskCache, error) {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("facts cache %s: not a directory", dir)
	}
	return &DiskCache{Dir: dir, MaxBytes: maxBytes}, nil
}

// LayerCache returns the scan layer cache in the layers/ subdirectory.
func (c *DiskCache) LayerCache() scan.LayerCache {
	return &layerCache{dc: &scan.DirCache{Dir: filepath.Join(c.Dir, "layers")}}
}

// layerCache is a scan.DirCache whose directory is made on the first Put.
type layerCache struct {
	dc   *scan.DirCache
	once sync.Once
}

func (l *layerCache) Get(diffID string) (*image.LayerResult, bool) { return l.dc.Get(diffID) }

func (l *layerCache) Put(diffID string, lr *image.LayerResult) {
	l.once.Do(func() { os.MkdirAll(l.dc.Dir, 0o700) })
	l.dc.Put(diffID, lr)
}

func (c *DiskCache) path(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(c.Dir, "v1-"+hex.EncodeToString(h[:])+".json.zst")
}

// ErrCorrupt marks a cache entry that could not be read.
var ErrCorrupt = errors.New("corrupt facts cache entry")

// Get reads the entry of key. A missing entry is (nil, nil); an unreadable
// or corrupt one is (nil, error wrapping ErrCorrupt) and is removed.
func (c *DiskCache) Get(key string) (*Entry, error) {
	p := c.path(key)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorrupt, p, err)
	}
	e, err := ReadEntry(io.LimitReader(f, maxEntryFile+1))
	f.Close()
	if err == nil && e.Key != key {
		err = fmt.Errorf("entry is for %q", e.Key)
	}
	if err != nil {
		os.Remove(p)
		return nil, fmt.Errorf("%w %s (removed): %v", ErrCorrupt, p, err)
	}
	now := time.Now()
	os.Chtimes(p, now, now) // least recently used goes first when pruning
	return e, nil
}

// ReadEntry decodes one cache entry (zstd-compressed JSON), checking its
// schema and sizes.
func ReadEntry(r io.Reader) (*Entry, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxEntryFile+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxEntryFile {
		return nil, fmt.Errorf("larger than %d bytes", maxEntryFile)
	}
	dec, err := zstd.NewReader(bytes.NewReader(raw), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxEntryBytes), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	js, err := io.ReadAll(io.LimitReader(dec, maxEntryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	if len(js) > maxEntryBytes {
		return nil, fmt.Errorf("decompresses to more than %d bytes", maxEntryBytes)
	}
	var e Entry
	if err := json.Unmarshal(js, &e); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if e.Schema != EntrySchema {
		return nil, fmt.Errorf("schema %q, want %s", e.Schema, EntrySchema)
	}
	if e.Key == "" || !validDigest(e.Digest) {
		return nil, errors.New("entry without key or digest")
	}
	return &e, nil
}

// validDigest accepts "algorithm:hex".
func validDigest(d string) bool {
	algo, h, ok := strings.Cut(d, ":")
	if !ok || algo == "" || len(h) < 32 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// WriteEntry encodes an entry as ReadEntry reads it.
func WriteEntry(w io.Writer, e *Entry) error {
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	if err := json.NewEncoder(enc).Encode(e); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

// Put writes the entry atomically and prunes the directory to its bound.
func (c *DiskCache) Put(e *Entry) error {
	e.Schema = EntrySchema
	var buf bytes.Buffer
	if err := WriteEntry(&buf, e); err != nil {
		return err
	}
	if buf.Len() > maxEntryFile {
		return fmt.Errorf("facts of %s: %d bytes, more than the %d an entry may hold", e.Digest, buf.Len(), maxEntryFile)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.Dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(buf.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path(e.Key))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	c.Prune()
	return nil
}

// Prune removes the least recently used files (entries and layer results)
// until the directory fits MaxBytes, and temporary files older than an
// hour (left by a process that died while writing).
func (c *DiskCache) Prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := c.MaxBytes
	if limit <= 0 {
		limit = DefaultCacheMaxBytes
	}
	type file struct {
		path string
		size int64
		at   time.Time
	}
	var files []file
	var total int64
	now := time.Now()
	for _, dir := range []string{c.Dir, filepath.Join(c.Dir, "layers")} {
		des, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			if !de.Type().IsRegular() {
				continue
			}
			info, err := de.Info()
			if err != nil {
				continue
			}
			p := filepath.Join(dir, de.Name())
			if strings.HasPrefix(de.Name(), ".tmp-") {
				if now.Sub(info.ModTime()) > time.Hour {
					os.Remove(p)
				}
				continue
			}
			files = append(files, file{p, info.Size(), info.ModTime()})
			total += info.Size()
		}
	}
	if total <= limit {
		return
	}
	sort.Slice(files, func(i, j int) bool { return files[i].at.Before(files[j].at) })
	for _, f := range files {
		if total <= limit {
			break
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}

// DBVersion identifies the contents of a vulnerability database: the
// metadata of every ecosystem file (source, update time, record counts).
func DBVersion(db *vulndb.DB) string {
	if db == nil {
		return ""
	}
	h := sha256.New()
	for _, m := range db.Meta() {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d\x00%d\x00%d\n", m.Ecosystem, m.Source, m.ETag, m.LastModified, m.Updated.UTC().Format(time.RFC3339Nano), m.Records, m.Withdrawn, m.Malformed, m.Keys)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:32]
}
