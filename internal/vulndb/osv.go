// Package vulndb imports OSV vulnerability records into moat's own on-disk
// database and looks them up by (ecosystem, package name).
//
// The OSV schema (https://ossf.github.io/osv-schema/, version 1.x) is decoded
// into the Vulnerability struct below, which holds exactly the fields moat
// uses. The protobuf-based Go bindings of the OSV project were not used: they
// decode through protojson, which is several times slower than encoding/json
// for the import of the whole public OSV data, and moat only needs a subset.
package vulndb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Vulnerability is an OSV record, restricted to the fields moat uses.
// Fields not listed here (details, credits, affected[].ecosystem_specific
// beyond severity, ...) are dropped at import.
type Vulnerability struct {
	SchemaVersion string      `json:"schema_version,omitempty"`
	ID            string      `json:"id"`
	Modified      string      `json:"modified,omitempty"`
	Published     string      `json:"published,omitempty"`
	Withdrawn     string      `json:"withdrawn,omitempty"`
	Aliases       []string    `json:"aliases,omitempty"`
	Upstream      []string    `json:"upstream,omitempty"`
	Summary       string      `json:"summary,omitempty"`
	Details       string      `json:"details,omitempty"`
	Severity      []Severity  `json:"severity,omitempty"`
	Affected      []Affected  `json:"affected,omitempty"`
	References    []Reference `json:"references,omitempty"`
	// DatabaseSpecific is kept only for its "severity" string (GHSA,
	// Alpine, ...), see EcosystemSeverity.
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty"`

	// EcosystemSeverity is the free-text severity the source database
	// gives (database_specific.severity), filled at import.
	EcosystemSeverity string `json:"-"`
}

// Severity is one OSV severity entry: Type is CVSS_V2, CVSS_V3, CVSS_V4,
// Ubuntu, ...; Score the vector (or a word for Ubuntu).
type Severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// Reference is a link about the vulnerability.
type Reference struct {
	Type string `json:"type"`
	URL  string `json:"url"`
}

// Package names the affected package.
type Package struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	PURL      string `json:"purl,omitempty"`
}

// Affected is one affected package with its version ranges.
type Affected struct {
	Package           Package         `json:"package"`
	Severity          []Severity      `json:"severity,omitempty"`
	Ranges            []Range         `json:"ranges,omitempty"`
	Versions          []string        `json:"versions,omitempty"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific,omitempty"`
	DatabaseSpecific  json.RawMessage `json:"database_specific,omitempty"`

	// EcosystemSeverity is ecosystem_specific.severity or
	// database_specific.severity of this entry (Debian urgency, Red Hat
	// "Important", ...), filled at import.
	EcosystemSeverity string `json:"-"`
}

// Range types defined by OSV.
const (
	RangeSemver    = "SEMVER"
	RangeEcosystem = "ECOSYSTEM"
	RangeGit       = "GIT"
)

// Range is one OSV range: a type and its events.
type Range struct {
	Type   string  `json:"type"`
	Repo   string  `json:"repo,omitempty"`
	Events []Event `json:"events"`
}

// Event is one range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// maxRecordSize bounds one OSV JSON document; the largest public records
// (kernel CVEs with thousands of commits) are a few MB.
const maxRecordSize = 32 << 20

// DecodeOSV parses and validates one OSV JSON record. It returns a clear
// error naming what is wrong for malformed records: invalid JSON, a missing
// id, an affected entry without ecosystem or name, a range of unknown type
// or with an event that sets no or several fields. Withdrawn records decode
// without error; callers check Withdrawn.
func DecodeOSV(data []byte) (*Vulnerability, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("record is %d bytes, more than the %d accepted", len(data), maxRecordSize)
	}
	var v Vulnerability
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("invalid OSV JSON: %w", err)
	}
	if err := v.validate(); err != nil {
		if v.ID != "" {
			return nil, fmt.Errorf("%s: %w", v.ID, err)
		}
		return nil, err
	}
	v.EcosystemSeverity = severityWord(v.DatabaseSpecific)
	v.DatabaseSpecific = nil
	for i := range v.Affected {
		a := &v.Affected[i]
		a.EcosystemSeverity = severityWord(a.EcosystemSpecific)
		if a.EcosystemSeverity == "" {
			a.EcosystemSeverity = severityWord(a.DatabaseSpecific)
		}
		a.EcosystemSpecific, a.DatabaseSpecific = nil, nil
	}
	return &v, nil
}

