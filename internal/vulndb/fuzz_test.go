package vulndb

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

func FuzzDecodeOSV(f *testing.F) {
	f.Add([]byte(debRecord))
	f.Add([]byte(`{"id":"X","withdrawn":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"X","affected":[{"package":{"ecosystem":"npm","name":"x"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1"}]}]}]}`))
	f.Add([]byte(`{"id":"X","database_specific":{"severity":["HIGH"]},"affected":[{"package":{"purl":"pkg:npm/x"}}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeOSV(data)
		if err != nil {
			if v != nil {
				t.Fatal("record and error")
			}
			return
		}
		// what decodes must survive the stored encoding
		got, err := decodeRecord(encodeRecord(nil, v))
		if err != nil {
			t.Fatalf("stored encoding does not decode: %v", err)
		}
		if got.ID != v.ID || len(got.Affected) != len(v.Affected) {
			t.Fatalf("round trip changed the record")
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	v, _ := DecodeOSV([]byte(debRecord))
	f.Add(encodeRecord(nil, v))
	f.Add([]byte{1, 'X', 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeRecord(data)
	})
}

// dbImage builds a database file in memory from records.
func dbImage(t testing.TB, eco string, records ...string) []byte {
	b := newBuilder("")
	for _, r := range records {
		v, err := DecodeOSV([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		b.add(eco, v, encodeRecord(nil, v))
	}
	var buf bytes.Buffer
	if err := b.write(&buf, Meta{Ecosystem: eco}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzDatabaseFile(f *testing.F) {
	img := dbImage(f, "Debian", debRecord, `{"id":"DLA-1","affected":[{"package":{"ecosystem":"Debian:12","name":"zlib"},"versions":["1"]}]}`)
	f.Add(img)
	f.Add(img[:len(img)-10])
	f.Add(dbImage(f, "Debian"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// the checksum would reject nearly every mutation; recompute it so
		// the fuzzer reaches the bounds checks behind it
		if len(data) >= len(fileMagic)+footerSize && bytes.HasSuffix(data, []byte(fileMagic)) {
			data = append([]byte(nil), data...)
			fixChecksum(data)
		}
		fl, err := parseFile(data)
		if err != nil {
			return
		}
		for i := 0; i < fl.nkeys && i < 64; i++ {
			k := fl.key(i)
			name, _, _ := bytes.Cut(k, []byte{0})
			fl.find(string(name), func(eco []byte, first, n uint32) {
				for j := first; j < first+n && j < first+8; j++ {
					fl.record(fl.ref(j))
				}
			})
		}
	})
}

// fixChecksum rewrites the footer CRC of a file image when the section
// bounds are sane, as a writer would have.
func fixChecksum(data []byte) {
	ft := data[len(data)-footerSize:]
	limit := uint64(len(data) - footerSize)
	var all []byte
	for i := 0; i < 5; i++ {
		off := binary.LittleEndian.Uint64(ft[i*16:])
		n := binary.LittleEndian.Uint64(ft[i*16+8:])
		if off > limit || n > limit-off {
			return
		}
		all = append(all, data[off:off+n]...)
	}
	crc := crc32Castagnoli(all)
	binary.LittleEndian.PutUint32(ft[80:], crc)
}

func crc32Castagnoli(b []byte) uint32 {
	return crc32.Checksum(b, castagnoli)
}
