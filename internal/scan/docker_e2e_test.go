package scan_test

import (
	"context"
	"github.com/moat-dev/moat/internal/testenv"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/scan"
)

// requireDocker needs a Docker engine (see testenv.RequireDocker).
func requireDocker(t *testing.T) { testenv.RequireDocker(t) }

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
