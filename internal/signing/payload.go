package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// SimpleSigningType is the critical.type of a cosign image signature.
const SimpleSigningType = "cosign container image signature"

// MaxPayloadSize bounds a signature payload or DSSE envelope read from a
// registry (cosign's own default limit is 128 MiB for attestations; moat is
// stricter for signatures and reads attestations up to MaxEnvelopeSize).
const (
	MaxPayloadSize  = 1 << 20
	MaxEnvelopeSize = 32 << 20
)

// Payload is cosign's "simple signing" payload: what an image signature
// signs.
type Payload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// NewPayload returns the payload for an image at repo (registry/repository,
// no tag) with manifest digest dgst and optional annotations.
func NewPayload(repo, dgst string, annotations map[string]string) *Payload {
	p := &Payload{}
	p.Critical.Identity.DockerReference = repo
	p.Critical.Image.DockerManifestDigest = dgst
	p.Critical.Type = SimpleSigningType
	if len(annotations) > 0 {
		p.Optional = map[string]any{}
		for k, v := range annotations {
			p.Optional[k] = v
		}
	}
	return p
}

// Marshal encodes the payload as cosign does (encoding/json, sorted keys).
func (p *Payload) Marshal() ([]byte, error) { return json.Marshal(p) }

// ParsePayload decodes and checks a simple signing payload: it must be a
// JSON object of at most MaxPayloadSize bytes with the cosign type and a
// well-formed manifest digest.
func ParsePayload(data []byte) (*Payload, error) {
	if len(data) > MaxPayloadSize {
		return nil, fmt.Errorf("signature payload: %d bytes, more than the %d allowed", len(data), MaxPayloadSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("signature payload: empty")
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("signature payload: not a simple signing JSON document: %w", err)
	}
	if dec.More() {
		return nil, errors.New("signature payload: trailing data after the JSON document")
	}
	if p.Critical.Type != SimpleSigningType {
		return nil, fmt.Errorf("signature payload: critical.type is %q, want %q", p.Critical.Type, SimpleSigningType)
	}
	if err := checkDigest(p.Critical.Image.DockerManifestDigest); err != nil {
		return nil, fmt.Errorf("signature payload: critical.image.docker-manifest-digest: %w", err)
	}
	return &p, nil
}

// Annotations returns the optional section as strings (non-string values
// JSON-encoded).
func (p *Payload) Annotations() map[string]string {
	if len(p.Optional) == 0 {
		return nil
	}
	out := make(map[string]string, len(p.Optional))
	for k, v := range p.Optional {
		if s, ok := v.(string); ok {
			out[k] = s
			continue
		}
		b, _ := json.Marshal(v)
		out[k] = string(b)
	}
	return out
}

// checkDigest accepts "sha256:<64 hex>" and "sha512:<128 hex>".
func checkDigest(d string) error {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok {
		return fmt.Errorf("%q is not a digest (want sha256:<hex>)", d)
	}
	want := 0
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	default:
		return fmt.Errorf("%q: unsupported digest algorithm %q", d, alg)
	}
	if len(hex) != want {
		return fmt.Errorf("%q: %s digest must have %d hex characters", d, alg, want)
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%q: not lowercase hex", d)
		}
	}
	return nil
}
