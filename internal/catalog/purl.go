package catalog

import (
	"strconv"
	"strings"

	"github.com/package-url/packageurl-go"
)

// Fixed OSV ecosystems of the language package types.
var langEcosystem = map[Type]string{
	TypeGo: "Go", TypeNpm: "npm", TypePyPI: "PyPI", TypeMaven: "Maven",
	TypeGem: "RubyGems", TypeCargo: "crates.io", TypeComposer: "Packagist", TypeNuGet: "NuGet",
}

// Distro describes the OS release for Finalize.
type Distro struct {
	Ecosystem string // OSV ecosystem, "Debian:12"
	Namespace string // purl namespace, "debian"
	Qualifier string // purl distro qualifier, "debian-12"
}

// Finalize fills Ecosystem and PURL. OS packages take them from d.
func Finalize(p *Package, d Distro) {
	if p.Ecosystem == "" {
		if p.Type.OSPackage() {
			p.Ecosystem = d.Ecosystem
		} else {
			p.Ecosystem = langEcosystem[p.Type]
		}
	}
	if p.PURL == "" {
		p.PURL = PURL(p, d)
	}
}

// PURL builds the package URL of p.
func PURL(p *Package, d Distro) string {
	var q packageurl.Qualifiers
	ns, name := p.Namespace, p.Name
	switch p.Type {
	case TypeDeb, TypeApk, TypeRPM:
		ns = d.Namespace
		if ns == "" {
			ns = "unknown"
		}
		if p.Arch != "" {
			q = append(q, packageurl.Qualifier{Key: "arch", Value: p.Arch})
		}
		if p.Epoch != nil && p.Type == TypeRPM {
			q = append(q, packageurl.Qualifier{Key: "epoch", Value: strconv.Itoa(*p.Epoch)})
		}
		if d.Qualifier != "" {
			q = append(q, packageurl.Qualifier{Key: "distro", Value: d.Qualifier})
		}
		if p.SourceName != "" && (p.SourceName != p.Name || p.SourceVersion != p.Version) {
			up := p.SourceName
			if p.SourceVersion != "" && p.SourceVersion != p.Version {
				up += "@" + p.SourceVersion
			}
			q = append(q, packageurl.Qualifier{Key: "upstream", Value: up})
		}
	case TypeGo:
		if i := strings.LastIndex(name, "/"); i > 0 {
			ns, name = name[:i], name[i+1:]
		}
	case TypeNpm:
		if strings.HasPrefix(name, "@") {
			if i := strings.Index(name, "/"); i > 0 {
				ns, name = name[:i], name[i+1:]
			}
		}
	case TypePyPI:
		name = strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name))
	case TypeComposer:
		if i := strings.Index(name, "/"); i > 0 {
			ns, name = name[:i], name[i+1:]
		}
	}
	return packageurl.NewPackageURL(string(p.Type), ns, name, p.Version, q, "").ToString()
}
