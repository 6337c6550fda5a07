package policy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/workload"
)

// Violation is one broken rule on one object.
type Violation struct {
	Rule   string `json:"rule"`
	Check  string `json:"check"`
	Action Action `json:"action"`
	// Object is "Kind namespace/name"; Source the file and document.
	Object    string `json:"object"`
	Source    string `json:"source,omitempty"`
	Container string `json:"container,omitempty"`
	// Field is the field path in the object ("spec.containers[0].securityContext.privileged").
	Field   string `json:"field,omitempty"`
	Image   string `json:"image,omitempty"`
	Message string `json:"message"`
	// Fix says how to comply.
	Fix string `json:"fix,omitempty"`
	// ExemptedBy is the reason of the exemption that waived it (then the
	// violation is in Result.Exempted, not Result.Violations).
	ExemptedBy string `json:"exemptedBy,omitempty"`
}

// String is "rule: object container field: message".
func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.Rule, v.Action, v.Object)
	if v.Container != "" {
		fmt.Fprintf(&b, " container %q", v.Container)
	}
	if v.Field != "" {
		fmt.Fprintf(&b, " at %s", v.Field)
	}
	b.WriteString(": " + v.Message)
	return b.String()
}

// Result is the outcome of evaluating one workload.
type Result struct {
	Violations []Violation `json:"violations"`
	Exempted   []Violation `json:"exempted,omitempty"`
	// Notes are things the caller should surface: rules that failed open
	// because facts were missing, expired exemptions.
	Notes []string `json:"notes,omitempty"`
}

// Denied reports whether an enforce rule was violated.
func (r *Result) Denied() bool {
	for _, v := range r.Violations {
		if v.Action == Enforce {
			return true
		}
	}
	return false
}

// With returns the violations of one action.
func (r *Result) With(a Action) []Violation {
	var out []Violation
	for _, v := range r.Violations {
		if v.Action == a {
			out = append(out, v)
		}
	}
	return out
}

// Options configure an evaluation.
type Options struct {
	Facts FactsProvider
	// Now is the time for ages and expiries (default time.Now()).
	Now time.Time
	// FactsTimeout bounds each image lookup (0: only ctx's deadline).
	FactsTimeout time.Duration
}

// finding is a violation before it is placed on an object.
type finding struct {
	check, field, msg, fix string
}

type factsResult struct {
	f   *ImageFacts
	err error
}

type evalState struct {
	ctx   context.Context
	opts  Options
	w     *workload.Workload
	facts map[string]factsResult
	cw    *CELWorkload
}

func (s *evalState) imageFacts(ref string) (*ImageFacts, error) {
	if r, ok := s.facts[ref]; ok {
		return r.f, r.err
	}
	var r factsResult
	if s.opts.Facts == nil {
		r.err = ErrNoFacts
	} else {
		ctx := s.ctx
		if s.opts.FactsTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.opts.FactsTimeout)
			defer cancel()
		}
		r.f, r.err = s.opts.Facts.ImageFacts(ctx, ref)
		if r.err == nil && r.f == nil {
			r.err = errors.New("no facts")
		}
		if errors.Is(r.err, context.DeadlineExceeded) {
			r.err = fmt.Errorf("image lookup timed out: %w", r.err)
		}
	}
	if s.facts == nil {
		s.facts = map[string]factsResult{}
	}
	s.facts[ref] = r
	return r.f, r.err
}

