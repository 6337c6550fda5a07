// Package guard_e2e runs `moat serve` with scanning on against the real
// docker CLI and engine: a vulnerable image pushed with docker push is
// scanned in the background, and docker pull of it is refused with the
// pull gate's message once the project blocks critical findings.
package guard_e2e

import (
	"context"
	"encoding/json"
	"github.com/moat-dev/moat/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/vulndb"
)

var moatBin string

func TestMain(m *testing.M) { testenv.MainWithMoat(m, "moat-guard-e2e-", &moatBin) }

func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	testenv.SkipOrFail(t, "%s", msg)
}

const lodashRecord = `{"id": "GHSA-p6mc-m468-83gw", "aliases": ["CVE-2020-8203"], "summary": "Prototype Pollution in lodash",
  "modified": "2024-01-01T00:00:00Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "3.7.0"}, {"fixed": "4.17.19"}]}]}]}`

func run(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func TestDockerPullRefusedByVulnerabilityGate(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		skipOrFail(t, "docker CLI not found")
	}
	if out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		skipOrFail(t, "no Docker engine reachable (start dockerd): "+strings.TrimSpace(string(out)))
	}
	// A vulnerability database with the lodash record.
	db := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "lodash.json"), []byte(lodashRecord), 0o644)
	if _, err := vulndb.Import(context.Background(), db, []string{src}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	data := t.TempDir()
	srv := exec.Command(moatBin, "serve", "--addr", addr, "--data-dir", data, "--db-dir", db)
	srv.Env = append(os.Environ(), "MOAT_ADMIN_PASSWORD=adminpw")
	logf, _ := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	if err := testenv.WaitHealthy(nil, "http://"+addr+"/healthz", 20*time.Second); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("moat serve did not start: %v\n%s", err, b)
	}
	admin := []string{"MOAT_SERVER=http://" + addr, "MOAT_USERNAME=admin", "MOAT_PASSWORD=adminpw"}
	mustRun(t, admin, moatBin, "project", "create", "team")
	mustRun(t, admin, moatBin, "user", "add", "dev", "--new-password", "dev-pw")
	mustRun(t, admin, moatBin, "member", "add", "team", "dev", "writer")

	img := it.Image(t, it.Step{Layer: it.Layer(t,
		it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.15","license":"MIT"}`),
	), CreatedBy: "COPY app /app"})
	ref := addr + "/team/guard-e2e:v1"
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	mustRun(t, env, docker, "load", "-i", it.WriteDockerArchive(t, img, ref))
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", ref).Run() })
	cmd := exec.Command(docker, "login", addr, "-u", "dev", "--password-stdin")
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdin = strings.NewReader("dev-pw")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker login: %v\n%s", err, out)
	}
	mustRun(t, env, docker, "push", ref)

	// The scan runs in the background; moat images shows its outcome.
	var ims []struct {
		Repository string         `json:"repository"`
		Status     string         `json:"status"`
		Counts     map[string]int `json:"counts"`
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		out := mustRun(t, admin, moatBin, "images", "team", "--format", "json")
		if err := json.Unmarshal([]byte(out), &ims); err != nil {
			t.Fatalf("moat images: %v\n%s", err, out)
		}
		if len(ims) == 1 && ims[0].Status == "scanned" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("image never scanned: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ims[0].Counts["CRITICAL"] != 1 {
		t.Fatalf("counts: %+v", ims[0])
	}
	if out := mustRun(t, admin, moatBin, "images"); !strings.Contains(out, "team/guard-e2e") || !strings.Contains(out, "scanned") {
		t.Fatalf("moat images table:\n%s", out)
	}
	out := mustRun(t, admin, moatBin, "findings", "team/guard-e2e:v1")
	if !strings.Contains(out, "CVE-2020-8203") || !strings.Contains(out, "lodash") {
		t.Fatalf("moat findings:\n%s", out)
	}
	var sarif map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, admin, moatBin, "findings", ref, "--format", "sarif")), &sarif); err != nil || sarif["version"] != "2.1.0" {
		t.Fatalf("moat findings --format sarif: %v %v", err, sarif["version"])
	}

	// Block critical findings: docker pull fails with the gate's message.
	mustRun(t, admin, moatBin, "project", "set", "team", "--block-severity", "critical")
	mustRun(t, env, docker, "rmi", ref)
	out, err = run(env, docker, "pull", ref)
	if err == nil {
		t.Fatalf("docker pull of a blocked image succeeded:\n%s", out)
	}
	t.Logf("docker pull: %s", out)
	if !strings.Contains(out, "image has 1 critical vulnerability (CVE-2020-8203)") || !strings.Contains(out, "moat findings team/guard-e2e@sha256:") {
		t.Fatalf("docker pull output lacks the gate's reason:\n%s", out)
	}
	// An exception with a reason and expiry lets it through.
	mustRun(t, admin, moatBin, "project", "set", "team", "--add-exception", "CVE-2020-8203", "--package", "lodash", "--reason", "prototype pollution not reachable", "--expires", "2999-12-31")
	mustRun(t, env, docker, "pull", ref)
	// The refusal is in the audit log.
	var evs []struct {
		Actor   string `json:"actor"`
		Allowed bool   `json:"allowed"`
		Detail  string `json:"detail"`
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/audit?actor=dev", nil)
	req.SetBasicAuth("admin", "adminpw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(raw)
	json.Unmarshal(raw, &evs)
	found := false
	for _, e := range evs {
		found = found || (!e.Allowed && strings.Contains(e.Detail, "CVE-2020-8203"))
	}
	if !found {
		t.Fatalf("no denied pull in the audit log: %s", body)
	}
	if out := mustRun(t, admin, moatBin, "events", "--type", "scan-completed"); !strings.Contains(out, "team/guard-e2e") {
		t.Fatalf("moat events:\n%s", out)
	}
}
