package vulndb

import (
	"encoding/binary"
	"errors"
	"regexp"
	"strings"
	"sync"
	"unsafe"
)

// NormalizeName gives the name under which a package is indexed and looked
// up: PyPI names per PEP 503 (lower case, runs of "-", "_", "." as one
// "-"); NuGet and Packagist names, which are case-insensitive, in lower
// case; everything else as is.
func NormalizeName(ecosystem, name string) string {
	switch BaseEcosystem(ecosystem) {
	case "PyPI":
		return pep503(name)
	case "NuGet", "Packagist":
		return strings.ToLower(name)
	}
	return name
}

var pep503Re = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[-_.]+`) })

func pep503(name string) string {
	simple := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || (c == '-' && i+1 < len(name) && name[i+1] == '-') {
			simple = false
			break
		}
	}
	if simple {
		return name
	}
	return pep503Re().ReplaceAllString(strings.ToLower(name), "-")
}

// The stored record encoding: a compact binary form of Vulnerability,
// strings as uvarint length + bytes, lists as uvarint count + items.
// Version 1 field order is fixed by encodeRecord/decodeRecord.

type encoder struct{ b []byte }

func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) strs(ss []string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) num(n int) { e.b = binary.AppendUvarint(e.b, uint64(n)) }

func (e *encoder) severities(ss []Severity) {
	e.num(len(ss))
	for _, s := range ss {
		e.str(s.Type)
		e.str(s.Score)
	}
}

// maxStoredRefs bounds the references kept per record (kernel records carry
// hundreds of commit links that nobody reads in a scan report).
const maxStoredRefs = 16

func encodeRecord(dst []byte, v *Vulnerability) []byte {
	e := encoder{b: dst}
	e.str(v.ID)
	e.str(v.Modified)
	e.str(v.Published)
	e.strs(v.Aliases)
	e.strs(v.Upstream)
	e.str(v.Summary)
	e.severities(v.Severity)
	e.str(v.EcosystemSeverity)
	refs := v.References
	if len(refs) > maxStoredRefs {
		refs = refs[:maxStoredRefs]
	}
	e.num(len(refs))
	for _, r := range refs {
		e.str(r.Type)
		e.str(r.URL)
	}
	e.num(len(v.Affected))
	for _, a := range v.Affected {
		e.str(a.Package.Ecosystem)
		e.str(a.Package.Name)
		e.str(a.Package.PURL)
		e.severities(a.Severity)
		e.str(a.EcosystemSeverity)
		e.strs(a.Versions)
		// GIT ranges are never evaluated for packages; keep their type so
		// "has ranges" stays true, but not their commit events.
		e.num(len(a.Ranges))
		for _, r := range a.Ranges {
			e.str(r.Type)
			if r.Type == RangeGit {
				e.num(0)
				continue
			}
			e.num(len(r.Events))
			for _, ev := range r.Events {
				switch {
				case ev.Introduced != "":
					e.b = append(e.b, 'i')
					e.str(ev.Introduced)
				case ev.Fixed != "":
					e.b = append(e.b, 'f')
					e.str(ev.Fixed)
				case ev.LastAffected != "":
					e.b = append(e.b, 'a')
					e.str(ev.LastAffected)
				default:
					e.b = append(e.b, 'l')
					e.str(ev.Limit)
				}
			}
		}
	}
	return e.b
}

var errCorrupt = errors.New("corrupt record encoding")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) num() int {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)) {
		// no count or length can exceed the remaining bytes
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[k:]
	return int(n)
}

func (d *decoder) str() string {
	n := d.num()
	if d.err != nil {
		return ""
	}
	if n > len(d.b) {
		d.err = errCorrupt
		return ""
	}
	var s string
	if n > 0 {
		// strings share the decompressed block, which is never modified
		// after decompression: one allocation per block, not per field
		s = unsafe.String(&d.b[0], n)
	}
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.num()
	if n == 0 || d.err != nil {
		return nil
	}
	out := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, d.str())
	}
	return out
}

func (d *decoder) severities() []Severity {
	n := d.num()
	if n == 0 || d.err != nil {
		return nil
	}
	out := make([]Severity, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, Severity{Type: d.str(), Score: d.str()})
	}
	return out
}

func (d *decoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// decodeRecord decodes a stored record. The strings of the result point into
// b, which must not be modified afterwards.
func decodeRecord(b []byte) (*Vulnerability, error) {
	d := decoder{b: b}
	v := &Vulnerability{}
	v.ID = d.str()
	v.Modified = d.str()
	v.Published = d.str()
	v.Aliases = d.strs()
	v.Upstream = d.strs()
	v.Summary = d.str()
	v.Severity = d.severities()
	v.EcosystemSeverity = d.str()
	if n := d.num(); n > 0 && d.err == nil {
		v.References = make([]Reference, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			v.References = append(v.References, Reference{Type: d.str(), URL: d.str()})
		}
	}
	if n := d.num(); n > 0 && d.err == nil {
		v.Affected = make([]Affected, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			var a Affected
			a.Package.Ecosystem = d.str()
			a.Package.Name = d.str()
			a.Package.PURL = d.str()
			a.Severity = d.severities()
			a.EcosystemSeverity = d.str()
			a.Versions = d.strs()
			nr := d.num()
			for j := 0; j < nr && d.err == nil; j++ {
				r := Range{Type: d.str()}
				ne := d.num()
				for k := 0; k < ne && d.err == nil; k++ {
					kind := d.byte1()
					s := d.str()
					switch kind {
					case 'i':
						r.Events = append(r.Events, Event{Introduced: s})
					case 'f':
						r.Events = append(r.Events, Event{Fixed: s})
					case 'a':
						r.Events = append(r.Events, Event{LastAffected: s})
					case 'l':
						r.Events = append(r.Events, Event{Limit: s})
					default:
						d.err = errCorrupt
					}
				}
				a.Ranges = append(a.Ranges, r)
			}
			v.Affected = append(v.Affected, a)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if v.ID == "" {
		return nil, errCorrupt
	}
	return v, nil
}
