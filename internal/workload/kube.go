package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// UnsupportedKindError is returned for an object that is not a workload
// this package knows (a Service, a ConfigMap, a custom resource...).
type UnsupportedKindError struct{ APIVersion, Kind string }

func (e *UnsupportedKindError) Error() string {
	return fmt.Sprintf("kind %q (apiVersion %q) does not run containers or is not supported", e.Kind, e.APIVersion)
}

// maxDocs bounds the documents read from one YAML stream.
const maxDocs = 10000

// Decoded is the outcome of decoding a file: the workloads, and notes
// about documents that were skipped (other kinds).
type Decoded struct {
	Workloads []*Workload
	Skipped   []string
}

// DecodeKubernetes reads a multi-document Kubernetes YAML or JSON stream;
// name is used in sources and errors. Objects of other kinds (and List
// items of other kinds) are listed in Skipped.
func DecodeKubernetes(name string, r io.Reader) (*Decoded, error) {
	yr := k8syaml.NewYAMLReader(bufio.NewReader(r))
	out := &Decoded{}
	for i := 1; ; i++ {
		if i > maxDocs {
			return nil, fmt.Errorf("%s: more than %d documents", name, maxDocs)
		}
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", name, i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", name, i, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		src := fmt.Sprintf("%s#%d", name, i)
		if err := decodeObject(src, js, out, 0); err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", name, i, err)
		}
	}
	return out, nil
}

func isOnlyComments(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

func decodeObject(src string, js []byte, out *Decoded, depth int) error {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return fmt.Errorf("not a Kubernetes object: %v", err)
	}
	if tm.Kind == "" {
		return errors.New("not a Kubernetes object: no kind")
	}
	if strings.HasSuffix(tm.Kind, "List") && depth == 0 {
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(js, &l); err != nil {
			return fmt.Errorf("%s: %v", tm.Kind, err)
		}
		for j, it := range l.Items {
			if err := decodeObject(fmt.Sprintf("%s.items[%d]", src, j), it, out, depth+1); err != nil {
				return fmt.Errorf("items[%d]: %v", j, err)
			}
		}
		return nil
	}
	w, err := FromKubernetesJSON(js)
	var uk *UnsupportedKindError
	if errors.As(err, &uk) {
		out.Skipped = append(out.Skipped, fmt.Sprintf("%s: %s", src, uk.Error()))
		return nil
	}
	if err != nil {
		return err
	}
	w.Source = src
	out.Workloads = append(out.Workloads, w)
	return nil
}

// FromKubernetesJSON decodes one Kubernetes object given as JSON. An object
// of a kind that runs no containers gives an *UnsupportedKindError.
func FromKubernetesJSON(js []byte) (*Workload, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %v", err)
	}
	return FromKubernetes(tm.APIVersion, tm.Kind, js)
}

// FromKubernetes decodes one Kubernetes object given as JSON whose
// apiVersion and kind are already known (an admission request says them).
func FromKubernetes(apiVersion, kind string, js []byte) (*Workload, error) {
	tm := metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
	group := tm.APIVersion
	if i := strings.IndexByte(group, '/'); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	var (
		meta    metav1.ObjectMeta
		spec    *corev1.PodSpec
		path    string
		decodeE error
	)
	switch {
	case tm.Kind == "Pod" && group == "":
		var o corev1.Pod
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec, "spec"
	case tm.Kind == "ReplicationController" && group == "":
		var o corev1.ReplicationController
		decodeE = json.Unmarshal(js, &o)
		meta, path = o.ObjectMeta, "spec.template.spec"
		if o.Spec.Template != nil {
			spec = &o.Spec.Template.Spec
		}
	case tm.Kind == "PodTemplate" && group == "":
		var o corev1.PodTemplate
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Template.Spec, "template.spec"
	case tm.Kind == "Deployment" && group == "apps":
		var o appsv1.Deployment
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec.Template.Spec, "spec.template.spec"
	case tm.Kind == "StatefulSet" && group == "apps":
		var o appsv1.StatefulSet
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec.Template.Spec, "spec.template.spec"
	case tm.Kind == "DaemonSet" && group == "apps":
		var o appsv1.DaemonSet
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec.Template.Spec, "spec.template.spec"
	case tm.Kind == "ReplicaSet" && group == "apps":
		var o appsv1.ReplicaSet
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec.Template.Spec, "spec.template.spec"
	case tm.Kind == "Job" && group == "batch":
		var o batchv1.Job
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec.Template.Spec, "spec.template.spec"
	case tm.Kind == "CronJob" && group == "batch":
		var o batchv1.CronJob
		decodeE = json.Unmarshal(js, &o)
		meta, spec, path = o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec, "spec.jobTemplate.spec.template.spec"
	default:
		return nil, &UnsupportedKindError{APIVersion: tm.APIVersion, Kind: tm.Kind}
	}
	if decodeE != nil {
		return nil, fmt.Errorf("%s: %v", tm.Kind, decodeE)
	}
	w := &Workload{Kind: tm.Kind, Name: meta.Name, Namespace: meta.Namespace, Labels: meta.Labels, PodSpecPath: path, Runtime: true}
	if w.Name == "" {
		w.Name = meta.GenerateName
	}
	if spec != nil {
		fromPodSpec(w, spec, path)
	}
	return w, nil
}

