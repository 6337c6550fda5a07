package workload_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/workload"
)

// composeFiles writes files into a temporary directory and decodes the
// first one (compose.yaml).
func decodeComposeFiles(t *testing.T, env map[string]string, files map[string]string) (*workload.Decoded, string, error) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "compose.yaml")
	d, err := workload.DecodeCompose(context.Background(), p, []byte(files["compose.yaml"]), env)
	return d, dir, err
}

func service(t *testing.T, d *workload.Decoded, name string) (*workload.Workload, workload.Container) {
	t.Helper()
	for _, w := range d.Workloads {
		if w.Name == name {
			return w, w.Containers[0]
		}
	}
	t.Fatalf("no service %s in %+v", name, d.Workloads)
	return nil, workload.Container{}
}

func TestComposeInterpolation(t *testing.T) {
	d, _, err := decodeComposeFiles(t, map[string]string{"TAG": "2", "PRIV": "true", "MEM": "512m", "EMPTY": ""}, map[string]string{"compose.yaml": `
name: ${PROJECT:-Shop}
services:
  web:
    image: "r.example/web:${TAG}"
    privileged: ${PRIV}
    mem_limit: ${MEM}
    user: ${RUN_AS:-1000}
    command: echo $$HOME
    environment: {A: "${EMPTY:-fallback}", B: "${EMPTY-kept-empty}"}
    cpus: ${CPUS:-1.5}
`})
	if err != nil {
		t.Fatal(err)
	}
	w, c := service(t, d, "web")
	if w.Project != "shop" || c.Image != "r.example/web:2" || c.Privileged == nil || !*c.Privileged || c.MemoryLimit != 512<<20 || c.User != "1000" || c.CPULimit != 1500 {
		t.Errorf("%+v %+v", w, c)
	}
	_, _, err = decodeComposeFiles(t, nil, map[string]string{"compose.yaml": "services:\n  a:\n    image: ${IMAGE:?set IMAGE to the image to run}\n"})
	if err == nil || !strings.Contains(err.Error(), "set IMAGE to the image to run") {
		t.Errorf("required variable: %v", err)
	}
	_, _, err = decodeComposeFiles(t, map[string]string{"P": "maybe"}, map[string]string{"compose.yaml": "services:\n  a:\n    image: x\n    privileged: ${P}\n"})
	if err == nil || !strings.Contains(err.Error(), "maybe") {
		t.Errorf("bad boolean: %v", err)
	}
}

