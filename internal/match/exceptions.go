package match

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	packageurl "github.com/package-url/packageurl-go"
	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/vulndb"
)

// Exception decides whether a finding is suppressed.
type Exception interface {
	Suppresses(f *Finding) (Suppression, bool)
}

// Suppression says why a finding was suppressed.
type Suppression struct {
	Kind   string `json:"kind"`   // "ignore" or "vex"
	Source string `json:"source"` // the file
	// Rule is the vulnerability ID the entry or statement names.
	Rule   string `json:"rule"`
	Reason string `json:"reason,omitempty"`
	// Status and Justification of a VEX statement.
	Status        string `json:"status,omitempty"`
	Justification string `json:"justification,omitempty"`
	// Expires of an ignore entry (YYYY-MM-DD or RFC 3339).
	Expires string `json:"expires,omitempty"`
}

// SuppressedFinding is a finding removed by an exception.
type SuppressedFinding struct {
	Finding
	SuppressedBy Suppression `json:"suppressedBy"`
}

// Apply moves the findings that an exception suppresses to r.Suppressed
// (the first exception that matches is recorded) and records expired ignore
// entries in r.Expired.
func (r *Result) Apply(exceptions ...Exception) {
	keep := r.Findings[:0]
	for i := range r.Findings {
		f := r.Findings[i]
		suppressed := false
		for _, ex := range exceptions {
			if ex == nil {
				continue
			}
			if s, ok := ex.Suppresses(&f); ok {
				r.Suppressed = append(r.Suppressed, SuppressedFinding{Finding: f, SuppressedBy: s})
				suppressed = true
				break
			}
		}
		if !suppressed {
			keep = append(keep, f)
		}
	}
	r.Findings = keep
	for _, ex := range exceptions {
		if ig, ok := ex.(*IgnoreFile); ok && ig != nil {
			r.Expired = append(r.Expired, ig.Expired()...)
		}
	}
}

// IgnoreRule is one entry of an ignore file.
type IgnoreRule struct {
	// ID is any identifier of the vulnerability (CVE, GHSA, GO-, ...).
	ID string `yaml:"id" json:"id"`
	// Package narrows the entry to a package: its name, the name it was
	// looked up by (source package, group:artifact) or its purl.
	Package string `yaml:"package,omitempty" json:"package,omitempty"`
	// Version narrows it further to one installed version.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	Reason  string `yaml:"reason" json:"reason"`
	// Expires is a date (YYYY-MM-DD, the entry applies through that day,
	// UTC) or an RFC 3339 time.
	Expires string `yaml:"expires" json:"expires"`

	end time.Time
}

// IgnoreFile is a parsed ignore file (.moatignore.yaml):
//
//	ignore:
//	  - id: CVE-2022-32149
//	    package: golang.org/x/text   # optional
//	    version: v0.3.7              # optional
//	    reason: only parses trusted input
//	    expires: 2026-12-31
type IgnoreFile struct {
	Path  string
	Rules []IgnoreRule
	now   time.Time
}

// DefaultIgnoreFile is the ignore file read when none is named.
const DefaultIgnoreFile = ".moatignore.yaml"

// LoadIgnoreFile reads an ignore file; entries whose expiry is before now
// are kept but no longer apply (see Expired).
func LoadIgnoreFile(path string, now time.Time) (*IgnoreFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseIgnoreFile(path, data, now)
}

