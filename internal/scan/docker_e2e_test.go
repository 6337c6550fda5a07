package scan_test

import (
	"context"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/scan"
)

// requireDocker skips without a Docker engine, except in CI where the test
// script starts one: there a missing engine is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no Docker engine answers (scripts/test.sh starts one): %v", err)
		}
		t.Skip("no Docker engine (run scripts/test.sh, which starts one)")
	}
}

// TestDockerEngine loads a test image into a real Docker engine and scans
// it through the Engine API (docker: source); the result must equal the
// scan of the same image from an OCI layout.
func TestDockerEngine(t *testing.T) {
	requireDocker(t)
	img := layeredImageWith(t, it.Layer)
	want := summary(scanWith(t, "oci:"+it.WriteLayout(t, img, "")))

	tag := "moat-test/layered:e2e"
	archive := it.WriteDockerArchive(t, img, tag)
	if out, err := exec.Command("docker", "load", "-i", archive).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })

	res := scanWith(t, "docker:"+tag)
	if got := summary(res); !reflect.DeepEqual(got, want) {
		t.Fatalf("docker: source disagrees with oci: source\n got %v\nwant %v", got, want)
	}
	if res.Subject.Source != "docker" || !strings.HasPrefix(res.Subject.ImageID, "sha256:") {
		t.Errorf("subject %+v", res.Subject)
	}
	if len(res.Layers) != 3 || res.Layers[1].CreatedBy != "RUN apt-get install -y curl" {
		t.Errorf("layers %+v", res.Layers)
	}

	_, err := scan.Scan(context.Background(), "docker:moat-test/does-not-exist:1", scan.Options{})
	if err == nil || !strings.Contains(err.Error(), "docker engine") {
		t.Errorf("missing image: %v", err)
	}
}
