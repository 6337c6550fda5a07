package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

// TestRBACMatrix checks every registry and admin endpoint against every
// role: system admin, project owner, writer, reader, robots with reader and
// writer permissions, a user of another project, a disabled user, an
// expired robot, and an anonymous client. A public project adds pull for
// logged-in non-members (anonymous stays off by default).
func TestRBACMatrix(t *testing.T) {
	inst, ts := testRegistry(t)
	ctx := context.Background()
	st := inst.Store
	addUser(t, st, "owner", "pw-owner", "team", auth.RoleOwner)
	addUser(t, st, "writer", "pw-writer", "team", auth.RoleWriter)
	addUser(t, st, "reader", "pw-reader", "team", auth.RoleReader)
	addUser(t, st, "outsider", "pw-outsider", "elsewhere", auth.RoleOwner)
	addUser(t, st, "gone", "pw-gone", "team", auth.RoleOwner)
	st.SetUserDisabled(ctx, "gone", true)
	if _, err := st.CreateProject(ctx, store.Project{Name: "pub", Public: true}); err != nil {
		t.Fatal(err)
	}
	robot := func(name, role string, exp time.Time) {
		h, _ := auth.HashPassword("pw-" + name)
		if _, err := st.CreateRobot(ctx, store.Robot{Name: auth.RobotPrefix + name, SecretHash: h, ExpiresAt: exp, Permissions: map[string]string{"team": role}}); err != nil {
			t.Fatal(err)
		}
	}
	robot("ro", auth.RoleReader, time.Time{})
	robot("rw", auth.RoleWriter, time.Time{})
	robot("old", auth.RoleOwner, time.Now().Add(-time.Minute))

	admin := newClient(ts.URL, "admin", adminPW)
	layer := []byte("team layer")
	_, mdg := admin.pushImage(t, "team/app", "v1", layer)
	admin.pushImage(t, "pub/app", "v1", []byte("public layer"))

	type role struct {
		name, user, pass string
		can              string // actions on team/app: subset of "pull push delete admin"
		pubPull          bool
	}
	roles := []role{
		{"admin", "admin", adminPW, "pull push delete admin", true},
		{"owner", "owner", "pw-owner", "pull push delete owner", true},
		{"writer", "writer", "pw-writer", "pull push", true},
		{"reader", "reader", "pw-reader", "pull", true},
		{"robot-reader", "robot$ro", "pw-ro", "pull", true},
		{"robot-writer", "robot$rw", "pw-rw", "pull push", true},
		{"non-member", "outsider", "pw-outsider", "", true},
		{"disabled", "gone", "pw-gone", "", false},
		{"expired-robot", "robot$old", "pw-old", "", false},
		{"anonymous", "", "", "", false},
	}
	octet := map[string]string{"Content-Type": "application/octet-stream"}
	type endpoint struct {
		name  string
		needs string // pull, push, delete, admin, owner, login, catalog
		run   func(t *testing.T, c *client, r role, i int) int
	}
	blob := sha(layer)
	newSession := func(t *testing.T) string {
		resp := admin.do(t, "POST", "/v2/team/app/blobs/uploads/", nil, nil)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("start session: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	endpoints := []endpoint{
		{"GET /v2/", "login", func(t *testing.T, c *client, _ role, _ int) int { return c.status(t, "GET", "/v2/", nil, nil) }},
		{"GET manifest", "pull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "GET", "/v2/team/app/manifests/v1", nil, nil)
		}},
		{"HEAD manifest", "pull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "HEAD", "/v2/team/app/manifests/"+mdg, nil, nil)
		}},
		{"GET blob", "pull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "GET", "/v2/team/app/blobs/"+blob, nil, nil)
		}},
		{"HEAD blob", "pull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "HEAD", "/v2/team/app/blobs/"+blob, nil, nil)
		}},
		{"GET tags/list", "pull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "GET", "/v2/team/app/tags/list", nil, nil)
		}},
		{"GET referrers", "pull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "GET", "/v2/team/app/referrers/"+mdg, nil, nil)
		}},
		{"GET public manifest", "pubpull", func(t *testing.T, c *client, _ role, _ int) int {
			return c.status(t, "GET", "/v2/pub/app/manifests/v1", nil, nil)
		}},
		{"POST blob upload", "push", func(t *testing.T, c *client, r role, _ int) int {
			return c.status(t, "POST", "/v2/team/app/blobs/uploads/", nil, nil)
		}},
		{"POST monolithic blob", "push", func(t *testing.T, c *client, r role, _ int) int {
			b := []byte("blob by " + r.name)
			return c.status(t, "POST", "/v2/team/app/blobs/uploads/?digest="+sha(b), b, octet)
		}},
		{"PATCH upload session", "push", func(t *testing.T, c *client, r role, _ int) int {
			return c.status(t, "PATCH", newSession(t), []byte("chunk"), octet)
		}},
		{"GET upload status", "push", func(t *testing.T, c *client, r role, _ int) int {
			return c.status(t, "GET", newSession(t), nil, nil)
		}},
		{"PUT finish upload", "push", func(t *testing.T, c *client, r role, _ int) int {
			b := []byte("finished by " + r.name)
			return c.status(t, "PUT", newSession(t)+"?digest="+sha(b), b, octet)
		}},
		{"DELETE cancel upload", "push", func(t *testing.T, c *client, r role, _ int) int {
			return c.status(t, "DELETE", newSession(t), nil, nil)
		}},
		{"GET catalog", "login", func(t *testing.T, c *client, _ role, _ int) int { return c.status(t, "GET", "/v2/_catalog", nil, nil) }},
		{"PUT manifest", "push", func(t *testing.T, c *client, r role, _ int) int {
			m, _ := inst.Store.RepoByName(ctx, "team/app")
			man, _ := inst.Store.GetManifest(ctx, m.ID, "v1", true)
			return c.status(t, "PUT", "/v2/team/app/manifests/by-"+r.name, man.Content, map[string]string{"Content-Type": mtOCIManifest})
		}},
		{"POST mount into pub", "mount", func(t *testing.T, c *client, r role, _ int) int {
			// Needs push on pub/app (admin only here) and pull on team/app.
			return c.status(t, "POST", "/v2/pub/app/blobs/uploads/?mount="+blob+"&from=team/app", nil, nil)
		}},
		{"DELETE tag", "delete", func(t *testing.T, c *client, r role, i int) int {
			tag := fmt.Sprintf("del-%d", i)
			admin.pushImage(t, "team/app", tag, layer)
			return c.status(t, "DELETE", "/v2/team/app/manifests/"+tag, nil, nil)
		}},
		{"DELETE manifest", "delete", func(t *testing.T, c *client, r role, i int) int {
			_, d := admin.pushImage(t, "team/app", fmt.Sprintf("delm-%d", i), []byte(fmt.Sprintf("layer %d", i)))
			return c.status(t, "DELETE", "/v2/team/app/manifests/"+d, nil, nil)
		}},
		{"DELETE blob", "delete", func(t *testing.T, c *client, r role, i int) int {
			b := []byte(fmt.Sprintf("deletable blob %d", i))
			admin.status(t, "POST", "/v2/team/app/blobs/uploads/?digest="+sha(b), b, octet)
			return c.status(t, "DELETE", "/v2/team/app/blobs/"+sha(b), nil, nil)
		}},
		{"admin: add user", "admin", func(t *testing.T, c *client, r role, i int) int {
			return c.admin(t, "POST", "users", fmt.Sprintf(`{"name":"u%d"}`, i))
		}},
		{"admin: list users", "admin", func(t *testing.T, c *client, r role, i int) int { return c.admin(t, "GET", "users", "") }},
		{"admin: create project", "admin", func(t *testing.T, c *client, r role, i int) int {
			return c.admin(t, "POST", "projects", fmt.Sprintf(`{"name":"p%d"}`, i))
		}},
		{"admin: audit log", "admin", func(t *testing.T, c *client, r role, i int) int { return c.admin(t, "GET", "audit", "") }},
		{"admin: gc", "admin", func(t *testing.T, c *client, r role, i int) int { return c.admin(t, "POST", "gc?dry_run=true", "") }},
		{"admin: disable user", "admin", func(t *testing.T, c *client, r role, i int) int {
			admin.admin(t, "POST", "users", fmt.Sprintf(`{"name":"d%d"}`, i))
			return c.admin(t, "POST", fmt.Sprintf("users/d%d/disable", i), "")
		}},
		{"owner: list members", "member", func(t *testing.T, c *client, r role, i int) int {
			return c.admin(t, "GET", "projects/team/members", "")
		}},
		{"owner: remove member", "owner", func(t *testing.T, c *client, r role, i int) int {
			admin.admin(t, "POST", "users", fmt.Sprintf(`{"name":"m%d"}`, i))
			admin.admin(t, "PUT", fmt.Sprintf("projects/team/members/m%d", i), `{"role":"reader"}`)
			return c.admin(t, "DELETE", fmt.Sprintf("projects/team/members/m%d", i), "")
		}},
		{"owner: revoke robot", "owner", func(t *testing.T, c *client, r role, i int) int {
			admin.admin(t, "POST", "robots", fmt.Sprintf(`{"name":"rv%d","permissions":{"team":"reader"}}`, i))
			return c.admin(t, "DELETE", fmt.Sprintf("robots/robot$rv%d", i), "")
		}},
		{"owner: set member", "owner", func(t *testing.T, c *client, r role, i int) int {
			return c.admin(t, "PUT", "projects/team/members/reader", `{"role":"reader"}`)
		}},
		{"owner: project settings", "owner", func(t *testing.T, c *client, r role, i int) int {
			return c.admin(t, "PATCH", "projects/team", `{"quota_bytes":0}`)
		}},
		{"owner: create robot", "owner", func(t *testing.T, c *client, r role, i int) int {
			return c.admin(t, "POST", "robots", fmt.Sprintf(`{"name":"bot%d","permissions":{"team":"reader"}}`, i))
		}},
	}
	for i, r := range roles {
		for j, ep := range endpoints {
			t.Run(r.name+"/"+ep.name, func(t *testing.T) {
				c := newClient(ts.URL, r.user, r.pass)
				code := ep.run(t, c, r, i*100+j)
				var want bool
				switch ep.needs {
				case "login":
					want = r.name != "anonymous" && r.name != "disabled" && r.name != "expired-robot"
				case "pubpull":
					want = r.pubPull
				case "mount":
					want = r.name == "admin"
				case "member":
					want = (strings.Contains(r.can, "pull") && r.name != "robot-reader" && r.name != "robot-writer") || r.name == "admin"
				case "owner":
					want = strings.Contains(r.can, "owner") || strings.Contains(r.can, "admin")
				default:
					want = strings.Contains(r.can, ep.needs)
				}
				allowed := code >= 200 && code < 300
				denied := code == 401 || code == 403
				if want && !allowed {
					t.Errorf("%s should be allowed for %s, got %d", ep.name, r.name, code)
				}
				if !want && !denied {
					t.Errorf("%s should be denied for %s, got %d", ep.name, r.name, code)
				}
			})
		}
	}

	// _catalog and tag lists show only what the caller may pull.
	for _, r := range roles {
		c := newClient(ts.URL, r.user, r.pass)
		resp := c.do(t, "GET", "/v2/_catalog", nil, nil)
		var cat struct {
			Repositories []string `json:"repositories"`
		}
		json.NewDecoder(resp.Body).Decode(&cat)
		resp.Body.Close()
		got := strings.Join(cat.Repositories, ",")
		var want string
		switch {
		case strings.Contains(r.can, "pull") && r.pubPull:
			want = "pub/app,team/app"
		case strings.Contains(r.can, "pull"):
			want = "team/app"
		case r.pubPull:
			want = "pub/app"
		}
		if got != want {
			t.Errorf("catalog for %s = %q, want %q (status %d)", r.name, got, want, resp.StatusCode)
		}
	}

	// Denied attempts are audited.
	inst.Audit.Flush()
	evs, _ := st.ListEvents(ctx, store.EventFilter{Actor: "outsider"})
	denied := 0
	for _, e := range evs {
		if !e.Allowed {
			denied++
		}
	}
	if denied == 0 {
		t.Error("no denied audit events for the non-member")
	}
}

