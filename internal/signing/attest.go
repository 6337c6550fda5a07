package signing

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// In-toto and predicate types.
const (
	InTotoPayloadType     = "application/vnd.in-toto+json"
	StatementV1           = "https://in-toto.io/Statement/v1"
	PredicateCycloneDX    = "https://cyclonedx.org/bom"
	PredicateVuln         = "https://cosign.sigstore.dev/attestation/vuln/v1"
	PredicateSLSAv1       = "https://slsa.dev/provenance/v1"
	maxEnvelopeSignatures = 64
	maxStatementSubjects  = 1024
)

// PredicateTypeFor maps moat's --type names (and cosign's) to predicate
// type URIs; anything containing "://" is taken as a URI.
func PredicateTypeFor(t string) (string, error) {
	switch strings.ToLower(t) {
	case "sbom", "cyclonedx":
		return PredicateCycloneDX, nil
	case "vuln":
		return PredicateVuln, nil
	case "provenance", "slsaprovenance1", "slsa":
		return PredicateSLSAv1, nil
	}
	if strings.Contains(t, "://") {
		return t, nil
	}
	return "", fmt.Errorf("unknown attestation type %q (want sbom, vuln, provenance or a predicate type URI)", t)
}

// Statement is an in-toto Statement v1.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject1      `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject1 is an in-toto resource descriptor naming an artifact by digest.
type Subject1 struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// ParseEnvelope decodes a DSSE envelope: JSON, at most MaxEnvelopeSize
// bytes, base64 payload, at least one signature.
func ParseEnvelope(data []byte) (*dsse.Envelope, []byte, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, nil, fmt.Errorf("DSSE envelope: %d bytes, more than the %d allowed", len(data), MaxEnvelopeSize)
	}
	var env dsse.Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&env); err != nil {
		return nil, nil, fmt.Errorf("DSSE envelope: not JSON: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("DSSE envelope: trailing data after the JSON document")
	}
	if env.PayloadType == "" {
		return nil, nil, errors.New("DSSE envelope: no payloadType")
	}
	if len(env.Signatures) == 0 {
		return nil, nil, errors.New("DSSE envelope: no signatures")
	}
	if len(env.Signatures) > maxEnvelopeSignatures {
		return nil, nil, fmt.Errorf("DSSE envelope: %d signatures, more than %d", len(env.Signatures), maxEnvelopeSignatures)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, nil, fmt.Errorf("DSSE envelope: payload is not base64: %w", err)
	}
	return &env, payload, nil
}

// ParseStatement decodes an in-toto statement (v1 or v0.1) and checks that
// it has subjects with digests and a predicate type.
func ParseStatement(payload []byte) (*Statement, error) {
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("in-toto statement: not JSON: %w", err)
	}
	if st.Type != StatementV1 && st.Type != "https://in-toto.io/Statement/v0.1" {
		return nil, fmt.Errorf("in-toto statement: unknown _type %q", st.Type)
	}
	if len(st.Subject) == 0 {
		return nil, errors.New("in-toto statement: no subject")
	}
	if len(st.Subject) > maxStatementSubjects {
		return nil, fmt.Errorf("in-toto statement: %d subjects, more than %d", len(st.Subject), maxStatementSubjects)
	}
	if st.PredicateType == "" {
		return nil, errors.New("in-toto statement: no predicateType")
	}
	return &st, nil
}

// SignEnvelope signs payload as a DSSE envelope (PAE) with key.
func SignEnvelope(key crypto.Signer, payloadType string, payload []byte) ([]byte, error) {
	sig, err := SignMessage(key, dsse.PAE(payloadType, payload))
	if err != nil {
		return nil, err
	}
	env := dsse.Envelope{PayloadType: payloadType, Payload: base64.StdEncoding.EncodeToString(payload),
		Signatures: []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}}}
	return json.Marshal(env)
}

