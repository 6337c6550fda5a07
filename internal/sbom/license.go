package sbom

//go:generate go run gen_licenses.go

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
)

var (
	licenseOnce  sync.Once
	licenseIndex map[string]string // lower-case ID → canonical ID
)

// canonicalLicenseID returns the canonical spelling of a known SPDX license
// or exception identifier (matching is case-insensitive, as SPDX says).
func canonicalLicenseID(id string) (string, bool) {
	licenseOnce.Do(func() {
		licenseIndex = make(map[string]string, len(spdxLicenseIDs))
		for _, l := range spdxLicenseIDs {
			licenseIndex[strings.ToLower(l)] = l
		}
	})
	c, ok := licenseIndex[strings.ToLower(id)]
	return c, ok
}

// exprToken is one token of an SPDX license expression.
type exprToken struct {
	kind int // tokID, tokAnd, tokOr, tokWith, tokOpen, tokClose
	text string
}

const (
	tokID = iota
	tokAnd
	tokOr
	tokWith
	tokOpen
	tokClose
)

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == ':'
}

func tokenize(s string) ([]exprToken, bool) {
	var toks []exprToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(':
			toks = append(toks, exprToken{tokOpen, "("})
			i++
		case c == ')':
			toks = append(toks, exprToken{tokClose, ")"})
			i++
		case idChar(c):
			j := i
			for j < len(s) && idChar(s[j]) {
				j++
			}
			w := s[i:j]
			switch w {
			case "AND":
				toks = append(toks, exprToken{tokAnd, "AND"})
			case "OR":
				toks = append(toks, exprToken{tokOr, "OR"})
			case "WITH":
				toks = append(toks, exprToken{tokWith, "WITH"})
			default:
				toks = append(toks, exprToken{tokID, w})
			}
			i = j
		default:
			return nil, false
		}
	}
	return toks, len(toks) > 0
}

// exprParser checks the SPDX license expression grammar:
//
//	expr     = and-expr *("OR" and-expr)
//	and-expr = with-expr *("AND" with-expr)
//	with-expr= simple ["WITH" exception] / "(" expr ")"
//	simple   = license-id ["+"] / LicenseRef-x / DocumentRef-x:LicenseRef-y
//
// and rewrites identifiers to their canonical case.
type exprParser struct {
	toks  []exprToken
	pos   int
	depth int
}

func (p *exprParser) peek() int {
	if p.pos < len(p.toks) {
		return p.toks[p.pos].kind
	}
	return -1
}

func (p *exprParser) expr() bool {
	if !p.andExpr() {
		return false
	}
	for p.peek() == tokOr {
		p.pos++
		if !p.andExpr() {
			return false
		}
	}
	return true
}

func (p *exprParser) andExpr() bool {
	if !p.withExpr() {
		return false
	}
	for p.peek() == tokAnd {
		p.pos++
		if !p.withExpr() {
			return false
		}
	}
	return true
}

func (p *exprParser) withExpr() bool {
	switch p.peek() {
	case tokOpen:
		p.depth++
		if p.depth > 64 {
			return false
		}
		p.pos++
		if !p.expr() || p.peek() != tokClose {
			return false
		}
		p.pos++
		p.depth--
		return true
	case tokID:
		t := &p.toks[p.pos]
		if !p.licenseRef(t) {
			return false
		}
		p.pos++
		if p.peek() == tokWith {
			p.pos++
			if p.peek() != tokID {
				return false
			}
			e := &p.toks[p.pos]
			c, ok := canonicalLicenseID(e.text)
			if !ok {
				return false
			}
			e.text = c
			p.pos++
		}
		return true
	}
	return false
}

func (p *exprParser) licenseRef(t *exprToken) bool {
	w := t.text
	if strings.HasPrefix(w, "LicenseRef-") || strings.HasPrefix(w, "DocumentRef-") {
		return validRefID(w)
	}
	if strings.Contains(w, ":") {
		return false
	}
	if c, ok := canonicalLicenseID(w); ok {
		t.text = c
		return true
	}
	if base, ok := strings.CutSuffix(w, "+"); ok {
		if c, ok := canonicalLicenseID(base); ok {
			t.text = c + "+"
			return true
		}
	}
	return false
}

// validRefID checks LicenseRef-idstring and
// DocumentRef-idstring:LicenseRef-idstring.
func validRefID(w string) bool {
	if d, l, ok := strings.Cut(w, ":"); ok {
		if !strings.HasPrefix(d, "DocumentRef-") || !idString(d[len("DocumentRef-"):]) {
			return false
		}
		w = l
	}
	rest, ok := strings.CutPrefix(w, "LicenseRef-")
	return ok && idString(rest)
}

func idString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// normalizeExpression returns the canonical form of s when s is a valid
// SPDX license expression over known identifiers, and whether it is one
// and whether it is compound (more than a single identifier).
func normalizeExpression(s string) (norm string, ok, compound bool) {
	toks, ok := tokenize(strings.TrimSpace(s))
	if !ok {
		return "", false, false
	}
	p := &exprParser{toks: toks}
	if !p.expr() || p.pos != len(toks) {
		return "", false, false
	}
	// Parentheses around the whole expression say nothing.
	for len(toks) >= 2 && toks[0].kind == tokOpen && toks[len(toks)-1].kind == tokClose && enclosed(toks) {
		toks = toks[1 : len(toks)-1]
	}
	var b strings.Builder
	for i, t := range toks {
		if i > 0 && t.kind != tokClose && toks[i-1].kind != tokOpen {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
	}
	return b.String(), true, len(toks) > 1
}

// licenseRefFor returns a LicenseRef- identifier for a license name that is
// not an SPDX expression.
func licenseRefFor(name string) string {
	s := spdxIDSafe(strings.TrimSpace(name))
	s = strings.Trim(s, "-.")
	if len(s) > 48 {
		s = s[:48]
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:4])
	if s == "" {
		return "LicenseRef-" + h
	}
	return "LicenseRef-" + s + "-" + h
}

// splitTopLevelAnd splits an expression at the AND operators that are not
// inside parentheses, removing one pair of parentheses that encloses a
// whole term.
func splitTopLevelAnd(expr string) []string {
	toks, ok := tokenize(expr)
	if !ok {
		return []string{expr}
	}
	var terms [][]exprToken
	depth, start := 0, 0
	for i, t := range toks {
		switch t.kind {
		case tokOpen:
			depth++
		case tokClose:
			depth--
		case tokAnd:
			if depth == 0 {
				terms = append(terms, toks[start:i])
				start = i + 1
			}
		case tokOr:
			if depth == 0 {
				return []string{expr}
			}
		}
	}
	terms = append(terms, toks[start:])
	out := make([]string, 0, len(terms))
	for _, term := range terms {
		if len(term) >= 2 && term[0].kind == tokOpen && term[len(term)-1].kind == tokClose && enclosed(term) {
			term = term[1 : len(term)-1]
		}
		var b strings.Builder
		for i, t := range term {
			if i > 0 && t.kind != tokClose && term[i-1].kind != tokOpen {
				b.WriteByte(' ')
			}
			b.WriteString(t.text)
		}
		out = append(out, b.String())
	}
	return out
}

// enclosed reports whether the first '(' of toks closes at its last token.
func enclosed(toks []exprToken) bool {
	depth := 0
	for i, t := range toks {
		switch t.kind {
		case tokOpen:
			depth++
		case tokClose:
			depth--
			if depth == 0 && i != len(toks)-1 {
				return false
			}
		}
	}
	return true
}
