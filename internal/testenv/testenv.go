// Package testenv is test support: it finds the peer tools and services the
// end-to-end tests use, and applies the project's rule for missing ones —
// skip with a message on a developer machine, fail when CI=true (scripts/test.sh
// installs everything there, so a missing prerequisite is a bug).
package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CI reports whether the tests run in CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with msg, or fails it when CI=true.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatal("CI=true but " + msg)
	}
	t.Skip(msg)
}

// ToolDirs are the folders searched for peer tools, before PATH:
// $MOAT_TEST_TOOLS, then ~/.cache/moat-tools/bin (where scripts/build-tools.sh
// and scripts/peers/*.sh put them).
func ToolDirs() []string {
	var dirs []string
	if d := os.Getenv("MOAT_TEST_TOOLS"); d != "" {
		dirs = append(dirs, d)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "moat-tools", "bin"))
	}
	return dirs
}

// LookTool returns the path of a peer tool, or "" when there is none.
func LookTool(name string) string {
	for _, d := range ToolDirs() {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// Tool returns the path of a peer tool; a missing one skips the test (fails
// it when CI=true) with a message naming the script that installs it.
func Tool(t testing.TB, name, installHint string) string {
	t.Helper()
	if p := LookTool(name); p != "" {
		return p
	}
	SkipOrFail(t, "%s not found in $MOAT_TEST_TOOLS, ~/.cache/moat-tools/bin or PATH (%s)", name, installHint)
	return ""
}

// RequireDocker skips (fails when CI=true) without a Docker engine.
func RequireDocker(t testing.TB) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		SkipOrFail(t, "no Docker engine answers `docker info` (scripts/test.sh starts one): %v", err)
	}
}

// BuildMoat builds ./cmd/moat into a new temporary directory for tests that
// drive the real binary (from TestMain: it does not need a *testing.T).
// cleanup removes the directory.
func BuildMoat(prefix string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "moat")
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/moat")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building moat: %w", err)
	}
	return bin, cleanup, nil
}

// MainWithMoat is a TestMain for end-to-end packages: it builds cmd/moat
// into a temporary directory, stores the binary's path in *bin, runs the
// tests, removes the binary and exits with the tests' code.
func MainWithMoat(m *testing.M, prefix string, bin *string) {
	b, cleanup, err := BuildMoat(prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Stop asks a started process to stop with sig (nil: only wait), waits up
// to grace, then kills it, and returns when it has exited.
func Stop(cmd *exec.Cmd, sig os.Signal, grace time.Duration) {
	if sig != nil {
		cmd.Process.Signal(sig)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// WaitHealthy polls url with client (nil: http.DefaultClient) until it
// answers 200 OK or timeout passes; the error says what the last try got.
func WaitHealthy(client *http.Client, url string, timeout time.Duration) error {
	if client == nil {
		client = http.DefaultClient
	}
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return fmt.Errorf("not healthy after %s: %v", timeout, last)
}

// OSVData finds the real OSV data shared with the project (DIR/Go/all.zip,
// DIR/PyPI/all.zip): $MOAT_OSV_DATA, else /work/shared/osv, else
// ../../../shared/osv. Without it the test is skipped (failed in CI).
func OSVData(t testing.TB) string {
	t.Helper()
	for _, d := range []string{os.Getenv("MOAT_OSV_DATA"), "/work/shared/osv", "../../../shared/osv"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "Go", "all.zip")); err == nil {
			return d
		}
	}
	SkipOrFail(t, "real OSV data not found: set MOAT_OSV_DATA to a directory with Go/all.zip and PyPI/all.zip")
	return ""
}
