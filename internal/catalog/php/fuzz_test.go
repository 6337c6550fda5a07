package php

import (
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

func FuzzComposer(f *testing.F) {
	// The same input goes through both parsers.
	parseBoth := func(_ string, data []byte) ([]catalog.Package, error) {
		a, _ := parseComposerLock("/app/composer.lock", data)
		b, _ := parseInstalled("/app/vendor/composer/installed.json", data)
		return append(a, b...), nil
	}
	catalogtest.FuzzParse(f, parseBoth, "", catalogtest.ValidNameVersion(validName, validVersion),
		"testdata/composer.lock", "testdata/installed-v1.json", "testdata/installed-v2.json")
}
