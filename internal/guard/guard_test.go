package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/auth"
	it "github.com/moat-dev/moat/internal/imagetest"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/vulndb"
)

const adminPW = "admin-test-password"

func osvRecord(id, cve, pkg, introduced, fixed, vector string) string {
	return fmt.Sprintf(`{"id": %q, "aliases": [%q], "summary": "flaw in %s", "modified": "2024-01-01T00:00:00Z",
  "severity": [{"type": "CVSS_V3", "score": %q}],
  "affected": [{"package": {"ecosystem": "npm", "name": %q},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": %q}, {"fixed": %q}]}]}]}`, id, cve, pkg, vector, pkg, introduced, fixed)
}

const critical = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
const medium = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N"

// importDB writes OSV records and imports them into dir (replacing it).
func importDB(t *testing.T, dir string, recs ...string) {
	t.Helper()
	src := t.TempDir()
	for i, r := range recs {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("r%d.json", i)), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := vulndb.Import(context.Background(), dir, []string{src}, vulndb.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

type env struct {
	inst *registry.Instance
	g    *Guard
	ts   *httptest.Server
	host string
	opts Options
}

func start(t testing.TB, dbDir string, mod func(*Options)) *env {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	inst, err := registry.Open(context.Background(), registry.Options{DataDir: t.TempDir(), AdminPassword: adminPW, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{inst: inst}
	e.opts = Options{Store: inst.Store, Blobs: inst.Blobs, Auth: inst.Auth, Audit: inst.Audit, DataDir: t.TempDir(), DBDir: dbDir,
		RetryBase: 10 * time.Millisecond, DBPoll: time.Hour, Log: log}
	if mod != nil {
		mod(&e.opts)
	}
	e.g, err = Open(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	inst.OnPush, inst.Gate = e.g, e.g
	e.g.Start()
	e.ts = httptest.NewServer(e.g.Handler(inst))
	e.host = strings.TrimPrefix(e.ts.URL, "http://")
	t.Cleanup(func() {
		e.ts.Close()
		e.g.Close()
		inst.Close()
	})
	return e
}

func (e *env) ref(t testing.TB, s string) name.Reference {
	r, err := name.ParseReference(e.host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func basic(u, p string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: u, Password: p})
}

func (e *env) push(t testing.TB, ref string, img v1.Image) string {
	t.Helper()
	if err := remote.Write(e.ref(t, ref), img, basic("admin", adminPW)); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func (e *env) api(t *testing.T, method, path, user, pw string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, e.ts.URL+"/api/v1/guard/"+path, body)
	req.SetBasicAuth(user, pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, raw)
	}
	return resp.StatusCode
}

// waitStatus waits (bounded) for an image's scan to reach a final state.
func (e *env) waitStatus(t testing.TB, repo, digest string) Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	im, err := e.g.WaitFinished(ctx, repo, digest)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func appImage(t *testing.T, lodash string) v1.Image {
	return it.Image(t,
		it.Step{Layer: it.Layer(t, it.Text("/etc/os-release", "ID=alpine\nVERSION_ID=3.19.0\n")), CreatedBy: "base"},
		it.Step{Layer: it.Layer(t,
			it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"`+lodash+`","license":"MIT"}`),
			it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0"}`),
		), CreatedBy: "COPY app /app"},
	)
}

func TestScanOnPushGateAndReferrers(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e := start(t, db, nil)
	ctx := context.Background()
	dg := e.push(t, "team/app:1.0", appImage(t, "4.17.15"))
	im := e.waitStatus(t, "team/app", dg)
	if im.Status != "scanned" || im.Counts["CRITICAL"] != 1 {
		t.Fatalf("image after scan: %+v", im)
	}
	// Findings over the REST API, as `moat findings` reads them.
	var fs []ImageFindings
	e.api(t, "GET", "findings?repository=team/app&ref=1.0", "admin", adminPW, nil, &fs)
	if len(fs) != 1 || fs[0].Report == nil || fs[0].Report.Vulnerabilities == nil || len(fs[0].Report.Vulnerabilities.Findings) != 1 ||
		fs[0].Report.Vulnerabilities.Findings[0].ID != "CVE-2020-8203" || len(fs[0].Report.Packages) < 2 {
		t.Fatalf("findings: %+v", fs)
	}
	if fs[0].Image.Tags[0] != "1.0" {
		t.Fatalf("tags: %v", fs[0].Image.Tags)
	}
	// SBOM and report are referrers of the image.
	h, _ := v1.NewHash(dg)
	idx, err := remote.Referrers(e.ref(t, "team/app@"+dg).Context().Digest(h.String()), basic("admin", adminPW))
	if err != nil {
		t.Fatal(err)
	}
	im2, _ := idx.IndexManifest()
	types := map[string]bool{}
	for _, d := range im2.Manifests {
		types[d.ArtifactType] = true
	}
	if !types[ArtifactSBOM] || !types[ArtifactReport] {
		t.Fatalf("referrers: %+v", im2.Manifests)
	}

	// The pull gate: a reader is refused once the project blocks critical.
	h2, _ := auth.HashPassword("reader-pw")
	e.inst.Store.CreateUser(ctx, "rita", h2, false)
	if err := e.inst.Store.SetMember(ctx, "team", "rita", auth.RoleReader); err != nil {
		t.Fatal(err)
	}
	e.inst.Auth.Invalidate()
	if _, err := remote.Image(e.ref(t, "team/app:1.0"), basic("rita", "reader-pw")); err != nil {
		t.Fatalf("pull before any gate setting: %v", err)
	}
	sev := "critical"
	var s Settings
	e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{BlockSeverity: &sev}, &s)
	_, err = remote.Image(e.ref(t, "team/app:1.0"), basic("rita", "reader-pw"))
	if err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "image has 1 critical vulnerability (CVE-2020-8203)") ||
		!strings.Contains(err.Error(), "moat findings team/app@"+dg) {
		t.Fatalf("gated pull: %v", err)
	}
	// Administrators and scanner robots still pull; artifacts stay pullable.
	if _, err := remote.Image(e.ref(t, "team/app:1.0"), basic("admin", adminPW)); err != nil {
		t.Fatalf("admin pull: %v", err)
	}
	rh, _ := auth.HashPassword("robot-secret")
	if _, err := e.inst.Store.CreateRobot(ctx, store.Robot{Name: "robot$scan", SecretHash: rh, Permissions: map[string]string{"team": auth.RoleScanner}}); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(e.ref(t, "team/app:1.0"), basic("robot$scan", "robot-secret")); err != nil {
		t.Fatalf("scanner robot pull: %v", err)
	}
	for _, d := range im2.Manifests {
		if _, err := remote.Get(e.ref(t, "team/app@"+d.Digest.String()), basic("rita", "reader-pw")); err != nil {
			t.Fatalf("artifact pull: %v", err)
		}
	}
	// The refusal is audited.
	e.inst.Audit.Flush()
	evs, err := e.inst.Store.ListEvents(ctx, store.EventFilter{Actor: "rita", Action: "pull"})
	if err != nil {
		t.Fatal(err)
	}
	denied := false
	for _, ev := range evs {
		denied = denied || (!ev.Allowed && strings.Contains(ev.Detail, "CVE-2020-8203"))
	}
	if !denied {
		t.Fatalf("no denied audit event: %+v", evs)
	}
	// An exception lets it through; an expired one does not.
	e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{AddExceptions: []Exception{{ID: "CVE-2020-8203", Reason: "not reachable", Expires: "2000-01-01"}}}, &s)
	if _, err := remote.Image(e.ref(t, "team/app:1.0"), basic("rita", "reader-pw")); err == nil {
		t.Fatal("an expired exception let the pull through")
	}
	e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{AddExceptions: []Exception{{ID: "GHSA-p6mc-m468-83gw", Package: "lodash", Reason: "not reachable", Expires: "2999-01-01"}}}, &s)
	if _, err := remote.Image(e.ref(t, "team/app:1.0"), basic("rita", "reader-pw")); err != nil {
		t.Fatalf("pull with an exception: %v", err)
	}
	// Bad settings are refused with a reason; only owners may change them.
	bad := "severe"
	if code := e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{BlockSeverity: &bad}, nil); code != 400 {
		t.Fatalf("bad severity: %d", code)
	}
	if code := e.api(t, "PATCH", "projects/team", "rita", "reader-pw", SettingsUpdate{BlockSeverity: &sev}, nil); code != 403 {
		t.Fatalf("reader changed settings: %d", code)
	}
}

