package sbom

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read: it must never panic, and what it
// accepts must be writable again.
func FuzzRead(f *testing.F) {
	// Small seeds keep the fuzzer's minimization quick.
	s := testSubject()
	pkgs := testPackages(s)[:2]
	s.Layers = s.Layers[:1]
	var cdxBuf, spdxBuf bytes.Buffer
	if err := WriteCycloneDX(&cdxBuf, s, pkgs, testTool); err != nil {
		f.Fatal(err)
	}
	if err := WriteSPDX(&spdxBuf, s, pkgs, testTool); err != nil {
		f.Fatal(err)
	}
	f.Add(cdxBuf.Bytes())
	f.Add(spdxBuf.Bytes())
	files, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"type":"library","name":"x","purl":"pkg:deb/debian/x@1?distro=-&epoch=99999999999999999999","properties":[{"name":"moat:type","value":"deb"},{"name":"moat:location:999999:path","value":"/"}]}]}`))
	f.Add([]byte(`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[{"SPDXID":"SPDXRef-a","name":"a","licenseDeclared":"((((MIT","annotations":[{"annotator":"Tool: moat","annotationType":"OTHER","annotationDate":"x","comment":"moat:type=\"deb\"\nmoat:layer:5:diffID=\"x\""}]}],"relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-a"}]}`))
	f.Add([]byte(`<bom xmlns="http://cyclonedx.org/schema/bom/1.6"><components><component type="library"><name>x</name><purl>pkg:npm/x@1</purl></component></components></bom>`))
	f.Add([]byte("SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\nSPDXID: SPDXRef-DOCUMENT\nPackageName: p\nSPDXID: SPDXRef-p\nExternalRef: PACKAGE-MANAGER purl pkg:golang/a/b@v1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		subj, got, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteCycloneDX(&out, subj, got, testTool); err != nil {
			t.Fatalf("re-writing CycloneDX: %v", err)
		}
		if err := WriteSPDX(&out, subj, got, testTool); err != nil {
			t.Fatalf("re-writing SPDX: %v", err)
		}
	})
}
