// Package registrygate plugs signature verification into moat's registry:
// Gate implements registry.PullGate with a signing.PullGate, so that
// projects with trusted keys refuse pulls of images without a valid
// signature. It lives apart from both packages so that neither imports the
// other.
package registrygate

import (
	"context"

	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/signing"
)

// Gate adapts a signing.PullGate to registry.PullGate.
type Gate struct{ *signing.PullGate }

var _ registry.PullGate = Gate{}

// New returns a gate enforcing the given trusted keys per project.
func New(keys map[string][]signing.PublicKey) Gate {
	return Gate{&signing.PullGate{Keys: keys}}
}

// FromDir loads per-project trusted keys from dir (DIR/PROJECT/*.pub,
// see signing.LoadTrustDir).
func FromDir(dir string) (Gate, error) {
	keys, err := signing.LoadTrustDir(dir)
	if err != nil {
		return Gate{}, err
	}
	return New(keys), nil
}

// CheckPull implements registry.PullGate.
func (g Gate) CheckPull(ctx context.Context, src registry.ArtifactSource, project, repo, digest string, content []byte) (bool, string, error) {
	d, err := g.PullGate.Check(ctx, src, project, repo, digest, content)
	return d.Allowed, d.Reason, err
}
