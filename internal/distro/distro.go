// Package distro recognises the operating system release of an image and
// names it the way OSV ecosystems and package URLs do.
package distro

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
	"sync"
)

// Release is the detected OS release of an image.
type Release struct {
	ID         string   `json:"id"`                   // os-release ID: "debian", "alpine", "rhel", ...
	VersionID  string   `json:"versionID,omitempty"`  // "12", "3.20.1", "9.4"
	Codename   string   `json:"codename,omitempty"`   // "bookworm"
	PrettyName string   `json:"prettyName,omitempty"` // "Debian GNU/Linux 12 (bookworm)"
	IDLike     []string `json:"idLike,omitempty"`
	// Distroless is set for images that carry distribution packages but no
	// shell or package manager (Google distroless and the like).
	Distroless bool `json:"distroless,omitempty"`
	// Source names the file the release was read from.
	Source string `json:"source,omitempty"`
}

// Files are the paths whose content Detect reads (capture them while
// walking layers).
var Files = []string{
	"/etc/os-release", "/usr/lib/os-release",
	"/etc/debian_version", "/etc/alpine-release", "/etc/redhat-release",
	"/etc/system-release", "/etc/centos-release", "/etc/lsb-release",
}

// Wants reports whether p is one of Files.
func Wants(p string) bool {
	for _, f := range Files {
		if p == f {
			return true
		}
	}
	return false
}

// ParseOSRelease reads os-release(5) content.
func ParseOSRelease(b []byte) Release {
	var r Release
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		v = strings.ReplaceAll(v, `\"`, `"`)
		switch strings.TrimSpace(k) {
		case "ID":
			r.ID = strings.ToLower(v)
		case "VERSION_ID":
			r.VersionID = v
		case "VERSION_CODENAME":
			r.Codename = v
		case "PRETTY_NAME":
			r.PrettyName = v
		case "ID_LIKE":
			r.IDLike = strings.Fields(strings.ToLower(v))
		}
	}
	if strings.Contains(strings.ToLower(r.PrettyName), "distroless") {
		r.Distroless = true
	}
	return r
}

var (
	reDigits  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[0-9]+(\.[0-9]+)*`) })
	reRedhat  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^(.*?) release ([0-9][0-9.]*)`) })
	debianMap = map[string]string{"bookworm": "12", "bullseye": "11", "buster": "10", "stretch": "9", "trixie": "13", "forky": "14"}
)

// Detect returns the release from the captured files (path → content);
// ok is false when nothing identifies the OS (scratch images, Go static
// images). hasDpkgStatusD tells whether distroless package files exist.
func Detect(files map[string][]byte, hasDpkgStatusD bool) (Release, bool) {
	var r Release
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if b, ok := files[p]; ok && len(b) > 0 {
			r = ParseOSRelease(b)
			r.Source = p
			if r.ID != "" {
				break
			}
		}
	}
	if r.ID == "" {
		switch {
		case files["/etc/alpine-release"] != nil:
			r = Release{ID: "alpine", VersionID: strings.TrimSpace(string(files["/etc/alpine-release"])), Source: "/etc/alpine-release"}
		case files["/etc/debian_version"] != nil:
			v := strings.TrimSpace(string(files["/etc/debian_version"]))
			r = Release{ID: "debian", Source: "/etc/debian_version"}
			if m := reDigits().FindString(v); m != "" {
				r.VersionID = strings.SplitN(m, ".", 2)[0]
			} else if n, ok := debianMap[strings.SplitN(v, "/", 2)[0]]; ok {
				r.VersionID = n // "bookworm/sid" on testing images
			}
		default:
			for _, p := range []string{"/etc/redhat-release", "/etc/centos-release", "/etc/system-release"} {
				if b := files[p]; b != nil {
					if m := reRedhat().FindStringSubmatch(strings.TrimSpace(string(b))); m != nil {
						r = Release{ID: redhatID(m[1]), VersionID: m[2], PrettyName: strings.TrimSpace(string(b)), Source: p}
						break
					}
				}
			}
		}
		if r.ID == "" {
			if b := files["/etc/lsb-release"]; b != nil {
				for _, line := range strings.Split(string(b), "\n") {
					k, v, _ := strings.Cut(line, "=")
					v = strings.Trim(strings.TrimSpace(v), `"`)
					switch k {
					case "DISTRIB_ID":
						r.ID = strings.ToLower(v)
					case "DISTRIB_RELEASE":
						r.VersionID = v
					}
				}
				r.Source = "/etc/lsb-release"
			}
		}
	}
	if r.ID == "" && hasDpkgStatusD {
		// Distroless images without os-release still carry Debian packages.
		r = Release{ID: "debian", Distroless: true, Source: "/var/lib/dpkg/status.d"}
	}
	if hasDpkgStatusD && r.ID == "debian" {
		r.Distroless = true
	}
	return r, r.ID != ""
}

