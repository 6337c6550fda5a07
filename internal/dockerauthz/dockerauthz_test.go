package dockerauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/dockerauthz"
	"github.com/moat-dev/moat/internal/policy"
)

func plugin(t testing.TB) *dockerauthz.Plugin {
	pol, err := policy.Parse("policy.yaml", []byte(e2ePolicy))
	if err != nil {
		t.Fatal(err)
	}
	p := &dockerauthz.Plugin{}
	p.SetPolicy(pol)
	return p
}

func call(t testing.TB, p *dockerauthz.Plugin, path string, body []byte) map[string]any {
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("POST", path, bytes.NewReader(body)))
	if ct := rec.Header().Get("Content-Type"); ct != "application/vnd.docker.plugins.v1.2+json" {
		t.Fatalf("content type %q", ct)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body.String())
	}
	return out
}

func authzReq(method, uri string, body string) []byte {
	b, _ := json.Marshal(dockerauthz.Request{RequestMethod: method, RequestURI: uri, RequestBody: []byte(body)})
	return b
}

func TestProtocol(t *testing.T) {
	p := plugin(t)
	if out := call(t, p, "/Plugin.Activate", nil); out["Implements"].([]any)[0] != "authz" {
		t.Fatalf("activate: %v", out)
	}
	if out := call(t, p, "/AuthZPlugin.AuthZRes", authzReq("GET", "/v1.47/info", "")); out["Allow"] != true {
		t.Fatalf("response phase: %v", out)
	}
	if out := call(t, p, "/AuthZPlugin.AuthZReq", []byte("{nope")); out["Allow"] != false || !strings.Contains(out["Err"].(string), "malformed authorization request") {
		t.Fatalf("malformed: %v", out)
	}
	for _, c := range []struct {
		method, uri, body string
		allow             bool
		msg               string
	}{
		{"GET", "/v1.47/containers/json", "", true, ""},
		{"POST", "/v1.47/containers/create?name=x", `{"Image":"evil.example/x:1","User":"1000","HostConfig":{"ReadonlyRootfs":true,"Memory":1000000,"PidsLimit":10,"CapDrop":["ALL"],"SecurityOpt":["no-new-privileges"]}}`, false, "approved-registries: image evil.example/x:1 comes from registry evil.example"},
		{"POST", "/containers/create", `{"Image":"moat.test/x:1","User":"1000","HostConfig":{"ReadonlyRootfs":true,"Memory":1000000,"PidsLimit":10,"CapDrop":["ALL"],"SecurityOpt":["no-new-privileges"]}}`, true, ""},
		{"POST", "/v1.47/containers/create", `{"Image":"moat.test/x:1","User":"1000","HostConfig":{"Privileged":true,"ReadonlyRootfs":true,"Memory":1000000,"PidsLimit":10,"CapDrop":["ALL"],"SecurityOpt":["no-new-privileges"]}}`, false, "runs privileged"},
		{"POST", "/v1.47/containers/create", `{"Image":"moat.test/x:1","User":"1000","HostConfig":{"ReadonlyRootfs":true,"Memory":1000000,"PidsLimit":10,"CapDrop":["ALL"],"SecurityOpt":["no-new-privileges"],"Mounts":[{"Type":"bind","Source":"/run","Target":"/h"}]}}`, false, "exposes the Docker socket"},
		{"POST", "/v1.47/containers/create", `[]`, false, "container create request"},
		{"POST", "/v1.47/containers/abc/exec", `{"Privileged":true,"Cmd":["sh"]}`, false, "privileged exec"},
		{"POST", "/v1.47/containers/abc/exec", `{"Cmd":["sh"]}`, true, ""},
	} {
		out := call(t, p, "/AuthZPlugin.AuthZReq", authzReq(c.method, c.uri, c.body))
		msg, _ := out["Msg"].(string)
		if out["Allow"] != c.allow || !strings.Contains(msg, c.msg) {
			t.Errorf("%s %s %s: %v", c.method, c.uri, c.body, out)
		}
	}
}

func FuzzAuthZReq(f *testing.F) {
	f.Add(authzReq("POST", "/v1.47/containers/create?name=a", `{"Image":"a","HostConfig":{"Binds":["/:/h:ro"],"PidMode":"host"}}`))
	f.Add(authzReq("POST", "/v1.47/containers/x/exec", `{"Privileged":true}`))
	f.Add([]byte(`{"RequestMethod":"POST","RequestUri":"/containers/create","RequestBody":"e30="}`))
	p := plugin(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		p.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/AuthZPlugin.AuthZReq", bytes.NewReader(body)))
		var out dockerauthz.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if !out.Allow && out.Msg == "" && out.Err == "" {
			t.Fatal("denied without a reason")
		}
		_ = context.Background()
	})
}
