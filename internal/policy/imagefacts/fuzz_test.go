package imagefacts

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/match"
)

const sampleAnswer = `[{"image":{"repository":"team/app","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","platform":"linux/amd64","status":"scanned","scanned":"2026-11-23T06:00:00Z","counts":{"CRITICAL":1},"push_findings":1},
 "report":{"schema":"moat.scan/v1","subject":{"name":"x","source":"registry","user":"1000","labels":{"team":"web"}},
  "layers":[{"index":0,"diffID":"sha256:aa","packages":1}],"packages":[{"name":"lodash","version":"4.17.15","type":"npm","ecosystem":"npm","purl":"pkg:npm/lodash@4.17.15","locations":[{"path":"/app/node_modules/lodash/package.json"}],"layer":0}],
  "vulnerabilities":{"database":{"updated":"2026-11-22T00:00:00Z"},"findings":[{"id":"CVE-2020-8203","aliases":["GHSA-p6mc-m468-83gw"],"records":["GHSA-p6mc-m468-83gw"],
   "package":{"name":"lodash","version":"4.17.15","type":"npm","ecosystem":"npm","purl":"pkg:npm/lodash@4.17.15","locations":[],"layer":0},"ecosystem":"npm","name":"lodash","version":"4.17.15",
   "severity":"CRITICAL","cvss":{"version":"3.1","vector":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","score":9.8},"fixedVersions":["4.17.19"]}],
   "counts":{"CRITICAL":1},"suppressedCount":1,"suppressed":[{"id":"CVE-1","records":["X"],"package":{"name":"a","version":"1","type":"npm","ecosystem":"npm","purl":"","locations":[],"layer":0},"ecosystem":"npm","name":"a","version":"1","severity":"LOW","suppressedBy":{"kind":"ignore"}}],"hiddenCount":0}},
 "first_seen":{"CVE-2020-8203 lodash":"2026-11-23T06:00:00Z"}}]`

func TestDecodeRegistryFindings(t *testing.T) {
	as, err := decodeRegistryFindings([]byte(sampleAnswer))
	if err != nil {
		t.Fatal(err)
	}
	a := pickAnswer(as, "", "linux/amd64")
	if a == nil {
		t.Fatal("no answer for linux/amd64")
	}
	if ok, why := a.ready(); !ok {
		t.Fatal(why)
	}
	f, complete := a.facts("r/team/app:1", "r")
	if !complete || f.User != "1000" || f.Labels["team"] != "web" || len(f.Layers) != 1 || f.FactsSource != SourceRegistry {
		t.Fatalf("facts %+v", f)
	}
	if len(f.Findings) != 2 || f.Findings[0].ID != "CVE-2020-8203" || f.Findings[0].CVSS.Score != 9.8 || !f.Findings[0].Fixed() || f.Findings[1].ID != "CVE-1" {
		t.Fatalf("findings %+v", f.Findings)
	}
	for _, bad := range []string{``, `{}`, `[{"image":{"digest":"latest"}}]`, `[{"image":{"digest":"sha256:zz"}}]`, `[{"image":` + strings.Repeat("[", 100) + `}]`} {
		if _, err := decodeRegistryFindings([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
	// not ready: queued, failed, no database there
	for status, want := range map[string]string{"queued": "not scanned the image yet (queued)", "failed": "scan failed: boom"} {
		as, _ := decodeRegistryFindings([]byte(`[{"image":{"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","status":"` + status + `","error":"boom"}}]`))
		if ok, why := as[0].ready(); ok || !strings.Contains(why, want) {
			t.Errorf("%s: %v %q", status, ok, why)
		}
	}
	if pickAnswer(append(as, as...), "", "linux/arm64") != nil {
		t.Error("two images, none for the platform: one was picked")
	}
}

func FuzzDecodeRegistryFindings(f *testing.F) {
	f.Add([]byte(sampleAnswer))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"image":{"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","status":"scanned"},"report":{"vulnerabilities":null}}]`))
	f.Add([]byte(`[{"image":{"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","status":"scanned"},"report":{"layers":[{"diffID":""}],"vulnerabilities":{"findings":[{"severity":"bogus"}]}}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		as, err := decodeRegistryFindings(b)
		if err != nil {
			return
		}
		for _, p := range []string{"", "linux/amd64", "linux/arm/v7"} {
			a := pickAnswer(as, "", p)
			if a == nil {
				continue
			}
			if ok, _ := a.ready(); ok {
				fs, _ := a.facts("ref", "host")
				if !fs.VulnsScanned || fs.FactsSource != SourceRegistry {
					t.Fatal("ready answer without vulnerability facts")
				}
			}
		}
	})
}

func sampleEntry() *Entry {
	return &Entry{Schema: EntrySchema, Key: "registry|sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef|linux/amd64",
		Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Layers: []string{"sha256:aa"}, User: "1000",
		CatalogVersion: "2", Packages: []catalog.Package{{Name: "lodash", Version: "4.17.15", Type: "npm", Ecosystem: "npm"}},
		Scanned: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), DBVersion: "sha256:1",
		Findings: []match.Finding{{ID: "CVE-2020-8203", Severity: match.Critical, CVSS: &match.CVSS{Version: "3.1", Score: 9.8}, FixedVersions: []string{"4.17.19"}}}}
}

func TestEntryRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteEntry(&buf, sampleEntry()); err != nil {
		t.Fatal(err)
	}
	e, err := ReadEntry(bytes.NewReader(buf.Bytes()))
	if err != nil || e.Key != sampleEntry().Key || len(e.Findings) != 1 || e.Findings[0].CVSS.Score != 9.8 || e.Packages[0].Name != "lodash" {
		t.Fatalf("%v %+v", err, e)
	}
	// truncated, not compressed, wrong schema, no digest
	raw := buf.Bytes()
	bad := [][]byte{raw[:len(raw)/2], []byte(`{"schema":"moat.facts/v1"}`), nil}
	for _, mod := range []func(*Entry){func(e *Entry) { e.Schema = "x" }, func(e *Entry) { e.Digest = "" }, func(e *Entry) { e.Key = "" }} {
		e := sampleEntry()
		mod(e)
		var b bytes.Buffer
		if err := WriteEntry(&b, e); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, b.Bytes())
	}
	for i, b := range bad {
		if _, err := ReadEntry(bytes.NewReader(b)); err == nil {
			t.Errorf("bad entry %d read", i)
		}
	}
}

func FuzzReadEntry(f *testing.F) {
	var buf bytes.Buffer
	WriteEntry(&buf, sampleEntry())
	f.Add(buf.Bytes())
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0})
	f.Add([]byte("not zstd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ReadEntry(bytes.NewReader(b))
		if err != nil {
			return
		}
		if e.Schema != EntrySchema || e.Key == "" || !validDigest(e.Digest) {
			t.Fatalf("accepted an invalid entry: %+v", e)
		}
		var out bytes.Buffer
		if err := WriteEntry(&out, e); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEntry(&out); err != nil {
			t.Fatalf("re-read: %v", err)
		}
	})
}
