package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// client speaks the Docker token flow like real clients: it sends a
// request, and on a Bearer challenge fetches a token for the challenged
// scope (with basic credentials unless anonymous) and retries.
type client struct {
	base       string
	user, pass string
	tokens     map[string]string // scope -> token
}

func newClient(base, user, pass string) *client {
	return &client{base: base, user: user, pass: pass, tokens: map[string]string{}}
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

func (c *client) do(t testing.TB, method, path string, body []byte, hdr map[string]string) *http.Response {
	t.Helper()
	send := func(tok string) *http.Response {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, c.base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := send("")
	if resp.StatusCode != http.StatusUnauthorized {
		return resp
	}
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, "Bearer ") {
		return resp
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(ch, -1) {
		params[m[1]] = m[2]
	}
	q := url.Values{"service": {params["service"]}}
	if params["scope"] != "" {
		q.Set("scope", params["scope"])
	}
	treq, _ := http.NewRequest("GET", params["realm"]+"?"+q.Encode(), nil)
	if c.user != "" {
		treq.SetBasicAuth(c.user, c.pass)
	}
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil {
		t.Fatal(err)
	}
	defer tresp.Body.Close()
	if tresp.StatusCode != 200 {
		resp.Body.Close()
		return tresp // 401 from the token endpoint
	}
	var tk struct {
		Token string `json:"token"`
	}
	json.NewDecoder(tresp.Body).Decode(&tk)
	resp.Body.Close()
	return send(tk.Token)
}

func (c *client) status(t testing.TB, method, path string, body []byte, hdr map[string]string) int {
	t.Helper()
	resp := c.do(t, method, path, body, hdr)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func sha(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// pushImage pushes a one-layer image and returns the manifest and its digest.
func (c *client) pushImage(t testing.TB, repo, tag string, layer []byte) ([]byte, string) {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	for _, b := range [][]byte{config, layer} {
		if st := c.status(t, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+sha(b), b, map[string]string{"Content-Type": "application/octet-stream"}); st != 201 {
			t.Fatalf("push blob to %s: %d", repo, st)
		}
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		mtOCIManifest, sha(config), len(config), sha(layer), len(layer)))
	if st := c.status(t, "PUT", "/v2/"+repo+"/manifests/"+tag, m, map[string]string{"Content-Type": mtOCIManifest}); st != 201 {
		t.Fatalf("push manifest %s:%s: %d", repo, tag, st)
	}
	return m, sha(m)
}

var (
	newRequest = http.NewRequest
	httpDo     = http.DefaultClient.Do
)