func redhatID(name string) string {
	n := strings.ToLower(name)
	switch {
	case strings.Contains(n, "centos"):
		return "centos"
	case strings.Contains(n, "rocky"):
		return "rocky"
	case strings.Contains(n, "alma"):
		return "almalinux"
	case strings.Contains(n, "fedora"):
		return "fedora"
	case strings.Contains(n, "amazon"):
		return "amzn"
	case strings.Contains(n, "oracle"):
		return "ol"
	}
	return "rhel"
}

func majorMinor(v string) string {
	parts := strings.Split(v, ".")
	if len(parts) >= 2 {
		return parts[0] + "." + parts[1]
	}
	return v
}

func major(v string) string { return strings.SplitN(v, ".", 2)[0] }

// OSVEcosystem names the OSV ecosystem whose advisories cover the packages
// of this release ("Debian:12", "Alpine:v3.20", "Ubuntu:22.04:LTS",
// "Rocky Linux:9", "AlmaLinux:9", "Red Hat:enterprise_linux:9", "SUSE:...", ...). It returns ""
// for releases OSV has no data for.
func (r Release) OSVEcosystem() string {
	switch r.ID {
	case "debian":
		if r.VersionID == "" {
			return "Debian"
		}
		return "Debian:" + major(r.VersionID)
	case "ubuntu":
		v := majorMinor(r.VersionID)
		if v == "" {
			return "Ubuntu"
		}
		// LTS releases are the even years' April releases.
		if len(v) == 5 && v[3:] == "04" && (v[1]-'0')%2 == 0 {
			return "Ubuntu:" + v + ":LTS"
		}
		return "Ubuntu:" + v
	case "alpine":
		if r.VersionID == "" {
			return "Alpine"
		}
		return "Alpine:v" + majorMinor(r.VersionID)
	case "rocky":
		return "Rocky Linux:" + major(r.VersionID)
	case "almalinux":
		return "AlmaLinux:" + major(r.VersionID)
	case "rhel", "centos":
		// Red Hat's OSV records name the product stream
		// ("Red Hat:enterprise_linux:9::appstream"); a package of RHEL 9
		// (or CentOS Stream 9) takes the records of enterprise_linux:9 and
		// never those of 8. Without a version every stream applies.
		if m := major(r.VersionID); m != "" {
			return "Red Hat:enterprise_linux:" + m
		}
		return "Red Hat"
	case "sles", "sled", "sles_sap":
		return "SUSE:Linux Enterprise Server " + r.VersionID
	case "opensuse-leap":
		return "openSUSE:Leap " + r.VersionID
	case "opensuse-tumbleweed":
		return "openSUSE:Tumbleweed"
	case "wolfi":
		return "Wolfi"
	case "chainguard":
		return "Chainguard"
	case "photon":
		return "Photon OS:" + majorMinor(r.VersionID)
	case "mariner", "azurelinux":
		return "Azure Linux:" + majorMinor(r.VersionID)
	}
	return ""
}

// PurlNamespace is the purl namespace of this release's packages
// ("debian", "ubuntu", "alpine", "redhat", ...).
func (r Release) PurlNamespace() string {
	switch r.ID {
	case "rhel":
		return "redhat"
	case "":
		return "unknown"
	}
	return r.ID
}

// PurlDistro is the purl "distro" qualifier ("debian-12", "alpine-3.20.1").
func (r Release) PurlDistro() string {
	if r.VersionID == "" {
		return r.ID
	}
	return r.ID + "-" + r.VersionID
}

// String is a short human name.
func (r Release) String() string {
	if r.PrettyName != "" {
		return r.PrettyName
	}
	return strings.TrimSpace(r.ID + " " + r.VersionID)
}
