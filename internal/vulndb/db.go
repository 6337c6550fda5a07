package vulndb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultSource is the public OSV bucket: <base>/<Ecosystem>/all.zip.
const DefaultSource = "https://osv-vulnerabilities.storage.googleapis.com"

// DefaultMaxAge is the age after which the data is reported as stale.
const DefaultMaxAge = 72 * time.Hour

// DefaultEcosystems are the OSV ecosystems of the packages moat catalogs.
var DefaultEcosystems = []string{
	"Debian", "Ubuntu", "Alpine", "Red Hat", "Rocky Linux", "AlmaLinux",
	"SUSE", "openSUSE", "Go", "npm", "PyPI", "Maven", "crates.io",
	"RubyGems", "NuGet", "Packagist",
}

// EnvDBDir names the environment variable that overrides the database
// directory.
const EnvDBDir = "MOAT_DB_DIR"

// ResolveDir gives the database directory: flag if set, else $MOAT_DB_DIR,
// else <user cache dir>/moat ($XDG_CACHE_HOME/moat or ~/.cache/moat on
// Linux).
func ResolveDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if d := os.Getenv(EnvDBDir); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no database directory: %w (set --db-dir or %s)", err, EnvDBDir)
	}
	return filepath.Join(c, "moat"), nil
}

// ErrNoDatabase is returned by Open when the directory holds no database.
var ErrNoDatabase = errors.New("no vulnerability database")

// DB is an opened database: one mapped file per ecosystem. It is safe for
// concurrent use, and several processes may read the same directory while
// another updates it (updates replace files by rename; open handles keep
// the data they mapped).
type DB struct {
	Dir   string
	files map[string]*file // by base ecosystem
}

// fileName is the file of base ecosystem eco: characters outside
// [A-Za-z0-9._-] and a leading dot are %-escaped.
func fileName(eco string) string {
	var b strings.Builder
	for i := 0; i < len(eco); i++ {
		c := eco[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || (c == '.' && i > 0) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String() + fileSuffix
}

// Open opens every ecosystem file in dir. It fails with an error wrapping
// ErrNoDatabase, which says how to get one, when there is none.
func Open(dir string) (*DB, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+fileSuffix))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w in %s: run `moat db update` to download it (or `moat db import PATH` with OSV all.zip files when offline)", ErrNoDatabase, dir)
	}
	db := &DB{Dir: dir, files: map[string]*file{}}
	for _, n := range names {
		f, err := openFile(n)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("%w (remove it or run `moat db update`)", err)
		}
		db.files[BaseEcosystem(f.meta.Ecosystem)] = f
	}
	return db, nil
}

// Close unmaps the files.
func (db *DB) Close() error {
	var first error
	for _, f := range db.files {
		if err := f.close(); err != nil && first == nil {
			first = err
		}
	}
	db.files = nil
	return first
}

// Meta lists the metadata of every opened ecosystem, sorted by ecosystem.
func (db *DB) Meta() []Meta {
	out := make([]Meta, 0, len(db.files))
	for _, f := range db.files {
		out = append(out, f.meta)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ecosystem < out[j].Ecosystem })
	return out
}

// HasEcosystem reports whether data for the base ecosystem of eco is loaded.
func (db *DB) HasEcosystem(eco string) bool {
	_, ok := db.files[BaseEcosystem(eco)]
	return ok
}

// Count returns how many index keys (package, ecosystem release) apply
// to the package: the raw lookup, without decoding records.
func (db *DB) Count(ecosystem, name string) int {
	f := db.files[BaseEcosystem(ecosystem)]
	if f == nil {
		return 0
	}
	n := 0
	f.find(NormalizeName(ecosystem, name), func(eco []byte, _, c uint32) {
		if EcosystemApplies(ecosystem, bstr(eco)) {
			n += int(c)
		}
	})
	return n
}

// Lookup returns the records that name package name in an ecosystem that
// applies to ecosystem (see EcosystemApplies), each once, in storage order.
func (db *DB) Lookup(ecosystem, name string) ([]*Vulnerability, error) {
	f := db.files[BaseEcosystem(ecosystem)]
	if f == nil {
		return nil, nil
	}
	var refs []Ref
	keys := 0
	f.find(NormalizeName(ecosystem, name), func(eco []byte, first, n uint32) {
		if !EcosystemApplies(ecosystem, bstr(eco)) {
			return
		}
		keys++
		for i := first; i < first+n; i++ {
			refs = append(refs, f.ref(i))
		}
	})
	if keys > 1 {
		// a record listed under several releases is returned once
		sort.Slice(refs, func(i, j int) bool {
			return refs[i].Block < refs[j].Block || (refs[i].Block == refs[j].Block && refs[i].Offset < refs[j].Offset)
		})
		uniq := refs[:0]
		for i, r := range refs {
			if i == 0 || r != refs[i-1] {
				uniq = append(uniq, r)
			}
		}
		refs = uniq
	}
	if len(refs) == 0 {
		return nil, nil
	}
	out := make([]*Vulnerability, 0, len(refs))
	for _, r := range refs {
		v, err := f.record(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// EcosystemStatus is what `moat db status` shows for one ecosystem.
type EcosystemStatus struct {
	Meta
	// Checked is the last time an update found the data unchanged at the
	// source (zero when never).
	Checked time.Time `json:"checked,omitempty"`
	File    string    `json:"file"`
	Size    int64     `json:"size"`
	// Error is set when the file cannot be read.
	Error string `json:"error,omitempty"`
}

// Fresh is the last time the data was known current: the later of the
// update and the last unchanged check.
func (s EcosystemStatus) Fresh() time.Time {
	if s.Checked.After(s.Updated) {
		return s.Checked
	}
	return s.Updated
}

// Stale reports whether the data is older than maxAge at now.
func (s EcosystemStatus) Stale(now time.Time, maxAge time.Duration) bool {
	return now.Sub(s.Fresh()) > maxAge
}

// Status reads the metadata of every ecosystem file in dir without mapping
// the data. It returns an error wrapping ErrNoDatabase when there is none.
func Status(dir string) ([]EcosystemStatus, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+fileSuffix))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w in %s: run `moat db update` to download it (or `moat db import PATH` with OSV all.zip files when offline)", ErrNoDatabase, dir)
	}
	var out []EcosystemStatus
	for _, n := range names {
		s := EcosystemStatus{File: n}
		if st, err := os.Stat(n); err == nil {
			s.Size = st.Size()
		}
		m, err := readMeta(n)
		if err != nil {
			s.Error = err.Error()
			s.Ecosystem = strings.TrimSuffix(filepath.Base(n), fileSuffix)
		} else {
			s.Meta = m
		}
		s.Checked = readChecked(n)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ecosystem < out[j].Ecosystem })
	return out, nil
}

// checkedSuffix names the file recording the last unchanged check of an
// ecosystem file (RFC 3339 time and the ETag it was checked against).
const checkedSuffix = ".checked"

func readChecked(dbFile string) time.Time {
	b, err := os.ReadFile(dbFile + checkedSuffix)
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}
	}
	return t
}

// StaleWarnings returns one warning per ecosystem of the opened database
// whose data was last known current more than maxAge before now, for a
// scan to print.
func (db *DB) StaleWarnings(now time.Time, maxAge time.Duration) []string {
	st, err := Status(db.Dir)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, s := range st {
		if s.Error == "" && s.Stale(now, maxAge) {
			out = append(out, fmt.Sprintf("vulnerability data for %s is %s old (older than %s): run `moat db update`",
				s.Ecosystem, now.Sub(s.Fresh()).Round(time.Hour), maxAge))
		}
	}
	return out
}
