package python

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

func fuzzParser(f *testing.F, parse func(string, []byte) ([]catalog.Package, error), seeds ...string) {
	catalogtest.FuzzParse(f, parse, "/app/requirements.txt", func(p catalog.Package) string {
		if p.Name == "" || p.Version == "" || p.Metadata["normalized"] == "" {
			return "incomplete package"
		}
		return ""
	}, seeds...)
}
func FuzzMetadata(f *testing.F) {
	fuzzParser(f, parseMetadata, "testdata/METADATA",
		"Name: a\nVersion: 1\nLicense: x\n  continued\nClassifier: License :: MIT\n")
}

func FuzzPoetryLock(f *testing.F) {
	fuzzParser(f, parsePoetryLock, "testdata/poetry.lock", "testdata/poetry2.lock")
}

func FuzzUVLock(f *testing.F) {
	fuzzParser(f, parseUVLock, "testdata/uv.lock")
}

func FuzzPipfileLock(f *testing.F) {
	fuzzParser(f, parsePipfileLock, "testdata/Pipfile.lock")
}

func FuzzRequirements(f *testing.F) {
	fuzzParser(f, parseRequirements, "testdata/requirements.txt", "a[b]==1 ; x\\\n --hash=y\n")
}

// BenchmarkPoetryLock parses a poetry.lock of 1,500 packages.
func BenchmarkPoetryLock(b *testing.B) {
	var sb strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&sb, "[[package]]\nname = \"pkg-%d\"\nversion = \"1.%d.0\"\ndescription = \"x\"\noptional = false\npython-versions = \">=3.8\"\nfiles = [\n    {file = \"pkg-%d.whl\", hash = \"sha256:%064d\"},\n]\n\n", i, i, i, i)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		pkgs, err := parsePoetryLock("/app/poetry.lock", data)
		if err != nil || len(pkgs) != 1500 {
			b.Fatalf("%d packages, %v", len(pkgs), err)
		}
	}
}
