package registry_e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDocker logs in, pushes and pulls with the docker CLI and a real
// engine (which trusts plain HTTP registries on 127.0.0.0/8).
func TestDocker(t *testing.T) {
	docker := tool(t, "docker")
	if out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		msg := "no Docker engine reachable (start dockerd): " + strings.TrimSpace(string(out))
		if isCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s := startServe(t, t.TempDir(), []string{"MOAT_ADMIN_PASSWORD=adminpw"})
	moat(t, s, "admin", "adminpw", "project", "create", "team")
	moat(t, s, "admin", "adminpw", "user", "add", "dev", "--new-password", "dev-pw")
	moat(t, s, "admin", "adminpw", "member", "add", "team", "dev", "writer")
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	ref := s.addr + "/team/docker-e2e:v1"
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", ref).Run() })

	cmd := exec.Command(docker, "login", s.addr, "-u", "dev", "--password-stdin")
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdin = strings.NewReader("wrong")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("docker login with a wrong password succeeded:\n%s", out)
	}
	cmd = exec.Command(docker, "login", s.addr, "-u", "dev", "--password-stdin")
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdin = strings.NewReader("dev-pw")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker login: %v\n%s", err, out)
	}
	layer := layerTar(t, t.TempDir(), map[string]string{"hello.txt": "hello from docker"})
	mustRun(t, env, docker, "import", layer, ref)
	out := mustRun(t, env, docker, "push", ref)
	if !strings.Contains(out, "digest: sha256:") {
		t.Fatalf("push output:\n%s", out)
	}
	mustRun(t, env, docker, "rmi", ref)
	mustRun(t, env, docker, "pull", ref)
	if out := mustRun(t, env, docker, "image", "inspect", "--format", "{{.Id}}", ref); !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("pulled image not present: %s", out)
	}
	// Logged out, the push is refused.
	mustRun(t, env, docker, "logout", s.addr)
	if out, err := run(t, env, docker, "push", ref); err == nil {
		t.Errorf("anonymous push succeeded:\n%s", out)
	}
}

func isCI() bool { return strings.EqualFold(getenv("CI"), "true") }
