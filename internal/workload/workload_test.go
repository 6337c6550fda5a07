package workload_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/workload"
)

const allKinds = `
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  initContainers: [{name: init, image: r.example/init:1}]
  containers:
    - name: app
      image: r.example/app:1
      securityContext: {runAsUser: 0, seccompProfile: {type: Unconfined}, capabilities: {add: [NET_ADMIN], drop: [ALL]}}
      resources: {limits: {memory: 1Gi, cpu: 1500m}}
  ephemeralContainers: [{name: debug, image: r.example/debug:1, securityContext: {privileged: true}}]
---
# a comment-only document
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {template: {spec: {hostNetwork: true, containers: [{name: c, image: r.example/d:1}]}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s}
spec: {template: {spec: {containers: [{name: c, image: r.example/s:1}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  template:
    spec:
      hostPID: true
      volumes: [{name: root, hostPath: {path: /}}]
      containers: [{name: c, image: r.example/ds:1, volumeMounts: [{name: root, mountPath: /host, readOnly: true}]}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec: {template: {spec: {containers: [{name: c, image: r.example/rs:1}]}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec: {template: {spec: {containers: [{name: c, image: r.example/j:1}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec: {schedule: "* * * * *", jobTemplate: {spec: {template: {spec: {initContainers: [{name: i, image: r.example/ci:1}], containers: [{name: c, image: r.example/cj:1}]}}}}}
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: cm}}
  - {apiVersion: v1, kind: ReplicationController, metadata: {name: rc}, spec: {template: {spec: {containers: [{name: c, image: r.example/rc:1}]}}}}
`

