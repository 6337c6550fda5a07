package signing

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SignedAtAnnotation is the optional payload entry in which moat records
// when it signed (RFC 3339, UTC). It is part of the signed payload, so it
// is the signer's own claim, not a trusted timestamp.
const SignedAtAnnotation = "moat.dev/signed-at"

// SignOptions are the choices of Sign.
type SignOptions struct {
	Annotations map[string]string
	// NoTimestamp leaves SignedAtAnnotation out of the payload.
	NoTimestamp bool
	Now         func() time.Time
}

// SignResult says what was signed and where the signature went.
type SignResult struct {
	Image       string `json:"image"`
	Digest      string `json:"digest"`
	Fingerprint string `json:"key"`
	Stored
}

// Sign resolves ref to its manifest digest, signs the cosign simple
// signing payload for it with key and stores the signature both as the
// cosign sha256-<hex>.sig tag and as an OCI 1.1 referrer.
func (r *Remote) Sign(ctx context.Context, ref string, key crypto.Signer, o SignOptions) (*SignResult, error) {
	subj, err := r.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{}
	for k, v := range o.Annotations {
		ann[k] = v
	}
	if !o.NoTimestamp {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		ann[SignedAtAnnotation] = now().UTC().Format(time.RFC3339)
	}
	art, err := NewSignature(key, subj.Ref.Context().Name(), subj.Ref.DigestStr(), ann)
	if err != nil {
		return nil, err
	}
	st, err := r.attach(ctx, subj, sigKind, art.Content, art.Annotations)
	if err != nil {
		return nil, err
	}
	return &SignResult{Image: subj.Ref.Context().Name(), Digest: subj.Ref.DigestStr(),
		Fingerprint: Fingerprint(key.Public()), Stored: *st}, nil
}

// NewSignature builds the cosign signature of the image repo@dgst (the
// simple signing payload with the given annotations, signed with key),
// without any registry I/O.
func NewSignature(key crypto.Signer, repo, dgst string, annotations map[string]string) (*Artifact, error) {
	if err := checkDigest(dgst); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	payload, err := NewPayload(repo, dgst, annotations).Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := SignMessage(key, payload)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return &Artifact{Content: payload, MediaType: SimpleSigningMediaType, ArtifactType: SignatureArtifactType,
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}}, nil
}

