package scan

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/moat-dev/moat/internal/image"
)

// CatalogVersion changes whenever what the catalogers find in a layer
// changes, so cached layer results of older moat versions are not reused.
const CatalogVersion = "3" // 3: RHEL and CentOS packages name their enterprise_linux major version

// LayerCache keeps what the catalogers found in a layer, keyed by the
// layer's diff ID (its uncompressed content digest): layers are content
// addressed, so a base layer shared by many images is read once.
type LayerCache interface {
	Get(diffID string) (*image.LayerResult, bool)
	Put(diffID string, lr *image.LayerResult)
}

// DirCache is a LayerCache in a directory: one zstd-compressed gob file per
// layer, written atomically. Safe for concurrent use by several scans and
// processes.
type DirCache struct {
	Dir string
	mu  sync.Mutex
}

// NewDirCache returns a cache in dir, creating it.
func NewDirCache(dir string) (*DirCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("layer cache: %w", err)
	}
	return &DirCache{Dir: dir}, nil
}

func (c *DirCache) path(diffID string) (string, bool) {
	algo, hex, ok := strings.Cut(diffID, ":")
	if !ok || algo == "" || hex == "" || strings.ContainsAny(diffID, "/\\.") {
		return "", false
	}
	return filepath.Join(c.Dir, "v"+CatalogVersion+"-"+algo+"-"+hex+".gob.zst"), true
}

// Get returns the cached result of a layer; a missing, unreadable or
// corrupt entry is a miss.
func (c *DirCache) Get(diffID string) (*image.LayerResult, bool) {
	p, ok := c.path(diffID)
	if !ok {
		return nil, false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	dec, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, false
	}
	defer dec.Close()
	var lr image.LayerResult
	if err := gob.NewDecoder(dec).Decode(&lr); err != nil {
		return nil, false
	}
	if lr.Parsed == nil {
		lr.Parsed = map[string]*image.ParsedFile{}
	}
	if lr.Captured == nil {
		lr.Captured = map[string][]byte{}
	}
	return &lr, true
}

// Put stores a layer result; failures only cost a later re-read.
func (c *DirCache) Put(diffID string, lr *image.LayerResult) {
	p, ok := c.path(diffID)
	if !ok {
		return
	}
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return
	}
	if err := gob.NewEncoder(enc).Encode(lr); err != nil {
		enc.Close()
		return
	}
	if err := enc.Close(); err != nil {
		return
	}
	tmp, err := os.CreateTemp(c.Dir, ".tmp-*")
	if err != nil {
		return
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
	}
}
