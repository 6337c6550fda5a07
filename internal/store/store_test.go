package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/audit"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMigrationsIdempotentAndDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path)
	if _, err := s.CreateUser(ctx, "alice", "h", false); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUpload(ctx, "u1", "p/r"); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateUpload(ctx, "u1", 42, []byte("state")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path) // migrations run again: must be a no-op
	defer s.Close()
	u, err := s.UserByName(ctx, "alice")
	if err != nil || u.Name != "alice" {
		t.Fatalf("%v %v", u, err)
	}
	up, err := s.GetUpload(ctx, "u1")
	if err != nil || up.Offset != 42 || string(up.HashState) != "state" || up.Repo != "p/r" {
		t.Fatalf("upload after reopen: %+v %v", up, err)
	}
	if _, err := s.CreateUser(ctx, "alice", "h", false); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate user: %v", err)
	}
}

func TestManifestsTagsReferrers(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	defer s.Close()
	testManifestsTagsReferrers(t, s)
}

func testManifestsTagsReferrers(t *testing.T, s *Store) {
	ctx := context.Background()
	if _, err := s.CreateProject(ctx, Project{Name: "p", QuotaBytes: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureRepo(ctx, "nope", "nope/r"); err == nil {
		t.Fatal("repo created in a missing project")
	}
	r, err := s.EnsureRepo(ctx, "p", "p/r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LinkBlob(ctx, r.ID, "sha256:aa", 10); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Digest: "sha256:m1", MediaType: "x", Size: 5, Content: []byte("hello")}
	if err := s.PutManifest(ctx, r.ID, m, []string{"sha256:aa"}, []string{"v1"}, true); err != nil {
		t.Fatal(err)
	}
	// Compare-and-swap on a tag: only when it points where expected.
	if _, err := s.CreateProject(ctx, Project{Name: "casp"}); err != nil {
		t.Fatal(err)
	}
	cas, err := s.EnsureRepo(ctx, "casp", "casp/r")
	if err != nil {
		t.Fatal(err)
	}
	a1 := Manifest{Digest: "sha256:a1", MediaType: "x", Size: 2, Content: []byte("a1")}
	a2 := Manifest{Digest: "sha256:a2", MediaType: "x", Size: 2, Content: []byte("a2")}
	if err := s.PutManifestIfTag(ctx, cas.ID, a1, nil, "att", ""); err != nil {
		t.Fatalf("create tag: %v", err)
	}
	if err := s.PutManifestIfTag(ctx, cas.ID, a2, nil, "att", ""); !errors.Is(err, ErrTagMoved) {
		t.Fatalf("tag exists, expected absent: %v", err)
	}
	if ok, _ := s.HasManifest(ctx, cas.ID, "sha256:a2"); ok {
		t.Fatal("a refused compare-and-swap stored its manifest")
	}
	if err := s.PutManifestIfTag(ctx, cas.ID, a2, nil, "att", "sha256:a1"); err != nil {
		t.Fatalf("move tag: %v", err)
	}
	if at, err := s.GetManifest(ctx, cas.ID, "att", false); err != nil || at.Digest != "sha256:a2" {
		t.Fatalf("att -> %+v %v", at, err)
	}
	got, err := s.GetManifest(ctx, r.ID, "v1", true)
	if err != nil || string(got.Content) != "hello" {
		t.Fatalf("%v %v", got, err)
	}
	// Immutable: moving v1 fails and changes nothing.
	m2 := Manifest{Digest: "sha256:m2", MediaType: "x", Size: 3, Content: []byte("abc"), Subject: "sha256:m1", ArtifactType: "t"}
	var ite *ImmutableTagError
	if err := s.PutManifest(ctx, r.ID, m2, nil, []string{"v1"}, true); !errors.As(err, &ite) {
		t.Fatalf("immutable tag moved: %v", err)
	}
	if ok, _ := s.HasManifest(ctx, r.ID, "sha256:m2"); ok {
		t.Fatal("failed push left a manifest behind")
	}
	if err := s.DeleteTag(ctx, r.ID, "v1", true); !errors.As(err, &ite) {
		t.Fatalf("immutable tag deleted: %v", err)
	}
	if err := s.PutManifest(ctx, r.ID, m2, nil, []string{"v2"}, false); err != nil {
		t.Fatal(err)
	}
	refs, _ := s.Referrers(ctx, r.ID, "sha256:m1")
	if len(refs) != 1 || refs[0].Digest != "sha256:m2" || refs[0].ArtifactType != "t" {
		t.Fatalf("referrers: %+v", refs)
	}
	tags, _ := s.ListTags(ctx, r.ID, "", 1)
	if len(tags) != 1 || tags[0] != "v1" {
		t.Fatalf("tags page: %v", tags)
	}
	tags, _ = s.ListTags(ctx, r.ID, "v1", 0)
	if len(tags) != 1 || tags[0] != "v2" {
		t.Fatalf("tags after v1: %v", tags)
	}
	used, _ := s.ProjectUsage(ctx, r.ProjectID)
	if used != 10+5+3 {
		t.Fatalf("usage = %d", used)
	}
	// GC: the referenced blob is not a candidate; once its manifest is gone it is.
	c, _ := s.GCCandidates(ctx, time.Now().Add(time.Hour))
	if _, ok := c["sha256:aa"]; ok {
		t.Fatal("referenced blob is a GC candidate")
	}
	if err := s.DeleteManifest(ctx, r.ID, "sha256:m1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetManifest(ctx, r.ID, "v1", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tag survived its manifest: %v", err)
	}
	c, _ = s.GCCandidates(ctx, time.Now().Add(time.Hour))
	if _, ok := c["sha256:aa"]; !ok {
		t.Fatal("unreferenced blob is not a GC candidate")
	}
	if removed, err := s.DeleteBlobRecord(ctx, "sha256:aa"); !removed || err != nil {
		t.Fatalf("DeleteBlobRecord: %v %v", removed, err)
	}
	if _, err := s.BlobSize(ctx, r.ID, "sha256:aa"); !errors.Is(err, ErrNotFound) {
		t.Fatal("blob link survived")
	}
}

func TestAccountsAndAudit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	defer s.Close()
	testAccountsAndAudit(t, s)
}

func testAccountsAndAudit(t *testing.T, s *Store) {
	ctx := context.Background()
	s.CreateProject(ctx, Project{Name: "p"})
	u, _ := s.CreateUser(ctx, "bob", "h", false)
	if err := s.SetMember(ctx, "p", "bob", "writer"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMember(ctx, "p", "bob", "owner"); err != nil {
		t.Fatal(err)
	}
	roles, _ := s.UserRoles(ctx, u.ID)
	if roles["p"] != "owner" {
		t.Fatalf("roles %v", roles)
	}
	if err := s.SetMember(ctx, "missing", "bob", "owner"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("member of missing project: %v", err)
	}
	if _, err := s.CreateRobot(ctx, Robot{Name: "robot$x", SecretHash: "h", Permissions: map[string]string{"nope": "reader"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("robot for missing project: %v", err)
	}
	if _, err := s.RobotByName(ctx, "robot$x"); !errors.Is(err, ErrNotFound) {
		t.Fatal("failed robot creation left a row")
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if _, err := s.CreateRobot(ctx, Robot{Name: "robot$ci", SecretHash: "h", ExpiresAt: exp, Permissions: map[string]string{"p": "reader"}}); err != nil {
		t.Fatal(err)
	}
	r, _ := s.RobotByName(ctx, "robot$ci")
	if !r.ExpiresAt.Equal(exp) || r.Permissions["p"] != "reader" || r.Disabled {
		t.Fatalf("robot %+v", r)
	}
	s.RevokeRobot(ctx, "robot$ci")
	if r, _ := s.RobotByName(ctx, "robot$ci"); !r.Disabled {
		t.Fatal("revoke did not disable")
	}
	ev := []audit.Event{{Time: time.Now(), Actor: "bob", ActorKind: "user", Action: "pull", Repository: "p/r", Digest: "sha256:x", Allowed: true}}
	if err := s.InsertEvents(ctx, ev); err != nil {
		t.Fatal(err)
	}
	got, _ := s.ListEvents(ctx, EventFilter{Actor: "bob"})
	if len(got) != 1 || got[0].Digest != "sha256:x" || !got[0].Allowed {
		t.Fatalf("events %+v", got)
	}
	// A batch larger than one multi-row INSERT keeps every event, in order.
	var batch []audit.Event
	for i := 0; i < 123; i++ {
		batch = append(batch, audit.Event{Time: time.UnixMilli(int64(1000 + i)), Actor: "carol", ActorKind: "robot", Action: "push",
			Repository: "p/r", Digest: fmt.Sprintf("sha256:%03d", i), Tag: "t", RemoteAddr: "127.0.0.1", Allowed: i%2 == 0, Detail: "d'\"" + strconv.Itoa(i)})
	}
	if err := s.InsertEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, _ = s.ListEvents(ctx, EventFilter{Actor: "carol", Limit: 1000})
	if len(got) != len(batch) {
		t.Fatalf("%d of %d events stored", len(got), len(batch))
	}
	for i, e := range got {
		w := batch[i]
		if e.Digest != w.Digest || e.Allowed != w.Allowed || e.Detail != w.Detail || !e.Time.Equal(w.Time) || e.ActorKind != "robot" || e.RemoteAddr != "127.0.0.1" {
			t.Fatalf("event %d: %+v, want %+v", i, e, w)
		}
	}
}

func TestPostgresRebind(t *testing.T) {
	if got := Postgres.rebind("a = ? AND b = ?"); got != "a = $1 AND b = $2" {
		t.Fatal(got)
	}
	if got := SQLite.rebind("a = ?"); got != "a = ?" {
		t.Fatal(got)
	}
}
