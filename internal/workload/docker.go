package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

// FromDockerCreate decodes the body of a Docker Engine API
// POST /containers/create request (what `docker run` sends). name is the
// ?name= of the request, possibly empty.
func FromDockerCreate(name string, body []byte) (*Workload, error) {
	var req container.CreateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("container create request: %v", err)
	}
	if req.Config == nil {
		return nil, fmt.Errorf("container create request: no container configuration")
	}
	w := &Workload{Kind: "DockerContainer", Name: strings.TrimPrefix(name, "/"), Labels: req.Labels, Runtime: true, PIDsLimitApplies: true}
	c := Container{Name: w.Name, Type: "container", Field: "Config", Image: req.Image, User: req.User, SecurityField: "HostConfig", LimitsField: "HostConfig"}
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	w.HostPID, w.HostPIDField = hc.PidMode.IsHost(), "HostConfig.PidMode"
	w.HostIPC, w.HostIPCField = hc.IpcMode.IsHost(), "HostConfig.IpcMode"
	w.HostNetwork, w.HostNetworkField = hc.NetworkMode.IsHost(), "HostConfig.NetworkMode"
	c.Privileged = boolp(hc.Privileged)
	c.ReadOnlyRootFilesystem = boolp(hc.ReadonlyRootfs)
	c.CapAdd, c.CapDrop = []string(hc.CapAdd), []string(hc.CapDrop)
	applySecurityOpts(&c, hc.SecurityOpt)
	c.MemoryLimit = hc.Memory
	switch {
	case hc.NanoCPUs > 0:
		c.CPULimit = hc.NanoCPUs / 1e6
	case hc.CPUQuota > 0:
		period := hc.CPUPeriod
		if period == 0 {
			period = 100000
		}
		c.CPULimit = hc.CPUQuota * 1000 / period
	}
	if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
		c.PIDsLimit = *hc.PidsLimit
	}
	for i, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "/") {
			continue // a named volume
		}
		ro := len(parts) > 2 && strings.Contains(","+parts[2]+",", ",ro,")
		m := Mount{HostPath: parts[0], Target: parts[1], ReadOnly: ro, Field: fmt.Sprintf("HostConfig.Binds[%d]", i)}
		c.Mounts = append(c.Mounts, m)
		w.Volumes = append(w.Volumes, HostPathVolume{Path: m.HostPath, Field: m.Field})
	}
	for i, mt := range hc.Mounts {
		if mt.Type != mount.TypeBind {
			continue
		}
		m := Mount{HostPath: mt.Source, Target: mt.Target, ReadOnly: mt.ReadOnly, Field: fmt.Sprintf("HostConfig.Mounts[%d]", i)}
		c.Mounts = append(c.Mounts, m)
		w.Volumes = append(w.Volumes, HostPathVolume{Path: m.HostPath, Field: m.Field})
	}
	w.Containers = []Container{c}
	return w, nil
}
