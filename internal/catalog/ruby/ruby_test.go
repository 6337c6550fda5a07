package ruby

import (
	"os"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

// summary renders a package as "name@version [platform=P] [lic=A,B]".
func summary(p catalog.Package) string {
	return catalogtest.Describe(p, ",", "platform=")
}

func parseFile(t *testing.T, path string, data []byte) ([]catalog.Package, error) {
	t.Helper()
	return catalogtest.Parse(t, New(), catalog.TypeGem, "RubyGems", path, data)
}

func TestWants(t *testing.T) {
	c := New()
	catalogtest.AssertWants(t, c, 10, map[string]bool{
		"/usr/local/bundle/specifications/rake-13.0.6.gemspec":                     true,
		"/usr/local/lib/ruby/gems/3.2.0/specifications/default/json-2.6.3.gemspec": true,
		"/var/lib/gems/3.1.0/specifications/nokogiri-1.15.4-x86_64-linux.gemspec":  true,
		"/usr/local/bundle/gems/rake-13.0.6/rake.gemspec":                          false,
		"/app/Gemfile.lock": true,
		"/usr/local/bundle/gems/rack-2.2.8/Gemfile.lock": false,
		"/app/Gemfile":                   false,
		"/app/specifications/readme.txt": false,
	})
	catalogtest.AssertWantsAllocatesNothing(t, c, 0o644, 1, "/usr/local/bundle/specifications/rake-13.0.6.gemspec")
}

func TestGemspec(t *testing.T) {
	rake, err := os.ReadFile("testdata/rake-13.0.6.gemspec")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, src string
		want      []string
		wantErr   string
	}{
		{"rubygems 3", string(rake), []string{"rake@13.0.6 lic=MIT"}, ""},
		{"old rubygems %q and single license", "Gem::Specification.new do |s|\n  s.name = %q{json}\n  s.version = \"1.8.6\"\n  s.license = %q{Ruby}\nend\n",
			[]string{"json@1.8.6 lic=Ruby"}, ""},
		{"Gem::Version and several licenses", "Gem::Specification.new do |spec|\n  spec.name = 'nokogiri'\n  spec.version = Gem::Version.new(\"1.15.4\")\n  spec.platform = \"x86_64-linux\".freeze\n  spec.licenses = [\"MIT\".freeze, \"Apache-2.0\".freeze] # dual\nend\n",
			[]string{"nokogiri@1.15.4 platform=x86_64-linux lic=MIT,Apache-2.0"}, ""},
		{"%w licenses", "Gem::Specification.new do |s|\n  s.name = \"bigdecimal\"\n  s.version = \"3.1.1\"\n  s.licenses = %w[Ruby BSD-2-Clause]\nend\n",
			[]string{"bigdecimal@3.1.1 lic=Ruby,BSD-2-Clause"}, ""},
		{"multi-line licenses", "Gem::Specification.new do |s|\n  s.name = \"concurrent-ruby\"\n  s.version = \"1.2.2\"\n  s.licenses = [\"MIT\".freeze,\n    \"Apache-2.0\".freeze]\n  s.summary = \"x\"\nend\n",
			[]string{"concurrent-ruby@1.2.2 lic=MIT,Apache-2.0"}, ""},
		{"stub line only", "# stub: racc 1.7.1 ruby lib\n", []string{"racc@1.7.1"}, ""},
		{"comparison is not assignment", "# stub: a 1.0 ruby lib\nif s.name == \"x\"\n", []string{"a@1.0"}, ""},
		{"nothing", "puts 1\n", nil, "no name or version"},
		{"bad version", "s.name = \"a\"\ns.version = \"1.0; rm -rf\"\n", nil, "invalid gem version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkgs, err := parseFile(t, "/usr/local/bundle/specifications/x.gemspec", []byte(tt.src))
			catalogtest.RequireErr(t, err, tt.wantErr)
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
		})
	}
}

func TestGemfileLock(t *testing.T) {
	data, err := os.ReadFile("testdata/Gemfile.lock")
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := parseFile(t, "/app/Gemfile.lock", data)
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{
		"acme-internal@2.3.0",
		"actionpack@7.0.8",
		"graphql@2.1.0-rc1",
		"jruby-openssl@0.14.2 platform=java",
		"nokogiri@1.15.4 platform=x86_64-linux",
		"racc@1.7.1",
		"rack@2.2.8",
		"sorbet-runtime@0.5.11087",
	})
	if pkgs[0].Metadata["lockfile"] != "Gemfile.lock" {
		t.Errorf("metadata %v", pkgs[0].Metadata)
	}

	pkgs, err = parseFile(t, "/app/Gemfile.lock", []byte("GEM\r\n  remote: https://rubygems.org/\r\n  specs:\r\n    rack (2.2.8)\r\n    broken-entry\r\n    bad name (1.0)\r\n"))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"rack@2.2.8"})
	if err == nil || !strings.Contains(err.Error(), `line 5: expected "name (version)", got "broken-entry"`) ||
		!strings.Contains(err.Error(), "line 6: invalid gem name") {
		t.Errorf("error = %v", err)
	}
}