// admin calls the admin API with basic credentials.
func (c *client) admin(t testing.TB, method, path, body string) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := newRequest(method, c.base+"/api/v1/"+path, rd)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := httpDo(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestMountNeedsPullOnSource: a cross-repository mount links the blob only
// when the caller may pull the source; otherwise it falls back to a normal
// upload session and the blob stays invisible in the target.
func TestMountNeedsPullOnSource(t *testing.T) {
	inst, ts := testRegistry(t)
	addUser(t, inst.Store, "outsider", "pw1", "elsewhere", auth.RoleOwner)
	addUser(t, inst.Store, "both", "pw2", "elsewhere", auth.RoleWriter)
	inst.Store.CreateProject(context.Background(), store.Project{Name: "team"})
	if err := inst.Store.SetMember(context.Background(), "team", "both", auth.RoleReader); err != nil {
		t.Fatal(err)
	}
	admin := newClient(ts.URL, "admin", adminPW)
	layer := []byte("secret team layer")
	admin.pushImage(t, "team/app", "v1", layer)
	for _, tc := range []struct {
		user, pass string
		mount      bool
	}{{"outsider", "pw1", false}, {"both", "pw2", true}} {
		c := newClient(ts.URL, tc.user, tc.pass)
		for _, q := range []string{"mount=" + sha(layer) + "&from=team/app", "mount=" + sha(layer)} {
			st := c.status(t, "POST", "/v2/elsewhere/"+tc.user+"/blobs/uploads/?"+q, nil, nil)
			want := 202
			if tc.mount {
				want = 201
			}
			if st != want {
				t.Errorf("%s mount (%s): %d, want %d", tc.user, q, st, want)
			}
		}
		head := c.status(t, "HEAD", "/v2/elsewhere/"+tc.user+"/blobs/"+sha(layer), nil, nil)
		if (head == 200) != tc.mount {
			t.Errorf("%s: blob visible after mount = %d", tc.user, head)
		}
	}
}

// TestAnonymousPublicPull: with --allow-anonymous, anonymous clients pull
// public projects (and only those) and can never push.
func TestAnonymousPublicPull(t *testing.T) {
	inst, ts := testRegistry(t, func(o *Options) { o.AllowAnonymous = true })
	ctx := context.Background()
	inst.Store.CreateProject(ctx, store.Project{Name: "pub", Public: true})
	inst.Store.CreateProject(ctx, store.Project{Name: "priv"})
	admin := newClient(ts.URL, "admin", adminPW)
	admin.pushImage(t, "pub/app", "v1", []byte("p"))
	admin.pushImage(t, "priv/app", "v1", []byte("q"))
	anon := newClient(ts.URL, "", "")
	if st := anon.status(t, "GET", "/v2/pub/app/manifests/v1", nil, nil); st != 200 {
		t.Errorf("anonymous pull of public project: %d", st)
	}
	if st := anon.status(t, "GET", "/v2/priv/app/manifests/v1", nil, nil); st != 401 {
		t.Errorf("anonymous pull of private project: %d", st)
	}
	b := []byte("anon blob")
	if st := anon.status(t, "POST", "/v2/pub/app/blobs/uploads/?digest="+sha(b), b, nil); st != 401 {
		t.Errorf("anonymous push: %d", st)
	}
	// Making the project private takes effect at once through the API.
	if st := admin.admin(t, "PATCH", "projects/pub", `{"public":false}`); st != 200 {
		t.Fatalf("patch project: %d", st)
	}
	if st := anon.status(t, "GET", "/v2/pub/app/manifests/v1", nil, nil); st != 401 {
		t.Errorf("anonymous pull after making the project private: %d", st)
	}
}
