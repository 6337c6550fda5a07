package signing

import (
	"context"
	"testing"

	"golang.org/x/sync/errgroup"
)

// BenchmarkVerify20 verifies 20 signed images (one Remote, 8 at once) in a
// moat registry on 127.0.0.1 with token auth: the in-process part of
// `moat verify` with 20 images, client and registry both measured.
func BenchmarkVerify20(b *testing.B) {
	ctx := context.Background()
	reg := moatRegistry(b)
	key, err := GenerateKey("")
	if err != nil {
		b.Fatal(err)
	}
	keys := []PublicKey{{Key: key.Public(), Fingerprint: Fingerprint(key.Public())}}
	var refs []string
	for i := 0; i < 20; i++ {
		ref, dig := pushRandom(b, reg, "proj/bench"+string(rune('a'+i)))
		if _, err := reg.remote().Sign(ctx, ref+":v1", key, SignOptions{}); err != nil {
			b.Fatal(err)
		}
		refs = append(refs, ref+"@"+dig.String())
	}
	b.ResetTimer()
	for b.Loop() {
		r := reg.remote()
		r.Prepare(ctx, refs)
		g := errgroup.Group{}
		g.SetLimit(8)
		for _, ref := range refs {
			g.Go(func() error {
				_, err := r.Verify(ctx, ref, keys)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
