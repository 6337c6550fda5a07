package registry_e2e

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// conformance runs the OCI conformance suite (all workflows, every OCI 1.1
// option) against s as a non-admin project owner and returns tests and
// failures.
func conformance(t *testing.T, s *server, adminPW string) (int, int) {
	t.Helper()
	bin := tool(t, "oci-conformance.test")
	moat(t, s, "admin", adminPW, "project", "create", "conformance")
	moat(t, s, "admin", adminPW, "user", "add", "conf", "--new-password", "conf-pw")
	moat(t, s, "admin", adminPW, "member", "add", "conformance", "conf", "owner")
	results := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = results
	env := []string{"OCI_REGISTRY=" + s.addr, "OCI_TLS=disabled", "OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2",
		"OCI_VERSION=1.1", "OCI_RESULTS_DIR=" + results, "OCI_USERNAME=conf", "OCI_PASSWORD=conf-pw"}
	for _, k := range []string{"API_PULL", "API_PUSH", "API_BLOBS_ATOMIC", "API_BLOBS_DELETE", "API_BLOBS_DIGEST_HEADER",
		"API_BLOBS_MOUNT_ANONYMOUS", "API_BLOBS_UPLOAD_CANCEL", "API_MANIFESTS_ATOMIC", "API_MANIFESTS_DELETE",
		"API_MANIFESTS_DIGEST_HEADER", "API_MANIFESTS_TAG_PARAM", "API_TAGS_ATOMIC", "API_TAGS_DELETE", "API_TAGS_LIST",
		"API_REFERRER", "DATA_IMAGE", "DATA_INDEX", "DATA_INDEX_LIST", "DATA_SPARSE", "DATA_ARTIFACT", "DATA_SUBJECT",
		"DATA_SUBJECT_MISSING", "DATA_ARTIFACT_LIST", "DATA_SUBJECT_LIST", "DATA_DATA_FIELD", "DATA_NONDISTRIBUTABLE",
		"DATA_CUSTOM_FIELDS", "DATA_NO_LAYERS", "DATA_EMPTY_BLOB", "DATA_SHA512"} {
		env = append(env, "OCI_"+k+"=true")
	}
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	raw, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("no junit.xml:\n%s", out)
	}
	var js struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
	}
	xml.Unmarshal(raw, &js)
	t.Logf("conformance: %d tests, %d failures, %d skipped", js.Tests, js.Failures+js.Errors, js.Skipped)
	if js.Tests == 0 || js.Failures+js.Errors > 0 || js.Skipped > 0 {
		t.Errorf("conformance failures:\n%s", tailStr(string(out), 8000))
	}
	return js.Tests, js.Failures + js.Errors
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestConformanceServe runs the suite against a freshly started `moat serve`.
func TestConformanceServe(t *testing.T) {
	s := startServe(t, t.TempDir(), []string{"MOAT_ADMIN_PASSWORD=adminpw"})
	conformance(t, s, "adminpw")
}

// TestS3Storage serves blobs from versitygw (S3) and runs the conformance
// suite and crane against it.
func TestS3Storage(t *testing.T) {
	gw := tool(t, "versitygw")
	crane := tool(t, "crane")
	addr := freeAddr(t)
	root := t.TempDir()
	cmd := exec.Command(gw, "--port", addr, "posix", root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY=moatkey", "ROOT_SECRET_KEY=moatsecret1234")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + addr), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("moatkey", "moatsecret1234", "")})
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("moat")}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("versitygw: %v", err)
	}
	s := startServe(t, t.TempDir(), []string{"MOAT_ADMIN_PASSWORD=adminpw", "AWS_ACCESS_KEY_ID=moatkey", "AWS_SECRET_ACCESS_KEY=moatsecret1234"},
		"--storage", "s3://moat/registry", "--s3-endpoint", "http://"+addr, "--s3-region", "us-east-1")
	conformance(t, s, "adminpw")
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	mustRun(t, env, crane, "auth", "login", s.addr, "-u", "admin", "-p", "adminpw")
	layer := layerTar(t, t.TempDir(), map[string]string{"s3.txt": "stored in S3"})
	mustRun(t, env, crane, "append", "--insecure", "-f", layer, "-t", s.addr+"/team/s3:v1")
	mustRun(t, env, crane, "pull", "--insecure", s.addr+"/team/s3:v1", filepath.Join(t.TempDir(), "x.tar"))
	// The layer bytes live in the bucket, not in the data directory.
	n := 0
	filepath.WalkDir(filepath.Join(root, "moat", "registry", "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	if n < 2 {
		t.Errorf("%d objects in the bucket", n)
	}
	if _, err := os.Stat(filepath.Join(s.data, "blobs")); err == nil {
		t.Error("blobs written to the data directory with S3 storage")
	}
}