// VerifyEnvelope checks that some signature of env verifies with one of
// keys over the PAE of its payload; it returns that key.
func VerifyEnvelope(env *dsse.Envelope, payload []byte, keys []PublicKey) (*PublicKey, error) {
	pae := dsse.PAE(env.PayloadType, payload)
	for _, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			sig, err = base64.URLEncoding.DecodeString(s.Sig)
		}
		if err != nil {
			continue
		}
		for i := range keys {
			if VerifyMessage(keys[i].Key, pae, sig) == nil {
				return &keys[i], nil
			}
		}
	}
	return nil, ErrBadSignature
}

// AttestOptions are the inputs of Attest.
type AttestOptions struct {
	PredicateType string
	Predicate     json.RawMessage
}

// Attest resolves ref, wraps the predicate in an in-toto Statement v1 whose
// subject is the image digest, signs it as a DSSE envelope and stores it
// as a cosign attestation (sha256-<hex>.att tag) and an OCI 1.1 referrer.
func (r *Remote) Attest(ctx context.Context, ref string, key crypto.Signer, o AttestOptions) (*SignResult, error) {
	if err := checkPredicate(o); err != nil {
		return nil, err
	}
	subj, err := r.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	art, err := NewAttestation(key, subj.Ref.Context().Name(), subj.Ref.DigestStr(), o)
	if err != nil {
		return nil, err
	}
	stored, err := r.attach(ctx, subj, attKind, art.Content, art.Annotations)
	if err != nil {
		return nil, err
	}
	return &SignResult{Image: subj.Ref.Context().Name(), Digest: subj.Ref.DigestStr(),
		Fingerprint: Fingerprint(key.Public()), Stored: *stored}, nil
}

func checkPredicate(o AttestOptions) error {
	if o.PredicateType == "" {
		return errors.New("attest: no predicate type")
	}
	if !json.Valid(o.Predicate) || len(bytes.TrimSpace(o.Predicate)) == 0 || bytes.TrimSpace(o.Predicate)[0] != '{' {
		return errors.New("attest: the predicate must be a JSON object")
	}
	return nil
}

// Artifact is one signature or attestation layer ready to store: its
// content, media type and layer annotations, as cosign lays them out (in the
// sha256-<hex>.sig/.att tag's manifest, or a referrer with ArtifactType).
type Artifact struct {
	Content      []byte
	MediaType    string
	ArtifactType string
	Annotations  map[string]string
}

// NewAttestation builds the signed DSSE envelope of an in-toto Statement v1
// for the image repo@dgst, without any registry I/O (for a server that
// stores it in its own storage, e.g. scan-on-push with the registry key).
func NewAttestation(key crypto.Signer, repo, dgst string, o AttestOptions) (*Artifact, error) {
	if err := checkPredicate(o); err != nil {
		return nil, err
	}
	if err := checkDigest(dgst); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	alg, hexd, _ := strings.Cut(dgst, ":")
	st := Statement{Type: StatementV1, PredicateType: o.PredicateType, Predicate: o.Predicate,
		Subject: []Subject1{{Name: repo, Digest: map[string]string{alg: hexd}}}}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	env, err := SignEnvelope(key, InTotoPayloadType, payload)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return &Artifact{Content: env, MediaType: DSSEMediaType, ArtifactType: AttestationArtifactType,
		Annotations: map[string]string{SignatureAnnotation: "", PredicateTypeAnnotation: o.PredicateType}}, nil
}

// AttestationResult is one attestation found for an image.
type AttestationResult struct {
	SignatureResult
	PredicateType string          `json:"predicateType,omitempty"`
	Predicate     json.RawMessage `json:"predicate,omitempty"`
}

// AttestationsResult is the outcome of VerifyAttestations.
type AttestationsResult struct {
	Image        string              `json:"image"`
	Digest       string              `json:"digest"`
	Verified     bool                `json:"verified"`
	Attestations []AttestationResult `json:"attestations"`
}

