package imagefacts_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	imageopts "github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/policy/imagefacts"
	"github.com/moat-dev/moat/internal/testenv"
)

// TestDockerEngineFacts pulls an image from moat's registry into the
// Docker engine and checks the authz plugin's facts: findings from the
// registry the image was pulled from; with registry findings off, a scan
// through docker save, kept in the facts cache by image ID.
func TestDockerEngineFacts(t *testing.T) {
	testenv.RequireDocker(t)
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dbDir := t.TempDir()
	importDB(t, dbDir, osvRecords...)
	m := startMoat(t, dbDir)
	dg := m.push(t, "team/engine:1.0", appImage(t))
	if im := m.wait(t, "team/engine", dg); im.Status != "scanned" {
		t.Fatalf("registry scan: %+v", im)
	}
	ref := m.host + "/team/engine:1.0"
	ctx := context.Background()
	authCfg, _ := registry.EncodeAuthConfig(registry.AuthConfig{Username: "admin", Password: adminPW, ServerAddress: m.host})
	rc, err := cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: authCfg})
	if err != nil {
		testenv.SkipOrFail(t, "the Docker engine cannot pull from %s (another network namespace?): %v", m.host, err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	if strings.Contains(string(out), `"error"`) {
		testenv.SkipOrFail(t, "the Docker engine cannot pull from %s: %s", m.host, out)
	}
	t.Cleanup(func() { cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })

	db := openDB(t, osvRecords...)
	kc := imageopts.Options{Keychain: basicKeychain("admin", adminPW)}
	p := &imagefacts.Provider{Docker: host, DB: db, Image: kc}
	f, err := p.ImageFacts(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if f.FactsSource != imagefacts.SourceRegistry || len(f.Findings) != 3 || f.User != "1000" || f.Labels["team"] != "web" || len(f.Layers) != 2 {
		t.Fatalf("engine image with registry findings: %q %q %d findings user %q", f.FactsSource, f.FactsNote, len(f.Findings), f.User)
	}
	cacheDir := t.TempDir()
	scanOnce := func() *imagefacts.Provider {
		c, _ := imagefacts.OpenDiskCache(cacheDir, 0)
		return &imagefacts.Provider{Docker: host, DB: db, Image: kc, NoRegistryFindings: true, Cache: c, LayerCache: c.LayerCache()}
	}
	f1, err := scanOnce().ImageFacts(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := scanOnce().ImageFacts(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if f1.FactsSource != imagefacts.SourceScan || f1.FactsCached || len(f1.Findings) != 3 || !f2.FactsCached || len(f2.Findings) != 3 || f2.User != "1000" || f2.Digest != f1.Digest {
		t.Fatalf("scans: %+v\n%+v", f1, f2)
	}
	if r := evaluate(t, vulnPolicies["maxSeverity"], ref, p); !r.Denied() {
		t.Fatalf("not denied: %+v", r)
	}
}
