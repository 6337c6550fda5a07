package ruby

import (
	"os"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

func fuzzParser(f *testing.F, parse func(string, []byte) ([]catalog.Package, error), file string, seeds ...string) {
	b, err := os.ReadFile(file)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, _ := parse("/x", data)
		for _, p := range pkgs {
			if !validName(p.Name) || !validVersion(p.Version) {
				t.Fatalf("invalid package: %+v", p)
			}
		}
	})
}

func FuzzGemspec(f *testing.F) {
	fuzzParser(f, parseGemspec, "testdata/rake-13.0.6.gemspec",
		"s.name = %q{a}\ns.version = Gem::Version.new('1.0')\ns.licenses = %w[A B]\n", "s.name = \"a\\\"")
}

func FuzzGemfileLock(f *testing.F) {
	fuzzParser(f, parseGemfileLock, "testdata/Gemfile.lock")
}
