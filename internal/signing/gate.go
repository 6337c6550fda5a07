package signing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// PullGate enforces require-signature at pull time: a manifest of a project
// that has trusted keys may be served only when one of its signatures
// verifies with one of those keys. Signature and attestation artifacts stay
// pullable, and so do the images an allowed index lists (a client pulls
// the index, then its platform manifests by digest). Decisions are cached
// by digest: allowed ones for AllowTTL, denied ones for DenyTTL (so that a
// signature pushed just after a refused pull takes effect quickly).
type PullGate struct {
	// Keys are the trusted keys per project; a project with none has no
	// signature requirement.
	Keys map[string][]PublicKey

	AllowTTL, DenyTTL time.Duration
	MaxEntries        int

	mu    sync.Mutex
	cache map[string]gateEntry
}

type gateEntry struct {
	allowed bool
	reason  string
	until   time.Time
}

// PullDecision is what Check decided and why.
type PullDecision struct {
	Allowed bool
	// Reason explains a refusal (or which key allowed it).
	Reason string
	// Checked is false when no check was needed (no requirement, or an
	// exempt artifact).
	Checked bool
}

// Required reports whether project has a signature requirement.
func (g *PullGate) Required(project string) bool {
	return g != nil && len(g.Keys[project]) > 0
}

// Check decides whether the manifest (content, media type) with digest dgst
// in repository repo of project may be pulled; src reads the repository's
// signatures.
func (g *PullGate) Check(ctx context.Context, src Source, project, repo, dgst string, content []byte) (PullDecision, error) {
	keys := g.Keys[project]
	if len(keys) == 0 {
		return PullDecision{Allowed: true}, nil
	}
	if IsSigningArtifact(content) {
		return PullDecision{Allowed: true}, nil
	}
	key := project + "\x00" + repo + "\x00" + dgst
	now := time.Now()
	g.mu.Lock()
	if e, ok := g.cache[key]; ok && now.Before(e.until) {
		g.mu.Unlock()
		return PullDecision{Allowed: e.allowed, Reason: e.reason, Checked: true}, nil
	}
	g.mu.Unlock()

	res, err := VerifySignatures(ctx, src, repo, dgst, keys, false, false)
	d := PullDecision{Checked: true}
	switch {
	case err == nil:
		d.Allowed = true
		for _, s := range res.Signatures {
			if s.Verified {
				d.Reason = "signed by " + s.Key
				break
			}
		}
	case IsVerificationError(err):
		d.Reason = fmt.Sprintf("project %s requires a signature by one of its %d trusted keys: %s", project, len(keys), err)
	default:
		return PullDecision{}, err
	}
	allowTTL, denyTTL := g.AllowTTL, g.DenyTTL
	if allowTTL == 0 {
		allowTTL = 5 * time.Minute
	}
	if denyTTL == 0 {
		denyTTL = 5 * time.Second
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cache == nil {
		g.cache = map[string]gateEntry{}
	}
	max := g.MaxEntries
	if max == 0 {
		max = 10000
	}
	if len(g.cache) >= max {
		for k, e := range g.cache { // drop expired entries, else everything
			if !now.Before(e.until) {
				delete(g.cache, k)
			}
		}
		if len(g.cache) >= max {
			g.cache = map[string]gateEntry{}
		}
	}
	ttl := denyTTL
	if d.Allowed {
		ttl = allowTTL
	}
	g.cache[key] = gateEntry{allowed: d.Allowed, reason: d.Reason, until: now.Add(ttl)}
	if d.Allowed {
		// The platform manifests of an allowed index may be pulled by digest.
		for _, child := range indexChildren(content) {
			g.cache[project+"\x00"+repo+"\x00"+child] = gateEntry{allowed: true, reason: "listed by signed index " + dgst, until: now.Add(allowTTL)}
		}
	}
	return d, nil
}

// IsSigningArtifact reports whether a manifest is a signature or attestation
// artifact, which stays pullable so that clients can verify: an image
// manifest whose every layer is a cosign signature, DSSE envelope or
// Sigstore bundle (cosign .sig/.att manifests and their referrers), or an
// index whose every entry has such an artifact type (the referrers tag
// fallback). The decision rests on the layers, not on declared artifact
// types alone, so an image with runnable layers is never exempt.
func IsSigningArtifact(content []byte) bool {
	var m struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
		} `json:"layers"`
		Manifests []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if json.Unmarshal(content, &m) != nil {
		return false
	}
	switch {
	case len(m.Layers) > 0 && len(m.Manifests) == 0:
		for _, l := range m.Layers {
			if !isSigningType(l.MediaType) {
				return false
			}
		}
		return true
	case len(m.Manifests) > 0 && len(m.Layers) == 0:
		for _, d := range m.Manifests {
			if !isSigningType(d.ArtifactType) {
				return false
			}
		}
		return true
	}
	return false
}

func isSigningType(t string) bool {
	switch {
	case t == SimpleSigningMediaType, t == DSSEMediaType, t == SignatureArtifactType, t == AttestationArtifactType:
		return true
	case strings.HasPrefix(t, "application/vnd.dev.cosign.artifact."), strings.HasPrefix(t, "application/vnd.dev.sigstore.bundle"):
		return true
	}
	return false
}

func indexChildren(content []byte) []string {
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if json.Unmarshal(content, &idx) != nil || len(idx.Manifests) > MaxReferrers {
		return nil
	}
	out := make([]string, 0, len(idx.Manifests))
	for _, m := range idx.Manifests {
		if checkDigest(m.Digest) == nil {
			out = append(out, m.Digest)
		}
	}
	return out
}

// LoadTrustDir reads per-project trusted keys from dir: each subdirectory
// is a project and holds its keys as *.pub/*.pem files
// (DIR/PROJECT/KEY.pub). A missing dir gives no requirements.
func LoadTrustDir(dir string) (map[string][]PublicKey, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]PublicKey{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]PublicKey{}
	names := []string{}
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		keys, err := LoadPublicKeys(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("trusted keys of project %s: %w", n, err)
		}
		out[n] = keys
	}
	return out, nil
}
