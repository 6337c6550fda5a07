package php

import (
	"os"
	"testing"
)

func FuzzComposer(f *testing.F) {
	for _, n := range []string{"composer.lock", "installed-v1.json", "installed-v2.json"} {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, _ := parseComposerLock("/app/composer.lock", data)
		b, _ := parseInstalled("/app/vendor/composer/installed.json", data)
		for _, p := range append(a, b...) {
			if !validName(p.Name) || !validVersion(p.Version) {
				t.Fatalf("invalid package: %+v", p)
			}
		}
	})
}
