package policy

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/ext"
	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/workload"
)

// The CEL input document (docs/policy.md). A custom rule's expression sees
// three variables — workload, container and image — and must evaluate to
// true for a compliant container.

// CELWorkload is the `workload` variable.
type CELWorkload struct {
	Kind        string            `cel:"kind"`
	Name        string            `cel:"name"`
	Namespace   string            `cel:"namespace"`
	Project     string            `cel:"project"`
	Labels      map[string]string `cel:"labels"`
	HostPID     bool              `cel:"hostPID"`
	HostIPC     bool              `cel:"hostIPC"`
	HostNetwork bool              `cel:"hostNetwork"`
	HostPaths   []string          `cel:"hostPaths"`
}

// CELContainer is the `container` variable (effective settings: the
// container's over the pod's).
type CELContainer struct {
	Name  string `cel:"name"`
	Type  string `cel:"type"`
	Image string `cel:"image"`
	// Privileged, ReadOnlyRootFilesystem, RunAsNonRoot: false unless set true.
	Privileged             bool `cel:"privileged"`
	ReadOnlyRootFilesystem bool `cel:"readOnlyRootFilesystem"`
	RunAsNonRoot           bool `cel:"runAsNonRoot"`
	// AllowPrivilegeEscalation: true unless set false (the runtime default).
	AllowPrivilegeEscalation bool     `cel:"allowPrivilegeEscalation"`
	RunAsUser                int64    `cel:"runAsUser"` // -1 when unset
	User                     string   `cel:"user"`      // compose/docker user
	CapAdd                   []string `cel:"capAdd"`
	CapDrop                  []string `cel:"capDrop"`
	Seccomp                  string   `cel:"seccomp"`
	MemoryLimit              int64    `cel:"memoryLimit"`    // bytes, 0 unset
	CPULimitMillis           int64    `cel:"cpuLimitMillis"` // 0 unset
	PIDsLimit                int64    `cel:"pidsLimit"`      // 0 unset
	HostPaths                []string `cel:"hostPaths"`
}

// CELImage is the `image` variable.
type CELImage struct {
	// Available is false when the image facts could not be had; the other
	// fields are then empty except those read from the reference.
	Available  bool              `cel:"available"`
	Reference  string            `cel:"reference"`
	Registry   string            `cel:"registry"`
	Repository string            `cel:"repository"`
	Tag        string            `cel:"tag"`
	Digest     string            `cel:"digest"`
	User       string            `cel:"user"`
	Labels     map[string]string `cel:"labels"`
	Created    time.Time         `cel:"created"`
	AgeDays    int64             `cel:"ageDays"`
	Layers     []string          `cel:"layers"`
	Vulns      CELVulns          `cel:"vulnerabilities"`
}

// CELVulns summarizes the image's findings after the policy has nothing
// to say about them (no exceptions applied).
type CELVulns struct {
	Scanned  bool     `cel:"scanned"`
	Critical int64    `cel:"critical"`
	High     int64    `cel:"high"`
	Medium   int64    `cel:"medium"`
	Low      int64    `cel:"low"`
	Unknown  int64    `cel:"unknown"`
	Fixable  int64    `cel:"fixable"`
	MaxCVSS  float64  `cel:"maxCVSS"`
	IDs      []string `cel:"ids"`
}

// CELCostLimit bounds the work of one evaluation of a custom rule.
const CELCostLimit = 100000

// celEnv is built on first use: building it costs about a millisecond,
// which every moat process would otherwise pay at start.
var celEnv = sync.OnceValue(func() *cel.Env {
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeOf(&CELWorkload{}), reflect.TypeOf(&CELContainer{}), reflect.TypeOf(&CELImage{}), reflect.TypeOf(&CELVulns{}), ext.ParseStructTags(true)),
		cel.Variable("workload", cel.ObjectType("policy.CELWorkload")),
		cel.Variable("container", cel.ObjectType("policy.CELContainer")),
		cel.Variable("image", cel.ObjectType("policy.CELImage")),
		ext.Strings(),
		ext.Lists(),
		ext.Sets(),
	)
	if err != nil {
		panic(fmt.Sprintf("policy: CEL environment: %v", err))
	}
	return env
})

type celRule struct {
	expr       string
	message    string
	fix        string
	prg        cel.Program
	needsImage bool
	static     bool // cost bounded at load (no run-time tracking)
}

// celSizeBound is the size assumed for input collections and strings when
// a rule's cost is estimated at load.
const celSizeBound = 1024

type celSizes struct{}

func (celSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: celSizeBound}
}

func (celSizes) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

