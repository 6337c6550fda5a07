// Package policy is moat's one policy: a versioned YAML document
// (apiVersion moat.dev/v1, kind Policy, see docs/policy.md) of rules about
// images, vulnerabilities, signatures, runtime settings and custom CEL
// expressions, each with an action (enforce, warn, audit), a scope and
// exemptions. The same compiled policy is evaluated by `moat check`, the
// Kubernetes admission webhook and the Docker authorization plugin.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/moat-dev/moat/internal/match"
)

// APIVersion and Kind name the format.
const (
	APIVersion = "moat.dev/v1"
	Kind       = "Policy"
)

// Action is what a violation of a rule does.
type Action string

const (
	Enforce Action = "enforce" // deny
	Warn    Action = "warn"    // allow with a warning
	Audit   Action = "audit"   // record only
)

// OnError is what a rule does when the facts it needs cannot be had in
// time (registry slow or down, image unreadable).
type OnError string

const (
	FailClosed OnError = "deny"  // treat as a violation
	FailOpen   OnError = "allow" // pass, with a warning
)

// Policy is a loaded, validated and compiled policy. It is safe for
// concurrent use.
type Policy struct {
	Name  string
	File  string
	Rules []*Rule

	cache decisionCache
}

// Rule is one rule of a policy.
type Rule struct {
	Name       string
	Action     Action
	OnError    OnError
	Match      Match
	Exemptions []Exemption
	// Family is "images", "vulnerabilities", "signatures", "runtime" or "cel".
	Family string

	images  *imagesRule
	vulns   *vulnsRule
	sigs    *sigsRule
	runtime *runtimeRule
	cel     *celRule
}

// Match scopes a rule; empty fields match everything.
type Match struct {
	Namespaces, ExcludeNamespaces, Projects, Kinds patterns
	Labels                                         map[string]string
}

// Exemption exempts objects from a rule until it expires.
type Exemption struct {
	Reason     string
	Expires    time.Time
	ExpiresRaw string
	Namespaces patterns
	Objects    patterns // "Kind namespace/name" globs
	Images     patterns // "registry/repository" globs
}

type imagesRule struct {
	allowedRegistries, deniedRegistries     patterns
	allowedRepositories, deniedRepositories patterns
	requireDigest                           bool
	baseImages                              []string
	maxAge                                  time.Duration
	maxAgeRaw                               string
	requiredLabels                          []string
}

type vulnsRule struct {
	maxSeverity    *match.Severity
	maxCVSS        *float64
	fixableOnly    bool
	exceptionRules []match.IgnoreRule
	exceptionsYAML []byte
}

type sigsRule struct {
	keys    []string
	checker SignatureKeys
}

type limit struct {
	required bool
	max      int64 // 0: no maximum
	maxRaw   string
}

type runtimeRule struct {
	runAsNonRoot, readOnlyRootFS                                bool
	denyPrivileged, denyHostNamespaces, denyPrivilegeEscalation bool
	denyUnconfinedSeccomp                                       bool
	memory, cpu, pids                                           *limit
	capsChecked                                                 bool
	allowedCaps                                                 map[string]bool
	requireDropAll                                              bool
	hostPathsChecked                                            bool
	allowedHostPaths                                            patterns
}

// MaxPolicyBytes bounds the size of a policy file.
const MaxPolicyBytes = 4 << 20

// Load reads and compiles a policy file.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return Parse(path, data)
}

// Parse compiles policy content; name is used in errors and relative key
// paths resolve against its directory.
func Parse(name string, data []byte) (*Policy, error) {
	if len(data) > MaxPolicyBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("policy larger than %d bytes", MaxPolicyBytes)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "empty policy file (expected apiVersion: " + APIVersion + ", kind: " + Kind + ")"}
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Msg: "a policy file holds one document; found a second one"}
	}
	p := &parser{file: name}
	pol := p.policy(&doc, filepath.Dir(name))
	if p.err != nil {
		return nil, p.err
	}
	pol.File = name
	return pol, nil
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ...") into an Error.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: name, Msg: msg}
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		e.Line, e.Column = line, 1
		if i := strings.Index(msg, ": "); i >= 0 {
			e.Msg = msg[i+2:]
		}
	}
	return e
}