// Evaluate checks a workload against every rule in scope.
func (p *Policy) Evaluate(ctx context.Context, w *workload.Workload, opts Options) *Result {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	s := &evalState{ctx: ctx, opts: opts, w: w}
	res := &Result{Violations: []Violation{}}
	for _, r := range p.Rules {
		if !r.Match.matches(w) {
			continue
		}
		add := func(c *workload.Container, f finding) {
			v := Violation{Rule: r.Name, Check: f.check, Action: r.Action, Object: w.ObjectName(), Source: w.Source, Field: f.field, Message: f.msg, Fix: f.fix}
			img := ""
			if c != nil {
				v.Container, v.Image, img = c.Name, c.Image, c.Image
			}
			if e, expired := r.exemption(w, img, opts.Now); e != nil {
				v.ExemptedBy = e.Reason
				res.Exempted = append(res.Exempted, v)
				return
			} else if expired != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("rule %s: the exemption %q expired on %s and no longer applies to %s", r.Name, expired.Reason, expired.ExpiresRaw, w.ObjectName()))
			}
			res.Violations = append(res.Violations, v)
		}
		failed := func(c *workload.Container, check string, err error) {
			msg := fmt.Sprintf("cannot check image %s: %v", c.Image, err)
			if r.OnError == FailOpen {
				res.Notes = append(res.Notes, fmt.Sprintf("rule %s skipped for %s container %q (fails open): %s", r.Name, w.ObjectName(), c.Name, msg))
				return
			}
			add(c, finding{check: check, field: c.Field + ".image", msg: msg + " (the rule fails closed)", fix: "make the image readable by moat (registry reachable, credentials), or set onError: allow on the rule"})
		}
		if r.runtime != nil && w.Runtime {
			for _, f := range r.runtime.workloadChecks(w) {
				add(nil, f)
			}
		}
		for i := range w.Containers {
			c := &w.Containers[i]
			if c.Image == "" && (r.Family == "images" || r.Family == "vulnerabilities" || r.Family == "signatures") {
				res.Notes = append(res.Notes, fmt.Sprintf("rule %s skipped for %s container %q: it names no image (built locally); check the built image instead", r.Name, w.ObjectName(), c.Name))
				continue
			}
			switch r.Family {
			case "images":
				for _, f := range r.images.refChecks(c) {
					add(c, f)
				}
				if r.images.needsFacts() {
					fs, err := p.cachedImageChecks(s, r, c, func(f *ImageFacts) []finding { return r.images.factChecks(s, f, c) })
					if err != nil {
						failed(c, "images.facts", err)
					}
					for _, f := range fs {
						f.field = c.Field + ".image"
						add(c, f)
					}
				}
			case "vulnerabilities":
				fs, err := p.cachedImageChecks(s, r, c, func(f *ImageFacts) []finding { return r.vulns.check(f, opts.Now) })
				if err != nil {
					failed(c, "vulnerabilities.facts", err)
				}
				for _, f := range fs {
					f.field = c.Field + ".image"
					add(c, f)
				}
			case "signatures":
				fs, err := p.cachedImageChecks(s, r, c, func(f *ImageFacts) []finding { return r.sigs.check(s.ctx, c.Image, f) })
				if err != nil {
					failed(c, "signatures.facts", err)
				}
				for _, f := range fs {
					f.field = c.Field + ".image"
					add(c, f)
				}
			case "runtime":
				fs, err := r.runtime.containerChecks(s, w, c)
				if err != nil {
					failed(c, "runtime.runAsNonRoot", err)
				}
				for _, f := range fs {
					add(c, f)
				}
			case "cel":
				f, err := r.cel.eval(s, c)
				if err != nil {
					if errors.Is(err, errFacts) {
						failed(c, "cel", err)
					} else {
						add(c, finding{check: "cel", field: c.Field, msg: fmt.Sprintf("%s (the expression failed: %v)", r.cel.message, err), fix: r.cel.fix})
					}
				} else if f != nil {
					add(c, *f)
				}
			}
		}
	}
	return res
}

// cachedImageChecks runs image-only checks, cached by (rule, reference, digest).
func (p *Policy) cachedImageChecks(s *evalState, r *Rule, c *workload.Container, run func(*ImageFacts) []finding) ([]finding, error) {
	f, err := s.imageFacts(c.Image)
	if err != nil {
		return nil, err
	}
	if f.Digest == "" {
		return run(f), nil
	}
	k := cacheKey{rule: r, ref: c.Image, digest: f.Digest, window: s.opts.Now.Unix() / 600}
	if fs, ok := p.cache.get(k); ok {
		return fs, nil
	}
	fs := run(f)
	p.cache.put(k, fs)
	return fs, nil
}

