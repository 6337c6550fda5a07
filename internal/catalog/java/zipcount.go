package java

import (
	"bytes"
	"encoding/binary"
	"io"
)

// zipEntryCount reads the number of entries a zip archive declares in its
// end of central directory record (or the zip64 one), without reading the
// directory itself. ok is false when the record cannot be found; the zip
// reader then reports the problem.
func zipEntryCount(r io.ReaderAt, size int64) (n uint64, ok bool) {
	const eocdLen = 22
	if size < eocdLen {
		return 0, false
	}
	tail := int64(eocdLen + 0xffff) // the record plus the longest comment
	if tail > size {
		tail = size
	}
	buf := make([]byte, tail)
	if _, err := r.ReadAt(buf, size-tail); err != nil && err != io.EOF {
		return 0, false
	}
	i := bytes.LastIndex(buf, []byte("PK\x05\x06"))
	if i < 0 || len(buf)-i < eocdLen {
		return 0, false
	}
	eocd := buf[i:]
	n = uint64(binary.LittleEndian.Uint16(eocd[10:]))
	if n != 0xffff && binary.LittleEndian.Uint32(eocd[16:]) != 0xffffffff {
		return n, true
	}
	// zip64: the locator sits just before the record.
	loc := int64(i) - 20
	if loc < 0 {
		return 0, false
	}
	locator := buf[loc : loc+20]
	if !bytes.Equal(locator[:4], []byte("PK\x06\x07")) {
		return n, true
	}
	off := binary.LittleEndian.Uint64(locator[8:])
	if off > uint64(size) || uint64(size)-off < 56 {
		return 0, false
	}
	var rec [56]byte
	if _, err := r.ReadAt(rec[:], int64(off)); err != nil {
		return 0, false
	}
	if !bytes.Equal(rec[:4], []byte("PK\x06\x06")) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(rec[32:]), true
}