func (p *parser) policy(doc *yaml.Node, dir string) *Policy {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	top := p.mapping(root, "policy", "apiVersion", "kind", "metadata", "spec")
	if p.err != nil {
		return nil
	}
	if av := p.nonEmpty(top, "apiVersion", "policy"); p.err == nil && av != APIVersion {
		p.fail(top.vals["apiVersion"], "unsupported apiVersion %q (this moat reads %s)", av, APIVersion)
	}
	if k := p.nonEmpty(top, "kind", "policy"); p.err == nil && k != Kind {
		p.fail(top.vals["kind"], "kind must be %s, not %q", Kind, k)
	}
	pol := &Policy{}
	if n := top.vals["metadata"]; n != nil {
		md := p.mapping(n, "metadata", "name", "description", "labels", "annotations")
		pol.Name = p.str(md, "name", "metadata")
		_ = p.str(md, "description", "metadata")
		_ = p.strMap(md, "labels", "metadata")
		_ = p.strMap(md, "annotations", "metadata")
	}
	if !top.has("spec") {
		p.fail(root, "policy needs a spec with rules")
		return nil
	}
	spec := p.mapping(top.vals["spec"], "spec", "defaults", "rules")
	defAction, defOnError := Enforce, FailClosed
	if n := spec.vals["defaults"]; n != nil {
		d := p.mapping(n, "spec.defaults", "action", "onError")
		if d.has("action") {
			defAction = p.action(d.vals["action"], "spec.defaults.action")
		}
		if d.has("onError") {
			defOnError = p.onError(d.vals["onError"], "spec.defaults.onError")
		}
	}
	rn := spec.vals["rules"]
	if p.err != nil {
		return nil
	}
	if rn == nil || rn.Kind != yaml.SequenceNode || len(rn.Content) == 0 {
		at := rn
		if at == nil {
			at = spec.node
		}
		p.fail(at, "spec.rules must be a non-empty list of rules")
		return nil
	}
	seen := map[string]bool{}
	for i, n := range rn.Content {
		r := p.rule(n, fmt.Sprintf("spec.rules[%d]", i), dir, defAction, defOnError)
		if p.err != nil {
			return nil
		}
		if seen[r.Name] {
			p.fail(n, "spec.rules[%d]: rule name %q is used twice", i, r.Name)
			return nil
		}
		seen[r.Name] = true
		pol.Rules = append(pol.Rules, r)
	}
	return pol
}

func (p *parser) action(n *yaml.Node, what string) Action {
	s, ok := p.scalar(n, what)
	if !ok {
		return ""
	}
	switch Action(s) {
	case Enforce, Warn, Audit:
		return Action(s)
	}
	p.fail(n, "%s must be enforce, warn or audit, not %q", what, s)
	return ""
}

func (p *parser) onError(n *yaml.Node, what string) OnError {
	s, ok := p.scalar(n, what)
	if !ok {
		return ""
	}
	switch OnError(s) {
	case FailClosed, FailOpen:
		return OnError(s)
	}
	p.fail(n, "%s must be deny (fail closed) or allow (fail open), not %q", what, s)
	return ""
}

var families = []string{"images", "vulnerabilities", "signatures", "runtime", "cel"}

func (p *parser) rule(n *yaml.Node, what, dir string, defAction Action, defOnError OnError) *Rule {
	f := p.mapping(n, what, append([]string{"name", "description", "action", "onError", "match", "exemptions"}, families...)...)
	r := &Rule{Action: defAction, OnError: defOnError}
	r.Name = p.nonEmpty(f, "name", what)
	if p.err != nil {
		return nil
	}
	what = fmt.Sprintf("%s (%s)", what, r.Name)
	_ = p.str(f, "description", what)
	if f.has("action") {
		r.Action = p.action(f.vals["action"], what+".action")
	}
	if f.has("onError") {
		r.OnError = p.onError(f.vals["onError"], what+".onError")
	}
	if f.has("match") {
		r.Match = p.match(f.vals["match"], what+".match")
	}
	if f.has("exemptions") {
		r.Exemptions = p.exemptions(f.vals["exemptions"], what+".exemptions")
	}
	var fam []string
	for _, k := range families {
		if f.has(k) {
			fam = append(fam, k)
		}
	}
	if p.err != nil {
		return nil
	}
	if len(fam) != 1 {
		p.fail(n, "%s must have exactly one of %s (has %d)", what, strings.Join(families, ", "), len(fam))
		return nil
	}
	r.Family = fam[0]
	body := f.vals[r.Family]
	bw := what + "." + r.Family
	switch r.Family {
	case "images":
		r.images = p.imagesRule(body, bw)
	case "vulnerabilities":
		r.vulns = p.vulnsRule(body, bw)
	case "signatures":
		r.sigs = p.sigsRule(body, bw, dir)
	case "runtime":
		r.runtime = p.runtimeRule(body, bw)
	case "cel":
		r.cel = p.celRule(body, bw)
	}
	return r
}

func (p *parser) patterns(f *fields, k, what string) patterns {
	list := p.list(f, k, what)
	var out patterns
	for i, s := range list {
		pt, err := compilePattern(s)
		if err != nil {
			p.fail(f.vals[k].Content[i], "%s.%s[%d]: %v", what, k, i, err)
			return nil
		}
		out = append(out, pt)
	}
	return out
}

