package benchimage

import (
	"encoding/binary"
	"hash/fnv"
	"io"
	"math"
	"math/rand"
	"strings"
)

// Content pools. Every generated file takes its bytes from one of these
// pools at an offset derived from its path, so content is deterministic,
// costs no more than a copy to produce, and compresses like the kind of file
// it imitates.
type poolKind uint8

const (
	poolText poolKind = iota // prose and source code: compresses ~3-4x
	poolBin                  // machine code and data: compresses ~2x
	poolRand                 // already compressed (.gz, .png): incompressible
	poolELF                  // poolBin behind a valid ELF header (not Go)
)

const poolSize = 8 << 20

type pools struct {
	text, bin, rnd []byte
}

func newPools(seed int64) *pools {
	r := rand.New(rand.NewSource(seed))
	p := &pools{}
	p.text = textPool(r, poolSize)
	p.bin = binPool(r, poolSize)
	p.rnd = make([]byte, poolSize)
	r.Read(p.rnd)
	return p
}

// textPool writes word-like tokens drawn from a Zipf-distributed vocabulary,
// with punctuation, indentation and line breaks.
func textPool(r *rand.Rand, n int) []byte {
	vocab := make([]string, 4000)
	for i := range vocab {
		vocab[i] = randWord(r, 1+r.Intn(4))
	}
	punct := []string{" ", " ", " ", " ", ", ", ". ", "(", ") ", " = ", "; ", ": ", " {", "} ", "_", "."}
	z := rand.NewZipf(r, 1.15, 2, uint64(len(vocab)-1))
	var b strings.Builder
	b.Grow(n + 64)
	col := 0
	for b.Len() < n {
		w := vocab[z.Uint64()]
		b.WriteString(w)
		col += len(w)
		if col > 60+r.Intn(30) {
			b.WriteByte('\n')
			for i := r.Intn(4) * 2; i > 0; i-- {
				b.WriteByte(' ')
			}
			col = 0
			continue
		}
		s := punct[r.Intn(len(punct))]
		b.WriteString(s)
		col += len(s)
	}
	return []byte(b.String()[:n])
}

// binPool imitates compiled code: runs of zeros, recurring instruction-like
// byte sequences and some noise.
func binPool(r *rand.Rand, n int) []byte {
	dict := make([][]byte, 512)
	for i := range dict {
		dict[i] = make([]byte, 3+r.Intn(14))
		r.Read(dict[i])
	}
	out := make([]byte, 0, n+64)
	for len(out) < n {
		switch x := r.Intn(10); {
		case x < 2:
			out = append(out, make([]byte, 1+r.Intn(48))...)
		case x < 8:
			out = append(out, dict[r.Intn(len(dict))]...)
		default:
			k := 1 + r.Intn(24)
			for i := 0; i < k; i++ {
				out = append(out, byte(r.Intn(256)))
			}
		}
	}
	return out[:n]
}

// pathHash is a stable 64-bit hash of a path and the generator seed.
func pathHash(seed int64, p string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(p))
	return h.Sum64()
}

// elfHeader is a minimal valid ELF64 x86-64 executable header without
// sections: executable files look like what they are to scanners, and none
// of them is a Go binary.
func elfHeader() []byte {
	h := make([]byte, 64)
	copy(h, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	binary.LittleEndian.PutUint16(h[16:], 2)    // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], 0x3e) // EM_X86_64
	binary.LittleEndian.PutUint32(h[20:], 1)    // EV_CURRENT
	binary.LittleEndian.PutUint64(h[24:], 0x401000)
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	binary.LittleEndian.PutUint16(h[54:], 56) // e_phentsize
	binary.LittleEndian.PutUint16(h[58:], 64) // e_shentsize
	return h
}

var elfHdr = elfHeader()

// writeContent writes size bytes of the given pool for path p.
func (pl *pools) writeContent(w io.Writer, seed int64, p string, kind poolKind, size int64) error {
	src := pl.text
	switch kind {
	case poolBin, poolELF:
		src = pl.bin
	case poolRand:
		src = pl.rnd
	}
	h := pathHash(seed, p)
	if kind == poolELF && size >= int64(len(elfHdr)) {
		if _, err := w.Write(elfHdr); err != nil {
			return err
		}
		size -= int64(len(elfHdr))
	}
	const chunk = 1 << 20
	for i := uint64(0); size > 0; i++ {
		n := int64(chunk)
		if size < n {
			n = size
		}
		off := (h ^ (i * 0x9e3779b97f4a7c15)) % uint64(len(src)-int(n))
		if _, err := w.Write(src[off : off+uint64(n)]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// slice returns n bytes of pool content for small generated files.
func (pl *pools) slice(kind poolKind, seed int64, p string, n int) []byte {
	var b strings.Builder
	pl.writeContent(&b, seed, p, kind, int64(n))
	return []byte(b.String())
}

var consonants = "bcdfghjklmnprstvwxz"
var vowels = "aeiou"

// randWord returns a pronounceable lower-case word of the given syllables.
func randWord(r *rand.Rand, syllables int) string {
	var b strings.Builder
	for i := 0; i < syllables; i++ {
		b.WriteByte(consonants[r.Intn(len(consonants))])
		b.WriteByte(vowels[r.Intn(len(vowels))])
		if r.Intn(3) == 0 {
			b.WriteByte(consonants[r.Intn(len(consonants))])
		}
	}
	return b.String()
}

// logNormal draws a size with the given median and spread, clamped.
func logNormal(r *rand.Rand, median float64, sigma float64, min, max int64) int64 {
	v := int64(median * math.Exp(sigma*r.NormFloat64()))
	if v < min {
		v = min
	}
	if v > max {
		v = max
	}
	return v
}

// names hands out unique words.
type names struct {
	r    *rand.Rand
	used map[string]bool
}

func newNames(r *rand.Rand) *names { return &names{r: r, used: map[string]bool{}} }

// next returns a word not handed out before (lower case, 2-3 syllables,
// optionally dash-joined with a second word).
func (n *names) next(parts int) string {
	for {
		ws := make([]string, parts)
		for i := range ws {
			ws[i] = randWord(n.r, 2+n.r.Intn(2))
		}
		s := strings.Join(ws, "-")
		if !n.used[s] {
			n.used[s] = true
			return s
		}
	}
}
