package signing

import (
	"context"
	"strings"
	"testing"
)

// TestVerifyFallsBackToReferrers: by default Verify reads the cosign tag
// first; when the tag holds no valid signature (here: only one by an
// untrusted key) it reads the referrers API too and finds the trusted
// signature stored only there.
func TestVerifyFallsBackToReferrers(t *testing.T) {
	ctx := context.Background()
	for _, reg := range registries(t) {
		t.Run(reg.name, func(t *testing.T) {
			ref, dig := pushRandom(t, reg, "proj/fallback")
			untrusted, _ := mustKey(t, "")
			if _, err := reg.remote().Sign(ctx, ref+":v1", untrusted, SignOptions{}); err != nil {
				t.Fatal(err)
			}
			key, trusted := mustKey(t, AlgEd25519)
			onlyRef := reg.remote()
			onlyRef.NoTag = true
			if _, err := onlyRef.Sign(ctx, ref+":v1", key, SignOptions{}); err != nil {
				t.Fatal(err)
			}
			vr, err := reg.remote().Verify(ctx, ref+"@"+dig.String(), trusted)
			if err != nil || !vr.Verified {
				t.Fatalf("verify: %v %+v", err, vr)
			}
			found := false
			for _, s := range vr.Signatures {
				if s.Verified {
					found = strings.HasPrefix(s.Sources[0], "referrer ") && s.Key == Fingerprint(key.Public())
				}
			}
			if !found || len(vr.Signatures) < 2 {
				t.Fatalf("the trusted referrer signature (and the untrusted tag one) not both listed: %+v", vr.Signatures)
			}
		})
	}
}