func (p *parser) match(n *yaml.Node, what string) Match {
	f := p.mapping(n, what, "namespaces", "excludeNamespaces", "projects", "kinds", "labels")
	return Match{
		Namespaces:        p.patterns(f, "namespaces", what),
		ExcludeNamespaces: p.patterns(f, "excludeNamespaces", what),
		Projects:          p.patterns(f, "projects", what),
		Kinds:             p.patterns(f, "kinds", what),
		Labels:            p.strMap(f, "labels", what),
	}
}

func (p *parser) exemptions(n *yaml.Node, what string) []Exemption {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "%s must be a list, not %s", what, kindName(n))
		return nil
	}
	var out []Exemption
	for i, it := range n.Content {
		w := fmt.Sprintf("%s[%d]", what, i)
		f := p.mapping(it, w, "reason", "expires", "namespaces", "objects", "images")
		e := Exemption{Reason: p.nonEmpty(f, "reason", w), ExpiresRaw: p.nonEmpty(f, "expires", w)}
		if p.err != nil {
			return nil
		}
		t, err := parseExpiry(e.ExpiresRaw)
		if err != nil {
			p.fail(f.vals["expires"], "%s.expires: %v", w, err)
			return nil
		}
		e.Expires = t
		e.Namespaces = p.patterns(f, "namespaces", w)
		e.Objects = p.patterns(f, "objects", w)
		e.Images = p.patterns(f, "images", w)
		if p.err == nil && len(e.Namespaces)+len(e.Objects)+len(e.Images) == 0 {
			p.fail(it, "%s must name what it exempts: namespaces, objects or images", w)
		}
		out = append(out, e)
	}
	return out
}

func (p *parser) imagesRule(n *yaml.Node, what string) *imagesRule {
	f := p.mapping(n, what, "allowedRegistries", "deniedRegistries", "allowedRepositories", "deniedRepositories", "requireDigest", "baseImages", "maxAge", "requiredLabels")
	r := &imagesRule{
		allowedRegistries:   p.patterns(f, "allowedRegistries", what),
		deniedRegistries:    p.patterns(f, "deniedRegistries", what),
		allowedRepositories: p.patterns(f, "allowedRepositories", what),
		deniedRepositories:  p.patterns(f, "deniedRepositories", what),
		baseImages:          p.list(f, "baseImages", what),
		requiredLabels:      p.list(f, "requiredLabels", what),
	}
	if b := p.boolean(f, "requireDigest", what); b != nil {
		r.requireDigest = *b
	}
	if s := p.str(f, "maxAge", what); s != "" {
		d, err := parseAge(s)
		if err != nil {
			p.fail(f.vals["maxAge"], "%s.maxAge: %v", what, err)
		}
		r.maxAge, r.maxAgeRaw = d, s
	}
	for i, b := range r.baseImages {
		if _, err := ParseImageRef(b); err != nil || strings.ContainsAny(b, "@*") {
			p.fail(f.vals["baseImages"].Content[i], "%s.baseImages[%d]: %q must be a repository (registry/path, no tag or digest)", what, i, b)
		}
	}
	if p.err == nil && len(f.vals) == 0 {
		p.fail(n, "%s has no checks", what)
	}
	return r
}

func (p *parser) vulnsRule(n *yaml.Node, what string) *vulnsRule {
	f := p.mapping(n, what, "maxSeverity", "maxCVSS", "fixableOnly", "exceptions")
	r := &vulnsRule{}
	if s := p.str(f, "maxSeverity", what); f.has("maxSeverity") && p.err == nil {
		sev, err := match.ParseSeverity(s)
		if err != nil {
			p.fail(f.vals["maxSeverity"], "%s.maxSeverity: %v", what, err)
		}
		r.maxSeverity = &sev
	}
	r.maxCVSS = p.number(f, "maxCVSS", what, 0, 10)
	if b := p.boolean(f, "fixableOnly", what); b != nil {
		r.fixableOnly = *b
	}
	if n := f.vals["exceptions"]; n != nil && p.err == nil {
		// the same entries as the scan ignore file (.moatignore.yaml)
		wrapped := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "ignore"}, n}}
		b, err := yaml.Marshal(wrapped)
		if err == nil {
			_, err = match.ParseIgnoreFile(what+".exceptions", b, time.Now())
		}
		if err != nil {
			p.fail(n, "%v", err)
			return nil
		}
		r.exceptionsYAML = b
	}
	if p.err == nil && r.maxSeverity == nil && r.maxCVSS == nil {
		p.fail(n, "%s needs maxSeverity or maxCVSS", what)
	}
	return r
}