func TestDecodeKubernetes(t *testing.T) {
	d, err := workload.DecodeKubernetes("all.yaml", strings.NewReader(allKinds))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, w := range d.Workloads {
		kinds = append(kinds, w.Kind)
	}
	if got := strings.Join(kinds, ","); got != "Pod,Deployment,StatefulSet,DaemonSet,ReplicaSet,Job,CronJob,ReplicationController" {
		t.Fatalf("kinds %s", got)
	}
	if len(d.Skipped) != 1 || !strings.Contains(d.Skipped[0], `all.yaml#9.items[0]: kind "ConfigMap"`) {
		t.Fatalf("skipped %v", d.Skipped)
	}
	pod := d.Workloads[0]
	if len(pod.Containers) != 3 || pod.Containers[0].Type != "initContainer" || pod.Containers[2].Type != "ephemeralContainer" || pod.Containers[2].Field != "spec.ephemeralContainers[0]" || pod.Containers[2].Pointer != "/spec/ephemeralContainers/0" {
		t.Fatalf("pod containers %+v", pod.Containers)
	}
	init, app, dbg := pod.Containers[0], pod.Containers[1], pod.Containers[2]
	if !*init.RunAsNonRoot || *init.RunAsUser != 1000 || init.Seccomp != "RuntimeDefault" {
		t.Errorf("init inherits the pod security context: %+v", init)
	}
	if *app.RunAsUser != 0 || app.Seccomp != "Unconfined" || app.MemoryLimit != 1<<30 || app.CPULimit != 1500 || app.CapAdd[0] != "NET_ADMIN" || app.CapDrop[0] != "ALL" {
		t.Errorf("app overrides: %+v", app)
	}
	if dbg.Privileged == nil || !*dbg.Privileged {
		t.Errorf("ephemeral: %+v", dbg)
	}
	if !d.Workloads[1].HostNetwork || d.Workloads[1].Containers[0].Field != "spec.template.spec.containers[0]" {
		t.Errorf("deployment %+v", d.Workloads[1])
	}
	ds := d.Workloads[3]
	if !ds.HostPID || len(ds.Volumes) != 1 || ds.Volumes[0].Path != "/" || ds.Volumes[0].Field != "spec.template.spec.volumes[0].hostPath.path" || len(ds.Containers[0].Mounts) != 1 || !ds.Containers[0].Mounts[0].ReadOnly {
		t.Errorf("daemonset %+v", ds)
	}
	cj := d.Workloads[6]
	if len(cj.Containers) != 2 || cj.Containers[1].Field != "spec.jobTemplate.spec.template.spec.containers[0]" {
		t.Errorf("cronjob %+v", cj.Containers)
	}
	for _, w := range d.Workloads {
		if w.PIDsLimitApplies || !w.Runtime {
			t.Errorf("%s: kubernetes flags", w.Kind)
		}
	}
	for _, bad := range []string{"kind: Pod\napiVersion: v1\nspec: {containers: 3}\n", "just a string\n", "a: [\n", "apiVersion: v1\nmetadata: {}\n"} {
		if _, err := workload.DecodeKubernetes("bad.yaml", strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "bad.yaml: document 1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestDecodeCompose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "compose.yaml")
	src := `services:
  web:
    image: ${REGISTRY:-registry.example.com}/web:1
    user: "0"
    privileged: true
    read_only: true
    pid: host
    network_mode: host
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    security_opt: [seccomp=unconfined, no-new-privileges:true]
    mem_limit: 256m
    cpus: 0.5
    pids_limit: 100
    volumes:
      - ./data:/data:ro
      - named:/named
  db:
    image: postgres:16
    deploy: {resources: {limits: {memory: 1g, cpus: "2", pids: 50}}}
volumes: {named: {}}
`
	os.WriteFile(path, []byte(src), 0o644)
	if !workload.IsCompose([]byte(src)) || workload.IsCompose([]byte("apiVersion: v1\nkind: Pod\n")) {
		t.Fatal("IsCompose")
	}
	d, err := workload.DecodeCompose(context.Background(), path, []byte(src), map[string]string{"REGISTRY": "reg.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Workloads) != 2 || d.Workloads[0].Name != "db" || d.Workloads[1].Name != "web" {
		t.Fatalf("%+v", d.Workloads)
	}
	db, web := d.Workloads[0].Containers[0], d.Workloads[1]
	if db.MemoryLimit != 1<<30 || db.CPULimit != 2000 || db.PIDsLimit != 50 {
		t.Errorf("deploy limits: %+v", db)
	}
	c := web.Containers[0]
	if c.Image != "reg.internal/web:1" || c.User != "0" || !*c.Privileged || !*c.ReadOnlyRootFilesystem || !web.HostPID || !web.HostNetwork || web.HostIPC {
		t.Errorf("web: %+v %+v", web, c)
	}
	if c.Seccomp != "Unconfined" || c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation || c.MemoryLimit != 256<<20 || c.CPULimit != 500 || c.PIDsLimit != 100 {
		t.Errorf("web settings: %+v", c)
	}
	if len(c.Mounts) != 1 || c.Mounts[0].HostPath != filepath.Join(dir, "data") || !c.Mounts[0].ReadOnly || c.Mounts[0].Field != "services.web.volumes[0]" {
		t.Errorf("mounts %+v", c.Mounts)
	}
	if _, err := workload.DecodeCompose(context.Background(), path, []byte("services:\n  web:\n    image: [1]\n"), nil); err == nil {
		t.Error("bad compose loaded")
	}
}

func TestDockerCreate(t *testing.T) {
	w, err := workload.FromDockerCreate("/web", []byte(`{"Image":"r.example/a:1","User":"app","Labels":{"team":"x"},"HostConfig":{"Privileged":true,"PidMode":"host","IpcMode":"host","NetworkMode":"host","Binds":["/var/run/docker.sock:/var/run/docker.sock","vol:/v","/etc:/etc:ro,z"],"Mounts":[{"Type":"bind","Source":"/srv","Target":"/srv"}],"CapAdd":["SYS_ADMIN"],"CapDrop":["ALL"],"SecurityOpt":["seccomp=unconfined"],"Memory":1048576,"CpuQuota":50000,"CpuPeriod":100000,"PidsLimit":-1}}`))
	if err != nil {
		t.Fatal(err)
	}
	c := w.Containers[0]
	if w.Name != "web" || !w.HostPID || !w.HostIPC || !w.HostNetwork || !*c.Privileged || c.User != "app" || c.Seccomp != "Unconfined" || c.MemoryLimit != 1<<20 || c.CPULimit != 500 || c.PIDsLimit != 0 {
		t.Errorf("%+v %+v", w, c)
	}
	if len(c.Mounts) != 3 || c.Mounts[1].HostPath != "/etc" || !c.Mounts[1].ReadOnly || c.Mounts[2].Field != "HostConfig.Mounts[0]" {
		t.Errorf("mounts %+v", c.Mounts)
	}
	if _, err := workload.FromDockerCreate("", []byte(`{"HostConfig":{}}`)); err == nil {
		// a request without Image still decodes (Config present)
	}
	if _, err := workload.FromDockerCreate("", []byte(`[]`)); err == nil {
		t.Error("array accepted")
	}
	for u, root := range map[string]bool{"": true, "root": true, "0": true, "0:0": true, "1000": false, "app": false, "1000:0": false} {
		if workload.RootUser(u) != root {
			t.Errorf("RootUser(%q)", u)
		}
	}
}

func FuzzDecodeKubernetes(f *testing.F) {
	f.Add([]byte(allKinds))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{kind: List, apiVersion: v1, items: []}]\n"))
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"containers":[{"resources":{"limits":{"cpu":"1e3"}}}]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := workload.DecodeKubernetes("f.yaml", strings.NewReader(string(data)))
		if err == nil && d == nil {
			t.Fatal("nil result")
		}
	})
}

func FuzzDockerCreate(f *testing.F) {
	f.Add([]byte(`{"Image":"a","HostConfig":{"Binds":["/:/h"],"CpuQuota":1,"CpuPeriod":0}}`))
	f.Add([]byte(`{"Image":"a","HostConfig":{"Mounts":[{"Type":"bind"}],"SecurityOpt":["seccomp"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		workload.FromDockerCreate("n", data)
	})
}
