package registry

import (
	"strings"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	f.Add(mtOCIManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1},"layers":[]}`))
	f.Add(mtOCIIndex, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha512:00","size":-1}]}`))
	f.Add(mtDockerManifest, []byte(`{"schemaVersion":2,"subject":{}}`))
	f.Add("text/plain", []byte(`[]`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		m, err := ParseManifest(ct, body)
		if err == nil {
			if m.SchemaVersion != 2 {
				t.Fatal("accepted schemaVersion != 2")
			}
			if !isIndex(ct) && m.Config == nil {
				t.Fatal("accepted image manifest without config")
			}
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/x", "/v2/_catalog", "/v2/a/tags/list", "/v2/a/referrers/sha256:x", "/v2//blobs/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, ok := parsePath(p)
		if ok && rt.name != "" && ValidateName(rt.name) == nil {
			if strings.Contains(rt.name, "..") || strings.HasPrefix(rt.name, "/") {
				t.Fatalf("unsafe name accepted: %q", rt.name)
			}
		}
	})
}

func FuzzContentRange(f *testing.F) {
	f.Add("0-99")
	f.Add("bytes 5-10/100")
	f.Add("9-1")
	f.Fuzz(func(t *testing.T, s string) {
		a, b, err := parseContentRange(s)
		if err == nil && (a < 0 || b < a) {
			t.Fatalf("bad range accepted: %q", s)
		}
	})
}