func (p *parser) sigsRule(n *yaml.Node, what, dir string) *sigsRule {
	f := p.mapping(n, what, "keys")
	keys := p.list(f, "keys", what)
	if p.err != nil {
		return nil
	}
	if len(keys) == 0 {
		p.fail(n, "%s needs keys: a list of trusted public keys", what)
		return nil
	}
	v := currentVerifier()
	if v == nil {
		p.fail(n, "%s: signature verification is not available in this build of moat, so a signatures rule cannot be enforced; remove the rule or use a moat with signing support", what)
		return nil
	}
	for i, k := range keys {
		if !filepath.IsAbs(k) && !strings.Contains(k, "://") {
			keys[i] = filepath.Join(dir, k)
		}
	}
	checker, err := v.LoadKeys(keys)
	if err != nil {
		p.fail(f.vals["keys"], "%s.keys: %v", what, err)
		return nil
	}
	return &sigsRule{keys: keys, checker: checker}
}

func (p *parser) limit(f *fields, k, what string, parse func(string) (int64, error)) *limit {
	n := f.vals[k]
	if n == nil || p.err != nil {
		return nil
	}
	w := what + "." + k
	lf := p.mapping(n, w, "required", "max")
	l := &limit{}
	if b := p.boolean(lf, "required", w); b != nil {
		l.required = *b
	}
	if s := p.str(lf, "max", w); s != "" {
		v, err := parse(s)
		if err != nil || v <= 0 {
			if err == nil {
				err = fmt.Errorf("must be positive")
			}
			p.fail(lf.vals["max"], "%s.max: %q: %v", w, s, err)
			return nil
		}
		l.max, l.maxRaw = v, s
	}
	return l
}

func (p *parser) runtimeRule(n *yaml.Node, what string) *runtimeRule {
	f := p.mapping(n, what, "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivileged", "allowHostNamespaces", "allowPrivilegeEscalation", "allowUnconfinedSeccomp", "limits", "capabilities", "hostPaths")
	r := &runtimeRule{}
	truth := func(k string, want bool) bool {
		b := p.boolean(f, k, what)
		return b != nil && *b == want
	}
	r.runAsNonRoot = truth("runAsNonRoot", true)
	r.readOnlyRootFS = truth("readOnlyRootFilesystem", true)
	r.denyPrivileged = truth("allowPrivileged", false)
	r.denyHostNamespaces = truth("allowHostNamespaces", false)
	r.denyPrivilegeEscalation = truth("allowPrivilegeEscalation", false)
	r.denyUnconfinedSeccomp = truth("allowUnconfinedSeccomp", false)
	if n := f.vals["limits"]; n != nil {
		w := what + ".limits"
		lf := p.mapping(n, w, "memory", "cpu", "pids")
		r.memory = p.limit(lf, "memory", w, func(s string) (int64, error) {
			q, err := resource.ParseQuantity(s)
			return q.Value(), err
		})
		r.cpu = p.limit(lf, "cpu", w, func(s string) (int64, error) {
			q, err := resource.ParseQuantity(s)
			return q.MilliValue(), err
		})
		r.pids = p.limit(lf, "pids", w, func(s string) (int64, error) {
			var v int64
			_, err := fmt.Sscanf(s, "%d", &v)
			if err == nil && fmt.Sprint(v) != strings.TrimSpace(s) {
				err = fmt.Errorf("not a whole number")
			}
			return v, err
		})
	}
	if n := f.vals["capabilities"]; n != nil {
		w := what + ".capabilities"
		cf := p.mapping(n, w, "allowed", "requireDropAll")
		r.capsChecked = true
		r.allowedCaps = map[string]bool{}
		for _, c := range p.list(cf, "allowed", w) {
			r.allowedCaps[normCap(c)] = true
		}
		if b := p.boolean(cf, "requireDropAll", w); b != nil {
			r.requireDropAll = *b
		}
	}
	if n := f.vals["hostPaths"]; n != nil {
		w := what + ".hostPaths"
		hf := p.mapping(n, w, "allowed")
		r.hostPathsChecked = true
		r.allowedHostPaths = p.patterns(hf, "allowed", w)
	}
	if p.err == nil && len(f.vals) == 0 {
		p.fail(n, "%s has no checks", what)
	}
	return r
}

// normCap upper-cases a capability and drops a CAP_ prefix.
func normCap(c string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
}

// decisionCache keeps image-only verdicts by (rule, image reference, digest).
type decisionCache struct {
	mu sync.RWMutex
	m  map[cacheKey][]finding
}

// cacheKey: verdicts are reused within a 10-minute window (exception and
// exemption expiries, image age). The reference is part of the key because
// the messages name the image as the workload wrote it: two references to
// one digest (a tag and a digest, or two mirrors) each get their own.
type cacheKey struct {
	rule   *Rule
	ref    string
	digest string
	window int64
}

const maxCacheEntries = 50000

func (c *decisionCache) get(k cacheKey) ([]finding, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *decisionCache) put(k cacheKey, v []finding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCacheEntries {
		c.m = map[cacheKey][]finding{}
	}
	c.m[k] = v
}
