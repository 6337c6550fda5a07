// Package fleet is the server side of `moat agent`: the hosts that run
// agents, the containers each host runs, the SBOM of every image those
// containers use, the findings of each image (re-matched when the
// vulnerability database changes), the runtime least-privilege violations
// of each container, resource samples with noisy-neighbour flags, events,
// and Prometheus metrics.
//
// The Server is an http.Handler serving /api/v1/fleet/... and /metrics; it
// keeps its state in its own tables (prefixed fleet_) of a database/sql
// database, so it can share the registry's metadata database or use its
// own file.
//
// # Wire protocol (agent → server, JSON, robot-account credentials)
//
//	POST /api/v1/fleet/report        Report: host facts and a full or incremental container inventory
//	POST /api/v1/fleet/stats         StatsReport: resource samples
//	POST /api/v1/fleet/images/missing  MissingRequest → MissingResponse: image keys without an SBOM
//	PUT  /api/v1/fleet/sboms/{key}   a CycloneDX (or SPDX) SBOM of image key {key}
//
// # Views (any authenticated account)
//
//	GET /api/v1/fleet/hosts                 []Host
//	GET /api/v1/fleet/running[?host=H]      []RunningContainer
//	GET /api/v1/fleet/exposure/{ID}         Exposure (ID: any identifier or alias of a vulnerability)
//	GET /api/v1/fleet/events[?after=N]      []Event
//	GET /metrics                            Prometheus text exposition
package fleet

import (
	"strings"
	"time"
)

// Host is a machine running an agent.
type Host struct {
	// Name identifies the host (default: the Docker engine's host name).
	Name          string `json:"name"`
	EngineID      string `json:"engineID,omitempty"`
	EngineVersion string `json:"engineVersion,omitempty"`
	OS            string `json:"os,omitempty"`
	Arch          string `json:"arch,omitempty"`
	CPUs          int    `json:"cpus,omitempty"`
	MemoryBytes   int64  `json:"memoryBytes,omitempty"`
	AgentVersion  string `json:"agentVersion,omitempty"`

	// Set by the server.
	Agent      string    `json:"agent,omitempty"` // robot account that reports for it
	FirstSeen  time.Time `json:"firstSeen,omitzero"`
	LastSeen   time.Time `json:"lastSeen,omitzero"`
	Containers int       `json:"containers"` // running containers
}

// Container is one container of a host, as the engine describes it.
type Container struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Image is the reference the container was created from ("nginx:1.27").
	Image string `json:"image"`
	// ImageID is the local image ID (config digest).
	ImageID string `json:"imageID"`
	// Digest is the manifest digest (from the image's repo digests), empty
	// when the image was never pulled from or pushed to a registry.
	Digest    string            `json:"digest,omitempty"`
	State     string            `json:"state"` // created, running, paused, restarting, exited, dead
	Created   time.Time         `json:"created,omitzero"`
	StartedAt time.Time         `json:"startedAt,omitzero"`
	Labels    map[string]string `json:"labels,omitempty"`
	Runtime   Runtime           `json:"runtime"`
}

// ImageKey is what the SBOM and findings of the container's image are
// stored under: the manifest digest when known, else the image ID.
func (c *Container) ImageKey() string {
	if c.Digest != "" {
		return c.Digest
	}
	return c.ImageID
}

// Running reports whether the container counts as running (its processes
// exist: running, paused or restarting).
func (c *Container) Running() bool {
	switch c.State {
	case "running", "paused", "restarting":
		return true
	}
	return false
}

// Runtime is the security-relevant runtime configuration of a container.
type Runtime struct {
	// User is the container's user ("" = the image's, see ImageUser).
	User      string `json:"user,omitempty"`
	ImageUser string `json:"imageUser,omitempty"`
	// Privileged mode.
	Privileged     bool     `json:"privileged"`
	CapAdd         []string `json:"capAdd,omitempty"`
	CapDrop        []string `json:"capDrop,omitempty"`
	ReadOnlyRootFS bool     `json:"readOnlyRootfs"`
	HostPID        bool     `json:"hostPID"`
	HostIPC        bool     `json:"hostIPC"`
	HostNetwork    bool     `json:"hostNetwork"`
	Mounts         []Mount  `json:"mounts,omitempty"`
	// DockerSocket is set when a mount exposes the Docker engine socket.
	DockerSocket bool     `json:"dockerSocket"`
	SecurityOpt  []string `json:"securityOpt,omitempty"`
	// Seccomp is "unconfined", a profile name, or "" (the engine default).
	Seccomp  string `json:"seccomp,omitempty"`
	AppArmor string `json:"apparmor,omitempty"`
	// Limits: 0 means none.
	MemoryLimit     int64 `json:"memoryLimit,omitempty"`
	NanoCPUs        int64 `json:"nanoCPUs,omitempty"`
	CPUQuota        int64 `json:"cpuQuota,omitempty"`
	CPUPeriod       int64 `json:"cpuPeriod,omitempty"`
	PIDsLimit       int64 `json:"pidsLimit,omitempty"`
	NoNewPrivileges bool  `json:"noNewPrivileges"`
}

// CPULimit is the CPU limit in cores (0 = none).
func (r *Runtime) CPULimit() float64 {
	switch {
	case r.NanoCPUs > 0:
		return float64(r.NanoCPUs) / 1e9
	case r.CPUQuota > 0:
		p := r.CPUPeriod
		if p == 0 {
			p = 100000
		}
		return float64(r.CPUQuota) / float64(p)
	}
	return 0
}

