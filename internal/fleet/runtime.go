package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/workload"
)

// RuntimeChecker evaluates a running container, in the normalized workload
// model shared with `moat check`, the admission webhook and the Docker
// authorization plugin, and returns its violations.
type RuntimeChecker interface {
	CheckRuntime(ctx context.Context, w *workload.Workload) []Violation
}

// Workload describes a running container in the shared workload model
// (Kind "DockerContainer", like a create request seen by `moat authz`).
func Workload(host string, c *Container) *workload.Workload {
	r := &c.Runtime
	w := &workload.Workload{
		Kind: "DockerContainer", Name: c.Name, Namespace: host, Labels: c.Labels, Source: host,
		HostPID: r.HostPID, HostIPC: r.HostIPC, HostNetwork: r.HostNetwork,
		HostPIDField: "HostConfig.PidMode", HostIPCField: "HostConfig.IpcMode", HostNetworkField: "HostConfig.NetworkMode",
		Runtime: true, PIDsLimitApplies: true,
	}
	user := r.User
	if user == "" {
		user = r.ImageUser
	}
	if user == "" {
		user = "root" // neither the container nor the image sets a user
	}
	priv, ro := r.Privileged, r.ReadOnlyRootFS
	wc := workload.Container{
		Name: c.Name, Type: "container", Field: "Config", Image: c.Image, User: user,
		Privileged: &priv, ReadOnlyRootFilesystem: &ro, SecurityField: "HostConfig", LimitsField: "HostConfig",
		CapAdd: r.CapAdd, CapDrop: r.CapDrop, MemoryLimit: r.MemoryLimit, PIDsLimit: r.PIDsLimit,
		CPULimit: int64(r.CPULimit() * 1000),
	}
	if r.NoNewPrivileges {
		f := false
		wc.AllowPrivilegeEscalation = &f
	}
	switch strings.ToLower(r.Seccomp) {
	case "":
	case "unconfined":
		wc.Seccomp = "Unconfined"
	default:
		wc.Seccomp = "Localhost"
	}
	for i, m := range r.Mounts {
		if m.Type != "bind" || m.Source == "" {
			continue
		}
		wm := workload.Mount{HostPath: m.Source, Target: m.Destination, ReadOnly: !m.RW, Field: fmt.Sprintf("Mounts[%d]", i)}
		wc.Mounts = append(wc.Mounts, wm)
		w.Volumes = append(w.Volumes, workload.HostPathVolume{Path: m.Source, Field: wm.Field})
	}
	w.Containers = []workload.Container{wc}
	return w
}

// LeastPrivilege is the built-in runtime audit: the runtime rules of the
// policy issue with their strictest settings (non-root, read-only root
// filesystem, memory/CPU/PID limits, not privileged, no host namespaces,
// no added capabilities outside AllowedCaps and ALL dropped, no host path
// outside AllowedHostPaths and never the Docker socket, seccomp not
// unconfined, no privilege escalation). Every violation has action "audit".
type LeastPrivilege struct {
	AllowedCaps      []string // e.g. NET_BIND_SERVICE
	AllowedHostPaths []string // exact host paths or prefixes ending in "/"
}

