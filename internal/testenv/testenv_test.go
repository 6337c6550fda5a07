package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookTool(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "moat-fake-tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOAT_TEST_TOOLS", dir)
	if got := LookTool("moat-fake-tool"); got != p {
		t.Fatalf("LookTool = %q, want %q", got, p)
	}
	if got := LookTool("moat-no-such-tool"); got != "" {
		t.Fatalf("LookTool found %q", got)
	}
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	if got := LookTool("adir"); got != "" {
		t.Fatalf("a directory is not a tool: %q", got)
	}
}

func TestSkipOrFailSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	ran := false
	t.Run("inner", func(t *testing.T) {
		defer func() { ran = true }()
		SkipOrFail(t, "missing %s", "thing")
		t.Error("SkipOrFail returned")
	})
	if !ran {
		t.Fatal("inner test did not run")
	}
}