// NoLimits reports whether the container has no memory, CPU or process
// limit at all.
func (r *Runtime) NoLimits() bool {
	return r.MemoryLimit <= 0 && r.CPULimit() <= 0 && r.PIDsLimit <= 0
}

// Mount is one mount of a container.
type Mount struct {
	Type        string `json:"type"` // bind, volume, tmpfs, ...
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination"`
	RW          bool   `json:"rw"`
}

// IsDockerSocket reports whether a host path is the Docker engine socket
// (or the directory holding it).
func IsDockerSocket(p string) bool {
	p = strings.TrimRight(p, "/")
	switch p {
	case "/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run":
		return true
	}
	return strings.HasSuffix(p, "/docker.sock")
}

// Report is what an agent sends about its host's containers.
type Report struct {
	Host Host `json:"host"`
	// Full replaces the host's inventory with Containers: every container
	// not listed is gone. Otherwise Containers are upserted and Removed
	// (container IDs) are gone.
	Full       bool        `json:"full"`
	Containers []Container `json:"containers"`
	Removed    []string    `json:"removed,omitempty"`
}

// Sample is one resource sample of a container.
type Sample struct {
	ContainerID string    `json:"containerID"`
	Time        time.Time `json:"time"`
	// CPUPercent is the CPU use in percent of one core (200 = two cores).
	CPUPercent float64 `json:"cpuPercent"`
	// CPUHostShare is the share (0..1) of all the host's cores.
	CPUHostShare float64 `json:"cpuHostShare"`
	// CPULimitShare is the share of the container's CPU limit (0 without one).
	CPULimitShare float64 `json:"cpuLimitShare,omitempty"`
	MemoryBytes   int64   `json:"memoryBytes"`
	// MemoryLimit is the container's memory limit (0 without one).
	MemoryLimit      int64   `json:"memoryLimit,omitempty"`
	MemoryHostShare  float64 `json:"memoryHostShare"`
	MemoryLimitShare float64 `json:"memoryLimitShare,omitempty"`
	NetRxBytes       int64   `json:"netRxBytes"`
	NetTxBytes       int64   `json:"netTxBytes"`
	BlockReadBytes   int64   `json:"blockReadBytes"`
	BlockWriteBytes  int64   `json:"blockWriteBytes"`
	PIDs             int64   `json:"pids"`
	PIDsLimit        int64   `json:"pidsLimit,omitempty"`
	// Noisy is set when the container has used more than the configured
	// share of the host or of its limit for longer than the window.
	Noisy       bool   `json:"noisy"`
	NoisyReason string `json:"noisyReason,omitempty"`
	// NoLimits flags a container without any memory, CPU or PID limit.
	NoLimits bool `json:"noLimits"`
}

// StatsReport carries samples of one host.
type StatsReport struct {
	Host    string   `json:"host"`
	Samples []Sample `json:"samples"`
}

// MissingRequest asks which image keys have no SBOM on the server.
type MissingRequest struct {
	Images []string `json:"images"`
}

// MissingResponse lists the image keys the server wants an SBOM for.
type MissingResponse struct {
	Missing []string `json:"missing"`
}

// Violation is one runtime least-privilege violation of a container.
type Violation struct {
	Rule    string `json:"rule"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// Action is enforce, warn or audit (from the policy; "audit" for the
	// built-in checks).
	Action string `json:"action,omitempty"`
}

// RunningContainer is one row of `moat running`.
type RunningContainer struct {
	Host        string         `json:"host"`
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Image       string         `json:"image"`
	ImageKey    string         `json:"imageKey"`
	State       string         `json:"state"`
	StartedAt   time.Time      `json:"startedAt,omitzero"`
	Scanned     bool           `json:"scanned"`
	Findings    map[string]int `json:"findings"` // by severity
	Violations  []Violation    `json:"violations"`
	Stats       *Sample        `json:"stats,omitempty"`
	Runtime     Runtime        `json:"runtime"`
	LastUpdated time.Time      `json:"lastUpdated"`
}

// ExposedContainer is one (container, finding) pair of `moat exposure`.
type ExposedContainer struct {
	Host          string   `json:"host"`
	ContainerID   string   `json:"containerID"`
	Container     string   `json:"container"`
	Image         string   `json:"image"`
	ImageKey      string   `json:"imageKey"`
	Vulnerability string   `json:"vulnerability"`
	Aliases       []string `json:"aliases,omitempty"`
	Severity      string   `json:"severity"`
	Package       string   `json:"package"`
	Version       string   `json:"version"`
	Type          string   `json:"type"`
	PURL          string   `json:"purl,omitempty"`
	Path          string   `json:"path,omitempty"`
	Layer         int      `json:"layer"`
	LayerDiffID   string   `json:"layerDiffID,omitempty"`
	CreatedBy     string   `json:"createdBy,omitempty"`
	FixedVersions []string `json:"fixedVersions,omitempty"`
}

// Exposure answers "which running containers are exposed to ID".
type Exposure struct {
	Query      string             `json:"query"`
	Containers []ExposedContainer `json:"containers"`
}

// Event kinds.
const (
	EventNonCompliantStart = "container.noncompliant"
	EventNoisyNeighbour    = "container.noisy"
	EventNewlyExposed      = "container.exposed"
)

// Event is something that happened on the fleet worth telling someone.
type Event struct {
	ID          int64     `json:"id"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Host        string    `json:"host"`
	ContainerID string    `json:"containerID,omitempty"`
	Container   string    `json:"container,omitempty"`
	Image       string    `json:"image,omitempty"`
	Message     string    `json:"message"`
	// Detail: violations, the noisy reason, or the new vulnerability IDs.
	Detail any `json:"detail,omitempty"`
}
