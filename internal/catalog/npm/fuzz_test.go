package npm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

func fuzzParser(f *testing.F, parse func(string, []byte) ([]catalog.Package, error), seeds ...string) {
	catalogtest.FuzzParse(f, parse, "/app/x", catalogtest.HasNameVersion, seeds...)
}
func FuzzPackageJSON(f *testing.F) {
	fuzzParser(f, parsePackageJSON,
		`{"name":"express","version":"4.18.2","license":"MIT"}`,
		`{"name":"@a/b","version":"1.0.0","license":{"type":"MIT"}}`,
		`{"name":"p","version":"0.0.1","licenses":[{"type":"MIT"},"ISC",3]}`)
}

func FuzzPackageLock(f *testing.F) {
	fuzzParser(f, func(p string, b []byte) ([]catalog.Package, error) {
		return parsePackageLock(p, "package-lock.json", b)
	}, "testdata/package-lock-v1.json", "testdata/package-lock-v3.json",
		`{"dependencies":{"a":{"version":"npm:@s/b@1.0.0","dependencies":{"c":{"version":"1"}}}}}`)
}

func FuzzYarnLock(f *testing.F) {
	fuzzParser(f, parseYarnLock, "testdata/yarn-classic.lock", "testdata/yarn-berry.lock",
		"\"a@npm:b@^1\", a@^2:\n  version \"1.0.0\"\n")
}

func FuzzPnpmLock(f *testing.F) {
	fuzzParser(f, parsePnpmLock, "testdata/pnpm-lock-v5.yaml", "testdata/pnpm-lock-v6.yaml", "testdata/pnpm-lock-v9.yaml")
}

// BenchmarkPackageLock parses a package-lock.json v3 of 1,500 packages.
func BenchmarkPackageLock(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"name":"big","lockfileVersion":3,"packages":{"":{"name":"big"}`)
	for i := range 1500 {
		fmt.Fprintf(&sb, `,"node_modules/pkg-%d":{"version":"1.%d.0","resolved":"https://registry.npmjs.org/pkg-%d/-/pkg-%d-1.%d.0.tgz","integrity":"sha512-%064d","license":"MIT","dependencies":{"dep-a":"^1.0.0","dep-b":"^2.0.0"}}`, i, i, i, i, i, i)
	}
	sb.WriteString("}}")
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		pkgs, err := parsePackageLock("/app/package-lock.json", "package-lock.json", data)
		if err != nil || len(pkgs) != 1500 {
			b.Fatalf("%d packages, %v", len(pkgs), err)
		}
	}
}
