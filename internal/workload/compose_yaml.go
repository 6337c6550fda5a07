package workload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// Bounds on untrusted compose input. A compose file is a few kilobytes; the
// node budget counts every node visited while expanding aliases, so an
// alias bomb ("billion laughs") fails after a bounded amount of work.
const (
	maxComposeBytes      = 4 << 20
	maxComposeNodeVisits = 50_000 // for the whole file, all documents
	maxComposeDocuments  = 16
	maxComposeSequence   = 10_000 // items in one list, after alias expansion
)

// composeDoc is one YAML document of a compose file as a generic map, with
// the compose `!reset` / `!override` tags it carried.
type composeDoc struct {
	m    map[string]any
	tags []composeTag
}

// composeTag records a value tagged `!reset` (drop what a base service or an
// earlier document set) or `!override` (replace instead of merging).
type composeTag struct {
	path  []string
	reset bool
}

// parseComposeYAML splits a compose file into documents and converts each
// into a map, expanding anchors, aliases and `<<` merge keys within a node
// budget, rejecting duplicate keys and keys the compose model does not know
// (with file:line, so a typo such as `privilegd: true` cannot pass a policy
// check unnoticed).
func parseComposeYAML(name string, data []byte) ([]composeDoc, error) {
	if len(data) > maxComposeBytes {
		return nil, fmt.Errorf("%s: compose file is %d bytes, more than the %d-byte limit", name, len(data), maxComposeBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []composeDoc
	c := &yamlConv{file: name}
	for i := 1; ; i++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not valid YAML: %v", name, err)
		}
		if i > maxComposeDocuments {
			return nil, fmt.Errorf("%s: more than %d YAML documents", name, maxComposeDocuments)
		}
		n := &root
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				continue
			}
			n = n.Content[0]
		}
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			continue // empty document
		}
		c.tags = nil
		v, err := c.convert(n, nil, projectType)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s:%d: the top level of a compose file must be a mapping (services:, volumes:, ...)", name, n.Line)
		}
		docs = append(docs, composeDoc{m: m, tags: c.tags})
	}
	return docs, nil
}

type yamlConv struct {
	file   string
	visits int
	tags   []composeTag
	// expanding holds the anchors being expanded, to reject an alias that
	// refers to its own ancestor.
	expanding map[*yaml.Node]bool
}

var (
	projectType        = reflect.TypeFor[types.Project]()
	mapDecoderType     = reflect.TypeFor[interface{ DecodeMapstructure(any) error }]()
	extraTopLevelKeys  = map[string]bool{"version": true, "include": true}
	composeKeysMu      sync.Mutex
	composeKeysByType  = map[reflect.Type]map[string]reflect.Type{}
	errComposeTooLarge = errors.New("too many YAML nodes")
)

// convert turns a YAML node into maps, slices and scalars. typ is the
// compose-go type the node is decoded into later (nil when unknown): the
// keys of a mapping destined for a struct are checked against its fields.
func (c *yamlConv) convert(n *yaml.Node, path []string, typ reflect.Type) (any, error) {
	c.visits++
	if c.visits > maxComposeNodeVisits {
		return nil, fmt.Errorf("%s:%d: compose file expands to more than %d YAML nodes (an alias bomb?)", c.file, n.Line, maxComposeNodeVisits)
	}
	switch n.Tag {
	case "!reset":
		c.tags = append(c.tags, composeTag{path: clonePath(path), reset: true})
		return nil, errResetValue
	case "!override":
		c.tags = append(c.tags, composeTag{path: clonePath(path)})
	}
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ != nil && reflect.PointerTo(typ).Implements(mapDecoderType) {
		typ = nil // the type decodes itself from any shape
	}
	switch n.Kind {
	case yaml.AliasNode:
		if c.expanding[n.Alias] {
			return nil, fmt.Errorf("%s:%d: alias *%s refers to a node that contains it", c.file, n.Line, n.Value)
		}
		if c.expanding == nil {
			c.expanding = map[*yaml.Node]bool{}
		}
		c.expanding[n.Alias] = true
		defer delete(c.expanding, n.Alias)
		return c.convert(n.Alias, path, typ)
	case yaml.ScalarNode:
		v, err := scalarValue(n)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", c.file, n.Line, err)
		}
		return v, nil
	case yaml.SequenceNode:
		var elem reflect.Type
		if typ != nil && typ.Kind() == reflect.Slice {
			elem = typ.Elem()
		}
		if len(n.Content) > maxComposeSequence {
			return nil, fmt.Errorf("%s:%d: a list of %d items, more than the %d a compose file may hold", c.file, n.Line, len(n.Content), maxComposeSequence)
		}
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := c.convert(e, append(path, "["+strconv.Itoa(i)+"]"), elem)
			if errors.Is(err, errResetValue) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := map[string]any{}
		if err := c.mapping(n, path, typ, out, map[string]int{}, false); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s:%d: unsupported YAML node", c.file, n.Line)
}

var errResetValue = errors.New("!reset value")

