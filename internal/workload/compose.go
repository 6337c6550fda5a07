package workload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// IsCompose reports whether YAML content looks like a compose file (a
// top-level services: key) rather than Kubernetes objects.
func IsCompose(data []byte) bool {
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "services:") {
			return true
		}
		if strings.HasPrefix(l, "apiVersion:") || strings.HasPrefix(l, "kind:") {
			return false
		}
	}
	return false
}

// DecodeCompose reads a docker-compose file the way the Compose
// specification defines it: interpolation of ${VAR}, ${VAR:-default},
// ${VAR:?error} and $$ from env, anchors and << merge keys, several YAML
// documents merged in order, extends (in the file and from other files,
// relative to the file's directory), short syntax made canonical, defaults,
// and relative bind mounts resolved against the file's directory. It uses
// compose-go's building blocks rather than its loader, whose JSON-schema
// validator costs every moat command milliseconds of start-up; unknown keys
// are reported with file:line instead. Every service is returned, whatever
// its profiles. `include:` is not followed: it is reported in Skipped.
func DecodeCompose(ctx context.Context, path string, data []byte, env map[string]string) (*Decoded, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	proj, skipped, err := loadCompose(ctx, path, abs, data, env)
	if err != nil {
		if strings.HasPrefix(err.Error(), path+":") { // already says file:line
			return nil, err
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	out := &Decoded{Skipped: skipped}
	names := make([]string, 0, len(proj.Services))
	for n := range proj.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := proj.Services[n]
		out.Workloads = append(out.Workloads, fromCompose(proj.Name, path, n, &s))
	}
	return out, nil
}

// EnvMap returns the process environment as a map (for compose interpolation).
func EnvMap() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if i := strings.IndexByte(kv, '='); i > 0 {
			m[kv[:i]] = kv[i+1:]
		}
	}
	return m
}

func fromCompose(project, path, name string, s *types.ServiceConfig) *Workload {
	f := "services." + name
	w := &Workload{Kind: "ComposeService", Name: name, Project: project, Labels: map[string]string(s.Labels), Source: path, Runtime: true, PIDsLimitApplies: true}
	w.HostPID, w.HostPIDField = s.Pid == "host", f+".pid"
	w.HostIPC, w.HostIPCField = s.Ipc == "host", f+".ipc"
	w.HostNetwork, w.HostNetworkField = s.NetworkMode == "host", f+".network_mode"
	c := Container{Name: name, Type: "service", Field: f, Image: s.Image, User: s.User, SecurityField: f, LimitsField: f}
	c.Privileged = boolp(s.Privileged)
	c.ReadOnlyRootFilesystem = boolp(s.ReadOnly)
	c.CapAdd, c.CapDrop = s.CapAdd, s.CapDrop
	applySecurityOpts(&c, s.SecurityOpt)
	c.MemoryLimit = int64(s.MemLimit)
	c.CPULimit = int64(s.CPUS * 1000)
	c.PIDsLimit = s.PidsLimit
	if s.Deploy != nil {
		l := s.Deploy.Resources.Limits
		if l != nil {
			if l.MemoryBytes > 0 {
				c.MemoryLimit = int64(l.MemoryBytes)
			}
			if v := l.NanoCPUs.Value(); v > 0 {
				c.CPULimit = int64(v * 1000)
			}
			if l.Pids > 0 {
				c.PIDsLimit = l.Pids
			}
		}
	}
	for i, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			m := Mount{HostPath: v.Source, Target: v.Target, ReadOnly: v.ReadOnly, Field: fmt.Sprintf("%s.volumes[%d]", f, i)}
			c.Mounts = append(c.Mounts, m)
			w.Volumes = append(w.Volumes, HostPathVolume{Path: v.Source, Field: m.Field})
		}
	}
	w.Containers = []Container{c}
	return w
}

// applySecurityOpts reads docker security options (seccomp=unconfined,
// no-new-privileges).
func applySecurityOpts(c *Container, opts []string) {
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		if !strings.Contains(o, "=") {
			k, v, _ = strings.Cut(o, ":")
		}
		switch strings.TrimSpace(k) {
		case "seccomp":
			if v == "unconfined" {
				c.Seccomp = "Unconfined"
			} else if v != "" {
				c.Seccomp = "Localhost"
			}
		case "no-new-privileges":
			if v == "" || v == "true" {
				c.AllowPrivilegeEscalation = boolp(false)
			}
		}
	}
}
