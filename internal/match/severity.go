package match

import (
	"fmt"
	"strings"

	cvss20 "github.com/pandatix/go-cvss/20"
	cvss30 "github.com/pandatix/go-cvss/30"
	cvss31 "github.com/pandatix/go-cvss/31"
	cvss40 "github.com/pandatix/go-cvss/40"

	"github.com/moat-dev/moat/internal/vulndb"
)

// Severity orders findings: Unknown < Low < Medium < High < Critical.
type Severity int

const (
	Unknown Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

func (s Severity) String() string {
	if s < Unknown || s > Critical {
		return "UNKNOWN"
	}
	return severityNames[s]
}

// MarshalText writes the upper-case name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name (any case).
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// ParseSeverity reads "critical", "HIGH", "medium", "low" or "unknown".
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Severity(i), nil
		}
	}
	return Unknown, fmt.Errorf("unknown severity %q (want one of critical, high, medium, low, unknown)", s)
}

// ParseSeverityList reads a comma-separated list ("critical,high").
func ParseSeverityList(s string) ([]Severity, error) {
	var out []Severity
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		v, err := ParseSeverity(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// FromScore maps a CVSS base score to a severity with the CVSS v3/v4
// qualitative scale: 9.0-10 Critical, 7.0-8.9 High, 4.0-6.9 Medium,
// 0.1-3.9 Low. A score of 0.0 (CVSS "None") maps to Low: the vector is a
// real assessment, the finding stays visible, and it sits below every
// useful --fail-on threshold.
func FromScore(score float64) Severity {
	switch {
	case score >= 9.0:
		return Critical
	case score >= 7.0:
		return High
	case score >= 4.0:
		return Medium
	}
	return Low
}

// fromWord maps the free-text severities of ecosystem databases (GHSA
// "MODERATE", Red Hat "Important", Ubuntu "negligible", ...).
func fromWord(w string) Severity {
	switch strings.ToLower(strings.TrimSpace(w)) {
	case "critical":
		return Critical
	case "high", "important":
		return High
	case "moderate", "medium":
		return Medium
	case "low", "negligible", "minor", "unimportant":
		return Low
	}
	return Unknown
}

// CVSS is a scored vector.
type CVSS struct {
	Version string  `json:"version"` // "2.0", "3.0", "3.1", "4.0"
	Vector  string  `json:"vector"`
	Score   float64 `json:"score"`
}

// ScoreVector computes the base score of a CVSS v2, v3.0, v3.1 or v4.0
// vector with github.com/pandatix/go-cvss.
func ScoreVector(vector string) (CVSS, error) {
	v := strings.TrimSpace(vector)
	switch {
	case strings.HasPrefix(v, "CVSS:4.0/"):
		c, err := cvss40.ParseVector(v)
		if err != nil {
			return CVSS{}, err
		}
		return CVSS{Version: "4.0", Vector: v, Score: c.Score()}, nil
	case strings.HasPrefix(v, "CVSS:3.1/"):
		c, err := cvss31.ParseVector(v)
		if err != nil {
			return CVSS{}, err
		}
		return CVSS{Version: "3.1", Vector: v, Score: c.BaseScore()}, nil
	case strings.HasPrefix(v, "CVSS:3.0/"):
		c, err := cvss30.ParseVector(v)
		if err != nil {
			return CVSS{}, err
		}
		return CVSS{Version: "3.0", Vector: v, Score: c.BaseScore()}, nil
	case strings.HasPrefix(v, "AV:"):
		c, err := cvss20.ParseVector(v)
		if err != nil {
			return CVSS{}, err
		}
		return CVSS{Version: "2.0", Vector: v, Score: c.BaseScore()}, nil
	}
	return CVSS{}, fmt.Errorf("not a CVSS vector: %q", vector)
}

func cvssRank(version string) int {
	switch version {
	case "4.0":
		return 4
	case "3.1":
		return 3
	case "3.0":
		return 2
	case "2.0":
		return 1
	}
	return 0
}

// severityOf decides a finding's severity from its records: the CVSS
// vector of the newest CVSS version present (v4.0 > v3.1 > v3.0 > v2),
// the highest score among vectors of that version; without a vector, the
// highest ecosystem severity word (database_specific / ecosystem_specific
// severity, Ubuntu priority); otherwise Unknown.
func severityOf(recs []*vulndb.Vulnerability, affected []*vulndb.Affected) (Severity, *CVSS, string) {
	var best *CVSS
	consider := func(ss []vulndb.Severity) {
		for _, s := range ss {
			if !strings.HasPrefix(s.Type, "CVSS_") {
				continue
			}
			c, err := ScoreVector(s.Score)
			if err != nil {
				continue
			}
			if best == nil || cvssRank(c.Version) > cvssRank(best.Version) ||
				(cvssRank(c.Version) == cvssRank(best.Version) && (c.Score > best.Score || (c.Score == best.Score && c.Vector < best.Vector))) {
				cc := c
				best = &cc
			}
		}
	}
	for _, r := range recs {
		consider(r.Severity)
	}
	for _, a := range affected {
		consider(a.Severity)
	}
	if best != nil {
		return FromScore(best.Score), best, "CVSS " + best.Version
	}
	word := Unknown
	for _, r := range recs {
		word = max(word, fromWord(r.EcosystemSeverity))
		for _, s := range r.Severity {
			if s.Type == "Ubuntu" {
				word = max(word, fromWord(s.Score))
			}
		}
	}
	for _, a := range affected {
		word = max(word, fromWord(a.EcosystemSeverity))
		for _, s := range a.Severity {
			if s.Type == "Ubuntu" {
				word = max(word, fromWord(s.Score))
			}
		}
	}
	if word != Unknown {
		return word, nil, "ecosystem"
	}
	return Unknown, nil, ""
}
