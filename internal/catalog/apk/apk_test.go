package apk

import (
	"strings"
	"testing"
)

const installed = `C:Q1Y9Uv0l8kwF9E3n4V2xW7ycmUhR0=
P:musl
V:1.2.4-r2
A:x86_64
S:407210
I:663552
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1698245730
c:ed4c8a8fb5dd5e6b8ad0a0ac2b3e2b2b2b2b2b2b
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Rp+rR...

P:libcrypto3
V:3.1.4-r1
A:x86_64
L:Apache-2.0
o:openssl

`

func TestParseInstalled(t *testing.T) {
	pkgs, err := ParseInstalled(installed, "/lib/apk/db/installed")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkgs {
		got = append(got, p.Name+"|"+p.Version+"|"+p.SourceName+"|"+p.Arch+"|"+strings.Join(p.Licenses, ","))
	}
	want := "musl|1.2.4-r2|musl|x86_64|MIT\nlibcrypto3|3.1.4-r1|openssl|x86_64|Apache-2.0"
	if strings.Join(got, "\n") != want {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

func TestMalformed(t *testing.T) {
	pkgs, err := ParseInstalled("P:ok\nV:1-r0\n\ngarbage\nP:nover\n\n", "/x")
	if err == nil || !strings.Contains(err.Error(), "line 4 is not KEY:VALUE") || !strings.Contains(err.Error(), "no P: or V:") {
		t.Fatalf("err = %v", err)
	}
	if len(pkgs) != 1 {
		t.Fatalf("pkgs = %+v", pkgs)
	}
}

func FuzzParseInstalled(f *testing.F) {
	f.Add(installed)
	f.Add("P:\nV:\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, _ := ParseInstalled(s, "/lib/apk/db/installed")
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("package without name or version: %+v", p)
			}
		}
	})
}