// ParseIgnoreFile parses ignore file content; name is used in errors.
func ParseIgnoreFile(name string, data []byte, now time.Time) (*IgnoreFile, error) {
	var doc struct {
		Ignore []IgnoreRule `yaml:"ignore"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	f := &IgnoreFile{Path: name, now: now}
	for i, r := range doc.Ignore {
		where := fmt.Sprintf("%s: ignore entry %d", name, i+1)
		if strings.TrimSpace(r.ID) == "" {
			return nil, fmt.Errorf("%s: needs an id", where)
		}
		where += " (" + r.ID + ")"
		if strings.TrimSpace(r.Reason) == "" {
			return nil, fmt.Errorf("%s: needs a reason", where)
		}
		if strings.TrimSpace(r.Expires) == "" {
			return nil, fmt.Errorf("%s: needs an expiry date (expires: YYYY-MM-DD)", where)
		}
		end, err := parseExpiry(r.Expires)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		r.end = end
		f.Rules = append(f.Rules, r)
	}
	return f, nil
}

func parseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.Add(24 * time.Hour), nil // through the end of that day
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("expires %q is not a date (YYYY-MM-DD) or RFC 3339 time", s)
}

// Expired lists the entries past their expiry.
func (f *IgnoreFile) Expired() []IgnoreRule {
	var out []IgnoreRule
	for _, r := range f.Rules {
		if !f.now.Before(r.end) {
			out = append(out, r)
		}
	}
	return out
}

// Suppresses implements Exception.
func (f *IgnoreFile) Suppresses(fd *Finding) (Suppression, bool) {
	for _, r := range f.Rules {
		if !f.now.Before(r.end) {
			continue
		}
		if !hasID(fd, r.ID) {
			continue
		}
		if r.Package != "" && !packageIs(fd, r.Package) {
			continue
		}
		if r.Version != "" && r.Version != fd.Package.Version && r.Version != fd.Version {
			continue
		}
		return Suppression{Kind: "ignore", Source: f.Path, Rule: r.ID, Reason: r.Reason, Expires: r.Expires}, true
	}
	return Suppression{}, false
}

func hasID(f *Finding, id string) bool {
	for _, x := range f.IDs() {
		if strings.EqualFold(x, strings.TrimSpace(id)) {
			return true
		}
	}
	return false
}

func packageIs(f *Finding, name string) bool {
	if strings.HasPrefix(name, "pkg:") {
		return purlMatches(name, f.Package.PURL)
	}
	p := &f.Package
	for _, n := range []string{p.Name, f.Name, p.SourceName} {
		if n != "" && vulndb.NormalizeName(f.Ecosystem, n) == vulndb.NormalizeName(f.Ecosystem, name) {
			return true
		}
	}
	return false
}

// purlMatches reports whether purl rule names package purl pkg: type,
// namespace and name equal, and the version equal when the rule has one;
// qualifiers and subpath are ignored.
func purlMatches(rule, pkg string) bool {
	if rule == "" || pkg == "" {
		return false
	}
	a, err := packageurl.FromString(rule)
	if err != nil {
		return false
	}
	b, err := packageurl.FromString(pkg)
	if err != nil {
		return false
	}
	if !strings.EqualFold(a.Type, b.Type) || a.Namespace != b.Namespace || a.Name != b.Name {
		if !(strings.EqualFold(a.Type, b.Type) && strings.EqualFold(a.Namespace, b.Namespace) && strings.EqualFold(a.Name, b.Name)) {
			return false
		}
	}
	return a.Version == "" || a.Version == b.Version
}

// VEX is a parsed OpenVEX document. Statements with status not_affected or
// fixed suppress a finding when the statement names one of the finding's
// IDs and a product that is the scanned image (set Image) — optionally
// narrowed by subcomponents to the package's purl — or the package's purl
// itself. When several statements apply, the latest (by timestamp, then
// document order) decides.
type VEX struct {
	Path string
	// Image identifies the scanned image: references, digests
	// ("sha256:..."), purls ("pkg:oci/..."). A product matches when it
	// equals one of them or carries the same digest.
	Image      []string
	Statements []VEXStatement
}

// VEXStatement is one statement, normalised across OpenVEX versions.
type VEXStatement struct {
	Vulnerability   string       `json:"vulnerability"`
	Aliases         []string     `json:"aliases,omitempty"`
	Products        []VEXProduct `json:"products"`
	Status          string       `json:"status"`
	Justification   string       `json:"justification,omitempty"`
	ImpactStatement string       `json:"impactStatement,omitempty"`
	Timestamp       time.Time    `json:"timestamp"`
	index           int
}

// VEXProduct names a product and optionally its subcomponents.
type VEXProduct struct {
	IDs           []string `json:"ids"`
	Subcomponents []string `json:"subcomponents,omitempty"`
}

// LoadVEX reads an OpenVEX JSON document.
func LoadVEX(path string) (*VEX, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseVEX(path, data)
}

type rawComponent struct {
	ID          string            `json:"@id"`
	Identifiers map[string]string `json:"identifiers"`
	Subs        []json.RawMessage `json:"subcomponents"`
}

func componentIDs(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil, nil
	}
	var c rawComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, errors.New("a product is neither a string nor an object")
	}
	var ids []string
	if c.ID != "" {
		ids = append(ids, c.ID)
	}
	for _, k := range []string{"purl", "cpe23", "cpe22"} {
		if v := c.Identifiers[k]; v != "" {
			ids = append(ids, v)
		}
	}
	return ids, c.Subs, nil
}

// ParseVEX parses OpenVEX (v0.0.1 through v0.2.x); name is used in errors.
func ParseVEX(name string, data []byte) (*VEX, error) {
	var doc struct {
		Context    string    `json:"@context"`
		Timestamp  time.Time `json:"timestamp"`
		Statements []struct {
			Vulnerability   json.RawMessage   `json:"vulnerability"`
			Products        []json.RawMessage `json:"products"`
			Subcomponents   []json.RawMessage `json:"subcomponents"`
			Status          string            `json:"status"`
			Justification   string            `json:"justification"`
			ImpactStatement string            `json:"impact_statement"`
			Timestamp       *time.Time        `json:"timestamp"`
		} `json:"statements"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: not an OpenVEX JSON document: %v", name, err)
	}
	if !strings.Contains(doc.Context, "openvex") {
		return nil, fmt.Errorf("%s: not an OpenVEX document (@context %q)", name, doc.Context)
	}
	v := &VEX{Path: name}
	for i, st := range doc.Statements {
		where := fmt.Sprintf("%s: statement %d", name, i+1)
		s := VEXStatement{Status: st.Status, Justification: st.Justification, ImpactStatement: st.ImpactStatement, Timestamp: doc.Timestamp, index: i}
		if st.Timestamp != nil {
			s.Timestamp = *st.Timestamp
		}
		switch st.Status {
		case "not_affected", "affected", "fixed", "under_investigation":
		default:
			return nil, fmt.Errorf("%s: unknown status %q", where, st.Status)
		}
		var vs string
		if json.Unmarshal(st.Vulnerability, &vs) == nil {
			s.Vulnerability = vs
		} else {
			var vo struct {
				ID      string   `json:"@id"`
				Name    string   `json:"name"`
				Aliases []string `json:"aliases"`
			}
			if err := json.Unmarshal(st.Vulnerability, &vo); err != nil {
				return nil, fmt.Errorf("%s: vulnerability is neither a string nor an object", where)
			}
			s.Vulnerability = vo.Name
			if s.Vulnerability == "" {
				s.Vulnerability = vo.ID
			}
			s.Aliases = vo.Aliases
		}
		if s.Vulnerability == "" {
			return nil, fmt.Errorf("%s: names no vulnerability", where)
		}
		var topSubs []string
		for _, raw := range st.Subcomponents {
			ids, _, err := componentIDs(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			topSubs = append(topSubs, ids...)
		}
		for _, raw := range st.Products {
			ids, subs, err := componentIDs(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			p := VEXProduct{IDs: ids, Subcomponents: append([]string(nil), topSubs...)}
			for _, sr := range subs {
				sids, _, err := componentIDs(sr)
				if err != nil {
					return nil, fmt.Errorf("%s: %v", where, err)
				}
				p.Subcomponents = append(p.Subcomponents, sids...)
			}
			s.Products = append(s.Products, p)
		}
		if len(s.Products) == 0 {
			return nil, fmt.Errorf("%s: names no product", where)
		}
		v.Statements = append(v.Statements, s)
	}
	return v, nil
}

// Suppresses implements Exception.
func (v *VEX) Suppresses(f *Finding) (Suppression, bool) {
	var best *VEXStatement
	for i := range v.Statements {
		s := &v.Statements[i]
		if !hasID(f, s.Vulnerability) {
			found := false
			for _, a := range s.Aliases {
				if hasID(f, a) {
					found = true
				}
			}
			if !found {
				continue
			}
		}
		if !v.productMatches(s, f) {
			continue
		}
		if best == nil || !s.Timestamp.Before(best.Timestamp) {
			best = s
		}
	}
	if best == nil || (best.Status != "not_affected" && best.Status != "fixed") {
		return Suppression{}, false
	}
	return Suppression{Kind: "vex", Source: v.Path, Rule: best.Vulnerability, Status: best.Status,
		Justification: best.Justification, Reason: best.ImpactStatement}, true
}

func (v *VEX) productMatches(s *VEXStatement, f *Finding) bool {
	for _, p := range s.Products {
		for _, id := range p.IDs {
			if purlMatches(id, f.Package.PURL) {
				return true
			}
			if v.isImage(id) {
				if len(p.Subcomponents) == 0 {
					return true
				}
				for _, sub := range p.Subcomponents {
					if purlMatches(sub, f.Package.PURL) {
						return true
					}
				}
			}
		}
	}
	return false
}

func (v *VEX) isImage(id string) bool {
	d := digestOf(id)
	for _, im := range v.Image {
		if im == "" {
			continue
		}
		if im == id || (d != "" && d == digestOf(im)) {
			return true
		}
	}
	return false
}

// digestOf finds a "sha256:<hex>" digest in a reference or purl.
func digestOf(s string) string {
	s = strings.ReplaceAll(s, "%3A", ":")
	s = strings.ReplaceAll(s, "%3a", ":")
	i := strings.Index(s, "sha256:")
	if i < 0 || len(s) < i+7+64 {
		return ""
	}
	d := s[i : i+7+64]
	for _, c := range d[7:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return d
}
