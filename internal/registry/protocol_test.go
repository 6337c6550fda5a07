package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

func errCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var e struct {
		Errors []apiError `json:"errors"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	if len(e.Errors) == 0 {
		return ""
	}
	if e.Errors[0].Message == "" {
		t.Errorf("error %s without a message", e.Errors[0].Code)
	}
	return e.Errors[0].Code
}

// TestBadInput sends malformed requests; each must get the spec's error
// code and store nothing.
func TestBadInput(t *testing.T) {
	inst, ts := testRegistry(t, func(o *Options) { o.MaxBlobSize = 1024 })
	c := newClient(ts.URL, "admin", adminPW)
	c.pushImage(t, "lib/app", "v1", []byte("layer"))
	good := []byte("some content")
	octet := map[string]string{"Content-Type": "application/octet-stream"}
	man := func(s string) map[string]string { return map[string]string{"Content-Type": s} }
	cases := []struct {
		name, method, path string
		body               []byte
		hdr                map[string]string
		status             int
		code               string
	}{
		{"digest mismatch", "POST", "/v2/lib/app/blobs/uploads/?digest=" + sha([]byte("other")), good, octet, 400, codeDigestInvalid},
		{"bad digest algorithm", "POST", "/v2/lib/app/blobs/uploads/?digest=md5:abc", good, octet, 400, codeDigestInvalid},
		{"blob over size limit", "POST", "/v2/lib/app/blobs/uploads/?digest=" + sha(make([]byte, 2048)), make([]byte, 2048), octet, 413, codeSizeInvalid},
		{"invalid repository name", "GET", "/v2/Lib/App/manifests/v1", nil, nil, 400, codeNameInvalid},
		{"path traversal in name", "GET", "/v2/lib/../../etc/manifests/v1", nil, nil, 400, codeNameInvalid},
		{"encoded traversal", "GET", "/v2/lib/%2e%2e/manifests/v1", nil, nil, 400, codeNameInvalid},
		{"invalid tag", "PUT", "/v2/lib/app/manifests/-bad", []byte(`{}`), man(mtOCIManifest), 400, codeManifestInvalid},
		{"malformed manifest", "PUT", "/v2/lib/app/manifests/x", []byte(`{"schemaVersion":2,`), man(mtOCIManifest), 400, codeManifestInvalid},
		{"wrong schema version", "PUT", "/v2/lib/app/manifests/x", []byte(`{"schemaVersion":1}`), man(mtOCIManifest), 400, codeManifestInvalid},
		{"unknown media type", "PUT", "/v2/lib/app/manifests/x", []byte(`{"schemaVersion":2}`), man("application/x-unknown"), 400, codeManifestInvalid},
		{"media type mismatch", "PUT", "/v2/lib/app/manifests/x", []byte(`{"schemaVersion":2,"mediaType":"` + mtOCIIndex + `","manifests":[]}`), man(mtOCIManifest), 400, codeManifestInvalid},
		{"missing config blob", "PUT", "/v2/lib/app/manifests/x", []byte(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + sha([]byte("nope")) + `","size":4},"layers":[]}`), man(mtOCIManifest), 400, codeManifestBlobUnknown},
		{"manifest digest mismatch", "PUT", "/v2/lib/app/manifests/" + sha([]byte("x")), []byte(`{"schemaVersion":2,"mediaType":"` + mtOCIIndex + `","manifests":[]}`), man(mtOCIIndex), 400, codeDigestInvalid},
		{"oversized manifest", "PUT", "/v2/lib/app/manifests/big", bytes.Repeat([]byte(" "), 5<<20), man(mtOCIManifest), 413, codeSizeInvalid},
		{"unknown manifest", "GET", "/v2/lib/app/manifests/nope", nil, nil, 404, codeManifestUnknown},
		{"unknown blob", "GET", "/v2/lib/app/blobs/" + sha([]byte("nope")), nil, nil, 404, codeBlobUnknown},
		{"unknown upload", "PATCH", "/v2/lib/app/blobs/uploads/0123456789abcdef0123456789abcdef", good, octet, 404, codeBlobUploadUnknown},
		{"upload id traversal", "PATCH", "/v2/lib/app/blobs/uploads/..%2f..%2fmoat.db", good, octet, 404, codeNameUnknown},
		{"upload id not hex", "PATCH", "/v2/lib/app/blobs/uploads/..", good, octet, 404, codeBlobUploadUnknown},
		{"unknown repository tags", "GET", "/v2/lib/none/tags/list", nil, nil, 404, codeNameUnknown},
		{"bad tag page size", "GET", "/v2/lib/app/tags/list?n=-1", nil, nil, 400, codeUnsupported},
		{"bad referrers digest", "GET", "/v2/lib/app/referrers/sha256:zz", nil, nil, 400, codeDigestInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.do(t, tc.method, tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := errCode(t, resp); got != tc.code {
				t.Errorf("code %q, want %q", got, tc.code)
			}
		})
	}
	// Nothing was stored: one repository, its one tag, and only its two blobs.
	repos, _ := inst.Store.ListRepos(context.Background(), "", 0)
	if strings.Join(repos, ",") != "lib/app" {
		t.Errorf("repositories after bad input: %v", repos)
	}
	r, _ := inst.Store.RepoByName(context.Background(), "lib/app")
	tags, _ := inst.Store.ListTags(context.Background(), r.ID, "", 0)
	if strings.Join(tags, ",") != "v1" {
		t.Errorf("tags after bad input: %v", tags)
	}
	n := 0
	filepath.WalkDir(filepath.Join(inst.UploadDir, ".."), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "/blobs/") {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Errorf("%d blob files stored, want 2", n)
	}
	// Bad or expired tokens.
	for _, tok := range []string{"garbage", "a.b.c", ""} {
		req, _ := http.NewRequest("GET", ts.URL+"/v2/lib/app/tags/list", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, _ := http.DefaultClient.Do(req)
		if resp.StatusCode != 401 || errCode(t, resp) != codeUnauthorized {
			t.Errorf("token %q: status %d", tok, resp.StatusCode)
		}
	}
}

// TestChunkedResumableUpload pushes a blob in chunks with Content-Range,
// checks out-of-order chunks are refused with 416, restarts the registry
// mid-upload and finishes the upload on the new instance.
func TestChunkedResumableUpload(t *testing.T) {
	dir := t.TempDir()
	inst, ts := testRegistry(t, func(o *Options) { o.DataDir = dir })
	c := newClient(ts.URL, "admin", adminPW)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	resp := c.do(t, "POST", "/v2/lib/big/blobs/uploads/", nil, nil)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	if resp.StatusCode != 202 || loc == "" {
		t.Fatalf("start: %d %q", resp.StatusCode, loc)
	}
	patch := func(c *client, from, to int) *http.Response {
		return c.do(t, "PATCH", loc, data[from:to], map[string]string{"Content-Type": "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", from, to-1)})
	}
	resp = patch(c, 0, 4000)
	if resp.StatusCode != 202 || resp.Header.Get("Range") != "0-3999" {
		t.Fatalf("chunk 1: %d %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	resp.Body.Close()
	resp = patch(c, 5000, 6000)
	if resp.StatusCode != 416 {
		t.Fatalf("out-of-order chunk: %d", resp.StatusCode)
	}
	resp.Body.Close()
	// Restart: close the first instance, open a new one on the same data.
	ts.Close()
	inst.Close()
	inst2, ts2 := testRegistry(t, func(o *Options) { o.DataDir = dir })
	c2 := newClient(ts2.URL, "admin", adminPW)
	resp = c2.do(t, "GET", loc, nil, nil)
	if resp.StatusCode != 204 || resp.Header.Get("Range") != "0-3999" {
		t.Fatalf("status after restart: %d %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	resp.Body.Close()
	resp = patch(c2, 4000, 9000)
	resp.Body.Close()
	resp = c2.do(t, "PUT", loc+"?digest="+sha(data), data[9000:], map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != 201 {
		t.Fatalf("finish: %d %s", resp.StatusCode, errCode(t, resp))
	}
	resp.Body.Close()
	// Range request on the stored blob.
	resp = c2.do(t, "GET", "/v2/lib/big/blobs/"+sha(data), nil, map[string]string{"Range": "bytes=10-19"})
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(got) != "0123456789" {
		t.Fatalf("range GET: %d %q", resp.StatusCode, got)
	}
	// The finished session is gone.
	resp = c2.do(t, "GET", loc, nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("finished upload still answers: %d", resp.StatusCode)
	}
	resp.Body.Close()
	ids, _ := inst2.Store.UploadIDs(context.Background())
	if len(ids) != 0 {
		t.Fatalf("upload rows left: %v", ids)
	}
}

// TestImmutableTagsAndQuota checks per-project options.
func TestImmutableTagsAndQuota(t *testing.T) {
	inst, ts := testRegistry(t)
	ctx := context.Background()
	inst.Store.CreateProject(ctx, store.Project{Name: "frozen", ImmutableTags: true})
	inst.Store.CreateProject(ctx, store.Project{Name: "small", QuotaBytes: 300})
	c := newClient(ts.URL, "admin", adminPW)
	_, d1 := c.pushImage(t, "frozen/app", "v1", []byte("one"))
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	// Moving v1 to another manifest is denied.
	layer := []byte("two")
	c.status(t, "POST", "/v2/frozen/app/blobs/uploads/?digest="+sha(layer), layer, nil)
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":3}]}`, mtOCIManifest, sha(config), len(config), sha(layer)))
	resp := c.do(t, "PUT", "/v2/frozen/app/manifests/v1", m, map[string]string{"Content-Type": mtOCIManifest})
	if resp.StatusCode != 403 || errCode(t, resp) != codeDenied {
		t.Fatalf("moving an immutable tag: %d", resp.StatusCode)
	}
	if st := c.status(t, "DELETE", "/v2/frozen/app/manifests/v1", nil, nil); st != 403 {
		t.Fatalf("deleting an immutable tag: %d", st)
	}
	if st := c.status(t, "DELETE", "/v2/frozen/app/manifests/"+d1, nil, nil); st != 403 {
		t.Fatalf("deleting a manifest with an immutable tag: %d", st)
	}
	// Re-pushing the same content under the same tag is fine.
	c.pushImage(t, "frozen/app", "v1", []byte("one"))
	// New tags are fine.
	if st := c.status(t, "PUT", "/v2/frozen/app/manifests/v2", m, map[string]string{"Content-Type": mtOCIManifest}); st != 201 {
		t.Fatalf("new tag in immutable project: %d", st)
	}
	// Quota: 300 bytes; a 200-byte blob fits, a second one does not.
	b1, b2 := bytes.Repeat([]byte("a"), 200), bytes.Repeat([]byte("b"), 200)
	if st := c.status(t, "POST", "/v2/small/app/blobs/uploads/?digest="+sha(b1), b1, nil); st != 201 {
		t.Fatalf("blob within quota: %d", st)
	}
	resp = c.do(t, "POST", "/v2/small/app/blobs/uploads/?digest="+sha(b2), b2, nil)
	if resp.StatusCode != 403 || errCode(t, resp) != codeDenied {
		t.Fatalf("blob over quota: %d", resp.StatusCode)
	}
	if st := c.status(t, "HEAD", "/v2/small/app/blobs/"+sha(b2), nil, nil); st != 404 {
		t.Fatalf("over-quota blob visible: %d", st)
	}
}

// TestAuditEvents checks pushes, pulls, deletes and logins are recorded
// with actor, repository, digest and address.
func TestAuditEvents(t *testing.T) {
	inst, ts := testRegistry(t)
	addUser(t, inst.Store, "dev", "pw", "team", auth.RoleOwner)
	c := newClient(ts.URL, "dev", "pw")
	_, d := c.pushImage(t, "team/app", "v1", []byte("l"))
	c.status(t, "GET", "/v2/team/app/manifests/v1", nil, nil)
	c.status(t, "DELETE", "/v2/team/app/manifests/v1", nil, nil)
	bad := newClient(ts.URL, "dev", "wrong")
	bad.status(t, "GET", "/v2/team/app/manifests/v1", nil, nil)
	inst.Audit.Flush()
	evs, err := inst.Store.ListEvents(context.Background(), store.EventFilter{Actor: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		key := fmt.Sprintf("%s/%v", e.Action, e.Allowed)
		seen[key] = true
		if e.RemoteAddr != "127.0.0.1" || e.Time.IsZero() {
			t.Errorf("event without address or time: %+v", e)
		}
		if e.Action == "pull" && (e.Repository != "team/app" || e.Digest != d || e.Tag != "v1") {
			t.Errorf("pull event: %+v", e)
		}
	}
	for _, want := range []string{"login/true", "push/true", "pull/true", "delete/true", "login/false"} {
		if !seen[want] {
			t.Errorf("no %s event in %v", want, seen)
		}
	}
}

// TestPagination checks n/last pagination and Link headers on tag lists
// and the catalog.
func TestPagination(t *testing.T) {
	_, ts := testRegistry(t)
	c := newClient(ts.URL, "admin", adminPW)
	for _, repo := range []string{"a/one", "a/two", "b/three"} {
		for _, tag := range []string{"t1", "t2", "t3"} {
			c.pushImage(t, repo, tag, []byte("x"))
		}
	}
	list := func(path string) (map[string][]string, string) {
		resp := c.do(t, "GET", path, nil, nil)
		defer resp.Body.Close()
		var v map[string][]string
		raw, _ := io.ReadAll(resp.Body)
		var generic map[string]any
		json.Unmarshal(raw, &generic)
		v = map[string][]string{}
		for k, x := range generic {
			if arr, ok := x.([]any); ok {
				for _, s := range arr {
					v[k] = append(v[k], s.(string))
				}
			}
		}
		return v, resp.Header.Get("Link")
	}
	v, link := list("/v2/a/one/tags/list?n=2")
	if strings.Join(v["tags"], ",") != "t1,t2" || !strings.Contains(link, "last=t2") || !strings.Contains(link, `rel="next"`) {
		t.Fatalf("page 1: %v %q", v, link)
	}
	v, link = list("/v2/a/one/tags/list?n=2&last=t2")
	if strings.Join(v["tags"], ",") != "t3" || link != "" {
		t.Fatalf("page 2: %v %q", v, link)
	}
	v, _ = list("/v2/a/one/tags/list?n=0")
	if len(v["tags"]) != 0 {
		t.Fatalf("n=0: %v", v)
	}
	v, link = list("/v2/_catalog?n=2")
	if strings.Join(v["repositories"], ",") != "a/one,a/two" || !strings.Contains(link, "last=a%2Ftwo") {
		t.Fatalf("catalog page 1: %v %q", v, link)
	}
	v, link = list("/v2/_catalog?n=2&last=a/two")
	if strings.Join(v["repositories"], ",") != "b/three" || link != "" {
		t.Fatalf("catalog page 2: %v %q", v, link)
	}
}

// TestStrictManifests: by default a manifest may reference layers that were
// not pushed (OCI 1.1 sparse manifests); with StrictManifests it may not.
func TestStrictManifests(t *testing.T) {
	for _, strict := range []bool{false, true} {
		_, ts := testRegistry(t, func(o *Options) { o.StrictManifests = strict })
		c := newClient(ts.URL, "admin", adminPW)
		config := []byte(`{}`)
		c.status(t, "POST", "/v2/lib/app/blobs/uploads/?digest="+sha(config), config, nil)
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":7}]}`,
			mtOCIManifest, sha(config), sha([]byte("missing"))))
		resp := c.do(t, "PUT", "/v2/lib/app/manifests/v1", m, map[string]string{"Content-Type": mtOCIManifest})
		code := errCode(t, resp)
		if strict && (resp.StatusCode != 400 || code != codeManifestBlobUnknown) {
			t.Errorf("strict: %d %s", resp.StatusCode, code)
		}
		if !strict && resp.StatusCode != 201 {
			t.Errorf("sparse manifest refused: %d %s", resp.StatusCode, code)
		}
	}
}
