package vulndb

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/compress/s2"
)

// One database file holds the records of one OSV ecosystem (all its
// releases). Layout, all integers little endian:
//
//	magic "MOATVDB1"
//	record blocks: S2 blocks (github.com/klauspost/compress/s2, chosen over
//	  zstd for its decoding speed), each holding records back to back, every
//	  record as uvarint length + encodeRecord bytes
//	meta: JSON (Meta)
//	block table: per block {offset u64, compressed length u32,
//	  uncompressed length u32}
//	key table: per key {key offset u32, key length u32, first ref u32,
//	  ref count u32}, sorted by key bytes
//	key blob: the keys, each "<normalized name>\x00<ecosystem>"
//	refs: per ref {block u32, offset in uncompressed block u32}
//	footer (72 bytes): offset and length (u64 each) of meta, block table,
//	  key table, key blob, refs; CRC-32C of those five sections (u32);
//	  format version (u32); magic "MOATVDB1"
//
// Records of one package name are stored next to each other so a lookup
// usually decompresses one block. The whole file is memory-mapped read-only;
// the index is used in place, with no parsing at open beyond bounds checks.

const (
	fileMagic     = "MOATVDB1"
	formatVersion = 2
	footerSize    = 5*16 + 4 + 4 + 8
	keyEntrySize  = 16
	refSize       = 8
	blockEntry    = 16
	// blockTarget is the uncompressed size at which a record block is
	// closed.
	blockTarget = 16 << 10
	// maxBlockSize bounds the decompressed size a reader accepts.
	maxBlockSize = 64 << 20
	fileSuffix   = ".moatdb"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Meta describes one database file.
type Meta struct {
	Ecosystem    string    `json:"ecosystem"`
	Source       string    `json:"source"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"lastModified,omitempty"`
	Updated      time.Time `json:"updated"`
	Records      int       `json:"records"`
	Withdrawn    int       `json:"withdrawn"`
	Malformed    int       `json:"malformed"`
	Keys         int       `json:"keys"`
}

// Ref points at one stored record.
type Ref struct {
	Block  uint32
	Offset uint32
}

// builder collects encoded records and writes a database file. With a
// temporary directory it spills encoded records to a file there as they
// arrive and keeps only their index in memory, so importing the whole
// public OSV data stays well under a gigabyte.
type builder struct {
	recs    []builtRecord
	keyIdx  map[string]int32 // key -> index into keyStr/keyRecs
	keyStr  []string
	keyRecs [][]int32 // per key: indexes into recs
	ids     map[string]int32

	spill  *os.File
	sw     *bufio.Writer
	spillN int64
	err    error
}

type builtRecord struct {
	mem      []byte // the encoding, when not spilled
	off      int64  // offset in the spill file
	n        uint32
	crc      uint32
	primary  int32 // smallest key; records are laid out in its order
	id       string
	modified string
	keys     []int32
}

func newBuilder(tmpDir string) *builder {
	b := &builder{keyIdx: map[string]int32{}, ids: map[string]int32{}}
	if tmpDir != "" {
		f, err := os.CreateTemp(tmpDir, "spill-*")
		if err != nil {
			b.err = err
		} else {
			b.spill, b.sw = f, bufio.NewWriterSize(f, 1<<20)
		}
	}
	return b
}

// close removes the spill file.
func (b *builder) close() {
	if b.spill != nil {
		b.spill.Close()
		os.Remove(b.spill.Name())
		b.spill = nil
	}
}

func (b *builder) keyID(k string) int32 {
	if id, ok := b.keyIdx[k]; ok {
		return id
	}
	id := int32(len(b.keyStr))
	b.keyIdx[k] = id
	b.keyStr = append(b.keyStr, k)
	b.keyRecs = append(b.keyRecs, nil)
	return id
}

// add stores one record under the keys of its affected packages of base
// ecosystem eco.
func (b *builder) add(eco string, v *Vulnerability, enc []byte) {
	var keys []string
	for _, a := range v.Affected {
		if a.Package.Name == "" || BaseEcosystem(a.Package.Ecosystem) != eco {
			continue
		}
		k := NormalizeName(a.Package.Ecosystem, a.Package.Name) + "\x00" + a.Package.Ecosystem
		dup := false
		for _, o := range keys {
			if o == k {
				dup = true
			}
		}
		if !dup {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Strings(keys)
	ids := make([]int32, len(keys))
	for i, k := range keys {
		ids[i] = b.keyID(k)
	}
	rec := builtRecord{n: uint32(len(enc)), crc: crc32.Checksum(enc, castagnoli), primary: ids[0], id: v.ID, modified: v.Modified, keys: ids}
	idx, dup := b.ids[v.ID]
	if dup {
		// the same record twice (overlapping sources): keep the newer,
		// or for equal times the one with the smaller checksum, so the
		// result does not depend on the order records arrive in
		old := &b.recs[idx]
		if v.Modified < old.modified || (v.Modified == old.modified && rec.crc >= old.crc) {
			return
		}
		for _, k := range old.keys {
			list := b.keyRecs[k]
			for i, x := range list {
				if x == idx {
					list = append(list[:i], list[i+1:]...)
					break
				}
			}
			b.keyRecs[k] = list
		}
	}
	if b.sw != nil {
		rec.off = b.spillN
		if _, err := b.sw.Write(enc); err != nil && b.err == nil {
			b.err = err
		}
		b.spillN += int64(len(enc))
	} else {
		rec.mem = enc
	}
	if dup {
		b.recs[idx] = rec
	} else {
		idx = int32(len(b.recs))
		b.ids[v.ID] = idx
		b.recs = append(b.recs, rec)
	}
	for _, k := range ids {
		b.keyRecs[k] = append(b.keyRecs[k], idx)
	}
}

// write writes the database file to w (a fresh file).
func (b *builder) write(w io.Writer, meta Meta) error {
	if b.err != nil {
		return b.err
	}
	if b.sw != nil {
		if err := b.sw.Flush(); err != nil {
			return err
		}
	}
	order := make([]int32, len(b.recs))
	for i := range order {
		order[i] = int32(i)
	}
	sort.Slice(order, func(i, j int) bool {
		ri, rj := &b.recs[order[i]], &b.recs[order[j]]
		if ri.primary != rj.primary {
			return b.keyStr[ri.primary] < b.keyStr[rj.primary]
		}
		return ri.id < rj.id
	})

	cw := &countWriter{w: w}
	if _, err := cw.Write([]byte(fileMagic)); err != nil {
		return err
	}
	refs := make([]Ref, len(b.recs))
	var blockTable []byte
	var cur []byte
	var comp []byte
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		comp = s2.EncodeBetter(comp[:cap(comp)], cur)
		blockTable = binary.LittleEndian.AppendUint64(blockTable, uint64(cw.n))
		blockTable = binary.LittleEndian.AppendUint32(blockTable, uint32(len(comp)))
		blockTable = binary.LittleEndian.AppendUint32(blockTable, uint32(len(cur)))
		cur = cur[:0]
		_, err := cw.Write(comp)
		return err
	}
	var buf []byte
	for _, ri := range order {
		r := &b.recs[ri]
		refs[ri] = Ref{Block: uint32(len(blockTable) / blockEntry), Offset: uint32(len(cur))}
		data := r.mem
		if b.spill != nil {
			if cap(buf) < int(r.n) {
				buf = make([]byte, r.n)
			}
			data = buf[:r.n]
			if _, err := b.spill.ReadAt(data, r.off); err != nil {
				return fmt.Errorf("reading back spilled records: %w", err)
			}
		}
		cur = binary.AppendUvarint(cur, uint64(len(data)))
		cur = append(cur, data...)
		r.mem, r.keys = nil, nil // let the encoded record go
		if len(cur) >= blockTarget {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}

	keyOrder := make([]int32, 0, len(b.keyStr))
	for k := range b.keyStr {
		if len(b.keyRecs[k]) > 0 {
			keyOrder = append(keyOrder, int32(k))
		}
	}
	sort.Slice(keyOrder, func(i, j int) bool { return b.keyStr[keyOrder[i]] < b.keyStr[keyOrder[j]] })
	meta.Records = len(b.recs)
	meta.Keys = len(keyOrder)
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	keyTable := make([]byte, 0, len(keyOrder)*keyEntrySize)
	var blob, refTable []byte
	nref := 0
	for _, ki := range keyOrder {
		k := b.keyStr[ki]
		list := b.keyRecs[ki]
		// records of one key in storage order, so a lookup reads forward
		sort.Slice(list, func(i, j int) bool {
			a, c := refs[list[i]], refs[list[j]]
			return a.Block < c.Block || (a.Block == c.Block && a.Offset < c.Offset)
		})
		keyTable = binary.LittleEndian.AppendUint32(keyTable, uint32(len(blob)))
		keyTable = binary.LittleEndian.AppendUint32(keyTable, uint32(len(k)))
		keyTable = binary.LittleEndian.AppendUint32(keyTable, uint32(nref))
		keyTable = binary.LittleEndian.AppendUint32(keyTable, uint32(len(list)))
		blob = append(blob, k...)
		for _, ri := range list {
			refTable = binary.LittleEndian.AppendUint32(refTable, refs[ri].Block)
			refTable = binary.LittleEndian.AppendUint32(refTable, refs[ri].Offset)
		}
		nref += len(list)
	}
	if len(blob) > 1<<32-1 || nref > 1<<32-1 {
		return errors.New("database too large for format version 1")
	}
	var footer []byte
	crc := crc32.New(castagnoli)
	for _, sec := range [][]byte{metaJSON, blockTable, keyTable, blob, refTable} {
		footer = binary.LittleEndian.AppendUint64(footer, uint64(cw.n))
		footer = binary.LittleEndian.AppendUint64(footer, uint64(len(sec)))
		crc.Write(sec)
		if _, err := cw.Write(sec); err != nil {
			return err
		}
	}
	footer = binary.LittleEndian.AppendUint32(footer, crc.Sum32())
	footer = binary.LittleEndian.AppendUint32(footer, formatVersion)
	footer = append(footer, fileMagic...)
	_, err = cw.Write(footer)
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// file is one opened database file.
type file struct {
	path   string
	data   []byte // the mapped (or read) file
	unmap  func() error
	meta   Meta
	blocks []byte
	keys   []byte
	blob   []byte
	refs   []byte
	nkeys  int

	mu    sync.Mutex
	cache map[uint32][]byte
	order []uint32
}

// openFile maps path and validates its structure.
func openFile(path string) (*file, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	f, err := parseFile(data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.path = path
	f.unmap = unmap
	return f, nil
}

// parseFile checks a database image and sets up its sections. Every offset
// and length is checked here, so lookups never index out of range.
func parseFile(data []byte) (*file, error) {
	if len(data) < len(fileMagic)+footerSize || string(data[:len(fileMagic)]) != fileMagic {
		return nil, errors.New("not a moat vulnerability database file (bad magic)")
	}
	ft := data[len(data)-footerSize:]
	if string(ft[footerSize-8:]) != fileMagic {
		return nil, errors.New("database file is truncated (no footer)")
	}
	if v := binary.LittleEndian.Uint32(ft[84:]); v != formatVersion {
		return nil, fmt.Errorf("database format version %d is not supported (want %d); run moat db update", v, formatVersion)
	}
	limit := uint64(len(data) - footerSize)
	var secs [5][]byte
	crc := crc32.New(castagnoli)
	for i := range secs {
		off := binary.LittleEndian.Uint64(ft[i*16:])
		n := binary.LittleEndian.Uint64(ft[i*16+8:])
		if off < uint64(len(fileMagic)) || off > limit || n > limit-off {
			return nil, fmt.Errorf("database section %d out of bounds", i)
		}
		secs[i] = data[off : off+n]
		crc.Write(secs[i])
	}
	if crc.Sum32() != binary.LittleEndian.Uint32(ft[80:]) {
		return nil, errors.New("database index checksum mismatch (file damaged)")
	}
	f := &file{data: data, blocks: secs[1], keys: secs[2], blob: secs[3], refs: secs[4], cache: map[uint32][]byte{}}
	if err := json.Unmarshal(secs[0], &f.meta); err != nil {
		return nil, fmt.Errorf("database metadata: %w", err)
	}
	if len(f.blocks)%blockEntry != 0 || len(f.keys)%keyEntrySize != 0 || len(f.refs)%refSize != 0 {
		return nil, errors.New("database index tables have odd sizes")
	}
	nblocks := uint64(len(f.blocks) / blockEntry)
	for i := uint64(0); i < nblocks; i++ {
		e := f.blocks[i*blockEntry:]
		off := binary.LittleEndian.Uint64(e)
		cl := uint64(binary.LittleEndian.Uint32(e[8:]))
		ul := binary.LittleEndian.Uint32(e[12:])
		if off < uint64(len(fileMagic)) || off > limit || cl > limit-off || ul > maxBlockSize {
			return nil, fmt.Errorf("database block %d out of bounds", i)
		}
	}
	f.nkeys = len(f.keys) / keyEntrySize
	nrefs := uint64(len(f.refs) / refSize)
	for i := 0; i < f.nkeys; i++ {
		e := f.keys[i*keyEntrySize:]
		ko, kl := uint64(binary.LittleEndian.Uint32(e)), uint64(binary.LittleEndian.Uint32(e[4:]))
		ro, rn := uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
		if ko+kl > uint64(len(f.blob)) || ro+rn > nrefs {
			return nil, fmt.Errorf("database key %d out of bounds", i)
		}
	}
	for i := uint64(0); i < nrefs; i++ {
		if uint64(binary.LittleEndian.Uint32(f.refs[i*refSize:])) >= nblocks {
			return nil, fmt.Errorf("database reference %d names a missing block", i)
		}
	}
	return f, nil
}

func (f *file) key(i int) []byte {
	e := f.keys[i*keyEntrySize:]
	ko, kl := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
	return f.blob[ko : ko+kl]
}

// find calls fn for every key "<name>\x00<ecosystem>" of name with the
// ecosystem part, and the key's refs.
func (f *file) find(name string, fn func(eco []byte, first, n uint32)) {
	// binary search for the first key >= name+"\x00"
	lo, hi := 0, f.nkeys
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cmpKey(f.key(m), name) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < f.nkeys; i++ {
		k := f.key(i)
		if len(k) <= len(name) || k[len(name)] != 0 || string(k[:len(name)]) != name {
			return
		}
		e := f.keys[i*keyEntrySize:]
		fn(k[len(name)+1:], binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:]))
	}
}

// cmpKey compares key k with the prefix name+"\x00" as a byte string.
func cmpKey(k []byte, name string) int {
	n := len(name)
	m := min(len(k), n)
	if c := strings.Compare(bstr(k[:m]), name[:m]); c != 0 {
		return c
	}
	if len(k) <= n {
		return -1 // k is a prefix of name+"\x00"
	}
	if k[n] == 0 {
		return 0
	}
	return 1
}

// bstr views b as a string without copying, for comparisons that do not
// keep the string (lookups run millions of times per scan).
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (f *file) ref(i uint32) Ref {
	e := f.refs[uint64(i)*refSize:]
	return Ref{Block: binary.LittleEndian.Uint32(e), Offset: binary.LittleEndian.Uint32(e[4:])}
}

// blockCacheSize is the number of decompressed blocks kept per file.
const blockCacheSize = 64

func (f *file) block(i uint32) ([]byte, error) {
	f.mu.Lock()
	if b, ok := f.cache[i]; ok {
		f.mu.Unlock()
		return b, nil
	}
	f.mu.Unlock()
	e := f.blocks[uint64(i)*blockEntry:]
	off := binary.LittleEndian.Uint64(e)
	cl := binary.LittleEndian.Uint32(e[8:])
	ul := binary.LittleEndian.Uint32(e[12:])
	src := f.data[off : off+uint64(cl)]
	if n, err := s2.DecodedLen(src); err != nil || n != int(ul) {
		return nil, fmt.Errorf("%s: block %d: bad compressed block header", f.path, i)
	}
	out, err := s2.Decode(make([]byte, ul), src)
	if err != nil {
		return nil, fmt.Errorf("%s: block %d: %w", f.path, i, err)
	}
	if len(out) != int(ul) {
		return nil, fmt.Errorf("%s: block %d: decompressed to %d bytes, want %d", f.path, i, len(out), ul)
	}
	f.mu.Lock()
	if _, ok := f.cache[i]; !ok {
		if len(f.order) >= blockCacheSize {
			delete(f.cache, f.order[0])
			f.order = f.order[1:]
		}
		f.cache[i] = out
		f.order = append(f.order, i)
	}
	f.mu.Unlock()
	return out, nil
}

func (f *file) record(r Ref) (*Vulnerability, error) {
	b, err := f.block(r.Block)
	if err != nil {
		return nil, err
	}
	if int64(r.Offset) >= int64(len(b)) {
		return nil, fmt.Errorf("%s: record offset %d beyond block %d", f.path, r.Offset, r.Block)
	}
	b = b[r.Offset:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, fmt.Errorf("%s: corrupt record length in block %d", f.path, r.Block)
	}
	v, err := decodeRecord(b[k : k+int(n)])
	if err != nil {
		return nil, fmt.Errorf("%s: block %d offset %d: %w", f.path, r.Block, r.Offset, err)
	}
	return v, nil
}

func (f *file) close() error {
	if f.unmap != nil {
		return f.unmap()
	}
	return nil
}

// readMeta reads only the metadata of a database file.
func readMeta(path string) (Meta, error) {
	fh, err := os.Open(path)
	if err != nil {
		return Meta{}, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return Meta{}, err
	}
	if st.Size() < int64(len(fileMagic)+footerSize) {
		return Meta{}, fmt.Errorf("%s: too small to be a database", path)
	}
	ft := make([]byte, footerSize)
	if _, err := fh.ReadAt(ft, st.Size()-footerSize); err != nil {
		return Meta{}, err
	}
	if string(ft[footerSize-8:]) != fileMagic {
		return Meta{}, fmt.Errorf("%s: truncated database (no footer)", path)
	}
	off, n := binary.LittleEndian.Uint64(ft), binary.LittleEndian.Uint64(ft[8:])
	if n > 1<<20 || off > uint64(st.Size()) || off+n > uint64(st.Size()) {
		return Meta{}, fmt.Errorf("%s: bad metadata section", path)
	}
	buf := make([]byte, n)
	if _, err := fh.ReadAt(buf, int64(off)); err != nil {
		return Meta{}, err
	}
	var m Meta
	if err := json.Unmarshal(buf, &m); err != nil {
		return Meta{}, fmt.Errorf("%s: metadata: %w", path, err)
	}
	return m, nil
}
