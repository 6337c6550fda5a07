package registry

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConformance runs the OCI distribution-spec conformance suite (all
// four workflows, every OCI 1.1 option) against a fresh registry with
// authentication on, as a non-admin project owner.
func TestConformance(t *testing.T) {
	bin := tool(t, "oci-conformance.test")
	inst, ts := testRegistry(t)
	addUser(t, inst.Store, "conformance", "conf-pw", "conformance", "owner")
	results := t.TempDir()
	cmd := exec.Command(bin, "-test.timeout=10m")
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+strings.TrimPrefix(ts.URL, "http://"), "OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2", "OCI_VERSION=1.1",
		"OCI_RESULTS_DIR="+results, "OCI_USERNAME=conformance", "OCI_PASSWORD=conf-pw",
		"OCI_API_PULL=true", "OCI_API_PUSH=true", "OCI_API_BLOBS_ATOMIC=true", "OCI_API_BLOBS_DELETE=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true", "OCI_API_BLOBS_MOUNT_ANONYMOUS=true", "OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_MANIFESTS_ATOMIC=true", "OCI_API_MANIFESTS_DELETE=true", "OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true", "OCI_API_TAGS_ATOMIC=true", "OCI_API_TAGS_DELETE=true",
		"OCI_API_TAGS_LIST=true", "OCI_API_REFERRER=true",
		"OCI_DATA_IMAGE=true", "OCI_DATA_INDEX=true", "OCI_DATA_INDEX_LIST=true", "OCI_DATA_SPARSE=true",
		"OCI_DATA_ARTIFACT=true", "OCI_DATA_SUBJECT=true", "OCI_DATA_SUBJECT_MISSING=true",
		"OCI_DATA_ARTIFACT_LIST=true", "OCI_DATA_SUBJECT_LIST=true", "OCI_DATA_DATA_FIELD=true",
		"OCI_DATA_NONDISTRIBUTABLE=true", "OCI_DATA_CUSTOM_FIELDS=true", "OCI_DATA_NO_LAYERS=true",
		"OCI_DATA_EMPTY_BLOB=true", "OCI_DATA_SHA512=true",
	)
	out, err := cmd.CombinedOutput()
	raw, rerr := os.ReadFile(filepath.Join(results, "junit.xml"))
	if rerr != nil {
		t.Fatalf("no junit.xml (run error %v):\n%s", err, out)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &suites); err != nil {
		t.Fatal(err)
	}
	tests, fails, skips := suites.Tests, suites.Failures+suites.Errors, suites.Skipped
	if tests == 0 {
		for _, s := range suites.Suites {
			tests += s.Tests
			fails += s.Failures + s.Errors
			skips += s.Skipped
		}
	}
	t.Logf("conformance: %d tests, %d failures, %d skipped", tests, fails, skips)
	if os.Getenv("MOAT_CONFORMANCE_OUT") != "" {
		os.WriteFile(os.Getenv("MOAT_CONFORMANCE_OUT"), append(out, raw...), 0o644)
	}
	if tests == 0 || fails > 0 {
		t.Errorf("conformance suite: %d of %d tests failed\n%s", fails, tests, tail(string(out), 20000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
