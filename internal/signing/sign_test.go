package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	for _, reg := range registries(t) {
		t.Run(reg.name, func(t *testing.T) {
			ref, dig := pushRandom(t, reg, "proj/app")
			key, trusted := mustKey(t, "")
			r := reg.remote()
			now := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
			res, err := r.Sign(ctx, ref+":v1", key, SignOptions{Annotations: map[string]string{"env": "prod"},
				Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != dig.String() || !strings.HasSuffix(res.Tag, ":sha256-"+dig.Hex+".sig") || res.Referrer == "" {
				t.Fatalf("sign result %+v", res)
			}
			// By default the tag's valid signature suffices; with All the
			// same signature is also found as a referrer.
			for _, all := range []bool{false, true} {
				for _, vref := range []string{ref + ":v1", ref + "@" + dig.String()} {
					vrem := reg.remote()
					vrem.All = all
					vr, err := vrem.Verify(ctx, vref, trusted)
					if err != nil {
						t.Fatalf("verify %s: %v", vref, err)
					}
					if !vr.Verified || len(vr.Signatures) != 1 {
						t.Fatalf("verify %s: %+v", vref, vr)
					}
					s := vr.Signatures[0]
					wantSources := 1
					if all {
						wantSources = 2
					}
					if len(s.Sources) != wantSources || !strings.HasPrefix(s.Sources[0], "tag ") || s.Key != Fingerprint(key.Public()) || s.SignedAt != "2026-11-23T05:00:00Z" ||
						s.Annotations["env"] != "prod" || s.SignedDigest != dig.String() || s.DockerReference != ref {
						t.Fatalf("all=%v: signature %+v", all, s)
					}
				}
			}
			// Only one place: each alone still verifies.
			for _, only := range []*Remote{{NoTag: true}, {NoReferrers: true}} {
				o := reg.remote()
				o.NoTag, o.NoReferrers = only.NoTag, only.NoReferrers
				vr, err := o.Verify(ctx, ref+":v1", trusted)
				if err != nil || len(vr.Signatures[0].Sources) != 1 {
					t.Fatalf("noTag=%v: %v %+v", only.NoTag, err, vr)
				}
			}
			// Another key: untrusted.
			_, other := mustKey(t, AlgEd25519)
			vr, err := reg.remote().Verify(ctx, ref+":v1", other)
			if !IsVerificationError(err) || !strings.Contains(err.Error(), "1 untrusted") || vr.Signatures[0].Verified {
				t.Fatalf("untrusted key: %v", err)
			}
			// A second, Ed25519, signer: both listed, the trusted one verifies.
			edKey, edTrusted := mustKey(t, AlgEd25519)
			if _, err := reg.remote().Sign(ctx, ref+":v1", edKey, SignOptions{}); err != nil {
				t.Fatal(err)
			}
			vr, err = reg.remote().Verify(ctx, ref+":v1", edTrusted)
			if err != nil || len(vr.Signatures) != 2 {
				t.Fatalf("two signers: %v %+v", err, vr)
			}
			// Unsigned image: missing.
			ref2, _ := pushRandom(t, reg, "proj/other")
			_, err = reg.remote().Verify(ctx, ref2+":v1", trusted)
			if !IsVerificationError(err) || !strings.Contains(err.Error(), "no signatures found") {
				t.Fatalf("unsigned: %v", err)
			}
			// The first image's signature copied under the second image's
			// .sig tag: verifies cryptographically but names another digest.
			sub2, err := reg.remote().Resolve(ctx, ref2+":v1")
			if err != nil {
				t.Fatal(err)
			}
			sigImg, err := remote.Image(cosignTag(mustDigest(t, ref+"@"+dig.String()), "sig"), reg.remote().options(ctx)...)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(cosignTag(sub2.Ref, "sig"), sigImg, reg.remote().options(ctx)...); err != nil {
				t.Fatal(err)
			}
			_, err = reg.remote().Verify(ctx, ref2+":v1", trusted)
			if !IsVerificationError(err) || !strings.Contains(err.Error(), "wrong digest") {
				t.Fatalf("copied signature: %v", err)
			}
		})
	}
}

func mustDigest(t testing.TB, s string) name.Digest {
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestVerifyBadArtifacts stores malformed signature layers and checks each
// is reported as invalid without aborting verification of the rest.
func TestVerifyBadArtifacts(t *testing.T) {
	ctx := context.Background()
	reg := ggcrRegistry(t)
	ref, dig := pushRandom(t, reg, "proj/bad")
	key, trusted := mustKey(t, "")
	r := reg.remote()
	subj, err := r.Resolve(ctx, ref+":v1")
	if err != nil {
		t.Fatal(err)
	}
	good, _ := NewPayload(ref, dig.String(), nil).Marshal()
	goodSig, _ := SignMessage(key, good)
	notJSON := []byte("not json")
	notJSONSig, _ := SignMessage(key, notJSON)
	wrongType := []byte(`{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + dig.String() + `"},"type":"other"}}`)
	wrongTypeSig, _ := SignMessage(key, wrongType)
	layers := []struct {
		content []byte
		ann     map[string]string
	}{
		{[]byte("x"), map[string]string{}},                                 // no signature annotation
		{[]byte("y"), map[string]string{SignatureAnnotation: "!!!"}},       // not base64
		{notJSON, map[string]string{SignatureAnnotation: b64(notJSONSig)}}, // signed, not JSON
		{wrongType, map[string]string{SignatureAnnotation: b64(wrongTypeSig)}},
		{good, map[string]string{SignatureAnnotation: b64(goodSig)}},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	for _, l := range layers {
		img, _ = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(l.content, SimpleSigningMediaType), Annotations: l.ann})
	}
	if err := remote.Write(cosignTag(subj.Ref, "sig"), img, r.options(ctx)...); err != nil {
		t.Fatal(err)
	}
	vr, err := r.Verify(ctx, ref+":v1", trusted)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for _, s := range vr.Signatures {
		if !s.Verified {
			errs = append(errs, s.Error)
		}
	}
	want := []string{"no dev.cosignproject.cosign/signature annotation", "not base64", "not a simple signing JSON", "critical.type is \"other\""}
	if len(errs) != len(want) {
		t.Fatalf("errors %q", errs)
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			found = found || strings.Contains(e, w)
		}
		if !found {
			t.Errorf("no error containing %q in %q", w, errs)
		}
	}
	js, _ := json.Marshal(vr)
	if !strings.Contains(string(js), `"verified":true`) {
		t.Fatal(string(js))
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestReferrersFlood lists many referrers of one image: verification
// examines at most MaxReferrers and still answers.
func TestReferrersFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	reg := ggcrRegistry(t)
	ref, _ := pushRandom(t, reg, "proj/flood")
	_, trusted := mustKey(t, "")
	r := reg.remote()
	subj, err := r.Resolve(ctx, ref+":v1")
	if err != nil {
		t.Fatal(err)
	}
	key2, _ := mustKey(t, "")
	payload, _ := NewPayload(ref, subj.Ref.DigestStr(), nil).Marshal()
	sig, _ := SignMessage(key2, payload)
	r.NoTag = true
	// One referrer through the normal path uploads the blobs; the rest are
	// manifests that differ only in an annotation.
	if _, err := r.attach(ctx, subj, sigKind, payload, map[string]string{SignatureAnnotation: b64(sig)}); err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte("{}"), SignatureArtifactType)
	cdig, _ := cfg.Digest()
	ldig, _, _ := v1.SHA256(bytes.NewReader(payload))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := 0; i < MaxReferrers+20; i++ {
		g.Go(func() error {
			raw, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": SignatureArtifactType,
				"config":      v1.Descriptor{MediaType: SignatureArtifactType, Digest: cdig, Size: 2},
				"layers":      []v1.Descriptor{{MediaType: SimpleSigningMediaType, Digest: ldig, Size: int64(len(payload)), Annotations: map[string]string{SignatureAnnotation: b64(sig)}}},
				"subject":     subj.Descriptor,
				"annotations": map[string]string{"n": strconv.Itoa(i)}})
			h, _, _ := v1.SHA256(bytes.NewReader(raw))
			// A plain PUT: go-containerregistry's writer would also rewrite
			// the referrers fallback tag for each one.
			req, _ := http.NewRequestWithContext(gctx, http.MethodPut, "http://"+reg.host+"/v2/proj/flood/manifests/"+h.String(), bytes.NewReader(raw))
			req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("PUT referrer: %s", resp.Status)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	vr, err := reg.remote().Verify(ctx, ref+":v1", trusted)
	if !IsVerificationError(err) || len(vr.Signatures) != 1 || len(vr.Signatures[0].Sources) != MaxReferrers {
		t.Fatalf("flood: %v, %d signatures examined", err, len(vr.Signatures))
	}
}

// TestPrepareSharesOneToken: verifying several images of one registry after
// Prepare costs one token request, not one per repository, and gives the
// same results.
func TestPrepareSharesOneToken(t *testing.T) {
	ctx := context.Background()
	reg := moatRegistry(t)
	key, trusted := mustKey(t, "")
	var refs []string
	for _, repo := range []string{"proj/a", "proj/b", "proj/c"} {
		ref, dig := pushRandom(t, reg, repo)
		if _, err := reg.remote().Sign(ctx, ref+":v1", key, SignOptions{}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref+"@"+dig.String())
	}
	for _, prepared := range []bool{false, true} {
		r := reg.remote()
		before := reg.tokens.Load()
		if prepared {
			r.Prepare(ctx, refs)
		}
		for _, ref := range refs {
			if _, err := r.Verify(ctx, ref, trusted); err != nil {
				t.Fatalf("prepared=%v %s: %v", prepared, ref, err)
			}
		}
		n := reg.tokens.Load() - before
		if prepared && n != 1 || !prepared && n != int64(len(refs)) {
			t.Fatalf("prepared=%v: %d token requests", prepared, n)
		}
	}
}