// CheckRuntime implements RuntimeChecker.
func (lp LeastPrivilege) CheckRuntime(_ context.Context, w *workload.Workload) []Violation {
	var out []Violation
	add := func(rule, field, msg, fix string) {
		out = append(out, Violation{Rule: rule, Field: field, Message: msg, Fix: fix, Action: "audit"})
	}
	if w.HostPID {
		add("no-host-namespaces", w.HostPIDField, "shares the host's PID namespace", "remove --pid=host")
	}
	if w.HostIPC {
		add("no-host-namespaces", w.HostIPCField, "shares the host's IPC namespace", "remove --ipc=host")
	}
	if w.HostNetwork {
		add("no-host-namespaces", w.HostNetworkField, "shares the host's network namespace", "use a bridge or user-defined network instead of --network=host")
	}
	for _, c := range w.Containers {
		if c.Privileged != nil && *c.Privileged {
			add("no-privileged", c.SecurityField+".Privileged", "runs privileged", "remove --privileged; add only the capabilities it needs")
		}
		if c.RunAsNonRoot == nil || !*c.RunAsNonRoot {
			if c.RunAsUser != nil && *c.RunAsUser == 0 || c.RunAsUser == nil && workload.RootUser(c.User) {
				add("run-as-non-root", c.Field+".User", fmt.Sprintf("runs as user %q (root)", c.User), "run with --user UID:GID (non-zero) or set USER in the image")
			}
		}
		if c.ReadOnlyRootFilesystem == nil || !*c.ReadOnlyRootFilesystem {
			add("read-only-root-filesystem", c.SecurityField+".ReadonlyRootfs", "root filesystem is writable", "run with --read-only (and --tmpfs for scratch space)")
		}
		if c.MemoryLimit <= 0 {
			add("memory-limit", c.LimitsField+".Memory", "no memory limit", "set --memory")
		}
		if c.CPULimit <= 0 {
			add("cpu-limit", c.LimitsField+".NanoCpus", "no CPU limit", "set --cpus")
		}
		if w.PIDsLimitApplies && c.PIDsLimit <= 0 {
			add("pids-limit", c.LimitsField+".PidsLimit", "no process limit", "set --pids-limit")
		}
		for _, cp := range c.CapAdd {
			n := normCap(cp)
			if n == "ALL" || !slices.ContainsFunc(lp.AllowedCaps, func(a string) bool { return normCap(a) == n }) {
				add("capabilities", c.SecurityField+".CapAdd", "adds capability "+n, "remove --cap-add="+cp)
			}
		}
		if !slices.ContainsFunc(c.CapDrop, func(s string) bool { return normCap(s) == "ALL" }) {
			add("capabilities", c.SecurityField+".CapDrop", "does not drop all capabilities", "run with --cap-drop=ALL and add back only what it needs")
		}
		if c.Seccomp == "Unconfined" {
			add("seccomp", c.SecurityField+".SecurityOpt", "seccomp is unconfined", "remove --security-opt seccomp=unconfined")
		}
		if c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
			add("no-privilege-escalation", c.SecurityField+".SecurityOpt", "processes may gain privileges (no-new-privileges not set)", "run with --security-opt no-new-privileges")
		}
		for _, m := range c.Mounts {
			switch {
			case IsDockerSocket(m.HostPath):
				add("no-docker-socket", m.Field, "mounts the Docker socket ("+m.HostPath+"): full control of the host", "remove the mount of "+m.HostPath)
			case !hostPathAllowed(lp.AllowedHostPaths, m.HostPath):
				add("host-paths", m.Field, "mounts host path "+m.HostPath, "use a named volume, or allow the path in the policy")
			}
		}
	}
	return out
}

func normCap(c string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
}

func hostPathAllowed(allowed []string, p string) bool {
	for _, a := range allowed {
		if p == strings.TrimRight(a, "/") || strings.HasSuffix(a, "/") && strings.HasPrefix(p, a) {
			return true
		}
	}
	return false
}

// PolicyChecker evaluates running containers with the runtime rules of the
// shared policy (internal/policy), the same rules `moat check`, `moat
// admit` and `moat authz` enforce. A running container is the workload
// "DockerContainer HOST/NAME" (the host is its namespace, for scopes and
// exemptions). Only rules of the runtime family are applied: image,
// vulnerability and signature rules are about images, whose findings the
// fleet view shows separately. Set swaps the policy (reload).
type PolicyChecker struct {
	p atomic.Pointer[policy.Policy]
	// Families of rules applied (default: runtime only).
	Families []string
}

// NewPolicyChecker returns a checker for p.
func NewPolicyChecker(p *policy.Policy) *PolicyChecker {
	c := &PolicyChecker{}
	c.p.Store(p)
	return c
}

// Set replaces the policy.
func (c *PolicyChecker) Set(p *policy.Policy) { c.p.Store(p) }

// CheckRuntime implements RuntimeChecker.
func (c *PolicyChecker) CheckRuntime(ctx context.Context, w *workload.Workload) []Violation {
	p := c.p.Load()
	if p == nil {
		return nil
	}
	fams := c.Families
	if len(fams) == 0 {
		fams = []string{"runtime"}
	}
	keep := map[string]bool{}
	for _, r := range p.Rules {
		if slices.Contains(fams, r.Family) {
			keep[r.Name] = true
		}
	}
	res := p.Evaluate(ctx, w, policy.Options{})
	var out []Violation
	for _, v := range res.Violations {
		if !keep[v.Rule] {
			continue
		}
		out = append(out, Violation{Rule: v.Rule + "/" + strings.TrimPrefix(v.Check, "runtime."), Field: v.Field, Message: v.Message, Fix: v.Fix, Action: string(v.Action)})
	}
	return out
}
