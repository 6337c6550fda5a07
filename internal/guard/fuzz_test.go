package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// FuzzSettingsUpdate feeds arbitrary REST bodies to the settings update:
// it never panics, and what it accepts has a valid severity and valid
// exceptions.
func FuzzSettingsUpdate(f *testing.F) {
	f.Add([]byte(`{"block_severity":"critical","block_unscanned":true}`))
	f.Add([]byte(`{"add_exceptions":[{"id":"CVE-1","reason":"r","expires":"2030-01-01"}]}`))
	f.Add([]byte(`{"exceptions":[{"id":"","reason":"","expires":"x"}],"remove_exceptions":["CVE-1"]}`))
	f.Add([]byte(`{"block_severity":"severe"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var u SettingsUpdate
		if json.NewDecoder(bytes.NewReader(body)).Decode(&u) != nil {
			return
		}
		s := &Settings{Project: "p", Exceptions: []Exception{{ID: "CVE-1", Reason: "r", Expires: "2030-01-01"}}}
		if err := applyUpdate(s, u, time.Unix(1700000000, 0)); err != nil {
			return
		}
		if _, err := exceptionRules(s.Exceptions, time.Now()); err != nil {
			t.Fatalf("accepted invalid exceptions: %v", err)
		}
		switch s.BlockSeverity {
		case "", "CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN":
		default:
			t.Fatalf("accepted severity %q", s.BlockSeverity)
		}
	})
}

// FuzzManifestPushed feeds arbitrary manifest content (as pushed, already
// size-checked by the registry) to the push notifier: it never panics.
func FuzzManifestPushed(f *testing.F) {
	f.Add("application/vnd.oci.image.index.v1+json", []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add("application/vnd.oci.image.index.v1+json", []byte(`{"manifests":null}`))
	f.Add("application/vnd.oci.image.manifest.v1+json", []byte(`{}`))
	e := start(f, "", nil)
	f.Fuzz(func(t *testing.T, mt string, content []byte) {
		e.g.ManifestPushed(context.Background(), "team/fuzz", 1, &store.Manifest{Digest: digestOf(content), MediaType: mt, Content: content,
			ArtifactType: "application/vnd.oci.image.config.v1+json"})
	})
}