func TestRescanNewFindingWebhookAndFirstSeen(t *testing.T) {
	db := t.TempDir()
	leftpad := osvRecord("GHSA-aaaa-bbbb-cccc", "CVE-2099-0001", "left-pad", "0", "1.4.0", medium)
	importDB(t, db, leftpad)
	secret := "hook-secret"
	var mu sync.Mutex
	var bodies [][]byte
	fails := 1
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !VerifySignature([]byte(secret), b, r.Header.Get(SignatureHeader)) {
			w.WriteHeader(400)
			return
		}
		if r.Header.Get("X-Moat-Event") == "new-finding" && fails > 0 {
			fails-- // the first attempt fails: it must be retried
			w.WriteHeader(503)
			return
		}
		bodies = append(bodies, b)
	}))
	defer hook.Close()
	e := start(t, db, func(o *Options) { o.Webhooks = []string{hook.URL}; o.WebhookSecret = secret })
	ctx := context.Background()
	dg := e.push(t, "team/app:1.0", appImage(t, "4.17.15"))
	im := e.waitStatus(t, "team/app", dg)
	if im.Counts["MEDIUM"] != 1 || im.Counts["CRITICAL"] != 0 {
		t.Fatalf("first scan: %+v", im)
	}
	_, first, _ := e.g.storedFindings(ctx, "team/app", dg)
	// The database gains a critical lodash record: the rescan finds it from
	// the stored SBOM alone (the layer blobs are gone from storage).
	for _, l := range mustLayers(t, appImage(t, "4.17.15")) {
		e.inst.Blobs.Delete(ctx, l)
	}
	time.Sleep(10 * time.Millisecond) // distinct first-seen times
	importDB(t, db, leftpad, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	if !e.g.reloadDB() {
		t.Fatal("database change not detected")
	}
	res, err := e.g.Rescan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Images != 1 || res.NewFindings != 1 {
		t.Fatalf("rescan: %+v", res)
	}
	// A second rescan with nothing new writes nothing and emits nothing.
	if res, _ := e.g.Rescan(ctx); res.Changed != 0 || res.NewFindings != 0 {
		t.Fatalf("idempotent rescan: %+v", res)
	}
	fs, first2, _ := e.g.storedFindings(ctx, "team/app", dg)
	if len(fs) != 2 {
		t.Fatalf("findings after rescan: %d", len(fs))
	}
	for k, v := range first {
		if !first2[k].Equal(v) {
			t.Fatalf("first-seen of %s moved: %v -> %v", k, v, first2[k])
		}
	}
	for k, v := range first2 {
		if strings.HasPrefix(k, "CVE-2020-8203") && !v.After(first[findingKeyPrefix(first, "CVE-2099-0001")]) {
			t.Fatalf("new finding first seen %v", v)
		}
	}
	// The gate uses the latest findings.
	sev := "critical"
	var s Settings
	e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{BlockSeverity: &sev}, &s)
	h2, _ := auth.HashPassword("reader-pw")
	e.inst.Store.CreateUser(ctx, "rita", h2, false)
	e.inst.Store.SetMember(ctx, "team", "rita", auth.RoleReader)
	e.inst.Auth.Invalidate()
	if _, err := remote.Image(e.ref(t, "team/app:1.0"), basic("rita", "reader-pw")); err == nil || !strings.Contains(err.Error(), "CVE-2020-8203") {
		t.Fatalf("gate after rescan: %v", err)
	}
	// The webhook gets the signed new-finding event after a retry.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := ""
		for _, b := range bodies {
			if strings.Contains(string(b), `"new-finding"`) {
				got = string(b)
			}
		}
		mu.Unlock()
		if got != "" {
			if !strings.Contains(got, "CVE-2020-8203") || !strings.Contains(got, dg) {
				t.Fatalf("event body: %s", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("webhook never received the new-finding event")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var evs []Event
	e.api(t, "GET", "events?type=new-finding", "admin", adminPW, nil, &evs)
	if len(evs) != 1 || len(evs[0].Deliveries) != 1 || evs[0].Deliveries[0].State != "delivered" || evs[0].Deliveries[0].Attempts != 2 {
		t.Fatalf("events: %+v", evs)
	}
}

func findingKeyPrefix(m map[string]time.Time, p string) string {
	for k := range m {
		if strings.HasPrefix(k, p) {
			return k
		}
	}
	return ""
}

func mustLayers(t *testing.T, img v1.Image) []string {
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, _ := l.Digest()
		out = append(out, d.String())
	}
	return out
}

func startB(b *testing.B, db string) *env                          { return start(b, db, nil) }
func (e *env) pushB(b *testing.B, ref string, img v1.Image) string { return e.push(b, ref, img) }
func (e *env) waitB(b *testing.B, repo, dg string) Image           { return e.waitStatus(b, repo, dg) }
