package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	testKeys(t, open(t, filepath.Join(t.TempDir(), "m.db")))
}

// testKeys: server keys and projects' trusted keys and require-signature
// switch (run on SQLite and PostgreSQL).
func testKeys(t *testing.T, s *Store) {
	ctx := context.Background()
	if _, err := s.ServerKeyByName(ctx, "registry"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no server key yet: %v", err)
	}
	sk := ServerKey{Name: "registry", Fingerprint: "SHA256:aa", PublicKey: "PEM", Sealed: []byte{1, 2, 3}}
	if err := s.CreateServerKey(ctx, sk); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateServerKey(ctx, sk); !errors.Is(err, ErrConflict) {
		t.Fatalf("second registry key: %v", err)
	}
	got, err := s.ServerKeyByName(ctx, "registry")
	if err != nil || got.Fingerprint != "SHA256:aa" || !bytes.Equal(got.Sealed, []byte{1, 2, 3}) || got.CreatedAt.IsZero() {
		t.Fatalf("server key: %+v %v", got, err)
	}

	if _, err := s.AddTrustedKey(ctx, TrustedKey{Project: "nope", Name: "k", Fingerprint: "f", Sealed: []byte{1}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key of a missing project: %v", err)
	}
	for _, p := range []string{"keys-a", "keys-b"} {
		if _, err := s.CreateProject(ctx, Project{Name: p}); err != nil {
			t.Fatal(err)
		}
	}
	add := func(p, n, fp string) error {
		_, err := s.AddTrustedKey(ctx, TrustedKey{Project: p, Name: n, Fingerprint: fp, Sealed: []byte(n), AddedBy: "admin"})
		return err
	}
	for _, k := range [][3]string{{"keys-a", "release", "f1"}, {"keys-a", "ci", "f2"}, {"keys-b", "release", "f1"}} {
		if err := add(k[0], k[1], k[2]); err != nil {
			t.Fatal(err)
		}
	}
	if err := add("keys-a", "release", "f3"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same name twice: %v", err)
	}
	if err := add("keys-a", "again", "f1"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same key twice: %v", err)
	}
	ks, err := s.ListTrustedKeys(ctx, "keys-a")
	if err != nil || len(ks) != 2 || ks[0].Name != "ci" || ks[1].Name != "release" || ks[1].AddedBy != "admin" || string(ks[1].Sealed) != "release" {
		t.Fatalf("list: %+v %v", ks, err)
	}
	if all, _ := s.ListTrustedKeys(ctx, ""); len(all) != 3 {
		t.Fatalf("all: %+v", all)
	}
	if err := s.RemoveTrustedKey(ctx, "keys-a", "ci"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTrustedKey(ctx, "keys-a", "ci"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}

	// ResealKeys: every sealed value passes through fn with its row's
	// identity; changed ones are written; an error rolls all back.
	seen := map[string]string{}
	n, err := s.ResealKeys(ctx, func(kind SealedKind, id []string, sealed []byte) ([]byte, bool, error) {
		k := string(kind) + ":" + strings.Join(id, "/")
		seen[k] = string(sealed)
		if kind == SealedServerKey {
			return sealed, false, nil
		}
		return append([]byte("new-"), sealed...), true, nil
	})
	if err != nil || n != 2 || len(seen) != 3 || seen["server-key:registry"] != "\x01\x02\x03" || seen["trusted-key:keys-a/release"] != "release" || seen["trusted-key:keys-b/release"] != "release" {
		t.Fatalf("reseal: %d %v %q", n, err, seen)
	}
	boom := errors.New("boom")
	calls := 0
	if _, err := s.ResealKeys(ctx, func(kind SealedKind, id []string, sealed []byte) ([]byte, bool, error) {
		calls++
		if calls == 3 {
			return nil, false, boom
		}
		return []byte("lost"), true, nil
	}); !errors.Is(err, boom) {
		t.Fatalf("failing reseal: %v", err)
	}
	ks, _ = s.ListTrustedKeys(ctx, "")
	sk2, _ := s.ServerKeyByName(ctx, "registry")
	if len(ks) != 2 || string(ks[0].Sealed) != "new-release" || string(ks[1].Sealed) != "new-release" || !bytes.Equal(sk2.Sealed, []byte{1, 2, 3}) {
		t.Fatalf("a failed reseal changed rows: %+v %+v", ks, sk2)
	}

	if err := s.SetRequireSignature(ctx, "keys-b", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRequireSignature(ctx, "nope", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing project: %v", err)
	}
	ps, err := s.SignatureProjects(ctx)
	if err != nil || len(ps) != 1 || ps[0] != "keys-b" {
		t.Fatalf("signature projects: %v %v", ps, err)
	}
	p, _ := s.ProjectByName(ctx, "keys-b")
	if !p.RequireSignature {
		t.Fatal("require_signature not read back")
	}
	p.RequireSignature = false
	if err := s.UpdateProject(ctx, *p); err != nil {
		t.Fatal(err)
	}
	if ps, _ := s.SignatureProjects(ctx); len(ps) != 0 {
		t.Fatalf("after update: %v", ps)
	}
}

// TestUpgradeToKeys: a database made before the keys migration keeps its
// projects, which start without require-signature.
func TestUpgradeToKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	all := migrations
	migrations = all[:1]
	s := open(t, path)
	migrations = all
	if _, err := s.rw.ExecContext(ctx, `INSERT INTO projects(name, created_at) VALUES ('old', 1)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	p, err := s.ProjectByName(ctx, "old")
	if err != nil || p.RequireSignature {
		t.Fatalf("old project after upgrade: %+v %v", p, err)
	}
	if _, err := s.AddTrustedKey(ctx, TrustedKey{Project: "old", Name: "k", Fingerprint: "f", Sealed: []byte{1}}); err != nil {
		t.Fatal(err)
	}
}
