// Package policyverify gives the policy's signatures rule (moat check,
// admit, authz) offline cosign signature verification: importing it
// registers a policy.SignatureVerifier backed by internal/signing.
package policyverify

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/signing"
)

func init() { policy.RegisterSignatureVerifier(Verifier{}) }

// Verifier loads trusted public keys (files, directories of *.pub/*.pem)
// for a signatures rule.
type Verifier struct {
	// Remote overrides how registries are reached (tests); nil means the
	// docker config keychain, plain HTTP allowed only for loopback hosts.
	Remote func(host string) *signing.Remote
}

// LoadKeys implements policy.SignatureVerifier.
func (v Verifier) LoadKeys(keys []string) (policy.SignatureKeys, error) {
	var all []signing.PublicKey
	seen := map[string]bool{}
	for _, k := range keys {
		ks, err := signing.LoadPublicKeys(k)
		if err != nil {
			return nil, err
		}
		for _, pk := range ks {
			if !seen[pk.Fingerprint] {
				seen[pk.Fingerprint] = true
				all = append(all, pk)
			}
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("signatures rule: no trusted keys")
	}
	return &Keys{keys: all, remote: v.Remote, cache: map[string]cached{}}, nil
}

// Keys verifies image signatures with a loaded key set; results are cached
// by digest (valid ones for 10 minutes, failures for 30 seconds).
type Keys struct {
	keys   []signing.PublicKey
	remote func(host string) *signing.Remote

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	signer string
	err    error
	until  time.Time
}

// Verify implements policy.SignatureKeys: the image ref (its repository)
// at digest must carry a signature by one of the keys.
func (k *Keys) Verify(ctx context.Context, ref, digest string) (string, error) {
	nr, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("reference %q: %w", ref, err)
	}
	if digest == "" {
		if d, ok := nr.(name.Digest); ok {
			digest = d.DigestStr()
		} else {
			return "", fmt.Errorf("no digest known for %s", ref)
		}
	}
	pinned := nr.Context().Name() + "@" + digest
	now := time.Now()
	k.mu.Lock()
	if c, ok := k.cache[pinned]; ok && now.Before(c.until) {
		k.mu.Unlock()
		return c.signer, c.err
	}
	k.mu.Unlock()

	host := nr.Context().RegistryStr()
	var r *signing.Remote
	if k.remote != nil {
		r = k.remote(host)
	} else {
		r = &signing.Remote{Insecure: isLoopback(host)}
	}
	res, err := r.Verify(ctx, pinned, k.keys)
	signer := ""
	if err == nil {
		for _, s := range res.Signatures {
			if s.Verified {
				signer = s.Key
				if s.KeySource != "" {
					signer += " (" + s.KeySource + ")"
				}
				break
			}
		}
	}
	ttl := 10 * time.Minute
	if err != nil {
		if !signing.IsVerificationError(err) {
			return "", err // registry trouble: not cached
		}
		ttl = 30 * time.Second
	}
	k.mu.Lock()
	if len(k.cache) > 10000 {
		k.cache = map[string]cached{}
	}
	k.cache[pinned] = cached{signer: signer, err: err, until: now.Add(ttl)}
	k.mu.Unlock()
	return signer, err
}

func isLoopback(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}
