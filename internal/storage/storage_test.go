package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDigest(t *testing.T) {
	good := []string{"sha256:" + strings.Repeat("a", 64), "sha512:" + strings.Repeat("0", 128)}
	for _, d := range good {
		if _, _, err := ParseDigest(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	bad := []string{"", "sha256", "sha256:", "md5:" + strings.Repeat("a", 32), "sha256:" + strings.Repeat("A", 64),
		"sha256:" + strings.Repeat("a", 63), "sha512:" + strings.Repeat("a", 64), "sha256:../../../etc/passwd" + strings.Repeat("a", 38)}
	for _, d := range bad {
		if _, _, err := ParseDigest(d); err == nil {
			t.Errorf("%q accepted", d)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("a", 64))
	f.Add("sha512:../x")
	f.Add(":::")
	f.Fuzz(func(t *testing.T, s string) {
		alg, h, err := ParseDigest(s)
		if err == nil && (strings.ContainsAny(h, "/.\\") || (alg != "sha256" && alg != "sha512")) {
			t.Fatalf("unsafe digest accepted: %q", s)
		}
	})
}

// exercise runs the Driver contract against d.
func exercise(t *testing.T, d Driver) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, alg := range []string{"sha256", "sha512"} {
		content := []byte("layer content for " + alg)
		var dg string
		if alg == "sha256" {
			dg = fmt.Sprintf("sha256:%x", sha256.Sum256(content))
		} else {
			dg = fmt.Sprintf("sha512:%x", sha512.Sum512(content))
		}
		if dg != DigestOf(alg, content) {
			t.Fatalf("DigestOf mismatch")
		}
		if _, err := d.Stat(ctx, dg); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat before commit: %v", err)
		}
		if _, err := d.Open(ctx, dg); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open before commit: %v", err)
		}
		p := filepath.Join(dir, alg)
		os.WriteFile(p, content, 0o644)
		if err := d.Commit(ctx, dg, p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("Commit left the source file behind")
		}
		n, err := d.Stat(ctx, dg)
		if err != nil || n != int64(len(content)) {
			t.Fatalf("Stat = %d, %v", n, err)
		}
		c, err := d.Open(ctx, dg)
		if err != nil {
			t.Fatal(err)
		}
		c.Seek(6, io.SeekStart)
		got, _ := io.ReadAll(c)
		c.Close()
		if !bytes.Equal(got, content[6:]) {
			t.Fatalf("read after seek = %q", got)
		}
		// Committing identical content again is fine and idempotent.
		os.WriteFile(p, content, 0o644)
		if err := d.Commit(ctx, dg, p); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int64{}
		if err := d.Walk(ctx, func(dg string, n int64, _ time.Time) error { seen[dg] = n; return nil }); err != nil {
			t.Fatal(err)
		}
		if seen[dg] != int64(len(content)) {
			t.Fatalf("Walk did not report %s: %v", dg, seen)
		}
		if err := d.Delete(ctx, dg); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Stat(ctx, dg); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat after delete: %v", err)
		}
		if err := d.Delete(ctx, dg); err != nil {
			t.Fatalf("deleting a missing blob: %v", err)
		}
	}
	if _, err := d.Stat(ctx, "sha256:../../etc"); err == nil {
		t.Fatal("invalid digest accepted")
	}
}

func TestFS(t *testing.T) {
	d, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, d)
}

func TestFSWalkIgnoresTempFiles(t *testing.T) {
	root := t.TempDir()
	d, _ := NewFS(root)
	os.MkdirAll(filepath.Join(root, "sha256", "ab"), 0o755)
	os.WriteFile(filepath.Join(root, "sha256", "ab", ".tmp-123"), []byte("partial"), 0o644)
	n := 0
	d.Walk(context.Background(), func(string, int64, time.Time) error { n++; return nil })
	if n != 0 {
		t.Fatalf("Walk reported %d temp files as blobs", n)
	}
}

func TestParseS3URL(t *testing.T) {
	c, err := ParseS3URL("s3://bucket/some/prefix/")
	if err != nil || c.Bucket != "bucket" || c.Prefix != "some/prefix" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"bucket", "http://x/y", "s3:///p"} {
		if _, err := ParseS3URL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
