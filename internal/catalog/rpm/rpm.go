// Package rpm catalogs RPM packages from the rpm database in its three
// formats: Berkeley DB (Packages), NDB (Packages.db) and SQLite
// (rpmdb.sqlite), read with github.com/knqyf263/go-rpmdb.
package rpm

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	_ "github.com/glebarez/go-sqlite" // the "sqlite" driver go-rpmdb opens rpmdb.sqlite with
	rpmdb "github.com/knqyf263/go-rpmdb/pkg"

	"github.com/moat-dev/moat/internal/catalog"
)

type cataloger struct{}

// New returns the rpm cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "rpm" }

func (cataloger) Wants(p string, _ fs.FileMode, size int64) bool {
	if size == 0 {
		return false
	}
	var base string
	switch {
	case strings.HasPrefix(p, "/var/lib/rpm/"):
		base = p[len("/var/lib/rpm/"):]
	case strings.HasPrefix(p, "/usr/lib/sysimage/rpm/"):
		base = p[len("/usr/lib/sysimage/rpm/"):]
	default:
		return false
	}
	return base == "Packages" || base == "Packages.db" || base == "rpmdb.sqlite"
}

func (cataloger) Parse(_ context.Context, f *catalog.File) (pkgs []catalog.Package, err error) {
	local, err := f.LocalPath()
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt rpm database: %v", r)
		}
	}()
	db, err := rpmdb.Open(local)
	if err != nil {
		return nil, fmt.Errorf("opening rpm database: %w", err)
	}
	defer db.Close()
	list, err := db.ListPackages()
	if err != nil {
		return nil, fmt.Errorf("reading rpm database: %w", err)
	}
	for _, pi := range list {
		if pi == nil || pi.Name == "" || pi.Version == "" {
			continue
		}
		if pi.Name == "gpg-pubkey" {
			continue // imported signing keys, not software
		}
		p := catalog.Package{
			Name: pi.Name, Version: pi.Version, Release: pi.Release, Arch: pi.Arch,
			Type: catalog.TypeRPM, Epoch: pi.Epoch,
			Locations: []catalog.Location{{Path: f.Path}},
		}
		if pi.Release != "" {
			p.Version = pi.Version + "-" + pi.Release
		}
		if pi.License != "" {
			p.Licenses = []string{pi.License}
		}
		p.SourceName, p.SourceVersion = SplitSourceRPM(pi.SourceRpm)
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// SplitSourceRPM turns "bash-5.1.8-6.el9.src.rpm" into ("bash", "5.1.8-6.el9").
func SplitSourceRPM(s string) (string, string) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, ".rpm"), ".src")
	s = strings.TrimSuffix(s, ".nosrc")
	i := strings.LastIndex(s, "-")
	if i <= 0 {
		return "", ""
	}
	j := strings.LastIndex(s[:i], "-")
	if j <= 0 {
		return "", ""
	}
	return s[:j], s[j+1:]
}
