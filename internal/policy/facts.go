package policy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/match"
)

// ImageFacts is what the policy knows about one image.
type ImageFacts struct {
	// Reference is the reference as written in the workload.
	Reference string
	// Digest is the manifest digest the reference resolved to.
	Digest string
	// Layers are the layer diff IDs, bottom first.
	Layers []string
	// Config facts.
	User    string
	Labels  map[string]string
	Created time.Time
	// VulnsScanned is true when Findings come from a vulnerability match
	// (false when no vulnerability database was available).
	VulnsScanned bool
	// Findings are the vulnerability findings (before the policy's
	// exceptions).
	Findings []match.Finding
	// FactsSource says where Findings came from: "registry" (the stored
	// findings of a moat registry), "scan" (scanned and matched on
	// demand), or "" (no vulnerability data).
	FactsSource string
	// FactsCached is true when the facts came from the on-disk facts cache
	// (an earlier scan of the same digest) rather than a new read.
	FactsCached bool
	// FactsNote explains the source: which registry, or why a moat
	// registry's findings could not be used.
	FactsNote string
}

// FactsProvider supplies image facts. Implementations cache by digest;
// the policy bounds each lookup with the caller's context.
type FactsProvider interface {
	// ImageFacts gives the facts of one image reference.
	ImageFacts(ctx context.Context, ref string) (*ImageFacts, error)
	// RepositoryLayers gives the layer diff IDs of every image in a
	// repository ("registry/repo"), for the approved-base-image rule.
	RepositoryLayers(ctx context.Context, repo string) ([][]string, error)
}

// DigestResolver resolves a tag to a manifest digest (for pinning).
type DigestResolver interface {
	ResolveDigest(ctx context.Context, ref string) (string, error)
}

// SignatureVerifier checks image signatures for the signatures rule. The
// signing package registers one with RegisterSignatureVerifier; until one
// is registered, a policy with a signatures rule refuses to load.
type SignatureVerifier interface {
	// LoadKeys is called when a policy loads, with the rule's keys (file
	// paths resolved against the policy file's directory, or key
	// references the verifier understands). An error refuses the policy.
	LoadKeys(keys []string) (SignatureKeys, error)
}

// SignatureKeys verifies with a loaded set of trusted keys.
type SignatureKeys interface {
	// Verify checks that the image (reference, resolved digest) carries a
	// valid signature by one of the keys; it returns who signed.
	Verify(ctx context.Context, ref, digest string) (signer string, err error)
}

var (
	verifierMu sync.RWMutex
	verifier   SignatureVerifier
)

// RegisterSignatureVerifier installs the signature verifier (nil removes it).
func RegisterSignatureVerifier(v SignatureVerifier) {
	verifierMu.Lock()
	verifier = v
	verifierMu.Unlock()
}

func currentVerifier() SignatureVerifier {
	verifierMu.RLock()
	defer verifierMu.RUnlock()
	return verifier
}

// ErrNoFacts is returned when an evaluation needs image facts but has no
// provider.
var ErrNoFacts = errors.New("no image facts provider")
