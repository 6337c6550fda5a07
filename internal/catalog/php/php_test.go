package php

import (
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

// summary renders a package as "name@version [dev] [lic=A,B]".
func summary(p catalog.Package) string {
	return catalogtest.Describe(p, ",", "dev")
}

func parseFile(t *testing.T, path string, data []byte) ([]catalog.Package, error) {
	t.Helper()
	pkgs, err := catalogtest.Parse(t, New(), catalog.TypeComposer, "Packagist", path, data)
	for _, p := range pkgs {
		if p.Namespace != "" {
			t.Errorf("%s: namespace %q", p.Name, p.Namespace)
		}
	}
	return pkgs, err
}

func TestWants(t *testing.T) {
	c := New()
	catalogtest.AssertWants(t, c, 10, map[string]bool{
		"/var/www/html/composer.lock":                          true,
		"/var/www/html/vendor/composer/installed.json":         true,
		"/var/www/html/vendor/guzzlehttp/guzzle/composer.lock": false,
		"/var/www/html/composer.json":                          false,
		"/var/www/html/vendor/composer/installed.php":          false,
		"/var/www/html/installed.json":                         false,
	})
	catalogtest.AssertWantsAllocatesNothing(t, c, 0o644, 1, "/var/www/html/vendor/composer/installed.json")
}

func TestComposerLock(t *testing.T) {
	pkgs, err := parseFile(t, "/var/www/html/composer.lock", catalogtest.ReadTestdata(t, "composer.lock"))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{
		"acme/legacy@dev-master lic=proprietary",
		"guzzlehttp/guzzle@7.8.1 lic=MIT",
		"monolog/monolog@3.5.0 lic=MIT,Apache-2.0",
		"phpunit/phpunit@10.5.3 dev lic=BSD-3-Clause",
		"symfony/http-foundation@v6.4.0 lic=MIT",
	})
	if pkgs[0].Metadata["lockfile"] != "composer.lock" {
		t.Errorf("metadata %v", pkgs[0].Metadata)
	}
}

func TestInstalledJSON(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"installed-v1.json", []string{"psr/log@1.1.4 lic=MIT", "symfony/console@v4.4.49 lic=MIT"}},
		{"installed-v2.json", []string{"laravel/framework@v10.38.2 lic=MIT", "nesbot/carbon@2.72.1 lic=MIT", "phpunit/phpunit@10.5.3 dev lic=BSD-3-Clause"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkgs, err := parseFile(t, "/app/vendor/composer/installed.json", catalogtest.ReadTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			catalogtest.CheckSummary(t, pkgs, summary, tt.want)
		})
	}
}

func TestMalformed(t *testing.T) {
	pkgs, err := parseFile(t, "/app/composer.lock", []byte(`{"packages":[{"name":"a/b","version":"1.0.0"},{"name":"nonamespace","version":"1"},{"name":"c/d","version":2}]}`))
	catalogtest.CheckSummary(t, pkgs, summary, []string{"a/b@1.0.0"})
	if err == nil || !strings.Contains(err.Error(), `packages[1]: invalid package name "nonamespace"`) || !strings.Contains(err.Error(), "packages[2]:") {
		t.Errorf("error = %v", err)
	}
	_, err = parseFile(t, "/app/vendor/composer/installed.json", []byte("{\n\"packages\": [\n}"))
	if err == nil || !strings.Contains(err.Error(), "invalid JSON at line 3") {
		t.Errorf("error = %v", err)
	}
	pkgs, err = parseFile(t, "/app/vendor/composer/installed.json", []byte("\ufeff[{\"name\":\"a/b\",\"version\":\"1\"}]"))
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.CheckSummary(t, pkgs, summary, []string{"a/b@1"})
}
