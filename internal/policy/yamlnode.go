package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a policy file error at a position.
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// parser reads yaml.v3 nodes and stops at the first error.
type parser struct {
	file string
	err  *Error
}

func (p *parser) fail(n *yaml.Node, format string, args ...any) {
	if p.err != nil {
		return
	}
	e := &Error{File: p.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.err = e
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// fields reads a mapping with the allowed keys; unknown keys and duplicates
// are errors. The result maps key → value node; keys maps key → key node.
type fields struct {
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
	node *yaml.Node
}

func (p *parser) mapping(n *yaml.Node, what string, allowed ...string) *fields {
	f := &fields{vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, node: n}
	if p.err != nil || n == nil {
		return f
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, "%s must be a mapping, not %s", what, kindName(n))
		return f
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.fail(k, "%s: keys must be plain strings", what)
			return f
		}
		ok := false
		for _, a := range allowed {
			if a == k.Value {
				ok = true
				break
			}
		}
		if !ok {
			p.fail(k, "%s: unknown field %q (expected one of: %s)", what, k.Value, strings.Join(allowed, ", "))
			return f
		}
		if _, dup := f.vals[k.Value]; dup {
			p.fail(k, "%s: field %q given twice", what, k.Value)
			return f
		}
		if v.Kind == yaml.AliasNode {
			p.fail(v, "%s.%s: YAML aliases are not allowed in a policy", what, k.Value)
			return f
		}
		f.vals[k.Value], f.keys[k.Value] = v, k
	}
	return f
}

func (f *fields) has(k string) bool { _, ok := f.vals[k]; return ok }

func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if p.err != nil || n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, "%s must be a single value, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(f *fields, k, what string) string {
	n := f.vals[k]
	if n == nil {
		return ""
	}
	s, _ := p.scalar(n, what+"."+k)
	return s
}

func (p *parser) nonEmpty(f *fields, k, what string) string {
	n := f.vals[k]
	if n == nil {
		p.fail(f.node, "%s needs %s", what, k)
		return ""
	}
	s, ok := p.scalar(n, what+"."+k)
	if ok && strings.TrimSpace(s) == "" {
		p.fail(n, "%s.%s must not be empty", what, k)
	}
	return s
}

func (p *parser) boolean(f *fields, k, what string) *bool {
	n := f.vals[k]
	if n == nil {
		return nil
	}
	s, ok := p.scalar(n, what+"."+k)
	if !ok {
		return nil
	}
	var b bool
	if n.Tag != "!!bool" || n.Decode(&b) != nil {
		p.fail(n, "%s.%s must be true or false, not %q", what, k, s)
		return nil
	}
	return &b
}

func (p *parser) number(f *fields, k, what string, min, max float64) *float64 {
	n := f.vals[k]
	if n == nil {
		return nil
	}
	s, ok := p.scalar(n, what+"."+k)
	if !ok {
		return nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v < min || v > max {
		p.fail(n, "%s.%s must be a number from %g to %g, not %q", what, k, min, max, s)
		return nil
	}
	return &v
}

func (p *parser) list(f *fields, k, what string) []string {
	n := f.vals[k]
	if n == nil || p.err != nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "%s.%s must be a list, not %s", what, k, kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, it := range n.Content {
		s, ok := p.scalar(it, fmt.Sprintf("%s.%s[%d]", what, k, i))
		if !ok {
			return nil
		}
		if strings.TrimSpace(s) == "" {
			p.fail(it, "%s.%s[%d] must not be empty", what, k, i)
			return nil
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) strMap(f *fields, k, what string) map[string]string {
	n := f.vals[k]
	if n == nil || p.err != nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, "%s.%s must be a mapping, not %s", what, k, kindName(n))
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok1 := p.scalar(n.Content[i], what+"."+k)
		val, ok2 := p.scalar(n.Content[i+1], what+"."+k+"."+key)
		if !ok1 || !ok2 {
			return nil
		}
		out[key] = val
	}
	return out
}

// parseAge reads "90d", "2w", "36h", "1h30m".
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if strings.HasSuffix(s, u.suffix) {
			n, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			if err != nil || n <= 0 || n > 100000 {
				return 0, fmt.Errorf("%q is not a duration like 90d, 2w or 36h", s)
			}
			return time.Duration(n * float64(u.d)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration like 90d, 2w or 36h", s)
	}
	return d, nil
}

// parseExpiry reads YYYY-MM-DD (through the end of that day, UTC) or RFC 3339.
func parseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.Add(24 * time.Hour), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (YYYY-MM-DD) or RFC 3339 time", s)
}
