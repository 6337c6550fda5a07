package guard

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/match"
)

// storeMatch records an image's package IDs and match digest, then its
// findings (see writeFindings); mr nil means no database (IDs only).
func (g *Guard) storeMatch(ctx context.Context, tx *sql.Tx, repo, digest string, pkgs []catalog.Package, mr *match.Result, first bool) ([]match.Finding, error) {
	ids, slims, err := pkgIDs(ctx, tx, pkgs)
	if err != nil {
		return nil, err
	}
	fh := ""
	if mr != nil {
		hashes, err := g.pkgHashes(ctx, ids, slims)
		if err != nil {
			return nil, err
		}
		fh = imageHash(ids, hashes)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE images SET pkg_ids = ?, fhash = ? WHERE repo = ? AND digest = ?`, encodeIDs(ids), fh, repo, digest); err != nil {
		return nil, err
	}
	if mr == nil {
		return nil, nil
	}
	return g.writeFindings(ctx, tx, repo, digest, mr, first)
}

// slim is the part of a package that matching reads.
func slim(p *catalog.Package) catalog.Package {
	return catalog.Package{Name: p.Name, Version: p.Version, Type: p.Type, Ecosystem: p.Ecosystem, Namespace: p.Namespace,
		SourceName: p.SourceName, SourceVersion: p.SourceVersion, Epoch: p.Epoch, Release: p.Release, Arch: p.Arch}
}

func slimKey(p *catalog.Package) string {
	s := slim(p)
	b, _ := json.Marshal(&s)
	return string(b)
}

// pkgIDs records an image's distinct packages in pkgs and returns their
// IDs, sorted, with the matching slim packages in the same order.
func pkgIDs(ctx context.Context, tx *sql.Tx, pkgs []catalog.Package) ([]int64, []catalog.Package, error) {
	type item struct {
		id int64
		p  catalog.Package
	}
	seen := map[string]bool{}
	var items []item
	for i := range pkgs {
		s := slim(&pkgs[i])
		k := slimKey(&s)
		if seen[k] {
			continue
		}
		seen[k] = true
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM pkgs WHERE key = ?`, k).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRowContext(ctx, `INSERT INTO pkgs(key) VALUES (?) RETURNING id`, k).Scan(&id)
		}
		if err != nil {
			return nil, nil, err
		}
		items = append(items, item{id, s})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].id < items[j].id })
	ids := make([]int64, len(items))
	out := make([]catalog.Package, len(items))
	for i, it := range items {
		ids[i], out[i] = it.id, it.p
	}
	return ids, out, nil
}

func encodeIDs(ids []int64) []byte {
	out := make([]byte, 0, len(ids)*3)
	var prev int64
	for _, id := range ids {
		out = binary.AppendUvarint(out, uint64(id-prev))
		prev = id
	}
	return out
}

func decodeIDs(b []byte) ([]int64, error) {
	var out []int64
	var prev int64
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("corrupt package ID list")
		}
		prev += int64(d)
		out = append(out, prev)
		b = b[n:]
	}
	return out, nil
}

// pkgHashes matches distinct packages (by ID) and returns, per ID with
// findings, a digest of what matching it gives; IDs without findings are
// absent.
func (g *Guard) pkgHashes(ctx context.Context, ids []int64, pkgs []catalog.Package) (map[int64][32]byte, error) {
	mr, ok, err := g.match(ctx, pkgs)
	if err != nil || !ok {
		return nil, err
	}
	byKey := map[string]int64{}
	for i := range pkgs {
		byKey[slimKey(&pkgs[i])] = ids[i]
	}
	per := map[int64][][]byte{}
	for i := range mr.Findings {
		f := mr.Findings[i]
		id, ok := byKey[slimKey(&f.Package)]
		if !ok {
			continue
		}
		f.Package = catalog.Package{}
		b, _ := json.Marshal(&f)
		per[id] = append(per[id], b)
	}
	out := make(map[int64][32]byte, len(per))
	for id, fs := range per {
		sort.Slice(fs, func(i, j int) bool { return string(fs[i]) < string(fs[j]) })
		h := sha256.New()
		for _, b := range fs {
			h.Write(b)
			h.Write([]byte{0})
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		out[id] = sum
	}
	return out, nil
}

// imageHash combines the hashes of an image's packages.
func imageHash(ids []int64, hashes map[int64][32]byte) string {
	h := sha256.New()
	var buf [8]byte
	for _, id := range ids {
		if s, ok := hashes[id]; ok {
			binary.LittleEndian.PutUint64(buf[:], uint64(id))
			h.Write(buf[:])
			h.Write(s[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