// VerifyAttestations finds the attestations of ref and checks each: DSSE
// signature by a trusted key, an in-toto statement whose subject holds the
// image digest, and (when predicateType is not "") that predicate type.
func (r *Remote) VerifyAttestations(ctx context.Context, ref string, keys []PublicKey, predicateType string) (*AttestationsResult, error) {
	if len(keys) == 0 {
		return nil, errors.New("verify-attestation: no trusted keys")
	}
	subj, err := r.subjectFromRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	src, err := r.source(ctx, subj.Ref.Context())
	if err != nil {
		return nil, err
	}
	return VerifyAttestationsIn(ctx, src, subj.Ref.Context().Name(), subj.Ref.DigestStr(), keys, predicateType, r.NoTag, r.NoReferrers)
}

// VerifyAttestationsIn checks the attestations of image@dgst found in src.
func VerifyAttestationsIn(ctx context.Context, src Source, image, dgst string, keys []PublicKey, predicateType string, noTag, noReferrers bool) (*AttestationsResult, error) {
	res := &AttestationsResult{Image: image, Digest: dgst}
	cands, err := collect(ctx, src, dgst, noTag, noReferrers, attKind)
	if err != nil {
		return res, err
	}
	var srs []SignatureResult
	for _, c := range cands {
		ar := checkAttestation(c, dgst, keys)
		if predicateType != "" && ar.PredicateType != predicateType {
			continue // another kind of attestation (per its signed statement when it verified): not asked about
		}
		res.Attestations = append(res.Attestations, ar)
		srs = append(srs, ar.SignatureResult)
		if ar.Verified {
			res.Verified = true
		}
	}
	if !res.Verified {
		what := "attestations"
		if predicateType != "" {
			what += " of type " + predicateType
		}
		return res, &VerificationError{Reason: failureReason(res.Image+"@"+res.Digest, what, srs)}
	}
	return res, nil
}

func checkAttestation(c *candidate, digest string, keys []PublicKey) AttestationResult {
	ar := AttestationResult{SignatureResult: SignatureResult{Sources: c.sources, Layer: c.layer.Digest.String()}}
	ar.PredicateType = c.annotations[PredicateTypeAnnotation]
	if c.err != nil {
		ar.Error = c.err.Error()
		return ar
	}
	content := c.content
	if isBundleType(string(c.layer.MediaType)) {
		var err error
		if content, err = ParseBundle(content); err != nil {
			ar.Error = "invalid: " + err.Error()
			return ar
		}
	}
	env, payload, err := ParseEnvelope(content)
	if err != nil {
		ar.Error = "invalid: " + err.Error()
		return ar
	}
	k, err := VerifyEnvelope(env, payload, keys)
	if err != nil {
		ar.Error = "untrusted: the envelope does not verify with any trusted key"
		return ar
	}
	ar.Key, ar.KeySource = k.Fingerprint, k.Source
	if env.PayloadType != InTotoPayloadType {
		ar.Error = fmt.Sprintf("invalid: payloadType %q, want %q", env.PayloadType, InTotoPayloadType)
		return ar
	}
	st, err := ParseStatement(payload)
	if err != nil {
		ar.Error = "invalid: " + err.Error()
		return ar
	}
	ar.PredicateType = st.PredicateType
	alg, want, _ := strings.Cut(digest, ":")
	found := false
	var names []string
	for _, s := range st.Subject {
		if v := s.Digest[alg]; v != "" {
			if _, err := hex.DecodeString(v); err == nil && strings.EqualFold(v, want) {
				found = true
				ar.DockerReference = s.Name
			}
			names = append(names, alg+":"+v)
		}
	}
	if !found {
		ar.Error = fmt.Sprintf("wrong digest: the statement's subjects %v do not include the image %s", names, digest)
		return ar
	}
	ar.SignedDigest = digest
	ar.Predicate = st.Predicate
	ar.Verified = true
	return ar
}
