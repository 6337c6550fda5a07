package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moat-dev/moat/internal/store"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash format %q", h)
	}
	if ok, err := VerifyPassword(h, "s3cret"); !ok || err != nil {
		t.Fatal("correct password rejected")
	}
	if ok, _ := VerifyPassword(h, "s3cret!"); ok {
		t.Fatal("wrong password accepted")
	}
	h2, _ := HashPassword("s3cret")
	if h2 == h {
		t.Fatal("salt not random")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2i$v=19$m=65536,t=1,p=2$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=1,p=2$AAAA$AAAA"} {
		if _, err := VerifyPassword(bad, "x"); !errors.Is(err, ErrBadHash) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzVerifyPassword(f *testing.F) {
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "pw")
	f.Add("$$$$$", "")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		VerifyPassword(hash, pw) // must not panic
	})
}

func TestParseScope(t *testing.T) {
	a, err := ParseScope("repository:team/app:pull,push,pull")
	if err != nil || a.Type != "repository" || a.Name != "team/app" || strings.Join(a.Actions, ",") != "pull,push" {
		t.Fatalf("%+v %v", a, err)
	}
	a, err = ParseScope("repository:localhost:5000/x:pull")
	if err != nil || a.Name != "localhost:5000/x" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{"", "repository", "repository:x", "repository::pull", "repository:x:", ":x:pull"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseScope(f *testing.F) {
	f.Add("repository:a/b:pull,push")
	f.Add("registry:catalog:*")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseScope(s)
		if err == nil && (a.Name == "" || len(a.Actions) == 0) {
			t.Fatalf("empty scope accepted: %q", s)
		}
	})
}

func newSvc(t *testing.T) (*Service, *store.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := NewService(st, filepath.Join(dir, "key.pem"), "moat")
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func TestTokensAndRevocation(t *testing.T) {
	ctx := context.Background()
	s, st := newSvc(t)
	h, _ := HashPassword("pw")
	st.CreateUser(ctx, "alice", h, false)
	st.CreateProject(ctx, store.Project{Name: "team"})
	st.SetMember(ctx, "team", "alice", RoleWriter)
	p, err := s.Authenticate(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "alice", "bad"); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("bad password accepted")
	}
	tok, _, err := s.IssueToken(ctx, p, []Access{
		{Type: "repository", Name: "team/app", Actions: []string{"pull", "push", "delete"}},
		{Type: "repository", Name: "other/app", Actions: []string{"pull"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := s.VerifyToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(tp.Granted) != 1 || strings.Join(tp.Granted[0].Actions, ",") != "pull,push" {
		t.Fatalf("granted %+v (writer must not get delete, nor access to other projects)", tp.Granted)
	}
	if ok, _ := s.Can(ctx, tp, "team/app", ActionPush); !ok {
		t.Fatal("token does not allow push")
	}
	if ok, _ := s.Can(ctx, tp, "team/other", ActionPull); ok {
		t.Fatal("token allows a repository it does not name")
	}
	// Tampered token.
	if _, err := s.VerifyToken(ctx, tok[:len(tok)-4]+"AAAA"); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("tampered token accepted")
	}
	// A token signed by another key.
	other, _ := newSvc(t)
	forged, _, _ := other.IssueToken(ctx, p, nil)
	if _, err := s.VerifyToken(ctx, forged); err == nil {
		t.Fatal("token from another key accepted")
	}
	// Expired token.
	s.TokenTTL = -time.Minute
	old, _, _ := s.IssueToken(ctx, p, nil)
	s.TokenTTL = 5 * time.Minute
	if _, err := s.VerifyToken(ctx, old); err == nil {
		t.Fatal("expired token accepted")
	}
	// alg=none is refused.
	none := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "moat", Subject: "alice", Audience: jwt.ClaimStrings{"moat"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	raw, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := s.VerifyToken(ctx, raw); err == nil {
		t.Fatal("unsigned token accepted")
	}
	// Disabling the account revokes its tokens.
	st.SetUserDisabled(ctx, "alice", true)
	s.Invalidate()
	if _, err := s.VerifyToken(ctx, tok); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("token of a disabled account accepted")
	}
	if _, err := s.Authenticate(ctx, "alice", "pw"); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("disabled account authenticated")
	}
}

func TestRobotExpiry(t *testing.T) {
	ctx := context.Background()
	s, st := newSvc(t)
	st.CreateProject(ctx, store.Project{Name: "team"})
	h, _ := HashPassword("sec")
	st.CreateRobot(ctx, store.Robot{Name: "robot$old", SecretHash: h, ExpiresAt: time.Now().Add(-time.Second), Permissions: map[string]string{"team": "reader"}})
	st.CreateRobot(ctx, store.Robot{Name: "robot$ok", SecretHash: h, Permissions: map[string]string{"team": "reader"}})
	if _, err := s.Authenticate(ctx, "robot$old", "sec"); !errors.Is(err, ErrUnauthorized) {
		t.Fatal("expired robot authenticated")
	}
	p, err := s.Authenticate(ctx, "robot$ok", "sec")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Can(ctx, p, "team/x", ActionPull); !ok {
		t.Fatal("robot cannot pull its project")
	}
	if ok, _ := s.Can(ctx, p, "team/x", ActionPush); ok {
		t.Fatal("reader robot can push")
	}
}
