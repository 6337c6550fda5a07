package policyverify

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/workload"
)

// imageFacts serves an image's digest (the policy asks the facts provider).
type imageFacts map[string]string

func (f imageFacts) ImageFacts(ctx context.Context, ref string) (*policy.ImageFacts, error) {
	return &policy.ImageFacts{Reference: ref, Digest: f[ref]}, nil
}

func (f imageFacts) RepositoryLayers(ctx context.Context, repo string) ([][]string, error) {
	return nil, nil
}

// TestPolicySignaturesRule loads a policy with a signatures rule (this
// package registered the verifier) and evaluates images in a registry on
// 127.0.0.1: the signed image passes, the unsigned one is denied.
func TestPolicySignaturesRule(t *testing.T) {
	ts := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer ts.Close()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := strings.TrimPrefix(ts.URL, "http://")
	key, _ := signing.GenerateKey("")
	dir := t.TempDir()
	pub, _ := signing.MarshalPublicKey(key.Public())
	os.WriteFile(filepath.Join(dir, "release.pub"), pub, 0o644)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("apiVersion: moat.dev/v1\nkind: Policy\nspec:\n  rules:\n    - name: signed\n      signatures: {keys: [release.pub]}\n"), 0o644)

	facts := imageFacts{}
	for i, repo := range []string{"team/signed", "team/unsigned"} {
		img, _ := random.Image(128, 1)
		tag, _ := name.NewTag(host+"/"+repo+":1", name.Insecure)
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		facts[tag.String()] = d.String()
		if i == 0 {
			r := &signing.Remote{Insecure: true}
			if _, err := r.Sign(context.Background(), tag.String(), key, signing.SignOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := policy.Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for ref, wantDenied := range map[string]bool{host + "/team/signed:1": false, host + "/team/unsigned:1": true} {
		w := &workload.Workload{Kind: "Image", Name: ref, Containers: []workload.Container{{Name: ref, Image: ref}}}
		res := p.Evaluate(context.Background(), w, policy.Options{Facts: facts})
		t.Logf("%s: denied=%v %v", ref, res.Denied(), res.Violations)
		if res.Denied() != wantDenied {
			t.Errorf("%s: denied %v, want %v (%v)", ref, res.Denied(), wantDenied, res.Violations)
		}
	}
	// A key file that is not a public key refuses the policy at load.
	os.WriteFile(filepath.Join(dir, "release.pub"), []byte("not a key"), 0o644)
	if _, err := policy.Load(filepath.Join(dir, "policy.yaml")); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Fatalf("bad key file: %v", err)
	}
}
