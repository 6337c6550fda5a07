package registry_e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestServeAdminAndCrane starts `moat serve` fresh, reads the one-time
// administrator password, sets up a project, a user and a robot with the
// admin commands, and pushes and pulls with crane using each account.
func TestServeAdminAndCrane(t *testing.T) {
	crane := tool(t, "crane")
	s := startServe(t, t.TempDir(), []string{"MOAT_ADMIN_PASSWORD="})
	out := s.stdout()
	if !strings.Contains(out, "plain HTTP on loopback only") {
		t.Errorf("no plain-HTTP notice:\n%s", out)
	}
	pw := generatedPassword(t, s)
	moat(t, s, "admin", pw, "project", "create", "team")
	moat(t, s, "admin", pw, "user", "add", "dev", "--new-password", "dev-pw")
	moat(t, s, "admin", pw, "user", "add", "viewer", "--new-password", "viewer-pw")
	moat(t, s, "admin", pw, "member", "add", "team", "dev", "writer")
	moat(t, s, "admin", pw, "member", "add", "team", "viewer", "reader")
	var robot struct {
		Name   string `json:"name"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(moat(t, s, "admin", pw, "robot", "create", "ci", "--perm", "team=writer", "--expires-in", "1h", "--format", "json")), &robot); err != nil || robot.Secret == "" {
		t.Fatalf("robot create: %v %+v", err, robot)
	}
	list := moat(t, s, "admin", pw, "user", "list")
	if !strings.Contains(list, "dev") || !strings.Contains(list, "NAME") {
		t.Errorf("user list table:\n%s", list)
	}
	if !strings.Contains(moat(t, s, "admin", pw, "member", "list", "team", "--format", "json"), `"role": "reader"`) {
		t.Error("member list json lacks reader")
	}

	cfg := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + cfg}
	login := func(u, p string) { mustRun(t, env, crane, "auth", "login", s.addr, "-u", u, "-p", p) }
	ref := s.addr + "/team/app"
	layer := layerTar(t, t.TempDir(), map[string]string{"hello.txt": "hello from crane"})

	login("dev", "dev-pw")
	mustRun(t, env, crane, "append", "--insecure", "-f", layer, "-t", ref+":v1")
	digest := strings.TrimSpace(mustRun(t, env, crane, "digest", "--insecure", ref+":v1"))
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("digest %q", digest)
	}
	// Robot pushes too (writer), then the reader pulls, lists, and cannot push.
	login(robot.Name, robot.Secret)
	mustRun(t, env, crane, "tag", "--insecure", ref+":v1", "v1-robot")
	login("viewer", "viewer-pw")
	pulled := filepath.Join(t.TempDir(), "img.tar")
	mustRun(t, env, crane, "pull", "--insecure", ref+":v1", pulled)
	if fi, err := os.Stat(pulled); err != nil || fi.Size() == 0 {
		t.Fatal("crane pull wrote nothing")
	}
	tags := mustRun(t, env, crane, "ls", "--insecure", ref)
	if !strings.Contains(tags, "v1\n") || !strings.Contains(tags, "v1-robot") {
		t.Errorf("tags: %q", tags)
	}
	if out, err := run(t, env, crane, "append", "--insecure", "-f", layer, "-t", ref+":evil"); err == nil {
		t.Errorf("reader could push:\n%s", out)
	}
	if out, err := run(t, env, crane, "delete", "--insecure", ref+"@"+digest); err == nil {
		t.Errorf("reader could delete:\n%s", out)
	}
	// Disabling the user cuts access at once; revoking the robot too.
	moat(t, s, "admin", pw, "user", "disable", "viewer")
	if out, err := run(t, env, crane, "digest", "--insecure", ref+":v1"); err == nil {
		t.Errorf("disabled user could still pull:\n%s", out)
	}
	moat(t, s, "admin", pw, "robot", "revoke", robot.Name)
	login(robot.Name, robot.Secret)
	if out, err := run(t, env, crane, "digest", "--insecure", ref+":v1"); err == nil {
		t.Errorf("revoked robot could still pull:\n%s", out)
	}
	// Owner-only operations: admin deletes, then gc collects the layers.
	login("admin", pw)
	var man struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, env, crane, "manifest", "--insecure", ref+"@"+digest)), &man); err != nil || len(man.Layers) != 1 {
		t.Fatalf("manifest: %v %+v", err, man)
	}
	mustRun(t, env, crane, "delete", "--insecure", ref+"@"+digest)
	gc := moat(t, s, "admin", pw, "gc", "--grace", "0s", "--format", "json")
	var rep struct {
		Blobs []string `json:"blobs"`
	}
	json.Unmarshal([]byte(gc), &rep)
	// The image's config and layer go; so do the blobs of the SBOM and
	// vulnerability attestations the registry attached to it, when the
	// scan finished before the delete.
	for _, want := range []string{man.Config.Digest, man.Layers[0].Digest} {
		if !slices.Contains(rep.Blobs, want) {
			t.Errorf("gc did not remove %s (config and layer of the deleted image):\n%s", want, gc)
		}
	}
	// Structured request log, one JSON object per line.
	logs := s.stderr()
	if countLines(logs, `"msg":"request"`) < 10 {
		t.Errorf("request log too short:\n%s", logs)
	}
	if err := sigterm(t, s); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(s.stderr(), `"msg":"stopped"`) {
		t.Error("no clean stop logged")
	}
	// A second start does not create another administrator.
	s2 := startServe(t, s.data, nil)
	if strings.Contains(s2.stdout(), "created administrator") {
		t.Error("administrator created twice")
	}
}

// TestSkopeo copies an image into the registry and back with skopeo.
func TestSkopeo(t *testing.T) {
	skopeo := tool(t, "skopeo")
	crane := tool(t, "crane")
	s := startServe(t, t.TempDir(), []string{"MOAT_ADMIN_PASSWORD=adminpw"})
	moat(t, s, "admin", "adminpw", "project", "create", "team")
	moat(t, s, "admin", "adminpw", "user", "add", "dev", "--new-password", "dev-pw")
	moat(t, s, "admin", "adminpw", "member", "add", "team", "dev", "owner")
	// Build a source image in an OCI layout with crane (via a tarball).
	work := t.TempDir()
	cfg := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + cfg}
	mustRun(t, env, crane, "auth", "login", s.addr, "-u", "dev", "-p", "dev-pw")
	layer := layerTar(t, work, map[string]string{"etc/motd": "skopeo test"})
	mustRun(t, env, crane, "append", "--insecure", "-f", layer, "-t", s.addr+"/team/seed:v1")
	creds := "--creds=dev:dev-pw"
	mustRun(t, nil, skopeo, "copy", "--src-tls-verify=false", "--src-creds=dev:dev-pw", "docker://"+s.addr+"/team/seed:v1", "oci:"+filepath.Join(work, "layout")+":v1")
	mustRun(t, nil, skopeo, "copy", "--dest-tls-verify=false", "--dest-creds=dev:dev-pw", "oci:"+filepath.Join(work, "layout")+":v1", "docker://"+s.addr+"/team/copied:v2")
	insp := mustRun(t, nil, skopeo, "inspect", "--tls-verify=false", creds, "docker://"+s.addr+"/team/copied:v2")
	if !strings.Contains(insp, `"Name": "`+s.addr+`/team/copied"`) {
		t.Errorf("inspect:\n%s", insp)
	}
	tags := mustRun(t, nil, skopeo, "list-tags", "--tls-verify=false", creds, "docker://"+s.addr+"/team/copied")
	if !strings.Contains(tags, `"v2"`) {
		t.Errorf("list-tags:\n%s", tags)
	}
	defer func() {
		if t.Failed() {
			t.Log(s.stderr())
		}
	}()
	mustRun(t, nil, skopeo, "delete", "--tls-verify=false", creds, "docker://"+s.addr+"/team/copied:v2")
	if out, err := run(t, nil, skopeo, "inspect", "--tls-verify=false", creds, "docker://"+s.addr+"/team/copied:v2"); err == nil {
		t.Errorf("deleted image still inspectable:\n%s", out)
	}
	// Wrong credentials are refused.
	if out, err := run(t, nil, skopeo, "inspect", "--tls-verify=false", "--creds=dev:wrong", "docker://"+s.addr+"/team/seed:v1"); err == nil {
		t.Errorf("wrong password accepted:\n%s", out)
	}
}
