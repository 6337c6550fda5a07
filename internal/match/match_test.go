package match

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/testenv"
	"github.com/moat-dev/moat/internal/vulndb"
)

var (
	realOnce sync.Once
	realDir  string
	realErr  error
)

// realDB imports the real Go and PyPI data once per test binary.
func realDB(t *testing.T) *vulndb.DB {
	data := testenv.OSVData(t)
	realOnce.Do(func() {
		realDir, realErr = os.MkdirTemp("", "moat-match-")
		if realErr != nil {
			return
		}
		_, realErr = vulndb.Import(context.Background(), realDir, []string{filepath.Join(data, "Go", "all.zip"), filepath.Join(data, "PyPI", "all.zip")}, vulndb.ImportOptions{})
	})
	if realErr != nil {
		t.Fatal(realErr)
	}
	db, err := vulndb.Open(realDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMain(m *testing.M) {
	code := m.Run()
	if realDir != "" {
		os.RemoveAll(realDir)
	}
	os.Exit(code)
}

// dbFrom builds a database from hand-written OSV records.
func dbFrom(t *testing.T, records ...string) *vulndb.DB {
	t.Helper()
	src := t.TempDir()
	for i, r := range records {
		if err := os.WriteFile(filepath.Join(src, "r"+string(rune('a'+i))+".json"), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	res, err := vulndb.Import(context.Background(), dir, []string{src}, vulndb.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Malformed) > 0 {
		t.Fatalf("test records malformed: %v", res.Malformed)
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func run(t *testing.T, db *vulndb.DB, pkgs ...catalog.Package) *Result {
	t.Helper()
	res, err := Matcher{DB: db}.Match(context.Background(), pkgs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// records returns "package@version: RECORD,RECORD" per finding, sorted.
func recordsOf(res *Result) map[string][]string {
	out := map[string][]string{}
	for _, f := range res.Findings {
		k := f.Package.Name + "@" + f.Package.Version
		out[k] = append(out[k], f.Records...)
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

func findingFor(res *Result, pkg, record string) *Finding {
	for i := range res.Findings {
		f := &res.Findings[i]
		if f.Package.Name == pkg && contains(f.Records, record) {
			return f
		}
	}
	return nil
}

func goPkg(name, ver string) catalog.Package {
	return catalog.Package{Name: name, Version: ver, Type: catalog.TypeGo, Ecosystem: "Go", PURL: "pkg:golang/" + name + "@" + ver,
		Layer: 2, CreatedBy: "COPY app /app", Locations: []catalog.Location{{Path: "/app", Layer: 2}}}
}

func TestGoReal(t *testing.T) {
	db := realDB(t)
	res := run(t, db,
		goPkg("golang.org/x/text", "v0.3.6"),
		goPkg("golang.org/x/text", "v0.3.7"),
		goPkg("golang.org/x/text", "v0.3.8"),
		goPkg("golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c"),
		goPkg("stdlib", "v1.22.0"),
		goPkg("stdlib", "go1.21.7"),
		goPkg("stdlib", "v1.22.1"),
	)
	has := func(pkg, ver, rec string) bool {
		for _, f := range res.Findings {
			if f.Package.Name == pkg && f.Package.Version == ver && contains(f.Records, rec) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		pkg, ver, rec string
		want          bool
	}{
		{"golang.org/x/text", "v0.3.6", "GO-2021-0113", true},
		{"golang.org/x/text", "v0.3.6", "GO-2022-1059", true},
		{"golang.org/x/text", "v0.3.7", "GO-2021-0113", false}, // fixed in 0.3.7
		{"golang.org/x/text", "v0.3.7", "GO-2022-1059", true},
		{"golang.org/x/text", "v0.3.8", "GO-2022-1059", false},
		{"golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c", "GO-2021-0113", true},
		{"golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c", "GO-2022-1059", true},
		{"stdlib", "v1.22.0", "GO-2024-2598", true},
		{"stdlib", "go1.21.7", "GO-2024-2598", true},
		{"stdlib", "v1.22.1", "GO-2024-2598", false},
	} {
		if got := has(c.pkg, c.ver, c.rec); got != c.want {
			t.Errorf("%s@%s %s: %v, want %v", c.pkg, c.ver, c.rec, got, c.want)
		}
	}
	var f *Finding
	for i := range res.Findings {
		if res.Findings[i].Package.Version == "v0.3.7" && contains(res.Findings[i].Records, "GO-2022-1059") {
			f = &res.Findings[i]
		}
	}
	// aliases folded: the CVE is the primary ID, GHSA and GO are aliases
	if f == nil || f.ID != "CVE-2022-32149" || strings.Join(f.Aliases, ",") != "GHSA-69ch-w2m2-3vjp,GO-2022-1059" ||
		strings.Join(f.FixedVersions, ",") != "v0.3.8" || f.Severity != Unknown || f.Package.CreatedBy != "COPY app /app" {
		t.Fatalf("x/text v0.3.7 finding = %+v", f)
	}
	for _, fd := range res.Findings {
		if fd.Package.Version == "go1.21.7" && contains(fd.Records, "GO-2024-2598") && strings.Join(fd.FixedVersions, ",") != "v1.21.8" {
			t.Errorf("stdlib go1.21.7 fixed = %v", fd.FixedVersions)
		}
	}
	// upgrade advice: the newest fix (v0.39.0, GO-2026-5970) clears every
	// finding of 0.3.6
	n036 := 0
	for _, f := range res.Findings {
		if f.Package.Version == "v0.3.6" {
			n036++
		}
	}
	var up *Upgrade
	for _, u := range res.Upgrades() {
		if u.Name == "golang.org/x/text" && u.From == "v0.3.6" {
			uu := u
			up = &uu
		}
	}
	if up == nil || up.To != "v0.39.0" || up.Fixes != n036 || n036 < 3 || up.String() != fmt.Sprintf("upgrade golang.org/x/text to v0.39.0: fixes %d", n036) {
		t.Fatalf("upgrade = %+v", up)
	}
}

func pyPkg(name, ver string) catalog.Package {
	return catalog.Package{Name: name, Version: ver, Type: catalog.TypePyPI, Ecosystem: "PyPI", PURL: "pkg:pypi/" + strings.ToLower(name) + "@" + ver}
}

func TestPyPIReal(t *testing.T) {
	db := realDB(t)
	res := run(t, db,
		pyPkg("Jinja2", "2.10"),
		pyPkg("PyYAML", "5.3"),
		pyPkg("twisted", "20.2.0"),
		pyPkg("Twisted", "20.3.0rc1"),
		pyPkg("twisted", "20.3.0.dev0"),
		pyPkg("ansible", "2.8.15"),
		pyPkg("ansible", "2.8.16"),
		pyPkg("ansible", "2.9.13"),
		pyPkg("Beaker", "1.6.5"),
		pyPkg("beaker", "1.6.5.post1"),
	)
	got := recordsOf(res)
	if g := strings.Join(got["Jinja2@2.10"], ","); g != "PYSEC-2019-217,PYSEC-2021-66" {
		t.Errorf("Jinja2 2.10 = %s", g)
	}
	if g := strings.Join(got["PyYAML@5.3"], ","); g != "PYSEC-2020-96,PYSEC-2021-142" {
		t.Errorf("PyYAML 5.3 = %s", g)
	}
	check := func(pkg, ver, rec string, want bool, fixed string) {
		t.Helper()
		var f *Finding
		for i := range res.Findings {
			if res.Findings[i].Package.Name == pkg && res.Findings[i].Package.Version == ver && contains(res.Findings[i].Records, rec) {
				f = &res.Findings[i]
			}
		}
		if (f != nil) != want {
			t.Errorf("%s %s %s: found=%v, want %v", pkg, ver, rec, f != nil, want)
			return
		}
		if f != nil && fixed != "" && !contains(f.FixedVersions, fixed) {
			t.Errorf("%s %s %s: fixed %v, want %s", pkg, ver, rec, f.FixedVersions, fixed)
		}
	}
	// pre-releases: fixed in 20.3.0rc1
	check("twisted", "20.2.0", "PYSEC-2020-259", true, "20.3.0rc1")
	check("Twisted", "20.3.0rc1", "PYSEC-2020-259", false, "")
	check("twisted", "20.3.0.dev0", "PYSEC-2020-259", true, "")
	// two branches: 2.8.0..2.8.16rc1 and 2.9.0..2.9.14rc1
	check("ansible", "2.8.15", "PYSEC-2020-209", true, "2.8.16rc1")
	check("ansible", "2.8.16", "PYSEC-2020-209", false, "")
	check("ansible", "2.9.13", "PYSEC-2020-209", true, "2.9.14rc1")
	// post-release fix
	check("Beaker", "1.6.5", "PYSEC-2012-1", true, "1.6.5.post1")
	check("beaker", "1.6.5.post1", "PYSEC-2012-1", false, "")
}

const (
	debOpenSSL = `{"id":"DSA-5532-1","modified":"2023-10-24T00:00:00Z","aliases":["CVE-2023-5363"],"summary":"openssl - security update",
"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]},
{"package":{"ecosystem":"Debian:11","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.1w-0+deb11u1"}]}]}]}`
	debLastAffected = `{"id":"DEBIAN-CVE-2024-1111","modified":"2024-01-01T00:00:00Z","upstream":["CVE-2024-1111"],
"affected":[{"package":{"ecosystem":"Debian:12","name":"glibc"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"last_affected":"2.36-9+deb12u4"}]}]}]}`
	debPlain = `{"id":"DEBIAN-CVE-2024-2222","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"Debian","name":"foo"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.0-2"}]}]}]}`
	debVersions = `{"id":"DLA-3000-1","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"Debian:12","name":"bar"},"versions":["1.2-3"]}]}`
	ubuntuRec = `{"id":"UBUNTU-CVE-2024-3333","modified":"2024-01-01T00:00:00Z","severity":[{"type":"Ubuntu","score":"medium"}],
"affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"curl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"7.81.0-1ubuntu1.16"}]}]}]}`
)

func debPkg(eco, name, ver, src, srcVer string) catalog.Package {
	return catalog.Package{Name: name, Version: ver, Type: catalog.TypeDeb, Ecosystem: eco, SourceName: src, SourceVersion: srcVer,
		PURL: "pkg:deb/debian/" + name + "@" + ver}
}

func TestDebianUbuntu(t *testing.T) {
	db := dbFrom(t, debOpenSSL, debLastAffected, debPlain, debVersions, ubuntuRec)
	res := run(t, db,
		// binary libssl3 from source openssl, binNMU rebuild
		debPkg("Debian:12", "libssl3", "3.0.11-1~deb12u1+b2", "openssl", "3.0.11-1~deb12u1"),
		debPkg("Debian:12", "openssl", "3.0.11-1~deb12u2", "", ""),
		debPkg("Debian:11", "libssl1.1", "1.1.1w-0+deb11u1", "openssl", ""),
		debPkg("Debian:11", "libssl1.1", "1.1.1n-0+deb11u5", "openssl", ""),
		// last_affected with a binNMU suffix only on the binary version
		debPkg("Debian:12", "libc6", "2.36-9+deb12u4+b1", "glibc", ""),
		debPkg("Debian:12", "libc6", "2.36-9+deb12u5", "glibc", ""),
		// an epoch only the binary carries
		debPkg("Debian:12", "libfoo1", "1:2.0-1", "foo", "2.0-1"),
		debPkg("Debian:12", "libfoo1", "1:2.0-2", "foo", "2.0-2"),
		// explicit versions list, binNMU
		debPkg("Debian:12", "bar", "1.2-3+b1", "", ""),
		// another release does not see Debian:12 records
		debPkg("Debian:10", "libssl1.1", "1.1.1n-0+deb10u3", "openssl", ""),
		debPkg("Ubuntu:22.04:LTS", "libcurl4", "7.81.0-1ubuntu1.15", "curl", "7.81.0-1ubuntu1.15"),
	)
	got := recordsOf(res)
	want := map[string]string{
		"libssl3@3.0.11-1~deb12u1+b2": "DSA-5532-1",
		"libssl1.1@1.1.1n-0+deb11u5":  "DSA-5532-1",
		"libc6@2.36-9+deb12u4+b1":     "DEBIAN-CVE-2024-1111",
		"libfoo1@1:2.0-1":             "DEBIAN-CVE-2024-2222",
		"bar@1.2-3+b1":                "DLA-3000-1",
		"libcurl4@7.81.0-1ubuntu1.15": "UBUNTU-CVE-2024-3333",
	}
	for k, v := range want {
		if strings.Join(got[k], ",") != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("findings for %v, want only %v", got, want)
	}
	f := findingFor(res, "libssl3", "DSA-5532-1")
	if f.ID != "CVE-2023-5363" || f.Name != "openssl" || f.Version != "3.0.11-1~deb12u1" || strings.Join(f.FixedVersions, ",") != "3.0.11-1~deb12u2" {
		t.Errorf("libssl3 finding = %+v", f)
	}
	if f := findingFor(res, "libc6", "DEBIAN-CVE-2024-1111"); f.Fixed() {
		t.Errorf("last_affected finding has a fix: %v", f.FixedVersions)
	}
	if f := findingFor(res, "libcurl4", "UBUNTU-CVE-2024-3333"); f.Severity != Medium || f.SeveritySource != "ecosystem" {
		t.Errorf("Ubuntu priority: %v %q", f.Severity, f.SeveritySource)
	}
}

const (
	alpineRec = `{"id":"ALPINE-CVE-2023-42363","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"Alpine:v3.20","name":"busybox"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.36.1-r29"}]}]}]}`
	rockyRec = `{"id":"RLSA-2024:0001","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2024-4444"],
"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
"affected":[{"package":{"ecosystem":"Rocky Linux:9","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:3.0.7-25.el9_3"}]}]}]}`
)

func TestAlpineRPM(t *testing.T) {
	db := dbFrom(t, alpineRec, rockyRec)
	e0, e1, e2 := 0, 1, 2
	apk := func(name, ver, origin string) catalog.Package {
		return catalog.Package{Name: name, Version: ver, Type: catalog.TypeApk, Ecosystem: "Alpine:v3.20", SourceName: origin}
	}
	rpm := func(ver, rel string, epoch *int) catalog.Package {
		return catalog.Package{Name: "openssl", Version: ver, Release: rel, Epoch: epoch, Type: catalog.TypeRPM, Ecosystem: "Rocky Linux:9"}
	}
	res := run(t, db,
		apk("ssl_client", "1.36.1-r28", "busybox"),
		apk("busybox", "1.36.1-r29", "busybox"),
		apk("busybox", "1.36.1-r3", "busybox"), // -r3 < -r29 numerically
		rpm("3.0.7", "24.el9", &e1),
		rpm("3.0.7", "24.el9", &e0), // epoch 0 < 1: affected
		rpm("3.0.7", "25.el9_3", &e1),
		rpm("3.0.1", "1.el9", &e2), // higher epoch wins
	)
	got := recordsOf(res)
	for k, want := range map[string]bool{
		"ssl_client@1.36.1-r28": true, "busybox@1.36.1-r29": false, "busybox@1.36.1-r3": true,
	} {
		if (len(got[k]) > 0) != want {
			t.Errorf("%s: %v", k, got[k])
		}
	}
	var rpmVers []string
	for _, f := range res.Findings {
		if f.Package.Type == catalog.TypeRPM {
			rpmVers = append(rpmVers, f.Version)
			if f.Severity != Medium || f.CVSS == nil || f.CVSS.Score != 5.9 {
				t.Errorf("rpm severity %v %+v", f.Severity, f.CVSS)
			}
		}
	}
	sort.Strings(rpmVers)
	if strings.Join(rpmVers, " ") != "1:3.0.7-24.el9 3.0.7-24.el9" {
		t.Errorf("rpm findings for %v", rpmVers)
	}
}

const (
	mavenRec = `{"id":"GHSA-jjjh-jjxp-wpff","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2022-42003"],
"database_specific":{"severity":"HIGH"},
"affected":[{"package":{"ecosystem":"Maven","name":"com.fasterxml.jackson.core:jackson-databind"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"2.13.0"},{"fixed":"2.13.4.1"}]}]},
{"package":{"ecosystem":"Maven","name":"com.fasterxml.jackson.core:jackson-databind"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"2.14.0-rc1"},{"last_affected":"2.14.0-rc2"}]}]}]}`
	npmRec = `{"id":"GHSA-35jh-r3h4-6jhm","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2021-23337"],
"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}],
"affected":[{"package":{"ecosystem":"npm","name":"lodash"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"4.17.21"}]}]}]}`
	npmLimit = `{"id":"OSV-LIMIT-1","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"npm","name":"limited"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.0.0"},{"limit":"2.0.0"}]},{"type":"GIT","repo":"https://example.com/x","events":[{"introduced":"abc"},{"fixed":"def"}]}],"versions":["0.9.0"]}]}`
	pyFoldA = `{"id":"PYSEC-2021-1","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2021-9999","GHSA-aaaa-bbbb-cccc"],
"affected":[{"package":{"ecosystem":"PyPI","name":"Some_Package"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0.post1"}]}]}]}`
	pyFoldB = `{"id":"GHSA-aaaa-bbbb-cccc","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2021-9999"],
"severity":[{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"}],
"affected":[{"package":{"ecosystem":"PyPI","name":"some-package"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0.5rc1"},{"fixed":"1.0.post1"}]}]}]}`
	gemRec = `{"id":"GHSA-gem-1","modified":"2024-01-01T00:00:00Z","database_specific":{"severity":"MODERATE"},
"affected":[{"package":{"ecosystem":"RubyGems","name":"rails"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"7.0.0"},{"fixed":"7.0.4.3"},{"introduced":"7.1.0.beta1"},{"fixed":"7.1.0"}]}]}]}`
	nugetRec = `{"id":"GHSA-nuget-1","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"NuGet","name":"System.Text.Encodings.Web"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"4.0.0"},{"fixed":"4.0.1"}]}]}]}`
	cratesRec = `{"id":"RUSTSEC-2020-0071","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"crates.io","name":"time"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0.0.0-0"},{"fixed":"0.2.23"}]}]}]}`
	composerRec = `{"id":"GHSA-composer-1","modified":"2024-01-01T00:00:00Z",
"affected":[{"package":{"ecosystem":"Packagist","name":"symfony/http-kernel"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"5.0.0"},{"fixed":"5.4.20"}]}]}]}`
)

func TestLanguageEcosystems(t *testing.T) {
	db := dbFrom(t, mavenRec, npmRec, npmLimit, pyFoldA, pyFoldB, gemRec, nugetRec, cratesRec, composerRec)
	mvn := func(v string) catalog.Package {
		return catalog.Package{Namespace: "com.fasterxml.jackson.core", Name: "jackson-databind", Version: v, Type: catalog.TypeMaven, Ecosystem: "Maven"}
	}
	p := func(typ catalog.Type, eco, name, v string) catalog.Package {
		return catalog.Package{Name: name, Version: v, Type: typ, Ecosystem: eco}
	}
	res := run(t, db,
		mvn("2.13.4"), mvn("2.13.4.1"), mvn("2.14.0-rc2"), mvn("2.14.0"), mvn("2.12.7"),
		p(catalog.TypeNpm, "npm", "lodash", "4.17.20"),
		p(catalog.TypeNpm, "npm", "lodash", "4.17.21-rc.1"),
		p(catalog.TypeNpm, "npm", "lodash", "4.17.21"),
		p(catalog.TypeNpm, "npm", "limited", "1.5.0"),
		p(catalog.TypeNpm, "npm", "limited", "2.1.0"),
		p(catalog.TypeNpm, "npm", "limited", "0.9.0"),
		p(catalog.TypePyPI, "PyPI", "some.package", "1.0"),
		p(catalog.TypePyPI, "PyPI", "Some-Package", "1.0.post1"),
		p(catalog.TypePyPI, "PyPI", "some_package", "0.4"),
		p(catalog.TypeGem, "RubyGems", "rails", "7.0.4.2"),
		p(catalog.TypeGem, "RubyGems", "rails", "7.1.0.rc2"),
		p(catalog.TypeGem, "RubyGems", "rails", "7.0.4.3"),
		p(catalog.TypeNuGet, "NuGet", "system.text.encodings.web", "4.0.0"),
		p(catalog.TypeCargo, "crates.io", "time", "0.1.43"),
		p(catalog.TypeCargo, "crates.io", "time", "0.2.23"),
		p(catalog.TypeComposer, "Packagist", "symfony/http-kernel", "v5.4.19"),
		p(catalog.TypeComposer, "Packagist", "symfony/http-kernel", "v5.4.20"),
	)
	got := recordsOf(res)
	want := map[string]string{
		"jackson-databind@2.13.4":         "GHSA-jjjh-jjxp-wpff",
		"jackson-databind@2.14.0-rc2":     "GHSA-jjjh-jjxp-wpff",
		"lodash@4.17.20":                  "GHSA-35jh-r3h4-6jhm",
		"lodash@4.17.21-rc.1":             "GHSA-35jh-r3h4-6jhm",
		"limited@1.5.0":                   "OSV-LIMIT-1",
		"limited@0.9.0":                   "OSV-LIMIT-1",
		"some.package@1.0":                "GHSA-aaaa-bbbb-cccc,PYSEC-2021-1",
		"some_package@0.4":                "PYSEC-2021-1",
		"rails@7.0.4.2":                   "GHSA-gem-1",
		"rails@7.1.0.rc2":                 "GHSA-gem-1",
		"system.text.encodings.web@4.0.0": "GHSA-nuget-1",
		"time@0.1.43":                     "RUSTSEC-2020-0071",
		"symfony/http-kernel@v5.4.19":     "GHSA-composer-1",
	}
	for k, v := range want {
		if strings.Join(got[k], ",") != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected finding for %s: %v", k, got[k])
		}
	}
	// one finding for the two folded PyPI records, CVE primary, CVSS v4
	n := 0
	for _, f := range res.Findings {
		if f.Package.Name == "some.package" {
			n++
			if f.ID != "CVE-2021-9999" || strings.Join(f.Aliases, ",") != "GHSA-aaaa-bbbb-cccc,PYSEC-2021-1" ||
				f.Severity != Critical || f.CVSS == nil || f.CVSS.Version != "4.0" || f.CVSS.Score != 9.3 {
				t.Errorf("folded finding = %+v %+v", f, f.CVSS)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d findings for some.package, want 1", n)
	}
	if f := findingFor(res, "lodash", "GHSA-35jh-r3h4-6jhm"); f.Severity != High || f.CVSS.Score != 7.2 || f.SeveritySource != "CVSS 3.1" {
		t.Errorf("lodash severity %v %+v", f.Severity, f.CVSS)
	}
	if f := findingFor(res, "jackson-databind", "GHSA-jjjh-jjxp-wpff"); f.Severity != High || f.SeveritySource != "ecosystem" || f.Name != "com.fasterxml.jackson.core:jackson-databind" {
		t.Errorf("maven finding %+v", f)
	}
	if f := findingFor(res, "rails", "GHSA-gem-1"); f.Severity != Medium {
		t.Errorf("gem severity %v", f.Severity)
	}
	for _, f := range res.Findings {
		if f.Package.Name == "rails" && f.Package.Version == "7.1.0.rc2" && strings.Join(f.FixedVersions, ",") != "7.1.0" {
			t.Errorf("rails 7.1.0.rc2 fixed = %v", f.FixedVersions)
		}
	}
	if res.Max() != Critical || len(res.AtOrAbove(High)) != 5 {
		t.Errorf("max %v, >= high %d", res.Max(), len(res.AtOrAbove(High)))
	}
}

func TestAffectsEdges(t *testing.T) {
	a := &vulndb.Affected{Ranges: []vulndb.Range{{Type: "ECOSYSTEM", Events: []vulndb.Event{
		// unsorted events: must be sorted by version before walking
		{Fixed: "1.5"}, {Introduced: "2.0"}, {Introduced: "1.0"}, {Fixed: "2.3"},
	}}}}
	for v, want := range map[string]bool{"0.9": false, "1.0": true, "1.4.9": true, "1.5": false, "1.9": false, "2.0": true, "2.2": true, "2.3": false} {
		got, fixed, err := Affects(a, "PyPI", v)
		if err != nil || got != want {
			t.Errorf("%s: %v %v", v, got, err)
		}
		if v == "1.4.9" && strings.Join(fixed, ",") != "1.5" || v == "2.2" && strings.Join(fixed, ",") != "2.3" {
			t.Errorf("%s: fixed %v", v, fixed)
		}
	}
	// an unparsable installed version is reported, not guessed
	if got, _, err := Affects(a, "PyPI", "not a version!"); got || err == nil {
		t.Errorf("bad version: %v %v", got, err)
	}
	// introduced and fixed at the same version: nothing affected
	b := &vulndb.Affected{Ranges: []vulndb.Range{{Type: "SEMVER", Events: []vulndb.Event{{Introduced: "1.0.0"}, {Fixed: "1.0.0"}}}}}
	if got, _, _ := Affects(b, "npm", "1.0.0"); got {
		t.Error("introduced == fixed affected")
	}
}

func TestQuery(t *testing.T) {
	e := 2
	for _, c := range []struct {
		p    catalog.Package
		name string
		ver  string
	}{
		{catalog.Package{Name: "libssl3", Version: "3.0.11-1~deb12u2+b1", Ecosystem: "Debian:12", SourceName: "openssl", Type: catalog.TypeDeb}, "openssl", "3.0.11-1~deb12u2"},
		{catalog.Package{Name: "x", Version: "1.0", Namespace: "org.example", Ecosystem: "Maven", Type: catalog.TypeMaven}, "org.example:x", "1.0"},
		{catalog.Package{Name: "bash", Version: "5.1.8", Release: "6.el9", Epoch: &e, Ecosystem: "AlmaLinux:9", Type: catalog.TypeRPM}, "bash", "2:5.1.8-6.el9"},
	} {
		_, name, ver, ok := Query(&c.p)
		if !ok || name != c.name || ver != c.ver {
			t.Errorf("Query(%+v) = %s %s", c.p, name, ver)
		}
	}
}

func TestNoDataAndSeverityParse(t *testing.T) {
	db := dbFrom(t, npmRec)
	res := run(t, db, catalog.Package{Name: "x", Version: "1", Ecosystem: "Alpine:v3.20", Type: catalog.TypeApk})
	if strings.Join(res.NoData, ",") != "Alpine" {
		t.Errorf("NoData = %v", res.NoData)
	}
	if s, err := ParseSeverity("high"); err != nil || s != High {
		t.Error(s, err)
	}
	if _, err := ParseSeverity("severe"); err == nil {
		t.Error("severe parsed")
	}
	if l, err := ParseSeverityList("critical, HIGH"); err != nil || len(l) != 2 || l[1] != High {
		t.Error(l, err)
	}
	if FromScore(0) != Low || FromScore(3.9) != Low || FromScore(4) != Medium || FromScore(8.9) != High || FromScore(9) != Critical {
		t.Error("FromScore mapping")
	}
}

func TestUpgradeSmallestThatFixesMost(t *testing.T) {
	rec := func(id string, events string) string {
		return `{"id":"` + id + `","affected":[{"package":{"ecosystem":"npm","name":"pkg"},"ranges":[{"type":"SEMVER","events":` + events + `}]}]}`
	}
	db := dbFrom(t,
		rec("A-1", `[{"introduced":"0"},{"fixed":"1.1.0"}]`),
		rec("B-1", `[{"introduced":"0"},{"fixed":"1.2.0"}]`),
		rec("C-1", `[{"introduced":"0"},{"fixed":"1.2.0"}]`),
		rec("D-1", `[{"introduced":"0"},{"fixed":"1.1.0"},{"introduced":"1.3.0"}]`),
		rec("E-1", `[{"introduced":"0"},{"fixed":"1.3.0"}]`),
	)
	res := run(t, db, catalog.Package{Name: "pkg", Version: "1.0.0", Type: catalog.TypeNpm, Ecosystem: "npm"})
	ups := res.Upgrades()
	if len(ups) != 1 {
		t.Fatalf("upgrades = %+v", ups)
	}
	u := ups[0]
	// 1.2.0 clears A-D, 1.3.0 clears A, B, C, E: a tie, the smaller wins
	if u.To != "1.2.0" || u.Fixes != 4 || u.Remaining != 1 || strings.Join(u.IDs, ",") != "A-1,B-1,C-1,D-1" {
		t.Fatalf("upgrade = %+v", u)
	}
}

func TestMatchManyPackagesSplitAcrossWorkers(t *testing.T) {
	db := realDB(t)
	one := run(t, db, goPkg("golang.org/x/text", "v0.3.6"))
	var pkgs []catalog.Package
	for i := 0; i < 1500; i++ {
		p := goPkg("golang.org/x/text", "v0.3.6")
		p.Locations = []catalog.Location{{Path: fmt.Sprintf("/app/bin%04d", i)}}
		pkgs = append(pkgs, p)
	}
	res := run(t, db, pkgs...)
	if len(res.Findings) != 1500*len(one.Findings) || res.Packages != 1500 {
		t.Fatalf("%d findings for 1500 packages, want %d", len(res.Findings), 1500*len(one.Findings))
	}
	// sorted by severity, package, ID, then path
	for i := 1; i < len(res.Findings); i++ {
		a, b := res.Findings[i-1], res.Findings[i]
		if a.ID == b.ID && firstPath(&a.Package) >= firstPath(&b.Package) {
			t.Fatalf("findings out of order at %d", i)
		}
	}
}

func TestDebianAdvisoryCoveringSeveralCVEs(t *testing.T) {
	rec := func(id, upstream, fixed string) string {
		return `{"id":"` + id + `","upstream":[` + upstream + `],"affected":[{"package":{"ecosystem":"Debian:12","name":"expat"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"` + fixed + `"}]}]}]}`
	}
	db := dbFrom(t,
		rec("DSA-5600-1", `"CVE-2024-0001","CVE-2024-0002"`, "2.5.0-1+deb12u1"),
		rec("DEBIAN-CVE-2024-0001", `"CVE-2024-0001"`, "2.5.0-1+deb12u1"),
		rec("DEBIAN-CVE-2024-0002", `"CVE-2024-0002"`, "2.5.0-1+deb12u1"),
		// an advisory whose flaws have no records of their own stays a finding
		rec("DSA-5601-1", `"CVE-2024-0003","CVE-2024-0004"`, "2.5.0-1+deb12u2"),
	)
	res := run(t, db, debPkg("Debian:12", "libexpat1", "2.5.0-1", "expat", "2.5.0-1"))
	var got []string
	for _, f := range res.Findings {
		got = append(got, f.ID+"="+strings.Join(f.Records, "+"))
		if f.ID == "CVE-2024-0001" && (!contains(f.Aliases, "DSA-5600-1") || strings.Join(f.FixedVersions, ",") != "2.5.0-1+deb12u1") {
			t.Errorf("CVE-2024-0001 finding: %+v", f)
		}
	}
	sort.Strings(got)
	want := "CVE-2024-0001=DEBIAN-CVE-2024-0001+DSA-5600-1 CVE-2024-0002=DEBIAN-CVE-2024-0002+DSA-5600-1 DSA-5601-1=DSA-5601-1"
	if strings.Join(got, " ") != want {
		t.Errorf("findings:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}

func TestWarningsOncePerPackage(t *testing.T) {
	db := realDB(t)
	res := run(t, db, goPkg("golang.org/x/text", "not-a-version"), goPkg("example.com/app", "(devel)"))
	if len(res.Findings) != 0 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "golang.org/x/text not-a-version: installed version cannot be compared") {
		t.Errorf("warnings = %q", res.Warnings)
	}
}

// TestRedHatStreams: a RHEL 9 package takes Red Hat's enterprise_linux:9
// records (any stream of it) and never those of RHEL 8 or of other
// products such as EUS, however their fixed versions compare.
func TestRedHatStreams(t *testing.T) {
	rec := func(id, eco, fixed string) string {
		return `{"id":"` + id + `","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"` + eco + `","name":"openssl"},` +
			`"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"` + fixed + `"}]}]}]}`
	}
	db := dbFrom(t,
		rec("RHSA-9", "Red Hat:enterprise_linux:9::appstream", "1:3.0.7-28.el9"),
		rec("RHSA-8", "Red Hat:enterprise_linux:8::appstream", "1:3.0.7-99.el8"),
		rec("RHSA-EUS", "Red Hat:rhel_eus:9.2::baseos", "1:3.0.7-99.el9_2"),
	)
	e := 1
	pkg := catalog.Package{Name: "openssl", Version: "3.0.7", Release: "27.el9", Epoch: &e, Type: catalog.TypeRPM, Ecosystem: "Red Hat:enterprise_linux:9"}
	got := recordsOf(run(t, db, pkg))
	if ids := got["openssl@3.0.7"]; len(ids) != 1 || ids[0] != "RHSA-9" {
		t.Fatalf("RHEL 9 package matched %v, want only RHSA-9", got)
	}
}
