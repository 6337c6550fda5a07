package storage

import (
	"context"
	"fmt"
	"github.com/moat-dev/moat/internal/testenv"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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
	c, _ := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4("moatkey", "moatsecret1234", ""), Region: "us-east-1"})
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err = c.MakeBucket(ctx, "moat", minio.MakeBucketOptions{Region: "us-east-1"})
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
	d, err := NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, d)
	bad := cfg
	bad.Bucket = "missing"
	if _, err := NewS3(context.Background(), bad); err == nil {
		t.Fatal("missing bucket accepted")
	}
	bad = cfg
	bad.SecretKey = "wrong"
	if _, err := NewS3(context.Background(), bad); err == nil {
		t.Fatal(fmt.Sprint("wrong secret accepted"))
	}
}
