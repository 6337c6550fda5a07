package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Sigstore bundle types: cosign --new-bundle-format (and cosign v3 by
// default) stores signatures and attestations as referrers whose single
// layer is a Sigstore bundle holding a DSSE envelope; a signature is an
// in-toto statement of predicate type CosignSignPredicateType about the
// image digest.
const (
	CosignSignPredicateType       = "https://sigstore.dev/cosign/sign/v1"
	BundlePredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	emptyMediaType                = "application/vnd.oci.empty.v1+json"
)

func isBundleType(t string) bool {
	return strings.HasPrefix(t, "application/vnd.dev.sigstore.bundle")
}

// ParseBundle extracts the DSSE envelope of a Sigstore bundle (JSON, at
// most MaxEnvelopeSize bytes). Bundles with a message signature instead
// (blob signing) are refused: no cosign image signature uses them.
func ParseBundle(data []byte) ([]byte, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("sigstore bundle: %d bytes, more than the %d allowed", len(data), MaxEnvelopeSize)
	}
	var b struct {
		MediaType        string          `json:"mediaType"`
		DSSEEnvelope     json.RawMessage `json:"dsseEnvelope"`
		MessageSignature json.RawMessage `json:"messageSignature"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("sigstore bundle: not JSON: %w", err)
	}
	if !isBundleType(b.MediaType) {
		return nil, fmt.Errorf("sigstore bundle: mediaType %q is not a Sigstore bundle", b.MediaType)
	}
	switch {
	case len(b.DSSEEnvelope) > 0 && !bytes.Equal(b.DSSEEnvelope, []byte("null")):
		return b.DSSEEnvelope, nil
	case len(b.MessageSignature) > 0:
		return nil, errors.New("sigstore bundle: message-signature bundles are not used for images and are not supported")
	}
	return nil, errors.New("sigstore bundle: no dsseEnvelope")
}

// checkBundleSignature verifies a bundle-format image signature: the DSSE
// envelope by a trusted key, over a statement of the cosign sign predicate
// type whose subject is the image digest.
func checkBundleSignature(c *candidate, digest string, keys []PublicKey) SignatureResult {
	ar := checkAttestation(c, digest, keys)
	sr := ar.SignatureResult
	if sr.Verified && ar.PredicateType != CosignSignPredicateType {
		sr.Verified = false
		sr.Error = fmt.Sprintf("invalid: bundle statement has predicate type %q, not %q", ar.PredicateType, CosignSignPredicateType)
	}
	return sr
}