func (v *Vulnerability) validate() error {
	if strings.TrimSpace(v.ID) == "" {
		return errors.New("record has no id")
	}
	if strings.ContainsAny(v.ID, "\x00\n") {
		return errors.New("record id contains control characters")
	}
	for i, a := range v.Affected {
		if a.Package.Ecosystem == "" || a.Package.Name == "" {
			if a.Package.PURL != "" && a.Package.Ecosystem == "" && a.Package.Name == "" {
				// purl-only entries are allowed by the schema but moat
				// cannot key them; they are skipped, not an error.
				continue
			}
			return fmt.Errorf("affected[%d]: package needs both ecosystem and name", i)
		}
		if strings.ContainsRune(a.Package.Name, 0) || strings.ContainsRune(a.Package.Ecosystem, 0) {
			return fmt.Errorf("affected[%d]: package name contains a NUL byte", i)
		}
		for j, r := range a.Ranges {
			switch r.Type {
			case RangeSemver, RangeEcosystem, RangeGit:
			default:
				return fmt.Errorf("affected[%d].ranges[%d]: unknown range type %q", i, j, r.Type)
			}
			if len(r.Events) == 0 {
				return fmt.Errorf("affected[%d].ranges[%d]: range has no events", i, j)
			}
			for k, e := range r.Events {
				n := 0
				for _, s := range []string{e.Introduced, e.Fixed, e.LastAffected, e.Limit} {
					if s != "" {
						n++
					}
				}
				if n != 1 {
					return fmt.Errorf("affected[%d].ranges[%d].events[%d]: an event sets exactly one of introduced, fixed, last_affected, limit", i, j, k)
				}
			}
		}
	}
	return nil
}

// severityWord extracts {"severity": "HIGH"} from a database_specific or
// ecosystem_specific object; anything else gives "".
func severityWord(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '{' || !bytes.Contains(raw, []byte(`"severity"`)) {
		return ""
	}
	var s struct {
		Severity json.RawMessage `json:"severity"`
	}
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	var w string
	if json.Unmarshal(s.Severity, &w) != nil {
		return ""
	}
	return w
}

// BaseEcosystem is the ecosystem without its release ("Debian:12" ->
// "Debian", "Ubuntu:22.04:LTS" -> "Ubuntu").
func BaseEcosystem(eco string) string {
	if i := strings.IndexByte(eco, ':'); i >= 0 {
		return eco[:i]
	}
	return eco
}

// EcosystemApplies reports whether a record for recordEco applies to a
// package of pkgEco:
//   - the same string ("Debian:12" and "Debian:12");
//   - a record for the bare ecosystem applies to every release ("Debian"
//     applies to "Debian:12");
//   - a package whose release is a prefix of the record's ("Ubuntu:22.04"
//     and "Ubuntu:22.04:LTS"); Red Hat streams compare by product and
//     major version ("Red Hat:enterprise_linux:9" takes
//     "Red Hat:enterprise_linux:9::appstream", "...:10" takes "...:10.0");
//   - a package whose ecosystem carries no release (the OS release was
//     not detected) is matched against records of every release.
func EcosystemApplies(pkgEco, recordEco string) bool {
	if pkgEco == recordEco {
		return true
	}
	base := BaseEcosystem(pkgEco)
	if recordEco == base {
		return true
	}
	if BaseEcosystem(recordEco) != base {
		return false
	}
	if base == pkgEco {
		return true
	}
	if base == "Red Hat" {
		return redHatStreamApplies(pkgEco, recordEco)
	}
	return strings.HasPrefix(recordEco, pkgEco+":")
}

// redHatStreamApplies compares Red Hat product streams by product and
// major version: a package of "Red Hat:enterprise_linux:9" takes records
// of "Red Hat:enterprise_linux:9::appstream" and of RHEL 10's
// minor-numbered streams ("Red Hat:enterprise_linux:10.0::baseos") for a
// package of "Red Hat:enterprise_linux:10", never another major version
// or another product (rhel_eus, ...).
func redHatStreamApplies(pkgEco, recordEco string) bool {
	pp := strings.SplitN(pkgEco, ":", 4)
	rp := strings.SplitN(recordEco, ":", 4)
	if len(pp) < 3 || len(rp) < 3 || pp[1] != rp[1] {
		return false
	}
	pv, rv := pp[2], rp[2]
	if pv == rv || strings.HasPrefix(rv, pv+".") {
		return len(pp) == 3 || (len(rp) == 4 && pp[3] == rp[3])
	}
	return false
}