func fromPodSpec(w *Workload, s *corev1.PodSpec, path string) {
	w.HostPID, w.HostIPC, w.HostNetwork = s.HostPID, s.HostIPC, s.HostNetwork
	w.HostPIDField, w.HostIPCField, w.HostNetworkField = path+".hostPID", path+".hostIPC", path+".hostNetwork"
	hostVols := map[string]HostPathVolume{}
	for i, v := range s.Volumes {
		if v.HostPath != nil {
			hv := HostPathVolume{Name: v.Name, Path: v.HostPath.Path, Field: fmt.Sprintf("%s.volumes[%d].hostPath.path", path, i)}
			hostVols[v.Name] = hv
			w.Volumes = append(w.Volumes, hv)
		}
	}
	pointer := "/" + strings.ReplaceAll(path, ".", "/")
	psc := s.SecurityContext
	add := func(typ, list string, i int, c *corev1.Container) {
		field := fmt.Sprintf("%s.%s[%d]", path, list, i)
		wc := Container{Name: c.Name, Type: typ, Field: field, Pointer: fmt.Sprintf("%s/%s/%d", pointer, list, i), Image: c.Image}
		wc.SecurityField = field + ".securityContext"
		if psc != nil {
			wc.RunAsNonRoot, wc.RunAsUser = psc.RunAsNonRoot, psc.RunAsUser
			if psc.SeccompProfile != nil {
				wc.Seccomp = string(psc.SeccompProfile.Type)
			}
		}
		if sc := c.SecurityContext; sc != nil {
			wc.Privileged, wc.AllowPrivilegeEscalation, wc.ReadOnlyRootFilesystem = sc.Privileged, sc.AllowPrivilegeEscalation, sc.ReadOnlyRootFilesystem
			if sc.RunAsNonRoot != nil {
				wc.RunAsNonRoot = sc.RunAsNonRoot
			}
			if sc.RunAsUser != nil {
				wc.RunAsUser = sc.RunAsUser
			}
			if sc.SeccompProfile != nil {
				wc.Seccomp = string(sc.SeccompProfile.Type)
			}
			if sc.Capabilities != nil {
				for _, a := range sc.Capabilities.Add {
					wc.CapAdd = append(wc.CapAdd, string(a))
				}
				for _, d := range sc.Capabilities.Drop {
					wc.CapDrop = append(wc.CapDrop, string(d))
				}
			}
		}
		wc.LimitsField = field + ".resources.limits"
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			wc.MemoryLimit = q.Value()
		}
		if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
			wc.CPULimit = q.MilliValue()
		}
		for j, m := range c.VolumeMounts {
			if hv, ok := hostVols[m.Name]; ok {
				wc.Mounts = append(wc.Mounts, Mount{HostPath: hv.Path, Target: m.MountPath, ReadOnly: m.ReadOnly, Field: fmt.Sprintf("%s.volumeMounts[%d]", field, j)})
			}
		}
		w.Containers = append(w.Containers, wc)
	}
	for i := range s.InitContainers {
		add("initContainer", "initContainers", i, &s.InitContainers[i])
	}
	for i := range s.Containers {
		add("container", "containers", i, &s.Containers[i])
	}
	for i := range s.EphemeralContainers {
		c := corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		add("ephemeralContainer", "ephemeralContainers", i, &c)
	}
}