func (m *Match) matches(w *workload.Workload) bool {
	if len(m.Namespaces) > 0 {
		if _, ok := m.Namespaces.match(w.Namespace); !ok || w.Namespace == "" {
			return false
		}
	}
	if _, ok := m.ExcludeNamespaces.match(w.Namespace); ok && w.Namespace != "" {
		return false
	}
	if len(m.Projects) > 0 {
		if _, ok := m.Projects.match(w.Project); !ok || w.Project == "" {
			return false
		}
	}
	if len(m.Kinds) > 0 {
		if _, ok := m.Kinds.match(w.Kind); !ok {
			return false
		}
	}
	for k, v := range m.Labels {
		if got, ok := w.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// exemption returns the exemption that applies, or the expired one that
// would have applied.
func (r *Rule) exemption(w *workload.Workload, image string, now time.Time) (applies, expired *Exemption) {
	for i := range r.Exemptions {
		e := &r.Exemptions[i]
		if len(e.Namespaces) > 0 {
			if _, ok := e.Namespaces.match(w.Namespace); !ok {
				continue
			}
		}
		if len(e.Objects) > 0 {
			if _, ok := e.Objects.match(w.ObjectName()); !ok {
				continue
			}
		}
		if len(e.Images) > 0 {
			ref, err := ParseImageRef(image)
			if err != nil {
				continue
			}
			if _, ok := e.Images.match(ref.Full()); !ok {
				continue
			}
		}
		if now.Before(e.Expires) {
			return e, nil
		}
		expired = e
	}
	return nil, expired
}

// ---- images

func (r *imagesRule) needsFacts() bool {
	return len(r.baseImages) > 0 || r.maxAge > 0 || len(r.requiredLabels) > 0
}

func (r *imagesRule) refChecks(c *workload.Container) []finding {
	var out []finding
	field := c.Field + ".image"
	ref, err := ParseImageRef(c.Image)
	if err != nil {
		return []finding{{check: "images.reference", field: field, msg: err.Error(), fix: "use a valid image reference (registry/repository:tag@sha256:digest)"}}
	}
	if p, ok := r.deniedRegistries.match(ref.Registry); ok {
		out = append(out, finding{"images.deniedRegistries", field, fmt.Sprintf("image %s comes from registry %s, which the policy denies (%s)", c.Image, ref.Registry, p), "use an image from an approved registry"})
	} else if len(r.allowedRegistries) > 0 {
		if _, ok := r.allowedRegistries.match(ref.Registry); !ok {
			out = append(out, finding{"images.allowedRegistries", field, fmt.Sprintf("image %s comes from registry %s, which is not approved (approved: %s)", c.Image, ref.Registry, strings.Join(r.allowedRegistries.srcs(), ", ")), "push the image to an approved registry and use that reference"})
		}
	}
	if p, ok := r.deniedRepositories.match(ref.Full()); ok {
		out = append(out, finding{"images.deniedRepositories", field, fmt.Sprintf("image repository %s is denied by the policy (%s)", ref.Full(), p), "use an approved repository"})
	} else if len(r.allowedRepositories) > 0 {
		if _, ok := r.allowedRepositories.match(ref.Full()); !ok {
			out = append(out, finding{"images.allowedRepositories", field, fmt.Sprintf("image repository %s is not approved (approved: %s)", ref.Full(), strings.Join(r.allowedRepositories.srcs(), ", ")), "use an image from an approved repository"})
		}
	}
	if r.requireDigest && ref.Digest == "" {
		out = append(out, finding{"images.requireDigest", field, fmt.Sprintf("image %s is referenced by tag, not by digest", c.Image), fmt.Sprintf("pin the image: %s@sha256:<digest> (moat admit's mutating endpoint can do this)", ref.Full()+":"+ref.Tag)})
	}
	return out
}

func (r *imagesRule) factChecks(s *evalState, f *ImageFacts, c *workload.Container) []finding {
	var out []finding
	if len(r.baseImages) > 0 {
		ok := false
		var errs []string
		for _, b := range r.baseImages {
			if s.opts.Facts == nil {
				errs = append(errs, ErrNoFacts.Error())
				break
			}
			bases, err := s.opts.Facts.RepositoryLayers(s.ctx, b)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", b, err))
				continue
			}
			for _, bl := range bases {
				if isPrefix(bl, f.Layers) {
					ok = true
					break
				}
			}
			if ok {
				break
			}
		}
		if !ok {
			msg := fmt.Sprintf("image %s is not built on an approved base image (its bottom layers match no image of %s)", c.Image, strings.Join(r.baseImages, ", "))
			if len(errs) > 0 {
				msg += "; could not read: " + strings.Join(errs, "; ")
			}
			out = append(out, finding{check: "images.baseImages", msg: msg, fix: "rebuild the image FROM an image of " + strings.Join(r.baseImages, " or ")})
		}
	}
	if r.maxAge > 0 {
		switch {
		case f.Created.IsZero():
			out = append(out, finding{check: "images.maxAge", msg: fmt.Sprintf("image %s has no creation time, so its age (max %s) cannot be checked", c.Image, r.maxAgeRaw), fix: "build the image with a creation time in its config"})
		case s.opts.Now.Sub(f.Created) > r.maxAge:
			out = append(out, finding{check: "images.maxAge", msg: fmt.Sprintf("image %s was built %s (%d days ago), older than the maximum age %s", c.Image, f.Created.UTC().Format("2006-01-02"), int(s.opts.Now.Sub(f.Created).Hours()/24), r.maxAgeRaw), fix: "rebuild the image on a current base and redeploy"})
		}
	}
	for _, l := range r.requiredLabels {
		if _, ok := f.Labels[l]; !ok {
			out = append(out, finding{check: "images.requiredLabels", msg: fmt.Sprintf("image %s lacks the required label %s", c.Image, l), fix: fmt.Sprintf("add LABEL %s=... to the Dockerfile", l)})
		}
	}
	return out
}

func isPrefix(base, img []string) bool {
	if len(base) == 0 || len(base) > len(img) {
		return false
	}
	for i := range base {
		if base[i] != img[i] {
			return false
		}
	}
	return true
}

// ---- vulnerabilities

func (r *vulnsRule) check(f *ImageFacts, now time.Time) []finding {
	if !f.VulnsScanned {
		return []finding{{check: "vulnerabilities.data", msg: fmt.Sprintf("no vulnerability data for image %s (no database: run moat db update)", f.Reference), fix: "give moat a vulnerability database (moat db update) so the image can be matched"}}
	}
	var ign *match.IgnoreFile
	if r.exceptionsYAML != nil {
		ign, _ = match.ParseIgnoreFile("policy exceptions", r.exceptionsYAML, now)
	}
	var bad []string
	var fixes []string
	worst := match.Unknown
	for i := range f.Findings {
		fd := &f.Findings[i]
		if ign != nil {
			if _, ok := ign.Suppresses(fd); ok {
				continue
			}
		}
		if r.fixableOnly && !fd.Fixed() {
			continue
		}
		over := false
		why := fd.Severity.String()
		if r.maxSeverity != nil && fd.Severity > *r.maxSeverity {
			over = true
		}
		if r.maxCVSS != nil && fd.CVSS != nil && fd.CVSS.Score > *r.maxCVSS {
			over = true
			why = fmt.Sprintf("%s, CVSS %.1f", why, fd.CVSS.Score)
		}
		if !over {
			continue
		}
		if fd.Severity > worst {
			worst = fd.Severity
		}
		bad = append(bad, fmt.Sprintf("%s (%s) in %s %s", fd.ID, why, fd.Package.Name, fd.Package.Version))
		if fd.Fixed() {
			fixes = append(fixes, fmt.Sprintf("%s to %s", fd.Package.Name, fd.FixedVersions[0]))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	limit := []string{}
	if r.maxSeverity != nil {
		limit = append(limit, "severity above "+r.maxSeverity.String())
	}
	if r.maxCVSS != nil {
		limit = append(limit, fmt.Sprintf("CVSS above %.1f", *r.maxCVSS))
	}
	shown := bad
	if len(shown) > 5 {
		shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(bad)-5))
	}
	fix := "rebuild the image with fixed packages, or add a policy exception with a reason and expiry"
	if len(fixes) > 0 {
		sort.Strings(fixes)
		fixes = dedupe(fixes)
		if len(fixes) > 5 {
			fixes = fixes[:5]
		}
		fix = "upgrade " + strings.Join(fixes, ", ")
	}
	return []finding{{check: "vulnerabilities", msg: fmt.Sprintf("image %s has %d vulnerabilities with %s: %s", f.Reference, len(bad), strings.Join(limit, " or "), strings.Join(shown, "; ")), fix: fix}}
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// ---- signatures

func (r *sigsRule) check(ctx context.Context, ref string, f *ImageFacts) []finding {
	if _, err := r.checker.Verify(ctx, ref, f.Digest); err != nil {
		return []finding{{check: "signatures", msg: fmt.Sprintf("image %s (%s) has no valid signature by a trusted key: %v", ref, f.Digest, err), fix: "sign the image digest with one of the trusted keys (moat sign)"}}
	}
	return nil
}

// ---- runtime

func dockerSocket(p string) bool {
	c := path.Clean("/" + p)
	switch c {
	case "/", "/var", "/run", "/var/run", "/var/run/docker.sock", "/run/docker.sock":
		return true
	}
	return strings.HasSuffix(c, "/docker.sock")
}

func (r *runtimeRule) workloadChecks(w *workload.Workload) []finding {
	var out []finding
	if r.denyHostNamespaces {
		for _, ns := range []struct {
			on          bool
			name, field string
		}{{w.HostPID, "PID", w.HostPIDField}, {w.HostIPC, "IPC", w.HostIPCField}, {w.HostNetwork, "network", w.HostNetworkField}} {
			if ns.on {
				out = append(out, finding{"runtime.hostNamespaces", ns.field, fmt.Sprintf("shares the host's %s namespace", ns.name), "remove " + ns.field + " (do not share host namespaces)"})
			}
		}
	}
	if r.hostPathsChecked {
		for _, v := range w.Volumes {
			if dockerSocket(v.Path) {
				out = append(out, finding{"runtime.hostPaths", v.Field, fmt.Sprintf("mounts host path %s, which exposes the Docker socket (full control of the host)", v.Path), "remove the mount; use a narrower host path or no host path"})
				continue
			}
			if _, ok := r.allowedHostPaths.match(path.Clean(v.Path)); !ok {
				allowed := "none"
				if len(r.allowedHostPaths) > 0 {
					allowed = strings.Join(r.allowedHostPaths.srcs(), ", ")
				}
				out = append(out, finding{"runtime.hostPaths", v.Field, fmt.Sprintf("mounts host path %s, which is not allowed (allowed: %s)", v.Path, allowed), "use a volume instead of a host path, or an allowed path"})
			}
		}
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }

func (r *runtimeRule) containerChecks(s *evalState, w *workload.Workload, c *workload.Container) ([]finding, error) {
	var out []finding
	sf := c.SecurityField
	kube := w.PodSpecPath != ""
	var fErr error
	if r.runAsNonRoot {
		switch {
		case c.RunAsUser != nil && *c.RunAsUser == 0:
			out = append(out, finding{"runtime.runAsNonRoot", sf + ".runAsUser", "runs as uid 0 (root)", "set runAsUser to a non-zero uid"})
		case isTrue(c.RunAsNonRoot) || (c.RunAsUser != nil && *c.RunAsUser > 0):
		case c.User != "":
			if workload.RootUser(c.User) {
				out = append(out, finding{"runtime.runAsNonRoot", userField(w, c), fmt.Sprintf("runs as user %q (root)", c.User), "run as a non-root user (user: 1000:1000)"})
			}
		default:
			f, err := s.imageFacts(c.Image)
			if err != nil {
				fErr = fmt.Errorf("its USER decides whether it runs as root: %w", err)
				break
			}
			if workload.RootUser(f.User) {
				u := f.User
				if u == "" {
					u = "unset, so root"
				}
				fix := "add USER <non-root uid> to the image"
				if kube {
					fix += ", or set securityContext.runAsNonRoot: true and runAsUser: <uid>"
				} else if w.Runtime {
					fix += ", or run it with a non-root user (--user / user:)"
				}
				out = append(out, finding{"runtime.runAsNonRoot", userField(w, c), fmt.Sprintf("runs as root: image %s USER is %s", c.Image, u), fix})
			}
		}
	}
	if !w.Runtime {
		return out, fErr
	}
	if r.denyPrivileged && isTrue(c.Privileged) {
		out = append(out, finding{"runtime.privileged", fieldOf(sf, kube, "privileged", "Privileged"), "runs privileged (full access to the host)", "remove privileged mode"})
	}
	if r.readOnlyRootFS && !isTrue(c.ReadOnlyRootFilesystem) {
		out = append(out, finding{"runtime.readOnlyRootFilesystem", fieldOf(sf, kube, "readOnlyRootFilesystem", "ReadonlyRootfs"), "root filesystem is writable", fixOf(kube, "set securityContext.readOnlyRootFilesystem: true", "run with a read-only root filesystem (--read-only / read_only: true)")})
	}
	if r.denyPrivilegeEscalation && !isTrue(c.Privileged) && (c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation) {
		out = append(out, finding{"runtime.allowPrivilegeEscalation", fieldOf(sf, kube, "allowPrivilegeEscalation", "SecurityOpt"), "allows privilege escalation (setuid binaries can gain privileges)", fixOf(kube, "set securityContext.allowPrivilegeEscalation: false", "add security option no-new-privileges")})
	}
	if r.denyUnconfinedSeccomp && c.Seccomp == "Unconfined" {
		out = append(out, finding{"runtime.seccomp", fieldOf(sf, kube, "seccompProfile.type", "SecurityOpt"), "runs with seccomp Unconfined (no system call filtering)", fixOf(kube, "set seccompProfile.type: RuntimeDefault", "remove seccomp=unconfined")})
	}
	lim := func(l *limit, what, kubeName string, got int64, show func(int64) string) {
		if l == nil {
			return
		}
		field := c.LimitsField
		if kube {
			field += "." + kubeName
		}
		switch {
		case got <= 0 && l.required:
			out = append(out, finding{"runtime.limits." + what, field, fmt.Sprintf("has no %s limit", what), fmt.Sprintf("set a %s limit%s", what, maxHint(l))})
		case got > 0 && l.max > 0 && got > l.max:
			out = append(out, finding{"runtime.limits." + what, field, fmt.Sprintf("%s limit %s is above the maximum %s", what, show(got), l.maxRaw), fmt.Sprintf("lower the %s limit to at most %s", what, l.maxRaw)})
		}
	}
	lim(r.memory, "memory", "memory", c.MemoryLimit, func(v int64) string { return fmt.Sprintf("%d bytes", v) })
	lim(r.cpu, "cpu", "cpu", c.CPULimit, func(v int64) string { return fmt.Sprintf("%dm", v) })
	if w.PIDsLimitApplies {
		lim(r.pids, "pids", "pids", c.PIDsLimit, func(v int64) string { return fmt.Sprint(v) })
	}
	if r.capsChecked {
		for _, a := range c.CapAdd {
			if n := normCap(a); n == "ALL" || !r.allowedCaps[n] {
				out = append(out, finding{"runtime.capabilities", fieldOf(sf, kube, "capabilities.add", "CapAdd"), fmt.Sprintf("adds capability %s, which is not allowed", n), "remove the capability or ask for it to be allowed"})
			}
		}
		if r.requireDropAll {
			dropped := false
			for _, d := range c.CapDrop {
				if normCap(d) == "ALL" {
					dropped = true
				}
			}
			if !dropped {
				out = append(out, finding{"runtime.capabilities", fieldOf(sf, kube, "capabilities.drop", "CapDrop"), "does not drop all capabilities", fixOf(kube, "set securityContext.capabilities.drop: [ALL] and add back only what is needed", "drop all capabilities (--cap-drop ALL / cap_drop: [ALL])")})
			}
		}
	}
	return out, fErr
}

func userField(w *workload.Workload, c *workload.Container) string {
	if w.PodSpecPath != "" {
		return c.SecurityField + ".runAsNonRoot"
	}
	if w.Kind == "DockerContainer" {
		return "Config.User"
	}
	if w.Kind == "Image" {
		return ""
	}
	return c.Field + ".user"
}

func fieldOf(sf string, kube bool, kubeName, other string) string {
	if kube {
		return sf + "." + kubeName
	}
	if strings.HasPrefix(sf, "services.") {
		return sf
	}
	return sf + "." + other
}

func fixOf(kube bool, k, other string) string {
	if kube {
		return k
	}
	return other
}

func maxHint(l *limit) string {
	if l.max > 0 {
		return " (at most " + l.maxRaw + ")"
	}
	return ""
}
