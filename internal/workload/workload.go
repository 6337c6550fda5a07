// Package workload decodes what runs containers — Kubernetes objects
// (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
// CronJobs, ReplicationControllers, with init and ephemeral containers),
// docker-compose files and Docker Engine container-create requests — into
// one normalized model that the policy evaluates.
package workload

import (
	"strconv"
	"strings"
)

// Workload is one object that runs containers.
type Workload struct {
	// Kind is the Kubernetes kind ("Pod", "Deployment", ...), "ComposeService",
	// "DockerContainer" or "Image" (a bare image reference).
	Kind      string
	Name      string
	Namespace string
	// Project is the compose project name (or "" elsewhere).
	Project string
	Labels  map[string]string
	// Source names where the object came from ("deploy.yaml#2", "compose.yaml").
	Source string
	// PodSpecPath is the field path of the pod spec ("spec", "spec.template.spec",
	// "spec.jobTemplate.spec.template.spec"); "" for compose and Docker.
	PodSpecPath string

	HostPID, HostIPC, HostNetwork bool
	// HostNamespaceField gives the field of each host namespace setting.
	HostPIDField, HostIPCField, HostNetworkField string

	Containers []Container
	// Volumes are host paths mounted into the pod (all containers).
	Volumes []HostPathVolume
	// Runtime is false for a bare image (no runtime settings to check).
	Runtime bool
	// PIDsLimitApplies is false for Kubernetes, where the process limit is
	// a node (kubelet) setting rather than part of the pod spec.
	PIDsLimitApplies bool
}

// HostPathVolume is a host directory or file mounted into containers.
type HostPathVolume struct {
	Name string
	Path string
	// Field is the field path of the host path setting.
	Field string
}

// Container is one container of a workload.
type Container struct {
	Name string
	// Type is "container", "initContainer", "ephemeralContainer",
	// "service" (compose) or "image".
	Type string
	// Field is the field path of the container ("spec.containers[0]").
	Field string
	// Pointer is the JSON pointer of the container object
	// ("/spec/containers/0"), for patches.
	Pointer string
	Image   string

	// Effective security settings (container over pod); nil when unset.
	Privileged               *bool
	AllowPrivilegeEscalation *bool
	ReadOnlyRootFilesystem   *bool
	RunAsNonRoot             *bool
	RunAsUser                *int64
	// User is the user name or uid:gid given as a string (compose, Docker).
	User string
	// SecurityField is the field path of the effective securityContext.
	SecurityField string

	CapAdd, CapDrop []string
	// Seccomp is the effective seccomp profile: "RuntimeDefault",
	// "Unconfined", "Localhost" or "" (unset: the runtime default).
	Seccomp string

	// Limits; 0 means unset.
	MemoryLimit int64 // bytes
	CPULimit    int64 // millicores
	PIDsLimit   int64
	LimitsField string

	// Mounts are the host paths this container mounts (bind mounts and
	// hostPath volumes it uses).
	Mounts []Mount
}

// Mount is a host path mounted into a container.
type Mount struct {
	HostPath string
	Target   string
	ReadOnly bool
	Field    string
}

// RootUser reports whether a user string (image USER, compose user:) means
// root: empty, "root", "0", or a root uid with any group.
func RootUser(u string) bool {
	u = strings.TrimSpace(u)
	if i := strings.IndexByte(u, ':'); i >= 0 {
		u = u[:i]
	}
	if u == "" || u == "root" {
		return true
	}
	if n, err := strconv.ParseInt(u, 10, 64); err == nil && n == 0 {
		return true
	}
	return false
}

// ObjectName is "Kind namespace/name" (or "Kind name").
func (w *Workload) ObjectName() string {
	n := w.Name
	if w.Namespace != "" {
		n = w.Namespace + "/" + n
	} else if w.Project != "" {
		n = w.Project + "/" + n
	}
	return w.Kind + " " + n
}

func boolp(b bool) *bool { return &b }
