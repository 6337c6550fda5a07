package signing

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func testArtifact(t testing.TB, pred string) *Artifact {
	k, _ := GenerateKey("")
	art, err := NewAttestation(k, "team/app", "sha256:"+hex64, AttestOptions{PredicateType: PredicateVuln, Predicate: json.RawMessage(pred)})
	if err != nil {
		t.Fatal(err)
	}
	return art
}

func TestLayAttestationTag(t *testing.T) {
	dg := "sha256:" + hex64
	a1, a2 := testArtifact(t, `{"n":1}`), testArtifact(t, `{"n":2}`)
	first, err := LayAttestationTag(dg, nil, a1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Tag != "sha256-"+hex64+".att" || len(first.Blobs) != 2 {
		t.Fatalf("first: %+v", first)
	}
	var m v1.Manifest
	if err := json.Unmarshal(first.Manifest, &m); err != nil || len(m.Layers) != 1 || m.Layers[0].MediaType != DSSEMediaType {
		t.Fatalf("manifest: %v %s", err, first.Manifest)
	}
	var cfg v1.ConfigFile
	json.Unmarshal(first.Blobs[0].Content, &cfg)
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest || m.Config.Digest.String() != first.Blobs[0].Digest {
		t.Fatalf("config: %s", first.Blobs[0].Content)
	}
	// Appending keeps earlier layers; the same layer is not added twice;
	// drop removes what it names.
	second, _ := LayAttestationTag(dg, first.Manifest, a2, nil)
	json.Unmarshal(second.Manifest, &m)
	if len(m.Layers) != 2 {
		t.Fatalf("append: %d layers", len(m.Layers))
	}
	again, _ := LayAttestationTag(dg, second.Manifest, a2, nil)
	if json.Unmarshal(again.Manifest, &m); len(m.Layers) != 2 || len(again.Blobs) != 1 {
		t.Fatalf("duplicate: %d layers, %d blobs", len(m.Layers), len(again.Blobs))
	}
	l1 := m.Layers[0].Digest
	replaced, _ := LayAttestationTag(dg, second.Manifest, a1, func(d v1.Descriptor) bool { return d.Digest == l1 })
	if json.Unmarshal(replaced.Manifest, &m); len(m.Layers) != 2 || m.Layers[1].Digest != l1 {
		t.Fatalf("replace: %+v", m.Layers)
	}
	// Bad input.
	if _, err := LayAttestationTag(dg, []byte("{"), a1, nil); err == nil || !strings.Contains(err.Error(), "not an image manifest") {
		t.Fatalf("malformed tag: %v", err)
	}
	if _, err := LayAttestationTag("sha256:short", nil, a1, nil); err == nil {
		t.Fatal("bad digest accepted")
	}

	h, _ := v1.NewHash(dg)
	ref, err := LayReferrer(v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: h, Size: 10}, a1, map[string]string{"k": "v"}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if json.Unmarshal(ref.Manifest, &m); m.Subject == nil || m.Subject.Digest != h || ref.ArtifactType != AttestationArtifactType || ref.Annotations["k"] != "v" || ref.Subject != dg {
		t.Fatalf("referrer: %+v %s", ref, ref.Manifest)
	}
}

// FuzzLayAttestationTag: the current cosign tag manifest comes from the
// registry (anyone with push rights writes it): never a panic, and the
// result always holds the new layer.
func FuzzLayAttestationTag(f *testing.F) {
	a := testArtifact(f, `{"n":1}`)
	first, _ := LayAttestationTag("sha256:"+hex64, nil, a, nil)
	f.Add(first.Manifest)
	f.Add([]byte(`{"layers":[{"digest":"sha256:00"}]}`))
	f.Add([]byte(`{"layers":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, prev []byte) {
		out, err := LayAttestationTag("sha256:"+hex64, prev, a, func(d v1.Descriptor) bool { return d.Annotations["x"] == "y" })
		if err != nil {
			return
		}
		var m v1.Manifest
		if err := json.Unmarshal(out.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range m.Layers {
			found = found || l.Digest.String() == blobOf(a.Content).Digest
		}
		if !found {
			t.Fatal("new layer missing")
		}
	})
}
