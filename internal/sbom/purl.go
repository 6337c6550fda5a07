package sbom

import (
	"fmt"
	"strconv"
	"strings"

	packageurl "github.com/package-url/packageurl-go"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/gobinary"
	"github.com/moat-dev/moat/internal/catalog/rpm"
	"github.com/moat-dev/moat/internal/distro"
)

// packagePURL returns p.PURL, or builds one (catalog.PURL) from the
// package fields and the subject's OS release when p.PURL is empty.
func packagePURL(p *catalog.Package, s *Subject) string {
	if p.PURL != "" {
		return p.PURL
	}
	if p.Type == "" || p.Name == "" {
		return ""
	}
	var d catalog.Distro
	if s.OSName != "" {
		rel := distro.Release{ID: s.OSName, VersionID: s.OSVersion}
		d = catalog.Distro{Ecosystem: rel.OSVEcosystem(), Namespace: rel.PurlNamespace(), Qualifier: rel.PurlDistro()}
	}
	return catalog.PURL(p, d)
}

// EcosystemForDistro maps an OS release (os-release ID and VERSION_ID, or
// a purl namespace or distro qualifier split by splitDistro) to the OSV
// ecosystem of its packages, as distro.Release.OSVEcosystem does
// ("debian" "12.5" → "Debian:12", "alpine" "3.20.1" → "Alpine:v3.20",
// "ubuntu" "22.04" → "Ubuntu:22.04:LTS", "rocky" "9.3" → "Rocky Linux:9").
// The purl namespace "redhat" is the os-release ID "rhel". It returns ""
// for unknown distributions.
func EcosystemForDistro(name, version string) string {
	id := strings.ToLower(strings.TrimSpace(name))
	switch id {
	case "redhat":
		id = "rhel"
	case "alma":
		id = "almalinux"
	case "suse":
		id = "sles"
	}
	// Without a version, name the distribution alone ("Rocky Linux").
	return strings.TrimSuffix(distro.Release{ID: id, VersionID: strings.TrimSpace(version)}.OSVEcosystem(), ":")
}

// splitDistro splits a purl distro qualifier ("debian-12", "alpine-3.20.1",
// "opensuse-leap-15.5", "bookworm") into a name and a version: the version
// starts after the last '-' that is followed by a digit.
func splitDistro(d string) (string, string) {
	for i := len(d) - 2; i >= 0; i-- {
		if d[i] == '-' && d[i+1] >= '0' && d[i+1] <= '9' {
			return d[:i], d[i+1:]
		}
	}
	return d, ""
}

