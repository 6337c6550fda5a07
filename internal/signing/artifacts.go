package signing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// This file lays out signature and attestation artifacts as manifests and
// blobs without registry I/O, for a server that writes them into its own
// storage (scan-on-push attestations signed with the registry key). The
// layout is the one Remote.attach writes: the cosign sha256-<hex>.att tag
// and an OCI 1.1 referrer.

// Blob is a blob an artifact manifest refers to.
type Blob struct {
	Digest  string
	Content []byte
}

// Laid is an artifact manifest ready to store: its content and digest,
// the blobs it refers to (to store first), and, for the cosign tag, the
// tag name.
type Laid struct {
	Tag          string
	Manifest     []byte
	Digest       string
	MediaType    string
	ArtifactType string // the manifest's artifactType, else its config media type
	Subject      string // digest of the subject (referrers only)
	Annotations  map[string]string
	Blobs        []Blob
}

// AttestationTag is cosign's tag for the attestations of digest dgst:
// "sha256-<hex>.att".
func AttestationTag(dgst string) string {
	return strings.Replace(dgst, ":", "-", 1) + "." + attKind.suffix
}

func blobOf(content []byte) Blob {
	h, _, _ := v1.SHA256(bytes.NewReader(content))
	return Blob{Digest: h.String(), Content: content}
}

// LayAttestationTag returns the cosign attestation tag of dgst holding
// art after the layers of prev (the tag's manifest now; nil when there is
// none), less those drop reports true for (e.g. an older version of the
// same attestation). An identical layer is not added twice. Layers are
// stored uncompressed, so the config lists their digests as diff IDs, as
// in the images cosign writes.
func LayAttestationTag(dgst string, prev []byte, art *Artifact, drop func(v1.Descriptor) bool) (*Laid, error) {
	if err := checkDigest(dgst); err != nil {
		return nil, err
	}
	var layers []v1.Descriptor
	if prev != nil {
		var m v1.Manifest
		if err := json.Unmarshal(prev, &m); err != nil {
			return nil, fmt.Errorf("%s: not an image manifest: %w", AttestationTag(dgst), err)
		}
		for _, l := range m.Layers {
			if checkDigest(l.Digest.String()) != nil || l.Size < 0 {
				continue // not a layer anyone can read: leave it out
			}
			if drop == nil || !drop(l) {
				layers = append(layers, l)
			}
		}
	}
	layer := blobOf(art.Content)
	ld := v1.Descriptor{MediaType: types.MediaType(art.MediaType), Size: int64(len(art.Content)), Annotations: art.Annotations}
	ld.Digest, _ = v1.NewHash(layer.Digest)
	dup := false
	for _, l := range layers {
		dup = dup || (l.Digest == ld.Digest && l.Annotations[SignatureAnnotation] == ld.Annotations[SignatureAnnotation])
	}
	if !dup {
		layers = append(layers, ld)
	}
	if len(layers) > MaxSignatures {
		return nil, fmt.Errorf("%s would hold %d entries, more than the %d moat writes", AttestationTag(dgst), len(layers), MaxSignatures)
	}
	cfg := v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
		cfg.History = append(cfg.History, v1.History{})
	}
	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgBlob := blobOf(cfgRaw)
	ch, _ := v1.NewHash(cfgBlob.Digest)
	man := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfgRaw)), Digest: ch}, Layers: layers}
	raw, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	out := &Laid{Tag: AttestationTag(dgst), Manifest: raw, Digest: blobOf(raw).Digest, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: string(types.OCIConfigJSON), Blobs: []Blob{cfgBlob}}
	if !dup {
		out.Blobs = append(out.Blobs, layer)
	}
	return out, nil
}

// LayReferrer returns the OCI 1.1 referrer manifest of art for the image
// subject, with manifest annotations ann added to its creation time.
func LayReferrer(subject v1.Descriptor, art *Artifact, ann map[string]string, created time.Time) (*Laid, error) {
	if err := checkDigest(subject.Digest.String()); err != nil {
		return nil, err
	}
	layer := blobOf(art.Content)
	cfg := blobOf([]byte("{}"))
	lh, _ := v1.NewHash(layer.Digest)
	ch, _ := v1.NewHash(cfg.Digest)
	all := map[string]string{"org.opencontainers.image.created": created.UTC().Format(time.RFC3339)}
	for k, v := range ann {
		all[k] = v
	}
	man := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  art.ArtifactType,
		"config":        v1.Descriptor{MediaType: types.MediaType(art.ArtifactType), Digest: ch, Size: 2},
		"layers":        []v1.Descriptor{{MediaType: types.MediaType(art.MediaType), Digest: lh, Size: int64(len(art.Content)), Annotations: art.Annotations}},
		"subject":       v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		"annotations":   all,
	}
	raw, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	return &Laid{Manifest: raw, Digest: blobOf(raw).Digest, MediaType: string(types.OCIManifestSchema1), ArtifactType: art.ArtifactType,
		Subject: subject.Digest.String(), Annotations: all, Blobs: []Blob{cfg, layer}}, nil
}
