package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/moat-dev/moat/internal/testenv"
)

// findTool finds a peer tool (see testenv.Tool).
func findTool(t testing.TB, name string) string {
	return testenv.Tool(t, name, "run scripts/build-tools.sh")
}

// StartVersityGW starts versitygw over a temp dir on 127.0.0.1 with a
// bucket and returns its config.
func startVersityGW(t testing.TB) S3Config {
	t.Helper()
	bin := findTool(t, "versitygw")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY=moatkey", "ROOT_SECRET_KEY=moatsecret1234")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + addr), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("moatkey", "moatsecret1234", "")})
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("moat")})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("versitygw did not come up: %v", err)
	}
	return S3Config{Bucket: "moat", Prefix: "registry", Endpoint: "http://" + addr, Region: "us-east-1", AccessKey: "moatkey", SecretKey: "moatsecret1234"}
}

func TestS3AgainstVersityGW(t *testing.T) {
	cfg := startVersityGW(t)
	ctx := context.Background()
	d, err := NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, d)

	t.Run("MissingBucket", func(t *testing.T) {
		bad := cfg
		bad.Bucket = "missing"
		_, err := NewS3(ctx, bad)
		if err == nil || !strings.Contains(err.Error(), `"missing" does not exist`) {
			t.Fatalf("missing bucket: %v", err)
		}
		t.Log(err)
	})
	t.Run("WrongSecret", func(t *testing.T) {
		bad := cfg
		bad.SecretKey = "wrong"
		_, err := NewS3(ctx, bad)
		if err == nil {
			t.Fatal("wrong secret accepted")
		}
		t.Log(err)
		if strings.Contains(err.Error(), "wrong") {
			t.Fatalf("error repeats the secret: %v", err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		dg := DigestOf("sha256", []byte("never stored"))
		if _, err := d.Stat(ctx, dg); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Stat: %v", err)
		}
		if _, err := d.Open(ctx, dg); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open: %v", err)
		}
		if err := d.Delete(ctx, dg); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})
	t.Run("Seek", func(t *testing.T) {
		content := make([]byte, 100_000)
		rand.Read(content)
		dg := commitBytes(t, d, content)
		c, err := d.Open(ctx, dg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		read := func(n int) []byte {
			t.Helper()
			b := make([]byte, n)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
			return b
		}
		seek := func(off int64, whence int, want int64) {
			t.Helper()
			if got, err := c.Seek(off, whence); err != nil || got != want {
				t.Fatalf("Seek(%d, %d) = %d, %v; want %d", off, whence, got, err, want)
			}
		}
		if !bytes.Equal(read(10), content[:10]) {
			t.Fatal("first read")
		}
		seek(1000, io.SeekStart, 1000)
		if !bytes.Equal(read(500), content[1000:1500]) {
			t.Fatal("read after SeekStart")
		}
		seek(-200, io.SeekCurrent, 1300)
		if !bytes.Equal(read(100), content[1300:1400]) {
			t.Fatal("read after SeekCurrent")
		}
		seek(-64, io.SeekEnd, int64(len(content))-64)
		rest, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(rest, content[len(content)-64:]) {
			t.Fatalf("read after SeekEnd: %d bytes, %v", len(rest), err)
		}
		seek(0, io.SeekEnd, int64(len(content)))
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read at end = %d, %v", n, err)
		}
		seek(5, io.SeekEnd, int64(len(content))+5)
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read past end = %d, %v", n, err)
		}
		if _, err := c.Seek(-1, io.SeekStart); err == nil {
			t.Fatal("negative seek accepted")
		}
		seek(0, io.SeekStart, 0)
		all, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(all, content) {
			t.Fatalf("full read after rewinding: %d bytes, %v", len(all), err)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		dg := commitBytes(t, d, nil)
		if n, err := d.Stat(ctx, dg); n != 0 || err != nil {
			t.Fatalf("Stat = %d, %v", n, err)
		}
		c, err := d.Open(ctx, dg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
			t.Fatalf("ReadAll = %d bytes, %v", len(b), err)
		}
	})
	t.Run("Multipart", func(t *testing.T) {
		old := s3PartSize
		s3PartSize = 5 << 20
		t.Cleanup(func() { s3PartSize = old })
		content := make([]byte, 2*s3PartSize+12345)
		rand.Read(content)
		dg := commitBytes(t, d, content)
		if n, err := d.Stat(ctx, dg); err != nil || n != int64(len(content)) {
			t.Fatalf("Stat = %d, %v", n, err)
		}
		c, err := d.Open(ctx, dg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read back %d of %d bytes, equal=%v, %v", len(got), len(content), bytes.Equal(got, content), err)
		}
		// A multipart upload failing after some parts went up is aborted:
		// neither an object nor parts are left. The file is shorter than
		// claimed, so the last part cannot be read in full.
		other := append([]byte("x"), content...)
		p := filepath.Join(t.TempDir(), "blob")
		os.WriteFile(p, other, 0o644)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		k, _ := d.key(DigestOf("sha256", other))
		if err := d.multipart(ctx, k, f, int64(len(other))+s3PartSize); err == nil {
			t.Fatal("multipart upload of a short file succeeded")
		} else {
			t.Logf("short file: %v", err)
		}
		if _, err := d.Stat(ctx, DigestOf("sha256", other)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("half-written object visible: %v", err)
		}
		// A cancelled context fails the commit and keeps the source file.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := d.Commit(cctx, DigestOf("sha256", other), p); err == nil {
			t.Fatal("commit with a cancelled context succeeded")
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("failed commit removed the source file: %v", err)
		}
		ups, err := d.c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(cfg.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		if len(ups.Uploads) != 0 {
			t.Errorf("%d multipart uploads left behind", len(ups.Uploads))
		}
	})
}

// commitBytes commits content to d and returns its digest.
func commitBytes(t *testing.T, d Driver, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	dg := DigestOf("sha256", content)
	if err := d.Commit(context.Background(), dg, p); err != nil {
		t.Fatal(err)
	}
	return dg
}