func (p *parser) celRule(n *yaml.Node, what string) *celRule {
	f := p.mapping(n, what, "expression", "message", "fix")
	r := &celRule{expr: p.nonEmpty(f, "expression", what), message: p.nonEmpty(f, "message", what), fix: p.str(f, "fix", what)}
	if p.err != nil {
		return nil
	}
	ast, iss := celEnv().Compile(r.expr)
	if iss != nil && iss.Err() != nil {
		en := f.vals["expression"]
		p.fail(en, "%s.expression does not compile: %s", what, iss.Err())
		return nil
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		p.fail(f.vals["expression"], "%s.expression must give a bool (true when compliant), not %s", what, ast.OutputType())
		return nil
	}
	// An expression whose worst case, with every collection and string of
	// the input at most celSizeBound long, stays within the cost limit runs
	// without per-step cost tracking; any other is stopped at run time when
	// it exceeds the limit.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est, err := celEnv().EstimateCost(ast, celSizes{}); err != nil || est.Max > CELCostLimit {
		opts = append(opts, cel.CostLimit(CELCostLimit))
	} else {
		r.static = true
	}
	prg, err := celEnv().Program(ast, opts...)
	if err != nil {
		p.fail(f.vals["expression"], "%s.expression: %v", what, err)
		return nil
	}
	r.prg = prg
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if ref.Name == "image" {
			r.needsImage = true
		}
	}
	return r
}

var errFacts = errors.New("image facts unavailable")

func (s *evalState) celWorkload() *CELWorkload {
	if s.cw != nil {
		return s.cw
	}
	w := s.w
	cw := &CELWorkload{Kind: w.Kind, Name: w.Name, Namespace: w.Namespace, Project: w.Project, Labels: w.Labels,
		HostPID: w.HostPID, HostIPC: w.HostIPC, HostNetwork: w.HostNetwork, HostPaths: []string{}}
	if cw.Labels == nil {
		cw.Labels = map[string]string{}
	}
	for _, v := range w.Volumes {
		cw.HostPaths = append(cw.HostPaths, v.Path)
	}
	s.cw = cw
	return cw
}

func celContainer(c *workload.Container) *CELContainer {
	cc := &CELContainer{Name: c.Name, Type: c.Type, Image: c.Image,
		Privileged: isTrue(c.Privileged), ReadOnlyRootFilesystem: isTrue(c.ReadOnlyRootFilesystem), RunAsNonRoot: isTrue(c.RunAsNonRoot),
		AllowPrivilegeEscalation: c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation,
		RunAsUser:                -1, User: c.User, CapAdd: nonNil(c.CapAdd), CapDrop: nonNil(c.CapDrop), Seccomp: c.Seccomp,
		MemoryLimit: c.MemoryLimit, CPULimitMillis: c.CPULimit, PIDsLimit: c.PIDsLimit, HostPaths: []string{}}
	if c.RunAsUser != nil {
		cc.RunAsUser = *c.RunAsUser
	}
	for _, m := range c.Mounts {
		cc.HostPaths = append(cc.HostPaths, m.HostPath)
	}
	return cc
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func celImage(ref string, f *ImageFacts, now time.Time) *CELImage {
	ci := &CELImage{Reference: ref, Labels: map[string]string{}, Layers: []string{}, Vulns: CELVulns{IDs: []string{}}}
	if r, err := ParseImageRef(ref); err == nil {
		ci.Registry, ci.Repository, ci.Tag, ci.Digest = r.Registry, r.Repository, r.Tag, r.Digest
	}
	if f == nil {
		return ci
	}
	ci.Available = true
	if f.Digest != "" {
		ci.Digest = f.Digest
	}
	ci.User, ci.Created = f.User, f.Created
	if f.Labels != nil {
		ci.Labels = f.Labels
	}
	if f.Layers != nil {
		ci.Layers = f.Layers
	}
	if !f.Created.IsZero() {
		ci.AgeDays = int64(now.Sub(f.Created).Hours() / 24)
	}
	v := &ci.Vulns
	v.Scanned = f.VulnsScanned
	for i := range f.Findings {
		fd := &f.Findings[i]
		switch fd.Severity {
		case match.Critical:
			v.Critical++
		case match.High:
			v.High++
		case match.Medium:
			v.Medium++
		case match.Low:
			v.Low++
		default:
			v.Unknown++
		}
		if fd.Fixed() {
			v.Fixable++
		}
		if fd.CVSS != nil && fd.CVSS.Score > v.MaxCVSS {
			v.MaxCVSS = fd.CVSS.Score
		}
		v.IDs = append(v.IDs, fd.ID)
	}
	return ci
}

func (r *celRule) eval(s *evalState, c *workload.Container) (*finding, error) {
	var f *ImageFacts
	if r.needsImage {
		var err error
		f, err = s.imageFacts(c.Image)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errFacts, err)
		}
	}
	out, _, err := r.prg.ContextEval(s.ctx, map[string]any{
		"workload":  s.celWorkload(),
		"container": celContainer(c),
		"image":     celImage(c.Image, f, s.opts.Now),
	})
	if err != nil {
		return nil, err
	}
	if b, ok := out.Value().(bool); ok && b {
		return nil, nil
	}
	return &finding{check: "cel", field: c.Field, msg: r.message, fix: r.fix}, nil
}