// mapping adds the entries of mapping node n to out. Explicit keys win over
// keys merged in with `<<`; of several merged mappings the first wins, as
// in YAML's merge-key type.
func (c *yamlConv) mapping(n *yaml.Node, path []string, typ reflect.Type, out map[string]any, lines map[string]int, merged bool) error {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return fmt.Errorf("%s:%d: key %s is not a string (quote it)", c.file, k.Line, k.Value)
		}
		key := k.Value
		if len(path) == 1 && path[0] == "services" && !validServiceName(key) {
			return fmt.Errorf("%s:%d: service name %q may only hold letters, digits, '.', '_' and '-'", c.file, k.Line, key)
		}
		if line, dup := lines[key]; dup {
			if merged {
				continue // an explicit key or an earlier merge already set it
			}
			return fmt.Errorf("%s:%d: key %q already defined at line %d", c.file, k.Line, key, line)
		}
		lines[key] = k.Line
		ft, err := c.fieldType(k, path, typ)
		if err != nil {
			return err
		}
		val, err := c.convert(v, append(path, key), ft)
		if errors.Is(err, errResetValue) {
			continue
		}
		if err != nil {
			return err
		}
		out[key] = val
	}
	for _, m := range merges {
		list := []*yaml.Node{m}
		if m.Kind == yaml.AliasNode && m.Alias.Kind == yaml.SequenceNode {
			m = m.Alias
		}
		if m.Kind == yaml.SequenceNode {
			list = m.Content
		}
		for _, e := range list {
			c.visits++
			if c.visits > maxComposeNodeVisits {
				return fmt.Errorf("%s:%d: compose file expands to more than %d YAML nodes (an alias bomb?)", c.file, e.Line, maxComposeNodeVisits)
			}
			t := e
			if t.Kind == yaml.AliasNode {
				if c.expanding[t.Alias] {
					return fmt.Errorf("%s:%d: alias *%s refers to a node that contains it", c.file, t.Line, t.Value)
				}
				t = t.Alias
			}
			if t.Kind != yaml.MappingNode {
				return fmt.Errorf("%s:%d: a << merge key takes a mapping or a list of mappings", c.file, e.Line)
			}
			if c.expanding == nil {
				c.expanding = map[*yaml.Node]bool{}
			}
			c.expanding[t] = true
			err := c.mapping(t, path, typ, out, lines, true)
			delete(c.expanding, t)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// fieldType checks key k against the struct typ (when known) and returns
// the type its value decodes into.
func (c *yamlConv) fieldType(k *yaml.Node, path []string, typ reflect.Type) (reflect.Type, error) {
	if typ == nil || strings.HasPrefix(k.Value, "x-") {
		return nil, nil
	}
	switch typ.Kind() {
	case reflect.Map:
		return typ.Elem(), nil
	case reflect.Struct:
	default:
		return nil, nil
	}
	keys := composeKeys(typ)
	if ft, ok := keys[k.Value]; ok {
		return ft, nil
	}
	if typ == projectType && extraTopLevelKeys[k.Value] {
		return nil, nil
	}
	where := "at the top level"
	if len(path) > 0 {
		where = "in " + strings.Join(path, ".")
	}
	msg := fmt.Sprintf("%s:%d: unknown key %q %s", c.file, k.Line, k.Value, where)
	if s := closestKey(k.Value, keys); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return nil, errors.New(msg + "; custom keys must start with x-")
}

// composeKeys lists the YAML keys of a compose-go struct (fields of
// embedded/inline structs included) and the types they decode into.
func composeKeys(t reflect.Type) map[string]reflect.Type {
	composeKeysMu.Lock()
	defer composeKeysMu.Unlock()
	if m, ok := composeKeysByType[t]; ok {
		return m
	}
	m := map[string]reflect.Type{}
	var add func(reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || strings.HasPrefix(name, "#") {
				continue
			}
			if (f.Anonymous || strings.Contains(opts, "inline")) && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			m[name] = f.Type
		}
	}
	add(t)
	composeKeysByType[t] = m
	return m
}

// closestKey suggests the known key nearest to a misspelt one (at most two
// edits away).
func closestKey(k string, keys map[string]reflect.Type) string {
	best, bestD := "", 3
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if d := editDistance(k, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalarValue resolves a scalar the way YAML 1.2 core schema does; compose
// tags (!reset, !override) and unknown tags are read by their plain form.
func scalarValue(n *yaml.Node) (any, error) {
	tag := n.ShortTag()
	if n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") && !strings.HasPrefix(n.Tag, "tag:yaml.org,2002:") {
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return n.Value, nil
		}
		plain := *n
		plain.Tag = ""
		tag = plain.ShortTag()
		n = &plain
	}
	switch tag {
	case "!!str", "!!timestamp", "!!binary":
		return n.Value, nil
	case "!!null":
		return nil, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	if t, ok := v.(time.Time); ok {
		return t.Format(time.RFC3339Nano), nil
	}
	return v, nil
}

func validServiceName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func clonePath(p []string) []string { return append([]string(nil), p...) }
