package distro

import "testing"

func TestOSVEcosystem(t *testing.T) {
	for _, c := range []struct {
		r    Release
		want string
	}{
		{Release{ID: "debian", VersionID: "12"}, "Debian:12"},
		{Release{ID: "debian", VersionID: "11.9"}, "Debian:11"},
		{Release{ID: "debian"}, "Debian"},
		{Release{ID: "ubuntu", VersionID: "22.04"}, "Ubuntu:22.04:LTS"},
		{Release{ID: "ubuntu", VersionID: "24.04"}, "Ubuntu:24.04:LTS"},
		{Release{ID: "ubuntu", VersionID: "23.10"}, "Ubuntu:23.10"},
		{Release{ID: "ubuntu", VersionID: "21.04"}, "Ubuntu:21.04"},
		{Release{ID: "alpine", VersionID: "3.20.1"}, "Alpine:v3.20"},
		{Release{ID: "rocky", VersionID: "9.4"}, "Rocky Linux:9"},
		{Release{ID: "almalinux", VersionID: "8.10"}, "AlmaLinux:8"},
		{Release{ID: "rhel", VersionID: "9.4"}, "Red Hat:enterprise_linux:9"},
		{Release{ID: "centos", VersionID: "8"}, "Red Hat:enterprise_linux:8"},
		{Release{ID: "rhel"}, "Red Hat"},
		{Release{ID: "opensuse-leap", VersionID: "15.5"}, "openSUSE:Leap 15.5"},
		{Release{ID: "wolfi"}, "Wolfi"},
		{Release{ID: "plan9"}, ""},
	} {
		if got := c.r.OSVEcosystem(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}

func TestDetect(t *testing.T) {
	for name, c := range map[string]struct {
		files      map[string][]byte
		statusD    bool
		id, ver    string
		distroless bool
		ok         bool
	}{
		"os-release":                    {files: map[string][]byte{"/etc/os-release": []byte("# comment\nID=\"ubuntu\"\nVERSION_ID='22.04'\nPRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n")}, id: "ubuntu", ver: "22.04", ok: true},
		"usr/lib only":                  {files: map[string][]byte{"/usr/lib/os-release": []byte("ID=alpine\nVERSION_ID=3.19.1\n")}, id: "alpine", ver: "3.19.1", ok: true},
		"debian_version":                {files: map[string][]byte{"/etc/debian_version": []byte("12.5\n")}, id: "debian", ver: "12", ok: true},
		"debian testing":                {files: map[string][]byte{"/etc/debian_version": []byte("trixie/sid\n")}, id: "debian", ver: "13", ok: true},
		"alpine-release":                {files: map[string][]byte{"/etc/alpine-release": []byte("3.18.6\n")}, id: "alpine", ver: "3.18.6", ok: true},
		"redhat-release":                {files: map[string][]byte{"/etc/redhat-release": []byte("Rocky Linux release 9.3 (Blue Onyx)\n")}, id: "rocky", ver: "9.3", ok: true},
		"distroless without os-release": {statusD: true, id: "debian", distroless: true, ok: true},
		"distroless os-release":         {files: map[string][]byte{"/etc/os-release": []byte("PRETTY_NAME=\"Distroless\"\nID=debian\nVERSION_ID=\"12\"\n")}, statusD: true, id: "debian", ver: "12", distroless: true, ok: true},
		"scratch":                       {ok: false},
	} {
		r, ok := Detect(c.files, c.statusD)
		if ok != c.ok || r.ID != c.id || r.VersionID != c.ver || r.Distroless != c.distroless {
			t.Errorf("%s: got %+v ok=%v", name, r, ok)
		}
	}
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add("ID=debian\nVERSION_ID=\"12\"\n")
	f.Add("ID='x\nPRETTY_NAME=\"\\\"\"\n=\n")
	f.Fuzz(func(t *testing.T, s string) {
		r := ParseOSRelease([]byte(s))
		_ = r.OSVEcosystem()
		_ = r.PurlDistro()
		_, _ = Detect(map[string][]byte{"/etc/os-release": []byte(s), "/etc/debian_version": []byte(s), "/etc/redhat-release": []byte(s), "/etc/lsb-release": []byte(s)}, len(s)%2 == 0)
	})
}