// SignatureResult is one signature found for an image and what checking it
// gave.
type SignatureResult struct {
	Sources         []string          `json:"sources"`
	Layer           string            `json:"layer"`
	Verified        bool              `json:"verified"`
	Key             string            `json:"key,omitempty"`       // fingerprint of the key that verified it
	KeySource       string            `json:"keySource,omitempty"` // file the key came from
	DockerReference string            `json:"dockerReference,omitempty"`
	SignedDigest    string            `json:"signedDigest,omitempty"`
	SignedAt        string            `json:"signedAt,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	Error           string            `json:"error,omitempty"`
}

// VerifyResult is the outcome of verifying one image.
type VerifyResult struct {
	Image      string            `json:"image"`
	Digest     string            `json:"digest"`
	Verified   bool              `json:"verified"`
	Signatures []SignatureResult `json:"signatures"`
}

// VerificationError means verification ran and found no acceptable
// signature (as opposed to an error reaching the registry).
type VerificationError struct{ Reason string }

func (e *VerificationError) Error() string { return e.Reason }

// IsVerificationError reports whether err is a *VerificationError.
func IsVerificationError(err error) bool {
	var v *VerificationError
	return errors.As(err, &v)
}

// Verify fetches the signatures of ref and checks each offline against the
// trusted keys: the signature must verify with one of them and the payload
// must name the image's digest. It reads the cosign tag, and the referrers
// API too when the tag holds no valid signature (or always, with All). It
// returns the result and a *VerificationError when no signature passes.
func (r *Remote) Verify(ctx context.Context, ref string, keys []PublicKey) (*VerifyResult, error) {
	if len(keys) == 0 {
		return nil, errors.New("verify: no trusted keys")
	}
	subj, err := r.subjectFromRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	src, err := r.source(ctx, subj.Ref.Context())
	if err != nil {
		return nil, err
	}
	image, dgst := subj.Ref.Context().Name(), subj.Ref.DigestStr()
	if !r.All && !r.NoTag && !r.NoReferrers {
		// The cosign tag first; the referrers API only when it holds no
		// valid signature.
		res, err := VerifySignatures(ctx, src, image, dgst, keys, false, true)
		if err == nil && res.Verified {
			return res, nil
		}
		if err != nil && !IsVerificationError(err) {
			return res, err
		}
	}
	return VerifySignatures(ctx, src, image, dgst, keys, r.NoTag, r.NoReferrers)
}

// VerifySignatures checks the signatures of the image image@dgst found in
// src (the cosign tag unless noTag, the referrers unless noReferrers).
func VerifySignatures(ctx context.Context, src Source, image, dgst string, keys []PublicKey, noTag, noReferrers bool) (*VerifyResult, error) {
	res := &VerifyResult{Image: image, Digest: dgst}
	cands, err := collect(ctx, src, dgst, noTag, noReferrers, sigKind)
	if err != nil {
		return res, err
	}
	for _, c := range cands {
		sr := checkSignature(c, dgst, keys)
		res.Signatures = append(res.Signatures, sr)
		if sr.Verified {
			res.Verified = true
		}
	}
	if !res.Verified {
		return res, &VerificationError{Reason: failureReason(res.Image+"@"+res.Digest, "signatures", res.Signatures)}
	}
	return res, nil
}

func checkSignature(c *candidate, digest string, keys []PublicKey) SignatureResult {
	if isBundleType(string(c.layer.MediaType)) {
		return checkBundleSignature(c, digest, keys)
	}
	sr := SignatureResult{Sources: c.sources, Layer: c.layer.Digest.String()}
	if c.err != nil {
		sr.Error = c.err.Error()
		return sr
	}
	b64, ok := c.annotations[SignatureAnnotation]
	if !ok || b64 == "" {
		sr.Error = "invalid: the layer has no " + SignatureAnnotation + " annotation"
		return sr
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		sr.Error = "invalid: signature annotation is not base64: " + err.Error()
		return sr
	}
	var k *PublicKey
	for i := range keys {
		if VerifyMessage(keys[i].Key, c.content, sig) == nil {
			k = &keys[i]
			break
		}
	}
	if k == nil {
		sr.Error = "untrusted: the signature does not verify with any trusted key"
		return sr
	}
	sr.Key, sr.KeySource = k.Fingerprint, k.Source
	p, err := ParsePayload(c.content)
	if err != nil {
		sr.Error = "invalid: " + err.Error()
		return sr
	}
	sr.DockerReference = p.Critical.Identity.DockerReference
	sr.SignedDigest = p.Critical.Image.DockerManifestDigest
	sr.Annotations = p.Annotations()
	if t, ok := sr.Annotations[SignedAtAnnotation]; ok {
		sr.SignedAt = t
		delete(sr.Annotations, SignedAtAnnotation)
	}
	if sr.SignedDigest != digest {
		sr.Error = fmt.Sprintf("wrong digest: the signature is for %s, not the image %s", sr.SignedDigest, digest)
		return sr
	}
	sr.Verified = true
	return sr
}

// failureReason summarises why no signature passed.
func failureReason(image, what string, rs []SignatureResult) string {
	if len(rs) == 0 {
		return fmt.Sprintf("no %s found for %s", what, image)
	}
	counts := map[string]int{}
	for _, s := range rs {
		cls, _, _ := strings.Cut(s.Error, ":")
		counts[cls]++
	}
	var parts []string
	for _, cls := range []string{"untrusted", "wrong digest", "wrong predicate type", "invalid"} {
		if n := counts[cls]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, cls))
			delete(counts, cls)
		}
	}
	other := 0
	for _, n := range counts {
		other += n
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d unreadable", other))
	}
	return fmt.Sprintf("no valid %s for %s: %d found (%s)", what, image, len(rs), strings.Join(parts, ", "))
}
