package ruby

import (
	"testing"

	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

func FuzzGemspec(f *testing.F) {
	catalogtest.FuzzParse(f, parseGemspec, "/x", catalogtest.ValidNameVersion(validName, validVersion),
		"testdata/rake-13.0.6.gemspec",
		"s.name = %q{a}\ns.version = Gem::Version.new('1.0')\ns.licenses = %w[A B]\n", "s.name = \"a\\\"")
}

func FuzzGemfileLock(f *testing.F) {
	catalogtest.FuzzParse(f, parseGemfileLock, "/x", catalogtest.ValidNameVersion(validName, validVersion),
		"testdata/Gemfile.lock")
}