// PackageFromPURL derives a catalog package from a package URL, for SBOMs
// written by other tools. The mapping from purl type to catalog type and
// OSV ecosystem is:
//
//	deb       → deb,      ecosystem from the distro qualifier, else the namespace
//	            (distro=debian-12 → "Debian:12", distro=ubuntu-22.04 → "Ubuntu:22.04:LTS")
//	apk       → apk,      distro=alpine-3.20.1 → "Alpine:v3.20"; namespace wolfi → "Wolfi"
//	rpm       → rpm,      distro=rocky-9.3 → "Rocky Linux:9" (see EcosystemForDistro);
//	            Version stays "V-R" (as the rpm cataloger has it), Release is R
//	golang    → golang,   "Go";       Name is namespace/name (the module path);
//	            stdlib versions are written like the Go binary cataloger's ("v1.21.3")
//	npm       → npm,      "npm";      Name is "@scope/name" for scoped packages
//	pypi      → pypi,     "PyPI"
//	maven     → maven,    "Maven";    Namespace is the group ID
//	gem       → gem,      "RubyGems"
//	cargo     → cargo,    "crates.io"
//	composer  → composer, "Packagist"; Name is "vendor/name"
//	nuget     → nuget,    "NuGet"
//
// For OS packages the qualifiers also give the source package
// ("upstream" or "source": "NAME", "NAME@VERSION" or, for rpm, a source RPM
// file name "NAME-VERSION-RELEASE.src.rpm"), the epoch ("epoch": Epoch for
// rpm; for deb it is prefixed to Version, as dpkg writes versions) and the
// architecture ("arch"). A distro qualifier that is only a version
// ("distro=3.20.1") takes the distribution from the namespace. Other purl types keep their type and get no
// ecosystem.
func PackageFromPURL(purl string) (catalog.Package, error) {
	u, err := packageurl.FromString(purl)
	if err != nil {
		return catalog.Package{}, fmt.Errorf("invalid package URL %q: %w", purl, err)
	}
	q := u.Qualifiers.Map()
	p := catalog.Package{
		Name:    u.Name,
		Version: u.Version,
		Type:    catalog.Type(u.Type),
		PURL:    purl,
		Layer:   -1,
	}
	switch p.Type {
	case catalog.TypeDeb, catalog.TypeApk, catalog.TypeRPM:
		p.Arch = q["arch"]
		if e := q["epoch"]; e != "" {
			if n, err := strconv.Atoi(e); err == nil && n >= 0 {
				switch {
				case p.Type == catalog.TypeRPM:
					p.Epoch = &n
				case p.Type == catalog.TypeDeb && n > 0 && !strings.Contains(p.Version, ":"):
					// dpkg versions carry their epoch ("1:3.134").
					p.Version = e + ":" + p.Version
				}
			}
		}
		dname, dver := u.Namespace, ""
		if d := q["distro"]; d != "" {
			if d[0] >= '0' && d[0] <= '9' {
				dver = d // Trivy's apk purls: distro=3.20.1
			} else if n, v := splitDistro(d); n != "" {
				dname, dver = n, v
			}
		}
		p.Ecosystem = EcosystemForDistro(dname, dver)
		up := q["upstream"]
		if up == "" {
			up = q["source"]
		}
		if p.Type == catalog.TypeRPM {
			// moat's rpm cataloger keeps "VERSION-RELEASE" in Version
			// and the release again in Release.
			if i := strings.LastIndexByte(p.Version, '-'); i > 0 {
				p.Release = p.Version[i+1:]
			}
			if up != "" {
				p.SourceName, p.SourceVersion = splitSourceRPM(up)
			}
		} else if up != "" {
			name, ver, ok := strings.Cut(up, "@")
			p.SourceName = name
			if ok {
				p.SourceVersion = ver
			} else {
				p.SourceVersion = p.Version
			}
		}
		if p.SourceName == "" {
			// As the dpkg and apk catalogers do: a package without a
			// named source is its own source.
			p.SourceName, p.SourceVersion = p.Name, p.Version
		}
	case catalog.TypeGo:
		p.Ecosystem = "Go"
		if u.Namespace != "" {
			p.Name = u.Namespace + "/" + u.Name
		}
		if p.Name == "stdlib" && p.Version != "" {
			// As the Go binary cataloger writes it: "go1.21.3",
			// "1.21.3" → "v1.21.3".
			p.Version = gobinary.GoVersionToSemver("go" + strings.TrimPrefix(strings.TrimPrefix(p.Version, "go"), "v"))
		}
	case catalog.TypeNpm:
		p.Ecosystem = "npm"
		if u.Namespace != "" {
			p.Name = u.Namespace + "/" + u.Name
		}
	case catalog.TypePyPI:
		p.Ecosystem = "PyPI"
	case catalog.TypeMaven:
		p.Ecosystem = "Maven"
		p.Namespace = u.Namespace
	case catalog.TypeGem:
		p.Ecosystem = "RubyGems"
	case catalog.TypeCargo:
		p.Ecosystem = "crates.io"
	case catalog.TypeComposer:
		p.Ecosystem = "Packagist"
		if u.Namespace != "" {
			p.Name = u.Namespace + "/" + u.Name
		}
	case catalog.TypeNuGet:
		p.Ecosystem = "NuGet"
	default:
		p.Namespace = u.Namespace
	}
	return p, nil
}

// splitSourceRPM splits an rpm upstream qualifier: "NAME@VERSION", a source
// RPM file name "openssl-1.1.1k-7.el8.src.rpm" (→ "openssl",
// "1.1.1k-7.el8"), or a bare name.
func splitSourceRPM(s string) (string, string) {
	if name, ver, ok := strings.Cut(s, "@"); ok {
		return name, ver
	}
	if strings.HasSuffix(s, ".rpm") {
		if n, v := rpm.SplitSourceRPM(s); n != "" {
			return n, v
		}
	}
	return s, ""
}
