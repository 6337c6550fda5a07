package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/imagetest"
)

func TestCheckCommand(t *testing.T) {
	// a real registry on 127.0.0.1 holding a labelled non-root image and an unlabelled root one
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	push := func(repo, user string, labels map[string]string) string {
		img := imagetest.Image(t, imagetest.Step{Layer: imagetest.Layer(t, imagetest.Text("etc/x", repo))})
		cf, _ := img.ConfigFile()
		cfg := cf.Config
		cfg.User, cfg.Labels = user, labels
		img, err := mutate.Config(img, cfg)
		if err != nil {
			t.Fatal(err)
		}
		img, _ = mutate.CreatedAt(img, cf.Created)
		ref := host + "/" + repo + ":1"
		r, _ := name.ParseReference(ref)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	good := push("team/good", "1000", map[string]string{"org.opencontainers.image.source": "git"})
	bad := push("team/bad", "", nil)

	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`apiVersion: moat.dev/v1
kind: Policy
metadata: {name: ci}
spec:
  rules:
    - name: registries
      images: {allowedRegistries: ["127.0.0.1:*"]}
    - name: labels
      images: {requiredLabels: [org.opencontainers.image.source]}
    - name: non-root
      runtime: {runAsNonRoot: true, allowPrivileged: false}
    - name: mem
      action: warn
      runtime: {limits: {memory: {required: true}}}
`), 0o644)
	deploy := filepath.Join(dir, "deploy.yaml")
	os.WriteFile(deploy, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    spec:
      containers:
        - {name: web, image: `+good+`, resources: {limits: {memory: 64Mi}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "0 0 * * *"
  jobTemplate: {spec: {template: {spec: {containers: [{name: job, image: `+good+`, securityContext: {privileged: true}}]}}}}
`), 0o644)
	compose := filepath.Join(dir, "compose.yaml")
	os.WriteFile(compose, []byte("services:\n  app:\n    image: "+good+"\n    mem_limit: 64m\n"), 0o644)

	run := func(format string, targets ...string) (string, error) {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := runCheck(ctx, targets, checkFlags{policy: pol, format: format}, &out, &errb)
		return out.String(), err
	}
	var g *gateError
	// compliant: a file and an image
	if out, err := run("table", compose, good); err != nil || !strings.Contains(out, "PASS: 2 objects") {
		t.Fatalf("compliant: %v\n%s", err, out)
	}
	// violations: exit 1 (gateError) with rule, object, field, fix
	out, err := run("table", deploy, bad)
	if !errors.As(err, &g) {
		t.Fatalf("want a gate error, got %v\n%s", err, out)
	}
	for _, want := range []string{
		"ENFORCE  non-root", "CronJob shop/nightly", "spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged", "fix: remove privileged mode",
		"image " + bad + " lacks the required label org.opencontainers.image.source",
		"runs as root: image " + bad + " USER is unset, so root",
		"WARN     mem", "DENY: 3 objects",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// JSON
	out, err = run("json", deploy)
	var rep struct {
		Schema  string
		Summary struct{ Objects, Enforce, Warn int }
	}
	if !errors.As(err, &g) || json.Unmarshal([]byte(out), &rep) != nil || rep.Schema != "moat.check/v1" || rep.Summary.Objects != 2 || rep.Summary.Enforce != 1 || rep.Summary.Warn != 1 {
		t.Fatalf("json: %v %+v\n%s", err, rep, out)
	}
	// SARIF
	out, _ = run("sarif", deploy)
	var sarif struct {
		Version string
		Runs    []struct {
			Tool struct {
				Driver struct{ Rules []struct{ ID string } }
			}
			Results []struct {
				RuleID, Level string
				Locations     []struct {
					PhysicalLocation struct{ ArtifactLocation struct{ URI string } }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &sarif); err != nil || sarif.Version != "2.1.0" || len(sarif.Runs[0].Tool.Driver.Rules) != 4 || len(sarif.Runs[0].Results) != 2 || sarif.Runs[0].Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI != deploy {
		t.Fatalf("sarif: %v %+v\n%s", err, sarif, out)
	}
	// errors: exit 2 (not a gate error)
	for _, c := range [][]string{{"table", filepath.Join(dir, "missing.yaml")}, {"xml", compose}, {"table", "::not a ref::"}} {
		if _, err := run(c[0], c[1]); err == nil || errors.As(err, &g) {
			t.Errorf("%v: want an error, got %v", c, err)
		}
	}
	os.WriteFile(pol, []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: x\n      runtime: {nope: 1}\n"), 0o644)
	if _, err := run("table", compose); err == nil || errors.As(err, &g) || !strings.Contains(err.Error(), "policy.yaml:6:17: spec.rules[0] (x).runtime: unknown field \"nope\"") {
		t.Errorf("bad policy: %v", err)
	}
}