func TestComposeExtends(t *testing.T) {
	d, dir, err := decodeComposeFiles(t, map[string]string{"REG": "r.example"}, map[string]string{
		"compose.yaml": `
services:
  base:
    image: ${REG}/base:1
    privileged: true
    cap_add: [NET_ADMIN]
  web:
    extends: base
    user: app
  worker:
    extends: {file: lib/common.yaml, service: agent}
    cap_add: [SYS_TIME]
  quiet:
    extends: base
    privileged: false
    cap_add: !reset []
`,
		"lib/common.yaml": `
services:
  root:
    image: ${REG}/agent:1
    pid: host
    volumes: ["./state:/state:ro"]
  agent:
    extends: {file: ../more/deep.yaml, service: deep}
    cap_add: [SYS_ADMIN]
`,
		"more/deep.yaml": `
services:
  deep:
    extends: {file: ../lib/common.yaml, service: root}
    privileged: true
`,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, web := service(t, d, "web")
	if web.Privileged == nil || !*web.Privileged || web.Image != "r.example/base:1" || web.User != "app" || strings.Join(web.CapAdd, ",") != "NET_ADMIN" {
		t.Errorf("in-file extends: %+v", web)
	}
	w, worker := service(t, d, "worker")
	if worker.Privileged == nil || !*worker.Privileged || !w.HostPID || worker.Image != "r.example/agent:1" || strings.Join(worker.CapAdd, ",") != "SYS_ADMIN,SYS_TIME" {
		t.Errorf("extends from files: %+v %+v", w, worker)
	}
	if len(worker.Mounts) != 1 || worker.Mounts[0].HostPath != filepath.Join(dir, "lib", "state") || !worker.Mounts[0].ReadOnly {
		t.Errorf("a base's bind mount resolves against the base's directory: %+v", worker.Mounts)
	}
	_, quiet := service(t, d, "quiet")
	if quiet.Privileged == nil || *quiet.Privileged || len(quiet.CapAdd) != 0 {
		t.Errorf("override and !reset: %+v", quiet)
	}

	for name, src := range map[string]string{
		"self":    "services:\n  a:\n    extends: a\n",
		"pair":    "services:\n  a:\n    image: x\n    extends: b\n  b:\n    extends: {service: a}\n",
		"missing": "services:\n  a:\n    extends: nope\n",
		"file":    "services:\n  a:\n    extends: {file: loop.yaml, service: l}\n",
	} {
		_, _, err := decodeComposeFiles(t, nil, map[string]string{"compose.yaml": src, "loop.yaml": "services:\n  l:\n    extends: {file: loop.yaml, service: l}\n"})
		want := "extends cycle"
		if name == "missing" {
			want = `extends service "nope"`
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var chain strings.Builder
	chain.WriteString("services:\n  s40:\n    image: x\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&chain, "  s%02d:\n    extends: s%02d\n", i, i+1)
	}
	if _, _, err := decodeComposeFiles(t, nil, map[string]string{"compose.yaml": chain.String()}); err == nil || !strings.Contains(err.Error(), "deeper than") {
		t.Errorf("long chain: %v", err)
	}
}

func TestComposeVolumesAndAnchors(t *testing.T) {
	d, dir, err := decodeComposeFiles(t, nil, map[string]string{"compose.yaml": `
x-hardening: &hardening
  read_only: true
  cap_drop: [ALL]
  security_opt: [no-new-privileges:true]
x-root: &root
  user: "0"
  privileged: true
services:
  short:
    <<: *hardening
    image: a
    volumes:
      - ./a:/b:ro
      - /var/run/docker.sock:/var/run/docker.sock
      - named:/data
      - /anon
  long:
    <<: [*root, *hardening]
    read_only: false
    image: b
    volumes:
      - {type: bind, source: ../up, target: /up, read_only: true}
      - {type: volume, source: named, target: /v}
      - {type: tmpfs, target: /tmp}
volumes: {named: {}}
`})
	if err != nil {
		t.Fatal(err)
	}
	_, s := service(t, d, "short")
	if len(s.Mounts) != 2 || s.Mounts[0].HostPath != filepath.Join(dir, "a") || s.Mounts[0].Target != "/b" || !s.Mounts[0].ReadOnly ||
		s.Mounts[1].HostPath != "/var/run/docker.sock" || s.Mounts[1].ReadOnly || s.Mounts[1].Field != "services.short.volumes[1]" {
		t.Errorf("short syntax: %+v", s.Mounts)
	}
	if !*s.ReadOnlyRootFilesystem || strings.Join(s.CapDrop, ",") != "ALL" || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
		t.Errorf("merge key: %+v", s)
	}
	_, l := service(t, d, "long")
	if len(l.Mounts) != 1 || l.Mounts[0].HostPath != filepath.Join(filepath.Dir(dir), "up") || !l.Mounts[0].ReadOnly {
		t.Errorf("long syntax: %+v", l.Mounts)
	}
	if *l.ReadOnlyRootFilesystem || !*l.Privileged || l.User != "0" || strings.Join(l.CapDrop, ",") != "ALL" {
		t.Errorf("explicit keys win over merged ones: %+v", l)
	}
}

func TestComposeDocumentsProfilesInclude(t *testing.T) {
	d, _, err := decodeComposeFiles(t, nil, map[string]string{"compose.yaml": `
include: [other.yaml]
services:
  a: {image: x, cap_add: [A]}
  debug: {image: d, profiles: [debug], privileged: true}
---
services:
  a: {image: y, cap_add: [B]}
  b: {image: z}
`})
	if err != nil {
		t.Fatal(err)
	}
	_, a := service(t, d, "a")
	if a.Image != "y" || strings.Join(a.CapAdd, ",") != "A,B" {
		t.Errorf("documents merge in order: %+v", a)
	}
	if _, dbg := service(t, d, "debug"); !*dbg.Privileged {
		t.Error("a service behind a profile is still checked")
	}
	service(t, d, "b")
	if len(d.Skipped) != 1 || !strings.Contains(d.Skipped[0], "include: is not followed") {
		t.Errorf("include: %v", d.Skipped)
	}
}

func TestComposeRejects(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 'b'; i <= 'j'; i++ {
		bomb += fmt.Sprintf("%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	bomb = "x-bomb:\n  " + strings.ReplaceAll(strings.TrimSpace(bomb), "\n", "\n  ") + "\nservices:\n  s: {image: x, x-j: *j}\n"
	for name, c := range map[string]struct{ src, want string }{
		"typo":        {"services:\n  web:\n    image: x\n    privilegd: true\n", `compose.yaml:4: unknown key "privilegd" in services.web (did you mean "privileged"?)`},
		"nested typo": {"services:\n  web:\n    image: x\n    deploy:\n      resources:\n        limits: {memroy: 1g}\n", `compose.yaml:6: unknown key "memroy" in services.web.deploy.resources.limits (did you mean "memory"?)`},
		"top typo":    {"service:\n  web: {image: x}\n", `compose.yaml:1: unknown key "service" at the top level (did you mean "services"?)`},
		"merged typo": {"x-b: &b {privilegd: true}\nservices:\n  web:\n    <<: *b\n    image: x\n", `compose.yaml:1: unknown key "privilegd" in services.web`},
		"duplicate":   {"services:\n  web: {image: x}\n  web: {image: y}\n", `compose.yaml:3: key "web" already defined at line 2`},
		"bomb":        {bomb, "more than 50000 YAML nodes"},
		"type":        {"services:\n  web:\n    image: [1]\n", "image"},
		"not a map":   {"- services\n", "must be a mapping"},
		"empty":       {"# nothing\n", "empty compose file"},
		"bad yaml":    {"services: [\n", "not valid YAML"},
		"ports":       {"services:\n  s:\n    image: x\n    ports: [\"1-65535:1-65535\"]\n", "more than 20000 port mappings"},
		"long list":   {"services:\n  s:\n    image: x\n    cap_add: [" + strings.Repeat("A,", 10000) + "A]\n", "more than the 10000"},
		"merge work":  {"services:\n  s:\n    image: x\n    cap_add: [" + items("A", 3000) + "]\n---\nservices:\n  s:\n    cap_add: [" + items("B", 3000) + "]\n", "lists too long to merge"},
		"huge":        {"services: {}\n" + strings.Repeat("#", 5<<20), "byte limit"},
	} {
		_, _, err := decodeComposeFiles(t, nil, map[string]string{"compose.yaml": c.src})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
}

func items(prefix string, n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return strings.Join(s, ",")
}

func FuzzDecodeCompose(f *testing.F) {
	f.Add([]byte("services:\n  a:\n    image: x\n    volumes: [\"/a:/b\"]\n"))
	f.Add([]byte("services:\n  a:\n    extends: {service: b}\n  b:\n    image: y\n"))
	f.Add([]byte("x-a: &a {privileged: true}\nservices:\n  a:\n    <<: *a\n    image: ${I:-x}\n    cap_add: !reset []\n---\nservices: {b: {extends: a}}\n"))
	f.Add([]byte("services:\n  a:\n    deploy: {resources: {limits: {cpus: '0.5', memory: 1g, pids: 3}}}\n    ports: ['80:80']\nsecrets: {s: {file: ./x}}\n"))
	f.Add([]byte("services:\n  a:\n    extends: {file: compose.yaml, service: a}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := workload.DecodeCompose(context.Background(), filepath.Join(dir, "compose.yaml"), data, map[string]string{})
		if err == nil && d == nil {
			t.Fatal("nil result")
		}
	})
}
